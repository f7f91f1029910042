//! Slowing down password guessing without letting a stranger lock an account out.
//!
//! Failures are counted per (account, address) pair and per address. After
//! [`FREE_FAILURES`] failed logins in a row for an account from one address, or
//! [`FREE_ADDRESS_FAILURES`] from one address across accounts (spraying), further attempts from
//! that address are refused (without checking them) for a wait that doubles with each failure,
//! up to [`MAX_WAIT`]. The same account from another address is not affected, so guessing
//! admin's password from one machine cannot lock admin out everywhere. Without a known address
//! (in-process callers) the account alone is the key. A success clears the pair's count and
//! the address's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Failures for one account from one address before attempts are delayed.
pub const FREE_FAILURES: u32 = 5;
/// Failures from one address, over all accounts, before its attempts are delayed (higher:
/// many users may share an address behind a proxy or NAT).
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The longest wait imposed.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Counters idle this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    fn wait(&self, free: u32) -> Option<Duration> {
        if self.count < free {
            return None;
        }
        let exponent = (self.count - free).min(16);
        let wait = Duration::from_secs(1u64 << exponent).min(MAX_WAIT);
        let elapsed = self.last.elapsed();
        (elapsed < wait).then(|| wait - elapsed)
    }
}

#[derive(Default)]
pub struct Throttle {
    by_key: RwLock<HashMap<String, Failures>>,
}

/// The counters an attempt touches, each with its allowance.
fn keys(account: &str, client: Option<IpAddr>) -> Vec<(String, u32)> {
    match client.map(|ip| ip.to_canonical()) {
        Some(ip) => vec![
            (format!("pair:{ip}:{account}"), FREE_FAILURES),
            (format!("address:{ip}"), FREE_ADDRESS_FAILURES),
        ],
        None => vec![(format!("account:{account}"), FREE_FAILURES)],
    }
}

impl Throttle {
    /// How long the caller must still wait, if it must.
    pub fn wait(&self, account: &str, client: Option<IpAddr>) -> Option<Duration> {
        let map = self.by_key.read().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return None;
        }
        keys(account, client)
            .iter()
            .filter_map(|(k, free)| map.get(k).and_then(|f| f.wait(*free)))
            .max()
    }

    pub fn failed(&self, account: &str, client: Option<IpAddr>) {
        let mut map = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, f| f.last.elapsed() < FORGET_AFTER);
        }
        for (key, _) in keys(account, client) {
            let entry = map.entry(key).or_insert(Failures {
                count: 0,
                last: Instant::now(),
            });
            if entry.last.elapsed() > FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = Instant::now();
        }
    }

    pub fn succeeded(&self, account: &str, client: Option<IpAddr>) {
        if self
            .by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return;
        }
        let mut map = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        for (key, _) in keys(account, client) {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_impose_a_growing_wait() {
        let throttle = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failed("alice", Some(ip));
            assert_eq!(throttle.wait("alice", Some(ip)), None);
        }
        throttle.failed("alice", Some(ip));
        let first = throttle.wait("alice", Some(ip)).expect("throttled");
        assert!(first <= Duration::from_secs(1));
        throttle.failed("alice", Some(ip));
        let second = throttle.wait("alice", Some(ip)).expect("throttled");
        assert!(second > first);
        throttle.succeeded("alice", Some(ip));
        assert_eq!(throttle.wait("alice", Some(ip)), None);
    }

    #[test]
    fn a_stranger_cannot_lock_an_account_out() {
        let throttle = Throttle::default();
        let attacker: IpAddr = "192.0.2.66".parse().expect("ip");
        let owner: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..FREE_FAILURES + 3 {
            throttle.failed("admin", Some(attacker));
        }
        assert!(throttle.wait("admin", Some(attacker)).is_some());
        assert_eq!(throttle.wait("admin", Some(owner)), None);
        // Another account from the attacker's address is still free (below the address
        // allowance)...
        assert_eq!(throttle.wait("bob", Some(attacker)), None);
        // ...until the address sprays past it.
        for i in 0..FREE_ADDRESS_FAILURES {
            throttle.failed(&format!("user{i}"), Some(attacker));
        }
        assert!(throttle.wait("bob", Some(attacker)).is_some());
        assert_eq!(throttle.wait("bob", Some(owner)), None);
    }

    #[test]
    fn without_an_address_the_account_is_the_key() {
        let throttle = Throttle::default();
        for _ in 0..FREE_FAILURES {
            throttle.failed("alice", None);
        }
        assert!(throttle.wait("alice", None).is_some());
        assert_eq!(throttle.wait("bob", None), None);
    }
}
