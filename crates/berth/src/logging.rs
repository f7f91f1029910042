//! Log lines on stderr, as `[log] format` says: `text` (tracing's usual line, with the
//! request span `request{id=… method=… path=…}` in front of every line a request causes) or
//! `json` (one object per line: `timestamp`, `level`, `target`, `message`, the event's
//! fields, and each enclosing span's fields under the span's name, e.g. `"request":{"id":…}`).
//! Colour codes only when stderr is a terminal. The filter is `BERTH_LOG` (default
//! `info,sqlx=warn`).
//!
//! Nothing logged anywhere carries a password, a token or an `Authorization` header: the
//! request span names the method and path only (never the query, never a header).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Install the process's subscriber. Later calls do nothing (the first one wins).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            // Colours only on a terminal: a log file or journald would get raw escape codes.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonEvent)
            .try_init(),
    };
}

/// A span's fields as a JSON object (stored once, when the span is created).
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        fields.record(&mut visitor);
        write!(writer, "{}", Value::Object(visitor.0))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut object = match serde_json::from_str::<Value>(&current.fields) {
            Ok(Value::Object(object)) => object,
            _ => Map::new(),
        };
        let mut visitor = JsonVisitor::default();
        fields.record(&mut visitor);
        object.extend(visitor.0);
        current.fields = Value::Object(object).to_string();
        Ok(())
    }
}

/// One event as one JSON line.
pub struct JsonEvent;

impl<S, N> FormatEvent<S, N> for JsonEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        line.insert(
            "timestamp".into(),
            berth_core::time::rfc3339_millis(now_ms).into(),
        );
        let metadata = event.metadata();
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        line.extend(visitor.0);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let fields = extensions
                    .get::<FormattedFields<N>>()
                    .and_then(|f| serde_json::from_str::<Value>(&f.fields).ok())
                    .unwrap_or_else(|| Value::Object(Map::new()));
                line.insert(span.name().into(), fields);
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects fields into a JSON object.
#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn a_json_line_carries_the_message_the_fields_and_the_request_span() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonEvent)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", id = "abc123", method = "GET");
            let _entered = span.enter();
            tracing::warn!(status = 507u64, cause = "no space", "request failed");
        });
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(line["message"], "request failed");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["status"], 507);
        assert_eq!(line["cause"], "no space");
        assert_eq!(line["request"]["id"], "abc123");
        assert_eq!(line["request"]["method"], "GET");
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(!text.contains('\u{1b}'), "no colour codes");
    }
}
