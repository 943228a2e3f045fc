//! The one place that spawns processes: every engine and compose call goes through [`run`], which
//! enforces a deadline, honours Ctrl-C, and kills the whole process group it started on either.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::HarnessError;

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Marks the run as interrupted (called from the SIGINT/SIGTERM handler).
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Whether SIGINT/SIGTERM has been received.
pub fn is_cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Whether a call may be interrupted by Ctrl-C. Teardown must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Kill the child and return [`HarnessError::Interrupted`] on Ctrl-C.
    Allowed,
    /// Keep going on Ctrl-C (used by cleanup).
    Ignored,
}

/// A command line to run, kept as data so that argv building stays pure and testable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<std::path::PathBuf>,
    /// Start from an empty environment (only `env` is passed): used when crossing to a less
    /// trusted user, so root's variables (CI tokens included) never reach its tools.
    pub clear_env: bool,
    /// Bytes written to the child's standard input (otherwise it reads from /dev/null).
    pub stdin: Option<Vec<u8>>,
}

impl CommandSpec {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            clear_env: false,
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The command as a shell-like line, for logs and error messages.
    pub fn display(&self) -> String {
        let mut parts = vec![self.program.clone()];
        parts.extend(self.args.iter().map(|a| {
            if a.contains(char::is_whitespace) || a.is_empty() {
                format!("'{a}'")
            } else {
                a.clone()
            }
        }));
        parts.join(" ")
    }
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// Runs `spec` to completion or until `timeout`, whichever comes first.
///
/// A non-zero exit is *not* an error here: callers decide, because some tools' exit codes lie.
pub fn run(spec: &CommandSpec, timeout: Duration, interrupt: Interrupt) -> Result<Output, HarnessError> {
    use std::os::unix::process::CommandExt;
    tracing::debug!(cmd = %spec.display(), "exec");
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if spec.clear_env {
        cmd.env_clear();
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
        cmd: spec.display(),
        source,
    })?;
    let pgid = child.id() as i32;
    if let (Some(data), Some(mut pipe)) = (spec.stdin.clone(), child.stdin.take()) {
        // A child that stops reading early closes the pipe: the write error is not ours to report.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&data);
        });
    }
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let mut stop_reason = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(source) => {
                return Err(HarnessError::Spawn {
                    cmd: spec.display(),
                    source,
                })
            }
        }
        if start.elapsed() >= timeout {
            stop_reason = Some(StopReason::Timeout);
        } else if interrupt == Interrupt::Allowed && is_cancelled() {
            stop_reason = Some(StopReason::Interrupted);
        }
        if stop_reason.is_some() {
            kill_group(pgid);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // Children of the tool may hold the pipes open; the group was killed above on timeout, so
    // readers finish. On normal exit, grandchildren that outlive the tool are not ours to wait for.
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let elapsed = start.elapsed();
    match stop_reason {
        Some(StopReason::Timeout) => Err(HarnessError::Timeout {
            cmd: spec.display(),
            after: timeout,
            stderr,
        }),
        Some(StopReason::Interrupted) => Err(HarnessError::Interrupted),
        None => {
            let status = status.and_then(|s| s.code());
            tracing::trace!(cmd = %spec.display(), ?status, ?elapsed, "exit");
            Ok(Output {
                status,
                stdout,
                stderr,
                elapsed,
            })
        }
    }
}

/// Runs `spec` and turns a non-zero exit into an error carrying stderr.
pub fn run_ok(spec: &CommandSpec, timeout: Duration, interrupt: Interrupt) -> Result<Output, HarnessError> {
    let out = run(spec, timeout, interrupt)?;
    if out.success() {
        Ok(out)
    } else {
        Err(HarnessError::Failed {
            cmd: spec.display(),
            status: out.status,
            stderr: tail(&out.stderr, 20),
        })
    }
}

enum StopReason {
    Timeout,
    Interrupted,
}

fn kill_group(pgid: i32) {
    // SAFETY: killpg only sends a signal to the process group we created for our own child.
    unsafe {
        libc::killpg(pgid, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(200));
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            &CommandSpec::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"]),
            Duration::from_secs(5),
            Interrupt::Allowed,
        )
        .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout.trim(), "hi");
        assert_eq!(out.stderr.trim(), "err");
    }

    #[test]
    fn deadline_kills_the_whole_group() {
        let started = Instant::now();
        let err = run(
            &CommandSpec::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
            Interrupt::Allowed,
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn run_ok_reports_stderr() {
        let err = run_ok(
            &CommandSpec::new("sh").args(["-c", "echo boom >&2; exit 1"]),
            Duration::from_secs(5),
            Interrupt::Allowed,
        )
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn a_cleared_environment_passes_only_what_the_spec_names() {
        std::env::set_var("HYDRA_TEST_ROOT_ONLY_TOKEN", "s3cret");
        let mut spec = CommandSpec::new("/usr/bin/env").env("KEEP", "1");
        spec.clear_env = true;
        let out = run(&spec, Duration::from_secs(5), Interrupt::Ignored).unwrap();
        assert_eq!(out.stdout.trim(), "KEEP=1");
        let inherited = run(
            &CommandSpec::new("/usr/bin/env"),
            Duration::from_secs(5),
            Interrupt::Ignored,
        )
        .unwrap();
        assert!(inherited.stdout.contains("HYDRA_TEST_ROOT_ONLY_TOKEN=s3cret"));
    }

    #[test]
    fn stdin_reaches_the_child() {
        let mut spec = CommandSpec::new("cat");
        spec.stdin = Some(b"piped".to_vec());
        let out = run(&spec, Duration::from_secs(5), Interrupt::Ignored).unwrap();
        assert_eq!(out.stdout, "piped");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(
            &CommandSpec::new("/nonexistent/tool"),
            Duration::from_secs(1),
            Interrupt::Allowed,
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Spawn { .. }));
    }
}
