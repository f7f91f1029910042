//! Prometheus' text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per family,
//! then one `name{label="value",…} number` line per sample. Written by hand (it is a few
//! lines of escaping) rather than through a metrics library: every value berth exports is
//! one of its own atomics or read from a source at scrape time.

use std::fmt::Write as _;

use crate::primitives::{Histogram, LATENCY_BOUNDS};

/// The content type of a scrape's answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of family a metric is (its `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape's text, built family by family. Callers write a family's [`Exposition::family`]
/// header once, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            text: String::with_capacity(16 * 1024),
        }
    }

    /// `# HELP` and `# TYPE` for the family `name`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = write!(self.text, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.text.push_str("\\\\"),
                '\n' => self.text.push_str("\\n"),
                c => self.text.push(c),
            }
        }
        let _ = writeln!(self.text, "\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample with an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: i128) {
        self.name_and_labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    /// One sample with a real value (seconds, ratios).
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.name_and_labels(name, labels);
        self.text.push(' ');
        push_f64(&mut self.text, value);
        self.text.push('\n');
    }

    /// A family of one unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Counter);
        self.sample(name, &[], value.into());
    }

    /// A family of one unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.family(name, help, Kind::Gauge);
        self.sample(name, &[], value.into());
    }

    /// The samples of one histogram (`_bucket` per bound and `+Inf`, `_sum`, `_count`);
    /// the family header is the caller's, so one family may hold several label sets.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let (buckets, count) = histogram.cumulative();
        let bucket_name = format!("{name}_bucket");
        let bound_texts = LATENCY_BOUNDS.map(|bound| {
            let mut text = String::new();
            push_f64(&mut text, bound);
            text
        });
        let les = bound_texts.iter().map(String::as_str).chain(["+Inf"]);
        let counts = buckets.into_iter().chain([count]);
        for (le, cumulative) in les.zip(counts) {
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket_name, &with_le, cumulative.into());
        }
        self.sample_f64(&format!("{name}_sum"), labels, histogram.sum_seconds());
        self.sample(&format!("{name}_count"), labels, count.into());
    }

    pub fn into_text(self) -> String {
        self.text
    }

    fn name_and_labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(label);
            self.text.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }
}

/// Prometheus' spelling of a float: `+Inf`, `-Inf`, `NaN`, else Rust's shortest round-trip.
fn push_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = Exposition::new();
        out.family("x_total", "a \\ help\nline", Kind::Counter);
        out.sample("x_total", &[("project", "we\"ird\\\n")], 3);
        assert_eq!(
            out.into_text(),
            "# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n\
             x_total{project=\"we\\\"ird\\\\\\n\"} 3\n"
        );
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_an_inf_bucket_a_sum_and_a_count() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_millis(2));
        histogram.observe(Duration::from_secs(100));
        let mut out = Exposition::new();
        out.histogram("t_seconds", &[("class", "a")], &histogram);
        let text = out.into_text();
        assert!(
            text.contains("t_seconds_bucket{class=\"a\",le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{class=\"a\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{class=\"a\",le=\"60\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{class=\"a\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_sum{class=\"a\"} 100.002\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_count{class=\"a\"} 2\n"), "{text}");
    }
}
