//! Moving a named volume between engines: a tar stream out of a helper container of the base
//! image on one engine into a helper container on the other, fingerprinted on the way. Owners
//! travel as numbers and are written by the target container's root, so under rootless Podman
//! they come out identical inside the container (mapped through the user namespace). The stream
//! goes through named pipes mounted into the helpers ([`super::stream_dir`]), not through the
//! engines' attach streams; the harness itself only reads the trees (fingerprints), never the
//! stream between the engines, which moves as fast as between two processes on the host. A copy's
//! helpers are started first and wait at a gate each ([`prepare`]), so that their containers'
//! start overlaps reading the source (or the other volumes' copies), and their exit overlaps
//! reading the target back: the copy itself is the bytes moving.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::fingerprint::Fingerprint;
use super::stream_dir::StreamDir;
use crate::error::{HarnessError, Result};
use crate::images::base::BASE_IMAGE;
use crate::runtime::exec::{self, CommandSpec, Piped};
use crate::runtime::{Interrupt, ObjectKind, Runtime};

/// What one copy moved.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// The source tree, read just before the copy (stopped, mounted read-only).
    pub source: Fingerprint,
    /// The target tree, read back from the target volume after the copy.
    pub target: Fingerprint,
    /// Bytes of the tar stream.
    pub stream_bytes: u64,
    /// The stream alone: from starting the two helpers to both exiting.
    pub stream_seconds: f64,
    /// Starting the two helpers until both waited at their gates (container start: a fixed cost
    /// of about 0.4 s here, overlapped with reading the source where the caller has not already).
    pub start_seconds: f64,
    /// The copy proper: from both helpers let through their gates to both done (their containers'
    /// exit overlaps reading the target back).
    pub copy_seconds: f64,
    /// The bytes moving: from both tars started to the import's end, without the helpers'
    /// container start and exit (a fixed cost of about 0.4 s here, whatever the volume's size).
    pub data_seconds: f64,
    /// The whole copy: reading the source (alongside the helpers' start) and checks before, the
    /// stream, reading the target back.
    pub seconds: f64,
}

/// What the target volume may hold before the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Nothing: a volume that holds data is refused.
    Empty,
    /// Anything: it is emptied first (a rollback onto the source's own volume).
    Replace,
}

/// A volume name the engines take as a name, never as a host path (`-v` reads a source with a
/// `/` as a bind mount): compose's own rule for names.
pub fn check_volume_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(HarnessError::usage(format!(
            "'{name}' is not a volume name (letters, digits, '_', '.', '-', starting with a letter or digit)"
        )))
    }
}

/// Creates volume `name` on `rt` with `labels` (the run's, so that teardown and `harness gc` find
/// it), refusing one that already exists: a move never writes into a volume it did not make.
pub fn create(rt: &Runtime, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    check_volume_name(name)?;
    if rt.exists(ObjectKind::Volume, name) {
        return Err(HarnessError::usage(format!(
            "{}: volume {name} already exists; a move only fills volumes it created",
            rt.kind()
        ))
        .with_hint("remove it, or let `harness gc` sweep what a killed run left"));
    }
    let mut spec = rt.engine().args(["volume", "create"]);
    for (k, v) in labels {
        spec = spec.arg("--label").arg(format!("{k}={v}"));
    }
    exec::run_ok(&spec.arg(name), Duration::from_secs(60), Interrupt::Ignored)?;
    Ok(())
}

/// Where a helper finds its named pipe.
const STREAM: &str = "/stream";
/// Where a copy's helper finds its gate: it waits there, started, until the copy begins.
const GATE: &str = "/gate";
/// What a gated helper runs first: wait at the gate, at most `wait` (the copy's deadline: a
/// helper whose harness was killed never waits longer), and go on only when told to.
fn gated(wait: Duration) -> String {
    format!(
        "g=$(timeout {} head -n 1 {GATE}) && [ \"$g\" = {} ] || exit 125; ",
        wait.as_secs().max(1),
        exec::GO
    )
}

