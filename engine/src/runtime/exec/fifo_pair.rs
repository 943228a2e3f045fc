//! Two processes joined by a named pipe that both open themselves (helper containers that have it
//! bind-mounted), so that the bytes never pass through this process. Each side may wait at a gate
//! of its own (a named pipe it reads one line from) until [`FifoPair::go`] lets both through at
//! once: the slow part of a helper, its container's start, then overlaps other work, and the copy
//! itself starts with both sides ready.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{
    command_for, kill_group_now, release_fifo, CommandSpec, Interrupt, Output, Pipe, StopReason, PIPE_GRACE,
    RELEASE_GRACE, SIGNALS,
};
use crate::error::HarnessError;

/// What a gated side reads to go on; anything else (end-of-file, when the pair is dropped) means
/// stop. Scripts test for it: `read -r g < /gate && [ "$g" = go ] || exit 125`.
pub const GO: &str = "go";

/// A producer and a consumer joined by a named pipe, each maybe held at a gate; see the module.
/// Dropped before [`FifoPair::finish`], both are killed and every pipe is let through, so that
/// a helper container outliving its client ends instead of waiting forever (its gate says stop).
pub struct FifoPair {
    sides: Vec<Child>,
    pipes: Vec<(Pipe, Pipe)>,
    fifo: PathBuf,
    gates: Vec<PathBuf>,
    start: Instant,
    timeout: Duration,
    interrupt: Interrupt,
    display: String,
    finished: bool,
}

