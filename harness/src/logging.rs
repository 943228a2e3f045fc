//! The harness's log: `tracing` lines on stderr, filtered by `RUST_LOG` (default `warn`;
//! `hydra=debug` prints every engine and compose command), each line through the process-wide
//! redactor, coloured only on a terminal and never with `NO_COLOR`. One setup for the CLI, the
//! suites, the benches and users' own tests.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::report::redact::redact_output;

/// Installs the log as the process's `tracing` subscriber; does nothing if one is installed.
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactedStderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .without_time()
        .try_init();
}

/// Whether to colour the log: only on a terminal, and never when `NO_COLOR` is set to anything
/// but the empty string (no-color.org). Pure.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Where tracing lines go: stderr, each line through the process-wide redactor (a debug trace
/// shows every command line the harness runs, build arguments included).
struct RedactedStderr;

/// One tracing event, written to stderr redacted when the subscriber is done with it.
struct RedactedLine(Vec<u8>);

impl Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(redact_output(&text).as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
