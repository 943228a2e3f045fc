//! The one place that spawns processes: every engine and compose call goes through [`run`], which
//! enforces a deadline, honours Ctrl-C, and kills the whole process group it started on either.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::HarnessError;

mod fifo_pair;
pub use fifo_pair::{pair_through_fifo, FifoPair, GO};

/// A count of SIGINT/SIGTERM received. The process has one ([`cancel`], [`is_cancelled`]); tests
/// make their own so that cancelling one does not disturb the others.
#[derive(Debug, Default)]
pub struct Signals(AtomicUsize);

impl Signals {
    /// A count with no signal received yet.
    pub const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Records one signal; returns how many have been received, this one included.
    pub fn cancel(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// How many signals have been received.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Whether at least one signal has been received: stop in an orderly way.
    pub fn is_cancelled(&self) -> bool {
        self.count() >= 1
    }

    /// Whether a second signal has been received: cleanup takes the quickest path.
    pub fn is_aborted(&self) -> bool {
        self.count() >= 2
    }

    /// Sleeps for `d` in slices of [`POLL`]; [`HarnessError::Interrupted`] as soon as cancelled.
    pub fn sleep(&self, d: Duration) -> Result<(), HarnessError> {
        let end = Instant::now() + d;
        loop {
            if self.is_cancelled() {
                return Err(HarnessError::Interrupted);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(POLL));
        }
    }

    /// Runs a blocking call that cannot itself be cancelled (an HTTP request with its own
    /// timeout) on a thread of its own and waits for it, returning [`HarnessError::Interrupted`]
    /// within [`POLL`] of a cancellation. The abandoned call ends in the background within its
    /// own timeout.
    pub fn interruptible<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, HarnessError> {
        use std::sync::mpsc::RecvTimeoutError;
        if self.is_cancelled() {
            return Err(HarnessError::Interrupted);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        loop {
            match rx.recv_timeout(POLL) {
                Ok(v) => return Ok(v),
                Err(RecvTimeoutError::Timeout) if self.is_cancelled() => return Err(HarnessError::Interrupted),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(HarnessError::Io(std::io::Error::other(
                        "a background call panicked before returning",
                    )))
                }
            }
        }
    }
}

/// The process's signal count, fed by the CLI's SIGINT/SIGTERM handler.
static SIGNALS: Signals = Signals::new();

/// Set once this process has stopped a command before it finished.
static CUT_OFF: AtomicBool = AtomicBool::new(false);

/// Whether this process has stopped any command before it finished (at its deadline or on an
/// interrupt). An engine command cut off mid-way can leave state that only a deeper sweep finds
/// (see [`super::storage_only`]); without one, that sweep is skipped.
pub fn cut_off_any() -> bool {
    CUT_OFF.load(Ordering::SeqCst)
}

/// How often waits look at the signal count: well under the 1 s within which teardown must start.
pub const POLL: Duration = Duration::from_millis(50);

/// After the process exits, how long its output pipes may stay open (held by a grandchild that
/// outlives it) before the process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How long a failed or stopped [`FifoPair`] keeps letting late opens of its pipe through.
const RELEASE_GRACE: Duration = Duration::from_secs(1);

/// Records one SIGINT/SIGTERM (called from the signal handler). The first asks for an orderly
/// stop and a full teardown; the second asks teardown to skip the compose tool and only sweep the
/// run's objects by label.
pub fn cancel() {
    SIGNALS.cancel();
}

/// How many SIGINT/SIGTERM the process has received.
pub fn signal_count() -> usize {
    SIGNALS.count()
}

/// Whether SIGINT/SIGTERM has been received.
pub fn is_cancelled() -> bool {
    SIGNALS.is_cancelled()
}

/// Whether a second SIGINT/SIGTERM has been received: cleanup takes the quickest path.
pub fn is_aborted() -> bool {
    SIGNALS.is_aborted()
}

/// [`Signals::sleep`] on the process's signals.
pub fn sleep(d: Duration) -> Result<(), HarnessError> {
    SIGNALS.sleep(d)
}

/// [`Signals::interruptible`] on the process's signals.
pub fn interruptible<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, HarnessError> {
    SIGNALS.interruptible(f)
}

/// Whether a call may be interrupted by Ctrl-C. Teardown must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Kill the child and return [`HarnessError::Interrupted`] on the first signal.
    Allowed,
    /// Keep going on any signal (used by cleanup's short queries and removals).
    Ignored,
    /// Keep going on the first signal, but kill the child on the second (used for the compose
    /// tool's own `down`, which teardown can skip in favour of removing objects by label).
    UntilAborted,
}

