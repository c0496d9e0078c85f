//! Log lines on stderr for `podmap serve`: readable text, or one JSON object a line for log
//! shippers (`--log-format json`).
//!
//! A JSON line carries the event's fields at the top level and, under `span`, the fields of
//! the span it was logged in; `spans` lists every enclosing span, outermost first. The request
//! span (`request_id`, `method`, `path`, `route`) is the outermost one of every line logged
//! while a request is handled, so a log shipper joins a request's lines by
//! `spans[0].request_id`, the id the client got in `x-request-id`. The level comes from
//! `RUST_LOG` (default `info`).

use podmap::server::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber, writing to stderr in `format`.
pub(super) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
