//! The three kinds of value a metric holds, each a few atomics that live in a `static`:
//! recording is a relaxed atomic add (no lock, no allocation), and only a scrape reads them.
//! Metrics written on every request are kept in [`STRIPES`] copies, one per thread (a
//! [`StripedCounter`], `HttpMetrics`' stripes): an atomic add that every core makes to the
//! same cache line moves the line between cores each time, which cost more than the add.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A value that only goes up (requests served, bytes received).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How many copies a striped metric keeps; threads take them in turn.
pub const STRIPES: usize = 8;

/// The stripe the calling thread writes.
pub fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// A value on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// A [`Counter`] written by every request (bytes in and out): one per stripe.
#[derive(Debug, Default)]
pub struct StripedCounter([Padded<AtomicU64>; STRIPES]);

impl StripedCounter {
    pub const fn new() -> StripedCounter {
        StripedCounter([const { Padded(AtomicU64::new(0)) }; STRIPES])
    }

    pub fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// A value that goes up and down (open connections, requests in flight, free bytes).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of request latency buckets: 1 ms … 60 s. A manifest GET lands in
/// the first, a multi-GiB upload PATCH in the last ones.
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
];

/// A latency distribution over [`LATENCY_BOUNDS`]. Each bucket counts only its own range
/// (one add per observation); the scrape makes them cumulative, as Prometheus wants.
#[derive(Debug)]
pub struct Histogram {
    /// `buckets[i]`: observations in (bound[i-1], bound[i]]; the last one is above all bounds.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// The bounds in nanoseconds, compared against without floating point on the request path.
const BOUND_NANOS: [u64; LATENCY_BOUNDS.len()] = {
    let mut out = [0u64; LATENCY_BOUNDS.len()];
    let mut i = 0;
    while i < LATENCY_BOUNDS.len() {
        out[i] = (LATENCY_BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BOUNDS.len() + 1],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUND_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUND_NANOS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the `le` buckets), then the total count (`+Inf`).
    pub fn cumulative(&self) -> ([u64; LATENCY_BOUNDS.len()], u64) {
        let mut out = [0u64; LATENCY_BOUNDS.len()];
        let mut running = 0u64;
        for (i, slot) in out.iter_mut().enumerate() {
            running += self.buckets[i].load(Ordering::Relaxed);
            *slot = running;
        }
        running += self.buckets[LATENCY_BOUNDS.len()].load(Ordering::Relaxed);
        (out, running)
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Add `other`'s observations to these (summing stripes for a scrape).
    pub fn add_from(&self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter().zip(&other.buckets) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(other.sum_nanos.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_in_the_first_bucket_that_holds_them_and_add_up_cumulatively() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(7));
        histogram.observe(Duration::from_secs(120));
        let (buckets, count) = histogram.cumulative();
        assert_eq!(buckets[0], 2, "0.5 ms and exactly 1 ms are both le=0.001");
        assert_eq!(buckets[3], 3, "7 ms is le=0.01");
        assert_eq!(
            buckets[LATENCY_BOUNDS.len() - 1],
            3,
            "120 s is above every bound"
        );
        assert_eq!(count, 4);
        assert!((histogram.sum_seconds() - 120.0085).abs() < 1e-6);
    }

    #[test]
    fn gauges_go_both_ways() {
        let gauge = Gauge::new();
        gauge.inc();
        gauge.inc();
        gauge.dec();
        assert_eq!(gauge.get(), 1);
        gauge.set(-5);
        assert_eq!(gauge.get(), -5);
    }
}
