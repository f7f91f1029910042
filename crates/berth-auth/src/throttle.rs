//! Slowing down password guessing: after [`FREE_FAILURES`] failed logins in a row for an
//! account or from an address, further attempts are refused (without checking them) for a
//! wait that doubles with each failure, up to [`MAX_WAIT`]. A success clears the account's
//! and the address's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before attempts are delayed.
pub const FREE_FAILURES: u32 = 5;
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
    fn wait(&self) -> Option<Duration> {
        if self.count < FREE_FAILURES {
            return None;
        }
        let exponent = (self.count - FREE_FAILURES).min(16);
        let wait = Duration::from_secs(1u64 << exponent).min(MAX_WAIT);
        let elapsed = self.last.elapsed();
        (elapsed < wait).then(|| wait - elapsed)
    }
}

#[derive(Default)]
pub struct Throttle {
    by_key: Mutex<HashMap<String, Failures>>,
}

fn keys(account: &str, client: Option<IpAddr>) -> [Option<String>; 2] {
    [
        Some(format!("account:{account}")),
        client.map(|ip| format!("address:{}", ip.to_canonical())),
    ]
}

impl Throttle {
    /// How long the caller must still wait, if it must.
    pub fn wait(&self, account: &str, client: Option<IpAddr>) -> Option<Duration> {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        keys(account, client)
            .iter()
            .flatten()
            .filter_map(|k| map.get(k).and_then(Failures::wait))
            .max()
    }

    pub fn failed(&self, account: &str, client: Option<IpAddr>) {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, f| f.last.elapsed() < FORGET_AFTER);
        }
        for key in keys(account, client).into_iter().flatten() {
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
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys(account, client).into_iter().flatten() {
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
        let first = throttle.wait("alice", None).expect("throttled by account");
        assert!(first <= Duration::from_secs(1));
        // Another account from the same address is slowed too; another address is not.
        assert!(throttle.wait("bob", Some(ip)).is_some());
        assert_eq!(
            throttle.wait("bob", Some("192.0.2.2".parse().expect("ip"))),
            None
        );
        throttle.failed("alice", Some(ip));
        let second = throttle.wait("alice", None).expect("throttled");
        assert!(second > first);
        throttle.succeeded("alice", Some(ip));
        assert_eq!(throttle.wait("alice", Some(ip)), None);
    }
}