/// A helper container of the base image with `volume` at /v and the named pipe `fifo` at
/// [`STREAM`], without network, with only the capabilities tar needs, carrying `labels` so that
/// `harness gc` finds it if the run dies.
fn helper(
    rt: &Runtime,
    volume: &str,
    fifo: &std::path::Path,
    gate: Option<(&std::path::Path, Duration)>,
    labels: &BTreeMap<String, String>,
    writes: bool,
    script: &str,
) -> CommandSpec {
    // `--pull never`: the base image is built here; nothing is fetched from a registry.
    // `--log-driver none`: nothing the helper prints needs keeping.
    let mut spec = rt.engine().args([
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "--log-driver",
        "none",
        "--security-opt",
        "no-new-privileges",
    ]);
    for (k, v) in labels {
        spec = spec.arg("--label").arg(format!("{k}={v}"));
    }
    spec = spec.args(["--cap-drop", "ALL"]);
    let caps: &[&str] = if writes {
        &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"]
    } else {
        &["DAC_OVERRIDE", "DAC_READ_SEARCH"]
    };
    for cap in caps {
        spec = spec.args(["--cap-add", cap]);
    }
    // The exporting side writes the pipe, the importing side only reads it.
    spec = spec
        .arg("-v")
        .arg(format!("{volume}:/v{}", if writes { "" } else { ":ro" }))
        .arg("-v")
        .arg(format!(
            "{}:{STREAM}{}",
            fifo.display(),
            if writes { ":ro" } else { "" }
        ));
    let script = match gate {
        Some((g, wait)) => {
            spec = spec.arg("-v").arg(format!("{}:{GATE}:ro", g.display()));
            format!("{}{script}", gated(wait))
        }
        None => script.to_string(),
    };
    spec.args(["--entrypoint", "sh", BASE_IMAGE, "-c", &script])
}

/// The volume as a tar stream into the pipe (to be fingerprinted by the harness).
const EXPORT: &str = "cd /v && exec tar --numeric-owner -cf /stream .";
/// The same for a copy: the pipe goes to the other engine's helper; the start and tar's totals
/// are reported (see `StreamTiming`).
const EXPORT_TIMED: &str =
    "s=$(date +%s%N); cd /v && tar --numeric-owner --totals -b 256 -cf /stream .; rc=$?; echo \"hydra-start $s\"; echo \"hydra-rc $rc\"; exit $rc";
/// The stream unpacked into the volume, numeric owners and modes kept, start and end reported.
const IMPORT: &str = "s=$(date +%s%N); tar --numeric-owner -b 256 -B -xpf /stream; rc=$?; echo \"hydra-start $s\"; echo \"hydra-end $(date +%s%N)\"; echo \"hydra-rc $rc\"; exit $rc";
/// What both sides of a copy print last: their work is done, the rest is their container's exit.
const REPORTED: &str = "hydra-rc ";
/// Before [`IMPORT`] into a volume that must be empty: checked when the copy begins, inside the
/// helper that writes, so nothing can slip in between the check and the copy.
const REFUSE_FILLED: &str =
    "cd /v && n=$(find . -mindepth 1 -maxdepth 1 | wc -l) && { [ \"$n\" = 0 ] || { echo \"hydra-not-empty $n\"; exit 3; }; } && ";
/// Before [`IMPORT`] into a volume whose tree is replaced.
const EMPTY_FIRST: &str = "cd /v && find . -mindepth 1 -delete && ";

/// Read size of the fingerprint's reader: one system call per this many bytes, not per block.
const READ_CHUNK: usize = 1 << 20;

fn failed<T>(what: &str, piped: &Piped<T>) -> HarnessError {
    let mut parts = Vec::new();
    if let Err(e) = &piped.relayed {
        parts.push(format!("stream: {e}"));
    }
    for (side, out) in [("reading", &piped.producer), ("writing", &piped.consumer)] {
        if !out.success() {
            parts.push(format!(
                "{side} side exited {:?}: {}",
                out.status,
                exec::tail(out.stderr.trim(), 10)
            ));
        }
    }
    HarnessError::usage(format!("{what} failed: {}", parts.join("; ")))
}

