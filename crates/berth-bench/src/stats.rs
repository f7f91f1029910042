//! Latency percentiles and the JSON lines every subcommand prints for `bench/run.sh`.

use serde_json::{Value, json};

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples; 0 when there are none.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `{"p50_ms":…, "p99_ms":…, "max_ms":…}` for samples in seconds.
pub fn latency(samples_secs: &[f64]) -> Value {
    let ms = |p| (percentile(samples_secs, p) * 1000.0 * 1000.0).round() / 1000.0;
    json!({ "p50_ms": ms(50.0), "p99_ms": ms(99.0), "max_ms": ms(100.0), "samples": samples_secs.len() })
}

/// GiB/s, rounded to 3 decimals.
pub fn gib_per_s(bytes: u64, secs: f64) -> f64 {
    let v = bytes as f64 / (1u64 << 30) as f64 / secs.max(1e-9);
    (v * 1000.0).round() / 1000.0
}

/// Print one result line.
pub fn emit(mut value: Value, extra: Value) {
    if let (Some(obj), Value::Object(more)) = (value.as_object_mut(), extra) {
        obj.extend(more);
    }
    println!("{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