impl Interrupt {
    fn stops_now(self, signals: &Signals) -> bool {
        match self {
            Interrupt::Allowed => signals.is_cancelled(),
            Interrupt::Ignored => false,
            Interrupt::UntilAborted => signals.is_aborted(),
        }
    }
}

/// A command line to run, kept as data so that argv building stays pure and testable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program, looked up on `PATH` unless absolute.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set for it, on top of the inherited environment unless `clear_env`.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` keeps this process's.
    pub cwd: Option<std::path::PathBuf>,
    /// Start from an empty environment (only `env` is passed): used when crossing to a less
    /// trusted user, so root's variables (CI tokens included) never reach its tools.
    pub clear_env: bool,
    /// Bytes written to the child's standard input (otherwise it reads from /dev/null).
    pub stdin: Option<Vec<u8>>,
}

impl CommandSpec {
    /// `program` with no arguments, inheriting this process's environment and directory.
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

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
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
    /// Exit code; `None` when a signal ended the process.
    pub status: Option<i32>,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// Runs `spec` to completion or until `timeout`, whichever comes first.
///
/// A non-zero exit is *not* an error here: callers decide, because some tools' exit codes lie.
pub fn run(spec: &CommandSpec, timeout: Duration, interrupt: Interrupt) -> Result<Output, HarnessError> {
    run_with(&SIGNALS, spec, timeout, interrupt)
}

/// [`run`], watching `signals` instead of the process's.
pub fn run_with(
    signals: &Signals,
    spec: &CommandSpec,
    timeout: Duration,
    interrupt: Interrupt,
) -> Result<Output, HarnessError> {
    tracing::debug!(cmd = %spec.display(), "exec");
    let mut cmd = command_for(spec);
    cmd.stdin(if spec.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
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
    let stdout_pipe = Pipe::read(child.stdout.take().expect("piped stdout"));
    let stderr_pipe = Pipe::read(child.stderr.take().expect("piped stderr"));
    let mut stop_reason = None;
    // Most engine queries end within tens of milliseconds: look again soon at first, then every
    // 25 ms, so that a quick command is not charged a fixed 25 ms for its exit to be noticed
    // (the readiness loop and teardown run dozens of them).
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(source) => {
                stop_child(&mut child);
                return Err(HarnessError::Spawn {
                    cmd: spec.display(),
                    source,
                });
            }
        }
        if start.elapsed() >= timeout {
            stop_reason = Some(StopReason::Timeout);
        } else if interrupt.stops_now(signals) {
            stop_reason = Some(StopReason::Interrupted);
        }
        if stop_reason.is_some() {
            CUT_OFF.store(true, Ordering::SeqCst);
            stop_child(&mut child);
            break None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(25));
    };
    // A grandchild left in the group (`sh -c 'daemon &'`) can hold the pipes open long after the
    // tool exited: wait for end-of-file only briefly, then kill the group and take what was read.
    // A process that left the group (setsid) and still holds them is abandoned, never waited for.
    let grace = timeout
        .saturating_sub(start.elapsed())
        .clamp(Duration::from_millis(100), PIPE_GRACE);
    if !Pipe::wait_both(&stdout_pipe, &stderr_pipe, grace, || interrupt.stops_now(signals)) {
        tracing::debug!(cmd = %spec.display(), "output still open after exit; killing the process group");
        kill_group(pgid);
        Pipe::wait_both(&stdout_pipe, &stderr_pipe, Duration::from_millis(500), || false);
    }
    let stdout = stdout_pipe.text();
    let stderr = stderr_pipe.text();
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

/// Starts `spec` in the background in its own process group, its output appended to `log`. The
/// caller owns the child and ends it by its process group (`kill_group`).
pub fn spawn_background(spec: &CommandSpec, log: &std::path::Path) -> Result<std::process::Child, HarnessError> {
    tracing::debug!(cmd = %spec.display(), "spawn");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| HarnessError::Spawn {
            cmd: format!("{} (log {})", spec.display(), log.display()),
            source,
        })?;
    let err_file = file.try_clone().map_err(|source| HarnessError::Spawn {
        cmd: spec.display(),
        source,
    })?;
    let mut cmd = command_for(spec);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err_file));
    cmd.spawn().map_err(|source| HarnessError::Spawn {
        cmd: spec.display(),
        source,
    })
}

