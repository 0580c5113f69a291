//! The DPoP replay cache: which proofs were already accepted, for as long as they would be.
//!
//! An entry is the SHA-256 of the key thumbprint and the `jti`, with the last second the proof
//! is acceptable in (`iat + max_age`). The map is split into 16 shards (chosen by a keyed hash,
//! so a client cannot aim at one) behind mutexes, each holding at most `capacity / 16` entries.
//!
//! **When a shard is full**, it first drops its expired entries. If it is still full, it forgets
//! the entry that expires soonest (possibly the new one) and raises the shard's *floor* to that
//! entry's expiry: from then on, every proof that expires no later than the floor is refused
//! ([`DpopError::ReplayUndecidable`]), because the shard can no longer tell whether it was seen.
//! So a flood of valid proofs can make the verifier refuse older proofs for a while (until they
//! would be too old anyway), but it can never make it accept a replay, and memory stays bounded.
//! Fresh proofs keep being accepted as long as the flood does not outpace the window.

use super::DpopError;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    /// Entry → the last second in which its proof is acceptable.
    seen: HashMap<[u8; 32], i64, foldhash::fast::RandomState>,
    /// Proofs acceptable no later than this second are refused (see the module docs).
    floor: i64,
}

pub(crate) struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        seen: HashMap::default(),
                        floor: i64::MIN,
                    })
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Records `id` as used, with its proof acceptable until `expires` (inclusive), at `now`.
    ///
    /// # Errors
    ///
    /// [`DpopError::Replayed`] when it was already recorded, [`DpopError::ReplayUndecidable`]
    /// when the shard had to forget proofs expiring as late as this one.
    pub(crate) fn record(&self, id: [u8; 32], expires: i64, now: i64) -> Result<(), DpopError> {
        let index = usize::try_from(self.hasher.hash_one(id) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if expires <= shard.floor {
            return Err(DpopError::ReplayUndecidable);
        }
        if shard.seen.contains_key(&id) {
            return Err(DpopError::Replayed);
        }
        if shard.seen.len() >= self.per_shard {
            shard.seen.retain(|_, e| *e >= now);
        }
        if shard.seen.len() >= self.per_shard {
            // Forget the entry that expires soonest; if that is the new one, accept it without
            // storing it: the raised floor refuses its replays.
            let oldest = shard
                .seen
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, e)| (*k, *e));
            match oldest {
                Some((key, e)) if e < expires => {
                    shard.seen.remove(&key);
                    shard.floor = shard.floor.max(e);
                }
                _ => {
                    shard.floor = shard.floor.max(expires);
                    return Ok(());
                }
            }
        }
        shard.seen.insert(id, expires);
        Ok(())
    }

    /// The number of entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).seen.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 32] {
        super::super::sha256(&n.to_be_bytes())
    }

    #[test]
    fn a_proof_is_accepted_once() {
        let c = ReplayCache::new(100);
        assert_eq!(c.record(id(1), 160, 100), Ok(()));
        assert_eq!(c.record(id(1), 160, 100), Err(DpopError::Replayed));
        assert_eq!(c.record(id(1), 160, 150), Err(DpopError::Replayed));
        assert_eq!(c.record(id(2), 160, 100), Ok(()));
    }

    #[test]
    fn expired_entries_make_room() {
        // One entry per shard.
        let c = ReplayCache::new(1);
        for n in 0..1_000 {
            // Each proof expires before the next arrives: nothing is ever undecidable.
            assert_eq!(
                c.record(id(n), i64::from(n) * 10 + 5, i64::from(n) * 10),
                Ok(())
            );
        }
        assert!(c.len() <= SHARDS);
    }

    #[test]
    fn a_full_cache_stays_bounded_and_never_lets_a_replay_through() {
        let c = ReplayCache::new(32);
        let now = 1_000;
        let mut accepted = Vec::new();
        // Many proofs, all still acceptable: the cache must forget some.
        for n in 0..5_000u32 {
            let expires = now + 60 + i64::from(n % 60);
            match c.record(id(n), expires, now) {
                Ok(()) => accepted.push((n, expires)),
                Err(e) => assert_eq!(e, DpopError::ReplayUndecidable),
            }
            assert!(c.len() <= 32);
        }
        assert!(accepted.len() > 32, "fresh proofs keep being accepted");
        for (n, expires) in accepted {
            let again = c.record(id(n), expires, now);
            assert!(
                matches!(
                    again,
                    Err(DpopError::Replayed | DpopError::ReplayUndecidable)
                ),
                "replay of {n} accepted"
            );
        }
    }
}
