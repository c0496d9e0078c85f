//! Log lines on stderr for `podmap serve`: readable text, or one JSON object a line for log
//! shippers (`--log-format json`).
//!
//! A JSON line carries the event's fields at the top level and, under `span`, the fields of
//! the span it was logged in; `spans` lists every enclosing span, outermost first. The request
//! span (`request_id`, `method`, `path`, `route`) is the outermost one of every line logged
//! while a request is handled, so a log shipper joins a request's lines by
//! `spans[0].request_id`, the id the client got in `x-request-id`. The level comes from
//! `RUST_LOG` (default `info`).
//!
//! Lines are written to stderr by a thread of their own, not by the async worker that logs
//! them: one access line a request was a `write` system call on the worker (about 4 % of the
//! server's CPU under a load of small requests, with stderr a file), taken from the requests.
//! Colours only when stderr is a terminal.

use std::io::IsTerminal;

use podmap::server::LogFormat;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber, writing to stderr in `format`. Lines are written until
/// the returned guard is dropped, which writes what is still buffered: keep it until exit.
pub(super) fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Not lossy: with the buffer full (128,000 lines) a logging worker waits rather than
    // drop lines.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("podmap-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    guard
}