/// What [`pipe`] saw: the relay's result and each side's exit and stderr.
#[derive(Debug)]
pub struct Piped<T> {
    /// The relay's result; an error when the relay could not read or write (a side that died).
    pub relayed: std::io::Result<T>,
    /// The producer's exit and stderr (its stdout went to the relay).
    pub producer: Output,
    /// The consumer's exit and stderr.
    pub consumer: Output,
}

impl<T> Piped<T> {
    /// Both sides exited 0 and the relay passed every byte.
    pub fn success(&self) -> bool {
        self.relayed.is_ok() && self.producer.success() && self.consumer.success()
    }
}

/// Runs `producer | consumer` with the bytes passing through `relay` on this thread (to
/// fingerprint or count them on the way), each side in a process group of its own. Both are
/// killed at `timeout` or, with [`Interrupt::Allowed`], on Ctrl-C; the relay then sees a closed
/// pipe and the call returns [`HarnessError::Timeout`] / [`HarnessError::Interrupted`].
pub fn pipe<T>(
    producer: &CommandSpec,
    consumer: &CommandSpec,
    timeout: Duration,
    interrupt: Interrupt,
    relay: impl FnOnce(&mut dyn Read, &mut dyn std::io::Write) -> std::io::Result<T>,
) -> Result<Piped<T>, HarnessError> {
    pipe_into(producer, Some(consumer), Link::Stdio, timeout, interrupt, relay)
}

/// [`read_stream`] from the named pipe `from` that `producer` writes into.
pub fn read_fifo<T>(
    producer: &CommandSpec,
    from: &std::path::Path,
    timeout: Duration,
    interrupt: Interrupt,
    read: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
) -> Result<Piped<T>, HarnessError> {
    pipe_into(producer, None, Link::Fifo(from), timeout, interrupt, |r, _| read(r))
}

/// The relay's input, and its output when there is a consumer.
type RelayEnds = (Box<dyn Read>, Option<Box<dyn std::io::Write>>);

/// Where the bytes of a [`pipe`] travel.
#[derive(Clone, Copy)]
enum Link<'a> {
    /// The producer's stdout and the consumer's stdin.
    Stdio,
    /// A named pipe the producer opens itself and writes into (no consumer).
    Fifo(&'a std::path::Path),
}

/// Lets whoever is blocked opening the named pipe `path` through: a reader then sees end-of-file,
/// a writer a closed pipe.
pub(crate) fn release_fifo(path: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path);
}