impl FifoPair {
    /// Starts `producer` and `consumer`, each in a process group of its own, with `gates` (none,
    /// or one per side that holds its side until [`FifoPair::go`]). Both are ended at `timeout`
    /// from now or, with [`Interrupt::Allowed`], on Ctrl-C.
    pub fn spawn(
        producer: &CommandSpec,
        consumer: &CommandSpec,
        fifo: &Path,
        gates: &[PathBuf],
        timeout: Duration,
        interrupt: Interrupt,
    ) -> Result<Self, HarnessError> {
        tracing::debug!(producer = %producer.display(), consumer = %consumer.display(), fifo = %fifo.display(), "pair");
        let mut pair = Self {
            sides: Vec::new(),
            pipes: Vec::new(),
            fifo: fifo.to_path_buf(),
            gates: gates.to_vec(),
            start: Instant::now(),
            timeout,
            interrupt,
            display: format!("{} <fifo> {}", producer.display(), consumer.display()),
            finished: false,
        };
        for spec in [producer, consumer] {
            let mut cmd = command_for(spec);
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            // On an error, dropping the pair ends the side already started.
            let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
                cmd: spec.display(),
                source,
            })?;
            pair.pipes.push((
                Pipe::read(child.stdout.take().expect("piped stdout")),
                Pipe::read(child.stderr.take().expect("piped stderr")),
            ));
            pair.sides.push(child);
        }
        Ok(pair)
    }

    /// Waits until every gated side is at its gate, then lets all through at once; returns that
    /// moment. A side that exits before reaching its gate stops the wait (its failure is then
    /// [`FifoPair::finish`]'s to report, and the other side is told to stop). Ends both at the
    /// deadline or on Ctrl-C, with the matching error.
    pub fn go(&mut self) -> Result<Instant, HarnessError> {
        let mut held: Vec<Option<std::fs::File>> = self.gates.iter().map(|_| None).collect();
        let mut nap = Duration::from_millis(1);
        loop {
            for (gate, slot) in self.gates.iter().zip(held.iter_mut()) {
                if slot.is_none() {
                    *slot = open_writer(gate)
                        .map_err(|e| HarnessError::usage(format!("opening the gate {}: {e}", gate.display())))?;
                }
            }
            if held.iter().all(Option::is_some) {
                let at = Instant::now();
                for file in held.iter_mut().flatten() {
                    use std::io::Write;
                    // A pipe's buffer takes a few bytes at once: this never blocks.
                    let _ = writeln!(file, "{GO}");
                }
                return Ok(at);
            }
            if self.sides.iter_mut().any(|c| c.try_wait().ok().flatten().is_some()) {
                // A side is gone: the held gates close without a word, which means stop.
                drop(held);
                self.release_all();
                return Ok(Instant::now());
            }
            if let Some(reason) = self.stop_reason() {
                drop(held);
                return Err(self.stop(reason));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }

    /// Waits until both sides have printed `marker` on their stdout (the work is done; the rest is
    /// their exit, which a container takes a while for) or one has exited; returns that moment.
    /// Ends both at the deadline or on Ctrl-C, with the matching error.
    pub fn wait_reported(&mut self, marker: &str) -> Result<Instant, HarnessError> {
        let mut nap = Duration::from_millis(1);
        loop {
            if self.pipes.iter().all(|(out, _)| out.text().contains(marker)) {
                return Ok(Instant::now());
            }
            if self.sides.iter_mut().any(|c| c.try_wait().ok().flatten().is_some()) {
                return Ok(Instant::now());
            }
            if let Some(reason) = self.stop_reason() {
                return Err(self.stop(reason));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }

    /// Waits for both sides to exit and returns each side's output, stdout included. When one
    /// side fails, a side still blocked opening a pipe is let through, so that it ends too.
    pub fn finish(mut self) -> Result<(Output, Output), HarnessError> {
        let mut status: Vec<Option<std::process::ExitStatus>> = vec![None, None];
        let mut nap = Duration::from_millis(2);
        loop {
            for (c, st) in self.sides.iter_mut().zip(status.iter_mut()) {
                if st.is_none() {
                    *st = c.try_wait().ok().flatten();
                }
            }
            if status.iter().all(Option::is_some) {
                break;
            }
            if status.iter().flatten().any(|s| !s.success()) {
                self.release_all();
            }
            if let Some(reason) = self.stop_reason() {
                return Err(self.stop(reason));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
        self.finished = true;
        if status.iter().flatten().any(|s| !s.success()) {
            self.release_for_a_moment();
        }
        for (out, err) in &self.pipes {
            Pipe::wait_both(out, err, PIPE_GRACE, || false);
        }
        let output = |i: usize| Output {
            status: status[i].and_then(|s| s.code()),
            stdout: self.pipes[i].0.text(),
            stderr: self.pipes[i].1.text(),
            elapsed: self.start.elapsed(),
        };
        Ok((output(0), output(1)))
    }

    fn stop_reason(&self) -> Option<StopReason> {
        if self.start.elapsed() >= self.timeout {
            Some(StopReason::Timeout)
        } else if self.interrupt.stops_now(&SIGNALS) {
            Some(StopReason::Interrupted)
        } else {
            None
        }
    }

    /// Kills both sides, lets whatever still waits on a pipe through, and returns the error.
    fn stop(&mut self, reason: StopReason) -> HarnessError {
        self.end();
        match reason {
            StopReason::Timeout => HarnessError::Timeout {
                cmd: self.display.clone(),
                after: self.timeout,
                stderr: self
                    .pipes
                    .iter()
                    .map(|(_, e)| e.text())
                    .collect::<Vec<_>>()
                    .join("\n")
                    .trim()
                    .to_string(),
            },
            StopReason::Interrupted => HarnessError::Interrupted,
        }
    }

    fn end(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        for c in &self.sides {
            kill_group_now(c.id() as i32);
        }
        self.release_all();
        for c in self.sides.iter_mut() {
            let _ = c.wait();
        }
        self.release_for_a_moment();
    }

    fn release_all(&self) {
        release_fifo(&self.fifo);
        for g in &self.gates {
            release_fifo(g);
        }
    }

    /// A helper whose client is gone may still be starting: keep letting a late open through
    /// for a moment, so that it meets a closed pipe (or a gate that says stop) rather than
    /// waiting forever.
    fn release_for_a_moment(&self) {
        let until = Instant::now() + RELEASE_GRACE;
        while Instant::now() < until {
            self.release_all();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FifoPair {
    fn drop(&mut self) {
        self.end();
    }
}

/// Opens the gate `path` for writing if its side is waiting at it (a reader has it open), without
/// blocking and never through a link; `None` while nobody reads it yet.
fn open_writer(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => {
            if !f.metadata()?.file_type().is_fifo() {
                return Err(std::io::Error::other("not a named pipe"));
            }
            Ok(Some(f))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `producer` and `consumer` side by side, joined by the named pipe `fifo` that both open
/// themselves, without gates: [`FifoPair::spawn`] then [`FifoPair::finish`].
pub fn pair_through_fifo(
    producer: &CommandSpec,
    consumer: &CommandSpec,
    fifo: &Path,
    timeout: Duration,
    interrupt: Interrupt,
) -> Result<(Output, Output), HarnessError> {
    FifoPair::spawn(producer, consumer, fifo, &[], timeout, interrupt)?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// A stream pipe and two gates in a fresh directory.
    fn pipes() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
        let d = tempfile::tempdir().unwrap();
        let stream = d.path().join("stream");
        mkfifo(&stream);
        let gates: Vec<PathBuf> = ["gate-out", "gate-in"].iter().map(|g| d.path().join(g)).collect();
        gates.iter().for_each(|g| mkfifo(g));
        (d, stream, gates)
    }

    /// `sh -c script` with `$1` its gate, `$2` the stream and `$3` a scratch path.
    fn side(script: &str, gate: &Path, stream: &Path, scratch: &Path) -> CommandSpec {
        let gated = format!(r#"read -r g < "$1" && [ "$g" = {GO} ] || exit 125; {script}"#);
        CommandSpec::new("sh").args([
            "-c",
            &gated,
            "sh",
            gate.to_str().unwrap(),
            stream.to_str().unwrap(),
            scratch.to_str().unwrap(),
        ])
    }

    #[test]
    fn gated_sides_wait_until_go_then_move_every_byte() {
        let (d, stream, gates) = pipes();
        let out = d.path().join("out");
        let mut pair = FifoPair::spawn(
            &side(
                r#"head -c 2000000 /dev/zero > "$2"; echo sent; echo "hydra-rc 0""#,
                &gates[0],
                &stream,
                &out,
            ),
            &side(
                r#"cat "$2" > "$3"; echo got; echo "hydra-rc 0"; sleep 0.3"#,
                &gates[1],
                &stream,
                &out,
            ),
            &stream,
            &gates,
            Duration::from_secs(10),
            Interrupt::Ignored,
        )
        .unwrap();
        // Held at their gates: nothing moves yet.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!out.exists(), "a side went past its gate before go");
        let at = pair.go().unwrap();
        let reported = pair.wait_reported("hydra-rc ").unwrap();
        assert!(reported >= at);
        let (p, c) = pair.finish().unwrap();
        assert!(p.success() && c.success(), "{p:?} {c:?}");
        assert_eq!(
            (p.stdout.lines().next(), c.stdout.lines().next()),
            (Some("sent"), Some("got"))
        );
        // Reported before the consumer's exit (its last 0.3 s).
        assert!(
            reported.elapsed() >= Duration::from_millis(250),
            "{:?}",
            reported.elapsed()
        );
        assert_eq!(std::fs::read(&out).unwrap().len(), 2_000_000);
        assert!(at.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_pair_dropped_at_its_gates_moves_nothing_and_its_sides_stop() {
        let (d, stream, gates) = pipes();
        let out = d.path().join("out");
        // The sides outlive their clients, as containers outlive `docker run`; each writes the
        // status of its gate test into its marker.
        let detached = |gate: &Path, marker: &Path| {
            CommandSpec::new("sh").args([
                "-c",
                r#"setsid sh -c 'read -r g < "$1"; [ "$g" = go ] && echo moved > "$2"; echo $? > "$3"' sh "$1" "$2" "$3" & exit 0"#,
                "sh",
                gate.to_str().unwrap(),
                out.to_str().unwrap(),
                marker.to_str().unwrap(),
            ])
        };
        let markers = [d.path().join("m-out"), d.path().join("m-in")];
        let pair = FifoPair::spawn(
            &detached(&gates[0], &markers[0]),
            &detached(&gates[1], &markers[1]),
            &stream,
            &gates,
            Duration::from_secs(10),
            Interrupt::Ignored,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(pair);
        let t = Instant::now();
        let said = |m: &PathBuf| !std::fs::read_to_string(m).unwrap_or_default().trim().is_empty();
        while !markers.iter().all(said) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for m in &markers {
            assert_eq!(
                std::fs::read_to_string(m).unwrap_or_default().trim(),
                "1",
                "{} was not told to stop",
                m.display()
            );
        }
        assert!(!out.exists(), "a dropped pair moved bytes");
    }

    #[test]
    fn a_side_that_dies_before_its_gate_ends_the_wait() {
        let (d, stream, gates) = pipes();
        let t = Instant::now();
        let mut pair = FifoPair::spawn(
            &CommandSpec::new("sh").args(["-c", "echo 'no such image' >&2; exit 125"]),
            &side(r#"cat "$2" > /dev/null"#, &gates[1], &stream, d.path()),
            &stream,
            &gates,
            Duration::from_secs(30),
            Interrupt::Ignored,
        )
        .unwrap();
        pair.go().unwrap();
        let (p, c) = pair.finish().unwrap();
        assert_eq!(p.status, Some(125));
        assert!(!c.success(), "the gated side went on: {c:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn gates_nobody_reaches_end_at_the_deadline() {
        let (_d, stream, gates) = pipes();
        let t = Instant::now();
        let mut pair = FifoPair::spawn(
            &CommandSpec::new("sleep").arg("30"),
            &CommandSpec::new("sleep").arg("30"),
            &stream,
            &gates,
            Duration::from_millis(300),
            Interrupt::Ignored,
        )
        .unwrap();
        let err = pair.go().unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
