//! Log lines on stderr, in the reference's text format or as JSON lines.
//!
//! Text: `2026-12-04 19:07:28,123 - INFO - Request succeeded: 200`, exactly
//! the Python toolbox's `%(asctime)s - %(levelname)s - %(message)s`.
//! JSON: one object per line with `ts`, `level`, `msg` and every structured
//! field of the event (url, attempt, status, delay_ms, elapsed_ms, error...).
//! This module only formats; it never decides what is worth logging, and it
//! never sees a secret (callers log redacted values).

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-04 19:07:28,123 - INFO - message`
    Text,
    /// `{"ts":"...","level":"INFO","msg":"...",...}`
    Json,
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when `-q` was given: nothing but errors may reach stderr (no
/// progress bars either).
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the stderr logger. `quiet` keeps errors only; each `verbose`
/// step adds a level (debug, then trace).
pub fn init(format: LogFormat, quiet: bool, verbose: u8) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
    let max = if quiet {
        Level::ERROR
    } else {
        match verbose {
            0 => Level::INFO,
            1 => Level::DEBUG,
            _ => Level::TRACE,
        }
    };
    // Only rtb's own events: dependencies (hyper, rustls...) stay silent.
    let layer = StderrLayer { format, max };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

struct StderrLayer {
    format: LogFormat,
    max: Level,
}

/// The reference's level names (Python's logging), used in both formats.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// A span's fields, kept so every event inside it carries them in JSON
/// (the retry loop's WARN lines get the `url` of the request they retry).
struct SpanFields(Vec<(String, serde_json::Value)>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for StderrLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.extra));
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        meta.level() <= &self.max && meta.target().starts_with("rtb")
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !(meta.level() <= &self.max && meta.target().starts_with("rtb")) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = chrono::Local::now();
        let level = level_name(meta.level());
        let line = match self.format {
            LogFormat::Text => format!(
                "{} - {} - {}\n",
                now.format("%Y-%m-%d %H:%M:%S,%3f"),
                level,
                fields.message
            ),
            LogFormat::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert(
                    "ts".into(),
                    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
                        .into(),
                );
                obj.insert("level".into(), level.into());
                obj.insert("msg".into(), fields.message.into());
                for (k, v) in fields.extra {
                    obj.insert(k, v);
                }
                if let Some(scope) = ctx.event_scope(event) {
                    for span in scope.from_root() {
                        if let Some(SpanFields(extra)) = span.extensions().get::<SpanFields>() {
                            for (k, v) in extra {
                                obj.entry(k.clone()).or_insert_with(|| v.clone());
                            }
                        }
                    }
                }
                let mut s = serde_json::Value::Object(obj).to_string();
                s.push('\n');
                s
            }
        };
        // One write per line so concurrent processes do not interleave
        // within a line; a closed stderr is not worth dying over.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(String, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.extra
                .push((field.name().into(), format!("{value:?}").into()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.extra.push((field.name().into(), value.into()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.push((field.name().into(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.push((field.name().into(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra.push((field.name().into(), value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra.push((field.name().into(), value.into()));
    }
}
