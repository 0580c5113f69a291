//! What a rate limit or quota says about a request, in the shape of the `RateLimit-Policy` and
//! `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers.
//!
//! A [`RateLimitStatus`] travels on an allowed request's [`Principal`](crate::Principal) and on
//! a refusal ([`AuthError::RateLimited`](crate::AuthError::RateLimited)), so every adapter
//! sends the same headers, whether the request went through or not.
//!
//! ```
//! use auth_core::ratelimit::RateLimitStatus;
//!
//! let status = RateLimitStatus { policy: "key-rate", limit: 10, window_secs: 1, remaining: 7, reset_secs: 1 };
//! let [(policy_name, policy), (name, value)] = status.headers();
//! assert_eq!((policy_name, policy.as_str()), ("ratelimit-policy", "\"key-rate\";q=10;w=1"));
//! assert_eq!((name, value.as_str()), ("ratelimit", "\"key-rate\";r=7;t=1"));
//! ```

/// The state of the limit closest to exhaustion for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The policy's name (`key-rate`, `tenant-day`, ...).
    pub policy: &'static str,
    /// The quota of the policy: requests per window (the burst, for a rate).
    pub limit: u64,
    /// The policy's window, in seconds.
    pub window_secs: u64,
    /// Requests left.
    pub remaining: u64,
    /// Seconds until the allowance is whole again (a rate) or the window ends (a quota).
    pub reset_secs: u64,
}

impl RateLimitStatus {
    /// The `RateLimit-Policy` and `RateLimit` header values, as `(lower-case name, value)`.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (
                "ratelimit-policy",
                format!(
                    "\"{}\";q={};w={}",
                    self.policy, self.limit, self.window_secs
                ),
            ),
            (
                "ratelimit",
                format!(
                    "\"{}\";r={};t={}",
                    self.policy, self.remaining, self.reset_secs
                ),
            ),
        ]
    }
}