/// Opens the named pipe `path` for reading without blocking on a writer that never comes:
/// `stop` is asked between tries and ends the wait with its reason. Only a FIFO is accepted,
/// never through a link.
fn open_fifo(path: &std::path::Path, mut stop: impl FnMut() -> Option<String>) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.file_type().is_fifo() {
        return Err(std::io::Error::other(format!("{} is not a named pipe", path.display())));
    }
    loop {
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Linux reports neither data nor hang-up before a writer has opened the pipe.
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, 10) } {
            n if n > 0 => break,
            0 => {}
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        if let Some(why) = stop() {
            return Err(std::io::Error::other(why));
        }
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Runs `producer` and hands its stdout to `read` on this thread (a binary stream, such as a
/// tar archive), with [`pipe`]'s deadline and interrupt handling. `Piped::consumer` is empty.
pub fn read_stream<T>(
    producer: &CommandSpec,
    timeout: Duration,
    interrupt: Interrupt,
    read: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
) -> Result<Piped<T>, HarnessError> {
    pipe_into(producer, None, Link::Stdio, timeout, interrupt, |r, _| read(r))
}

fn pipe_into<T>(
    producer: &CommandSpec,
    consumer: Option<&CommandSpec>,
    link: Link<'_>,
    timeout: Duration,
    interrupt: Interrupt,
    relay: impl FnOnce(&mut dyn Read, &mut dyn std::io::Write) -> std::io::Result<T>,
) -> Result<Piped<T>, HarnessError> {
    tracing::debug!(
        producer = %producer.display(),
        consumer = %consumer.map(CommandSpec::display).unwrap_or_default(),
        "pipe"
    );
    let spawn = |spec: &CommandSpec, stdin: Stdio, stdout: Stdio| {
        let mut cmd = command_for(spec);
        cmd.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        cmd.spawn().map_err(|source| HarnessError::Spawn {
            cmd: spec.display(),
            source,
        })
    };
    let start = Instant::now();
    let fifos = matches!(link, Link::Fifo(_));
    let piped_if = |yes: bool| if yes { Stdio::piped() } else { Stdio::null() };
    let mut from = spawn(producer, Stdio::null(), piped_if(!fifos))?;
    let mut to = match consumer.map(|c| spawn(c, piped_if(!fifos), Stdio::null())).transpose() {
        Ok(to) => to,
        Err(e) => {
            kill_group_now(from.id() as i32);
            let _ = from.wait();
            return Err(e);
        }
    };
    let groups: Vec<i32> = std::iter::once(from.id() as i32)
        .chain(to.as_ref().map(|t| t.id() as i32))
        .collect();
    let from_err = Pipe::read(from.stderr.take().expect("piped stderr"));
    let to_err = to.as_mut().map(|t| Pipe::read(t.stderr.take().expect("piped stderr")));
    let stdio_reader = from.stdout.take();
    let stdio_writer = to.as_mut().and_then(|t| t.stdin.take());
    // The watchdog ends both sides at the deadline or on an interrupt; the relay then fails.
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped: Arc<Mutex<Option<StopReason>>> = Arc::new(Mutex::new(None));
    let watchdog = {
        let (finished, stopped, groups) = (finished.clone(), stopped.clone(), groups.clone());
        std::thread::spawn(move || {
            while !finished.load(std::sync::atomic::Ordering::SeqCst) {
                let reason = if start.elapsed() >= timeout {
                    Some(StopReason::Timeout)
                } else if interrupt.stops_now(&SIGNALS) {
                    Some(StopReason::Interrupted)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    CUT_OFF.store(true, Ordering::SeqCst);
                    *stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                    groups.iter().for_each(|g| kill_group_now(*g));
                    return;
                }
                std::thread::sleep(POLL);
            }
        })
    };
    let ends: std::io::Result<RelayEnds> = match link {
        Link::Stdio => Ok((
            Box::new(stdio_reader.expect("piped stdout")),
            stdio_writer.map(|w| Box::new(w) as Box<dyn std::io::Write>),
        )),
        Link::Fifo(from_fifo) => {
            // The open ends early when the watchdog stopped the run or the producer has already
            // exited (a helper that failed to start never opens its pipe).
            let stop = || -> Option<String> {
                if let Some(reason) = stopped.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    return Some(match reason {
                        StopReason::Timeout => "deadline reached".into(),
                        StopReason::Interrupted => "interrupted".into(),
                    });
                }
                match from.try_wait() {
                    Ok(Some(status)) => Some(format!("the reading side exited ({status}) before opening its pipe")),
                    _ => None,
                }
            };
            open_fifo(from_fifo, stop).map(|r| (Box::new(r) as Box<dyn Read>, None))
        }
    };
    let relayed = match ends {
        Err(e) => {
            // A side is gone or the run was stopped: end the other side too. Killing an engine's
            // client does not end its container, which may be blocked opening its pipe: open
            // each pipe both ways for a moment so that such an open returns, then meets
            // end-of-file or a closed pipe, and the helper exits.
            groups.iter().for_each(|g| kill_group_now(*g));
            if let Link::Fifo(from) = link {
                release_fifo(from);
            }
            Err(e)
        }
        Ok((mut reader, Some(mut writer))) => {
            let relayed = relay(&mut reader, &mut writer);
            // End of input for the consumer; a producer still writing after a relay error gets EPIPE.
            drop(writer);
            drop(reader);
            relayed
        }
        Ok((mut reader, None)) => relay(&mut reader, &mut std::io::sink()),
    };
    let from_status = from.wait();
    let to_status = to.as_mut().map(|t| t.wait());
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    let no_consumer = Pipe::read(std::io::empty());
    let to_err = to_err.unwrap_or(no_consumer);
    Pipe::wait_both(&from_err, &to_err, PIPE_GRACE, || false);
    let display = format!(
        "{}{}",
        producer.display(),
        consumer.map(|c| format!(" | {}", c.display())).unwrap_or_default()
    );
    match stopped.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(StopReason::Timeout) => {
            return Err(HarnessError::Timeout {
                cmd: display,
                after: timeout,
                stderr: format!("{}\n{}", from_err.text(), to_err.text()).trim().to_string(),
            })
        }
        Some(StopReason::Interrupted) => return Err(HarnessError::Interrupted),
        None => {}
    }
    let output = |status: Option<std::io::Result<std::process::ExitStatus>>, err: &Pipe| Output {
        status: match status {
            Some(s) => s.ok().and_then(|s| s.code()),
            None => Some(0),
        },
        stdout: String::new(),
        stderr: err.text(),
        elapsed: start.elapsed(),
    };
    Ok(Piped {
        relayed,
        producer: output(Some(from_status), &from_err),
        consumer: output(to_status, &to_err),
    })
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

/// One output pipe, read on its own thread into a buffer the caller can take at any time.
struct Pipe {
    buf: Arc<Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
    closed: std::cell::Cell<bool>,
}

impl Pipe {
    fn read(mut pipe: impl Read + Send + 'static) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = std::sync::mpsc::channel();
        let sink = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
        Self {
            buf,
            done,
            closed: std::cell::Cell::new(false),
        }
    }

    /// Waits until end-of-file or `until`; true when the pipe is closed.
    fn wait(&self, until: Instant) -> bool {
        if !self.closed.get() {
            let left = until.saturating_duration_since(Instant::now());
            // A disconnect means the reader ended too (it only drops the sender at the end).
            if self.done.recv_timeout(left) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                self.closed.set(true);
            }
        }
        self.closed.get()
    }

    /// Waits up to `limit` for both pipes to close, giving up early when `stop` says so. True when
    /// both are closed.
    fn wait_both(a: &Pipe, b: &Pipe, limit: Duration, stop: impl Fn() -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            let slice = (Instant::now() + POLL).min(end);
            if a.wait(slice) && b.wait(slice) {
                return true;
            }
            if Instant::now() >= end || stop() {
                return false;
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// `spec` as a process in its own group (so a deadline or Ctrl-C ends all of it) that dies with
/// its parent; the caller sets the standard streams.
pub(crate) fn command_for(spec: &CommandSpec) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args).process_group(0);
    die_with_parent(&mut cmd);
    if spec.clear_env {
        cmd.env_clear();
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    cmd
}

/// The child gets SIGKILL when the thread that started it dies: a harness killed with SIGKILL
/// must not leave a compose tool running that goes on creating objects after `harness gc` swept
/// the run (the rootless user's tools get the same through `setpriv`, see
/// [`super::rootless::RootlessUser::wrap`]). Callers wait for their children on the thread that
/// started them, so an ordinary exit never triggers it.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How long a process group we stop gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_millis(200);

/// SIGTERM to a process group we started, SIGKILL to whatever of it is left after
/// [`STOP_GRACE`]. Returns as soon as the group is gone, so a command that obeys SIGTERM at once
/// (an interrupted compose tool, a timed-out query) is not charged the whole grace period. A
/// group whose leader is our own unreaped child stays visible until reaped: use [`stop_child`]
/// for those.
pub(crate) fn kill_group(pgid: i32) {
    terminate_group(pgid, || {});
}

/// [`kill_group`] for our own child, reaped as soon as it exits so that its group can be seen to
/// end before the grace period is over; the child is reaped on return.
pub(crate) fn stop_child(child: &mut std::process::Child) {
    let pgid = child.id() as i32;
    terminate_group(pgid, || {
        let _ = child.try_wait();
    });
    let _ = child.wait();
}

fn terminate_group(pgid: i32, mut reap: impl FnMut()) {
    // SAFETY: killpg only sends a signal to the process group we created for our own child.
    unsafe {
        libc::killpg(pgid, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        std::thread::sleep(Duration::from_millis(2));
        reap();
        // SAFETY: signal 0 only asks whether any process of the group is left.
        if unsafe { libc::killpg(pgid, 0) } != 0 {
            return;
        }
    }
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// SIGKILL to a process group we started, without [`kill_group`]'s grace period: for a stream
/// reader that has nothing to clean up and must not delay its owner.
pub(crate) fn kill_group_now(pgid: i32) {
    // SAFETY: killpg only sends a signal to the process group we created for our own child.
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

    fn spawn_in_own_group(script: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .unwrap();
        // Let the shell set its traps before it is signalled.
        std::thread::sleep(Duration::from_millis(100));
        child
    }

    #[test]
    fn a_group_that_obeys_sigterm_is_not_charged_the_grace_period() {
        let mut child = spawn_in_own_group("exec sleep 30");
        let started = Instant::now();
        stop_child(&mut child);
        assert!(started.elapsed() < STOP_GRACE, "took {:?}", started.elapsed());
        assert!(child.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = spawn_in_own_group("trap '' TERM; while :; do sleep 0.05; done");
        let started = Instant::now();
        stop_child(&mut child);
        assert!(started.elapsed() >= STOP_GRACE, "took {:?}", started.elapsed());
        let status = child.try_wait().unwrap().expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::new("sh").args(["-c", script])
    }

    #[test]
    fn a_pipe_passes_every_byte_through_the_relay() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let consumer = CommandSpec::new("sh").args(["-c", r#"cat > "$1""#, "sh", &out.display().to_string()]);
        let piped = pipe(
            &sh("head -c 300000 /dev/zero | tr '\\0' x"),
            &consumer,
            Duration::from_secs(10),
            Interrupt::Ignored,
            |r, w| std::io::copy(r, w),
        )
        .unwrap();
        assert!(piped.success(), "{piped:?}");
        assert_eq!(*piped.relayed.as_ref().unwrap(), 300_000);
        assert_eq!(std::fs::read(&out).unwrap().len(), 300_000);
    }

    #[test]
    fn a_failing_side_is_reported_with_its_stderr() {
        let piped = pipe(
            &sh("echo data"),
            &sh("echo 'tar: cannot write' >&2; exit 2"),
            Duration::from_secs(10),
            Interrupt::Ignored,
            |r, w| std::io::copy(r, w),
        )
        .unwrap();
        assert!(!piped.success());
        assert_eq!(piped.consumer.status, Some(2));
        assert!(piped.consumer.stderr.contains("cannot write"), "{piped:?}");
    }

    #[test]
    fn a_binary_stream_is_read_whole() {
        let piped = read_stream(
            &sh("printf 'a\\000\\377b'"),
            Duration::from_secs(10),
            Interrupt::Ignored,
            |r| {
                let mut buf = Vec::new();
                r.read_to_end(&mut buf).map(|_| buf)
            },
        )
        .unwrap();
        assert!(piped.success(), "{piped:?}");
        assert_eq!(piped.relayed.unwrap(), b"a\0\xffb");
    }

    /// A named pipe in a fresh directory.
    fn fifo() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stream");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        (d, p)
    }

    /// `sh -c script` with `$1` the pipe and `$2` a second path.
    fn sh_with(script: &str, fifo: &std::path::Path, other: &std::path::Path) -> CommandSpec {
        CommandSpec::new("sh").args(["-c", script, "sh", fifo.to_str().unwrap(), other.to_str().unwrap()])
    }

    #[test]
    fn a_named_pipe_carries_every_byte_between_the_two_sides() {
        let (d, p) = fifo();
        let out = d.path().join("out");
        let (producer, consumer) = pair_through_fifo(
            &sh_with(r#"head -c 3000000 /dev/zero | tr '\0' x > "$1"; echo sent"#, &p, &out),
            &sh_with(r#"cat "$1" > "$2"; echo got"#, &p, &out),
            &p,
            Duration::from_secs(10),
            Interrupt::Ignored,
        )
        .unwrap();
        assert!(producer.success() && consumer.success(), "{producer:?} {consumer:?}");
        assert_eq!((producer.stdout.trim(), consumer.stdout.trim()), ("sent", "got"));
        assert_eq!(std::fs::read(&out).unwrap().len(), 3_000_000);
    }

    #[test]
    fn a_named_pipe_is_read_whole_by_the_relay() {
        let (d, p) = fifo();
        let piped = read_fifo(
            &sh_with(r#"printf 'a\000\377b' > "$1""#, &p, d.path()),
            &p,
            Duration::from_secs(10),
            Interrupt::Ignored,
            |r| {
                let mut buf = Vec::new();
                r.read_to_end(&mut buf).map(|_| buf)
            },
        )
        .unwrap();
        assert!(piped.success(), "{piped:?}");
        assert_eq!(piped.relayed.unwrap(), b"a\0\xffb");
    }

    #[rstest::rstest]
    #[case::the_reader_never_starts(r#"echo 'no such volume' >&2; exit 125"#, r#"cat "$1" >/dev/null"#)]
    #[case::the_writer_never_starts(r#"head -c 3000000 /dev/zero > "$1""#, r#"echo 'no such image' >&2; exit 125"#)]
    fn a_side_that_never_opens_its_pipe_ends_the_other_at_once(#[case] producer: &str, #[case] consumer: &str) {
        let (d, p) = fifo();
        let t = Instant::now();
        let (a, b) = pair_through_fifo(
            &sh_with(producer, &p, d.path()),
            &sh_with(consumer, &p, d.path()),
            &p,
            Duration::from_secs(30),
            Interrupt::Ignored,
        )
        .unwrap();
        // The side left waiting was let through: it saw an empty stream or a closed pipe.
        assert!(!(a.success() && b.success()), "{a:?} {b:?}");
        assert!(a.stderr.contains("no such") || b.stderr.contains("no such"));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn a_peer_left_blocked_on_its_pipe_is_released() {
        // The reading "container" outlives its client: a background reader detached from the
        // client's process group, as a container is from `docker run`.
        let (d, p) = fifo();
        let done = d.path().join("done");
        let consumer = sh_with(
            r#"setsid sh -c 'cat "$1" >/dev/null; echo $? > "$2"' sh "$1" "$2" & exit 0"#,
            &p,
            &done,
        );
        let (a, _) = pair_through_fifo(
            &sh_with("echo 'no such volume' >&2; exit 125", &p, &done),
            &consumer,
            &p,
            Duration::from_secs(30),
            Interrupt::Ignored,
        )
        .unwrap();
        assert_eq!(a.status, Some(125));
        let t = Instant::now();
        while !done.exists() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(done.exists(), "the detached reader is still blocked on its pipe");
    }

    #[test]
    fn a_named_pipe_nobody_opens_ends_at_the_deadline() {
        let (_d, p) = fifo();
        let t = Instant::now();
        let err = pair_through_fifo(
            &sh("sleep 30"),
            &sh("sleep 30"),
            &p,
            Duration::from_millis(300),
            Interrupt::Ignored,
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
        let err = read_fifo(
            &sh("sleep 30"),
            &p,
            Duration::from_millis(300),
            Interrupt::Ignored,
            |r| std::io::copy(r, &mut std::io::sink()),
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn only_a_named_pipe_is_opened() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = open_fifo(&file, || None).unwrap_err();
        assert!(err.to_string().contains("not a named pipe"), "{err}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_fifo(&link, || None).is_err());
    }

    #[test]
    fn a_pipe_that_hangs_is_killed_at_its_deadline() {
        let t = Instant::now();
        let err = pipe(
            &sh("sleep 30"),
            &sh("cat >/dev/null"),
            Duration::from_millis(300),
            Interrupt::Ignored,
            |r, w| std::io::copy(r, w),
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

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

    /// Finding: an exited tool whose grandchild keeps the output pipe open used to hang `run`
    /// until the grandchild ended (30 s here), deadline or not.
    #[test]
    fn a_grandchild_holding_the_pipe_does_not_outlive_the_deadline() {
        let started = Instant::now();
        let out = run(
            &CommandSpec::new("sh").args(["-c", "sleep 30 & echo $!; echo hi"]),
            Duration::from_secs(2),
            Interrupt::Ignored,
        )
        .unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "run took {took:?}");
        assert_eq!(out.status, Some(0));
        let mut lines = out.stdout.lines();
        let grandchild: i32 = lines.next().unwrap().trim().parse().unwrap();
        assert_eq!(lines.next(), Some("hi"), "{:?}", out.stdout);
        // The group was killed: the grandchild is gone (or a zombie waiting for init).
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next();
        assert!(
            matches!(state, None | Some("Z") | Some("X")),
            "grandchild {grandchild}: {stat}"
        );
    }

    #[test]
    fn a_quick_grandchild_is_waited_for_and_its_output_kept() {
        let out = run(
            &CommandSpec::new("sh").args(["-c", "(sleep 0.3; echo late) & echo early"]),
            Duration::from_secs(10),
            Interrupt::Ignored,
        )
        .unwrap();
        assert_eq!(out.stdout, "early\nlate\n");
    }

    fn cancel_after(signals: &'static Signals, after: Duration, times: usize) {
        std::thread::spawn(move || {
            for _ in 0..times {
                std::thread::sleep(after);
                signals.cancel();
            }
        });
    }

    #[test]
    fn the_first_signal_stops_allowed_calls_at_once() {
        static SIG: Signals = Signals::new();
        cancel_after(&SIG, Duration::from_millis(300), 1);
        let started = Instant::now();
        let err = run_with(
            &SIG,
            &CommandSpec::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_secs(60),
            Interrupt::Allowed,
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Interrupted), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn until_aborted_calls_survive_the_first_signal_but_not_the_second() {
        static ONE: Signals = Signals::new();
        cancel_after(&ONE, Duration::from_millis(100), 1);
        let out = run_with(
            &ONE,
            &CommandSpec::new("sh").args(["-c", "sleep 0.6; echo done"]),
            Duration::from_secs(10),
            Interrupt::UntilAborted,
        )
        .unwrap();
        assert!(ONE.is_cancelled());
        assert_eq!(out.stdout.trim(), "done");

        static TWO: Signals = Signals::new();
        cancel_after(&TWO, Duration::from_millis(200), 2);
        let started = Instant::now();
        let err = run_with(
            &TWO,
            &CommandSpec::new("sleep").arg("30"),
            Duration::from_secs(60),
            Interrupt::UntilAborted,
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Interrupted), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn ignored_calls_survive_any_number_of_signals() {
        static SIG: Signals = Signals::new();
        cancel_after(&SIG, Duration::from_millis(50), 3);
        let out = run_with(
            &SIG,
            &CommandSpec::new("sh").args(["-c", "sleep 0.5; echo kept"]),
            Duration::from_secs(10),
            Interrupt::Ignored,
        )
        .unwrap();
        assert_eq!(SIG.count(), 3);
        assert_eq!(out.stdout.trim(), "kept");
    }

    #[test]
    fn sleep_ends_early_on_a_signal() {
        static SIG: Signals = Signals::new();
        assert!(SIG.sleep(Duration::from_millis(120)).is_ok());
        cancel_after(&SIG, Duration::from_millis(200), 1);
        let started = Instant::now();
        assert!(matches!(
            SIG.sleep(Duration::from_secs(30)),
            Err(HarnessError::Interrupted)
        ));
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn interruptible_returns_the_value_or_stops_waiting_on_a_signal() {
        static SIG: Signals = Signals::new();
        assert_eq!(SIG.interruptible(|| 7).unwrap(), 7);
        cancel_after(&SIG, Duration::from_millis(200), 1);
        let started = Instant::now();
        let r = SIG.interruptible(|| std::thread::sleep(Duration::from_secs(20)));
        assert!(matches!(r, Err(HarnessError::Interrupted)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
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