/// The fingerprint of `volume` on `rt`, read through a helper container.
pub fn fingerprint(
    rt: &Runtime,
    volume: &str,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Fingerprint> {
    check_volume_name(volume)?;
    if !rt.exists(ObjectKind::Volume, volume) {
        return Err(HarnessError::usage(format!(
            "{}: volume {volume} does not exist",
            rt.kind()
        )));
    }
    let mut dir = StreamDir::create()?;
    let fifo = dir.fifo("out", rt)?;
    let piped = exec::read_fifo(
        &helper(rt, volume, &fifo, None, labels, false, EXPORT),
        &fifo,
        timeout,
        Interrupt::Allowed,
        |r| {
            let mut r = std::io::BufReader::with_capacity(READ_CHUNK, r);
            let fp = Fingerprint::from_tar(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
            // The archive's trailing blocks too, so the writing tar is not cut off.
            std::io::copy(&mut r, &mut std::io::sink())?;
            Ok(fp)
        },
    )?;
    if !piped.success() {
        return Err(failed(&format!("reading volume {volume} on {}", rt.kind()), &piped));
    }
    piped.relayed.map_err(HarnessError::from)
}

/// Copies volume `from_volume` on `from` into the existing volume `to_volume` on `to`, then
/// reads the target back. The source is only ever mounted read-only. It is read (fingerprinted)
/// while the copy's helpers start.
pub fn copy(
    from: &Runtime,
    from_volume: &str,
    to: &Runtime,
    to_volume: &str,
    into: Fill,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Transfer> {
    let started = Instant::now();
    let prepared = prepare(from, from_volume, to, to_volume, into, labels, timeout)?;
    // The source as the copy will see it: stopped and mounted read-only, it cannot change.
    let source = fingerprint(from, from_volume, labels, timeout)?;
    prepared.run_from(source, labels, timeout, started)
}

/// [`copy`] of a source already fingerprinted while stopped (the drill reads every volume at
/// its quiesce): `source` is taken as the source tree instead of reading it again.
#[allow(clippy::too_many_arguments)]
pub fn copy_fingerprinted(
    from: &Runtime,
    from_volume: &str,
    source: Fingerprint,
    to: &Runtime,
    to_volume: &str,
    into: Fill,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Transfer> {
    prepare(from, from_volume, to, to_volume, into, labels, timeout)?.run(source, labels, timeout)
}

/// A copy whose two helper containers are starting, or waiting at their gates: nothing is read
/// or written until [`PreparedCopy::run`]. Dropped, it tells them to stop, and they exit without
/// touching either volume.
pub struct PreparedCopy {
    // Before `_dir`: the helpers end before their pipes go.
    pair: exec::FifoPair,
    _dir: StreamDir,
    from: Runtime,
    from_volume: String,
    to: Runtime,
    to_volume: String,
    spawned: Instant,
}

/// Starts the helpers of a copy of `from_volume` on `from` into `to_volume` on `to` (both must
/// exist), held at their gates: their start (a container each) overlaps whatever the caller does
/// next, such as reading the source or preparing the next volume.
pub fn prepare(
    from: &Runtime,
    from_volume: &str,
    to: &Runtime,
    to_volume: &str,
    into: Fill,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<PreparedCopy> {
    check_volume_name(from_volume)?;
    check_volume_name(to_volume)?;
    for (rt, v) in [(from, from_volume), (to, to_volume)] {
        if !rt.exists(ObjectKind::Volume, v) {
            return Err(HarnessError::usage(format!("{}: volume {v} does not exist", rt.kind())));
        }
    }
    let script = match into {
        Fill::Empty => format!("{REFUSE_FILLED}{IMPORT}"),
        Fill::Replace => format!("{EMPTY_FIRST}{IMPORT}"),
    };
    // One pipe between the two helpers: the rootless side's user owns it, the rootful side's
    // root opens it with DAC_OVERRIDE. Each gate belongs to its own helper's user.
    let mut dir = StreamDir::create()?;
    let stream = dir.fifo("stream", if to.rootless_user().is_some() { to } else { from })?;
    let gates = [dir.fifo("gate-out", from)?, dir.fifo("gate-in", to)?];
    let spawned = Instant::now();
    let pair = exec::FifoPair::spawn(
        &helper(
            from,
            from_volume,
            &stream,
            Some((&gates[0], timeout)),
            labels,
            false,
            EXPORT_TIMED,
        ),
        &helper(
            to,
            to_volume,
            &stream,
            Some((&gates[1], timeout)),
            labels,
            true,
            &script,
        ),
        &stream,
        &gates,
        timeout,
        Interrupt::Allowed,
    )?;
    Ok(PreparedCopy {
        pair,
        _dir: dir,
        from: from.clone(),
        from_volume: from_volume.to_string(),
        to: to.clone(),
        to_volume: to_volume.to_string(),
        spawned,
    })
}

impl PreparedCopy {
    /// Checks that the target can hold `source` (the source's tree, read while stopped), lets the
    /// helpers go, and reads the target back.
    pub fn run(self, source: Fingerprint, labels: &BTreeMap<String, String>, timeout: Duration) -> Result<Transfer> {
        let started = Instant::now();
        self.run_from(source, labels, timeout, started)
    }

    fn run_from(
        mut self,
        source: Fingerprint,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
        started: Instant,
    ) -> Result<Transfer> {
        let (from, to) = (&self.from, &self.to);
        let (from_volume, to_volume) = (self.from_volume.clone(), self.to_volume.clone());
        // A rootless target can only own files with the IDs of its user namespace: files owned by
        // others would fail half-way through the copy, or come out owned by nobody.
        if let Some(limits) = to.container_id_limits()? {
            let outside = owners_outside(&source, limits);
            if !outside.is_empty() {
                return Err(HarnessError::usage(format!(
                    "volume {from_volume} ({}) has files whose owners {} cannot represent (user IDs below {}, group IDs below {}): {}",
                    from.kind(),
                    to.kind(),
                    limits.0,
                    limits.1,
                    outside.join(", ")
                ))
                .with_hint(
                    "give the rootless user a larger subordinate range in /etc/subuid and /etc/subgid (then `podman system migrate` as that user), or chown those files in the source first",
                ));
            }
        }
        let what = format!(
            "copying volume {from_volume} ({}) to {to_volume} ({})",
            from.kind(),
            to.kind()
        );
        let gone = self.pair.go()?;
        let start_seconds = gone.duration_since(self.spawned).as_secs_f64();
        let done = self.pair.wait_reported(REPORTED)?;
        let copy_seconds = done.duration_since(gone).as_secs_f64();
        let PreparedCopy {
            pair,
            _dir: dir,
            to,
            spawned,
            ..
        } = self;
        // The helpers' containers exit while the target is read back.
        let exits = std::thread::spawn(move || {
            let out = pair.finish();
            (out, spawned.elapsed().as_secs_f64())
        });
        let target = fingerprint(&to, &to_volume, labels, timeout);
        let (outputs, stream_seconds) = exits
            .join()
            .map_err(|_| HarnessError::usage(format!("{what}: the helpers' waiter panicked")))?;
        let (export, import) = outputs?;
        drop(dir);
        if let Some(n) = import
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("hydra-not-empty "))
        {
            return Err(HarnessError::usage(format!(
                "{}: volume {to_volume} already holds {} entries; refusing to mix two trees",
                to.kind(),
                n.trim()
            )));
        }
        if !export.success() || !import.success() {
            let sides: Vec<String> = [("reading", &export), ("writing", &import)]
                .iter()
                .filter(|(_, o)| !o.success())
                .map(|(side, o)| format!("{side} side exited {:?}: {}", o.status, exec::tail(o.stderr.trim(), 10)))
                .collect();
            return Err(HarnessError::usage(format!("{what} failed: {}", sides.join("; "))));
        }
        let timing = StreamTiming::parse(&export.stdout, &export.stderr, &import.stdout).ok_or_else(|| {
            HarnessError::usage(format!(
                "{what}: the helpers did not report their times and totals ({:?}, {:?})",
                export.stdout, import.stdout
            ))
        })?;
        let target = target?;
        Ok(Transfer {
            source,
            target,
            stream_bytes: timing.bytes,
            stream_seconds,
            start_seconds,
            copy_seconds,
            data_seconds: timing.data_seconds(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// What the two helpers of a copy print about it: when each began (nanoseconds of the host's
/// clock, which containers share), when the import ended, and the archive's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamTiming {
    export_start: u128,
    import_start: u128,
    import_end: u128,
    bytes: u64,
}

impl StreamTiming {
    /// From the exporting side's stdout (`hydra-start N`) and stderr (tar's `Total bytes
    /// written: N`) and the importing side's stdout (`hydra-start N`, `hydra-end N`). Pure.
    fn parse(export_out: &str, export_err: &str, import_out: &str) -> Option<Self> {
        let stamp = |text: &str, key: &str| -> Option<u128> {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        };
        let bytes = export_err
            .lines()
            .find_map(|l| l.trim().strip_prefix("Total bytes written:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())?;
        Some(Self {
            export_start: stamp(export_out, "hydra-start ")?,
            import_start: stamp(import_out, "hydra-start ")?,
            import_end: stamp(import_out, "hydra-end ")?,
            bytes,
        })
    }

    /// The bytes moving: from the moment both tars had started (the pipe joins them as soon as
    /// both open it) to the end of the import.
    fn data_seconds(&self) -> f64 {
        let both = self.export_start.max(self.import_start);
        self.import_end.saturating_sub(both) as f64 / 1e9
    }
}

/// Paths (at most 10, then a count) whose uid or gid is not below `limits`, with their owners.
fn owners_outside(fp: &Fingerprint, (uids, gids): (u64, u64)) -> Vec<String> {
    let outside: Vec<String> = fp
        .entries
        .iter()
        .filter(|(_, e)| e.uid >= uids || e.gid >= gids)
        .map(|(p, e)| format!("{p} ({}:{})", e.uid, e.gid))
        .collect();
    let mut shown: Vec<String> = outside.iter().take(10).cloned().collect();
    if outside.len() > 10 {
        shown.push(format!("and {} more", outside.len() - 10));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("hydra-docker-1a2b_db_data", true)]
    #[case("db.data-1", true)]
    #[case("/etc", false)]
    #[case("../x", false)]
    #[case("./data", false)]
    #[case("a/b", false)]
    #[case("-v", false)]
    #[case("", false)]
    #[case("vol:/host", false)]
    fn only_plain_names_are_volume_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(check_volume_name(name).is_ok(), ok, "{name}");
    }

    #[test]
    fn owners_outside_the_namespace_are_named() {
        use super::super::fingerprint::{Entry, EntryKind};
        let entry = |uid, gid| Entry {
            kind: EntryKind::File,
            mode: 0o600,
            uid,
            gid,
            size: 0,
            content: None,
        };
        let mut fp = Fingerprint::default();
        fp.entries.insert("ok".into(), entry(999, 999));
        fp.entries.insert("big-uid".into(), entry(70000, 0));
        fp.entries.insert("big-gid".into(), entry(0, 65537));
        assert_eq!(
            owners_outside(&fp, (65537, 65537)),
            ["big-gid (0:65537)", "big-uid (70000:0)"]
        );
        for i in 0..12 {
            fp.entries.insert(format!("x{i:02}"), entry(100_000, 0));
        }
        let shown = owners_outside(&fp, (65537, 65537));
        assert_eq!(shown.len(), 11);
        assert_eq!(shown.last().unwrap(), "and 4 more");
    }

    #[test]
    fn the_helpers_report_is_read_into_times_and_bytes() {
        let t = StreamTiming::parse(
            "hydra-start 1000000000\n",
            "Total bytes written: 268462080 (257MiB, 1.2GiB/s)\n",
            "hydra-start 1200000000\nhydra-end 1450000000\n",
        )
        .unwrap();
        assert_eq!(t.bytes, 268_462_080);
        // From the later start (the import's) to the end.
        assert!((t.data_seconds() - 0.25).abs() < 1e-9);
        assert_eq!(
            StreamTiming::parse("hydra-start 1", "", "hydra-start 1\nhydra-end 2"),
            None
        );
        assert_eq!(
            StreamTiming::parse("", "Total bytes written: 5", "hydra-start 1\nhydra-end 2"),
            None
        );
    }

    #[test]
    fn helpers_mount_the_source_read_only_and_get_only_tar_capabilities() {
        let rt = Runtime::for_tests(crate::runtime::RuntimeKind::Docker);
        let labels = BTreeMap::from([("io.hydra.run".to_string(), "r1".to_string())]);
        let fifo = std::path::Path::new("/var/lib/hydra/state/streams/1-2/out");
        let read = helper(&rt, "vol", fifo, None, &labels, false, EXPORT).args;
        assert!(read.windows(2).any(|w| w == ["-v", "vol:/v:ro"]), "{read:?}");
        assert!(read
            .windows(2)
            .any(|w| w == ["-v", "/var/lib/hydra/state/streams/1-2/out:/stream"]));
        assert!(read.windows(2).any(|w| w == ["--network", "none"]));
        assert!(read.windows(2).any(|w| w == ["--log-driver", "none"]));
        assert!(read.windows(2).any(|w| w == ["--label", "io.hydra.run=r1"]));
        assert!(!read.contains(&"CHOWN".to_string()));
        let gate = std::path::Path::new("/var/lib/hydra/state/streams/1-2/gate-in");
        let write = helper(
            &rt,
            "vol",
            fifo,
            Some((gate, Duration::from_secs(900))),
            &labels,
            true,
            IMPORT,
        )
        .args;
        assert!(write
            .windows(2)
            .any(|w| w == ["-v", "/var/lib/hydra/state/streams/1-2/gate-in:/gate:ro"]));
        assert!(
            write
                .last()
                .unwrap()
                .starts_with("g=$(timeout 900 head -n 1 /gate) && [ \"$g\" = go ] || exit 125; "),
            "{write:?}"
        );
        assert!(write.windows(2).any(|w| w == ["-v", "vol:/v"]), "{write:?}");
        assert!(write
            .windows(2)
            .any(|w| w == ["-v", "/var/lib/hydra/state/streams/1-2/out:/stream:ro"]));
        assert!(write.windows(2).any(|w| w == ["--cap-add", "CHOWN"]));
    }
}
