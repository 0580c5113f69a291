//! Parsing human durations such as `15m`, `30s`, `2h` or `1d` (a bare number is seconds).

use std::time::Duration;

/// Parses `N`, `Ns`, `Nm`, `Nh` or `Nd`.
///
/// # Errors
///
/// A message naming the accepted forms when `s` is not one of them.
///
/// ```
/// use auth_examples::duration::parse_duration;
/// assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
/// assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (use e.g. 30s, 15m, 2h, 1d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}
