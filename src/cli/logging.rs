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
//! Lines are gathered in memory and written to stderr by a thread of its own every
//! [`FLUSH_EVERY`], not by the async worker that logs them: one access line a request was a
//! `write` system call on the worker (about 4 % of the server's CPU under a load of small
//! requests, with stderr a file), and a channel to a writer thread woke that thread for every
//! line (15 % of the server's CPU, and a context switch a request that took a core from the
//! searches). A full buffer ([`BUFFER_MAX`]) is written by the thread that fills it, so a burst
//! of lines is never dropped and memory stays bounded. Colours only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use podmap::server::LogFormat;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How long a line waits in memory at most before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes gathered at most; the line that crosses it writes them itself.
const BUFFER_MAX: usize = 1 << 20;

/// Installs the process's subscriber, writing to stderr in `format`. Lines are written until
/// the returned guard is dropped, which writes what is still buffered: keep it until exit.
pub(super) fn init(format: LogFormat) -> Flusher {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = Batched::start(std::io::stderr(), FLUSH_EVERY);
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

/// Log lines waiting in memory for their output `W`. Lines are appended under one lock and
/// written in that order: whoever writes (the flusher, or a logger finding the buffer full)
/// holds the output's lock while it takes the buffer, so batches cannot overtake each other.
struct Shared<W> {
    pending: Mutex<Pending>,
    output: Mutex<W>,
    /// Wakes the flusher early, at shutdown.
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while logging left whole lines behind: keep writing them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write> Shared<W> {
    /// Writes what is pending. Errors are ignored: there is nowhere left to report them.
    fn write_pending(&self) {
        let mut output = lock(&self.output);
        let lines = std::mem::take(&mut lock(&self.pending).lines);
        if !lines.is_empty() {
            let _ = output.write_all(&lines);
            let _ = output.flush();
        }
    }
}

/// The [`MakeWriter`] of the subscriber: each line goes into the shared buffer.
#[derive(Clone)]
struct Batched<W> {
    shared: Arc<Shared<W>>,
}

impl<W: Write + Send + 'static> Batched<W> {
    /// Starts the flusher thread, writing to `output` every `every`.
    fn start(output: W, every: Duration) -> (Batched<W>, Flusher) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            output: Mutex::new(output),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("podmap-log".into())
                .spawn(move || loop {
                    let closing = {
                        let pending = lock(&shared.pending);
                        let (pending, _) = shared
                            .wake
                            .wait_timeout_while(pending, every, |p| !p.closing)
                            .unwrap_or_else(PoisonError::into_inner);
                        pending.closing
                    };
                    shared.write_pending();
                    if closing {
                        break;
                    }
                })
                .expect("start the log writer thread")
        };
        let close: Box<dyn FnOnce() + Send> = {
            let shared = Arc::clone(&shared);
            Box::new(move || {
                lock(&shared.pending).closing = true;
                shared.wake.notify_one();
                let _ = flusher.join();
                // Lines logged after the flusher's last pass.
                shared.write_pending();
            })
        };
        (Batched { shared }, Flusher(Some(close)))
    }
}

impl<W: Write> Write for &Shared<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut pending = lock(&self.pending);
            pending.lines.extend_from_slice(line);
            pending.lines.len() >= BUFFER_MAX
        };
        if full {
            self.write_pending();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Batched<W> {
    type Writer = &'a Shared<W>;

    fn make_writer(&'a self) -> Self::Writer {
        &self.shared
    }
}

/// Writes the lines still pending and stops the flusher thread when dropped: keep it until
/// exit.
#[must_use = "lines are written until this is dropped"]
pub(super) struct Flusher(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some(close) = self.0.take() {
            close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read while the writer holds it.
    #[derive(Clone, Default)]
    struct Output(Arc<Mutex<Vec<u8>>>);

    impl Write for Output {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(writer: &Batched<Output>, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_wait_for_the_flusher_and_all_are_written_in_order_on_close() {
        let output = Output::default();
        let (writer, flusher) = Batched::start(output.clone(), Duration::from_secs(3600));
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        for line in &lines {
            log(&writer, line);
        }
        assert!(lock(&output.0).is_empty(), "written before the hour was up");
        drop(flusher);
        assert_eq!(
            String::from_utf8(lock(&output.0).clone()).unwrap(),
            lines.concat()
        );
    }

    #[test]
    fn the_flusher_writes_within_its_interval() {
        let output = Output::default();
        let (writer, _flusher) = Batched::start(output.clone(), Duration::from_millis(10));
        log(&writer, "one\n");
        let start = std::time::Instant::now();
        while lock(&output.0).is_empty() {
            assert!(start.elapsed() < Duration::from_secs(30), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*lock(&output.0), b"one\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_line_that_fills_it() {
        let output = Output::default();
        let (writer, flusher) = Batched::start(output.clone(), Duration::from_secs(3600));
        let line = "x".repeat(BUFFER_MAX / 4 - 1) + "\n";
        for _ in 0..4 {
            log(&writer, &line);
        }
        assert_eq!(
            lock(&output.0).len(),
            BUFFER_MAX,
            "the fourth line wrote all four"
        );
        log(&writer, "tail\n");
        assert_eq!(lock(&output.0).len(), BUFFER_MAX);
        drop(flusher);
        assert!(lock(&output.0).ends_with(b"x\ntail\n"));
    }

    #[test]
    fn lines_from_many_threads_stay_whole() {
        let output = Output::default();
        let (writer, flusher) = Batched::start(output.clone(), Duration::from_millis(1));
        std::thread::scope(|s| {
            for t in 0..8 {
                let writer = writer.clone();
                s.spawn(move || {
                    for i in 0..500 {
                        log(&writer, &format!("thread {t} line {i}\n"));
                    }
                });
            }
        });
        drop(flusher);
        let text = String::from_utf8(lock(&output.0).clone()).unwrap();
        assert_eq!(text.lines().count(), 8 * 500);
        for t in 0..8 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..500).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines out of order or torn");
        }
    }
}
