//! Moving a named volume between engines: a tar stream out of a helper container of the base
//! image on one engine into a helper container on the other, fingerprinted on the way. Owners
//! travel as numbers and are written by the target container's root, so under rootless Podman
//! they come out identical inside the container (mapped through the user namespace). The stream
//! goes through named pipes mounted into the helpers ([`super::stream_dir`]), not through the
//! engines' attach streams.

use std::collections::BTreeMap;
use std::io::Read;
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
    /// The source tree, read from the stream that went to the target.
    pub source: Fingerprint,
    /// The target tree, read back from the target volume after the copy.
    pub target: Fingerprint,
    /// Bytes of the tar stream.
    pub stream_bytes: u64,
    /// The stream alone: from starting the two helpers to both exiting.
    pub stream_seconds: f64,
    /// The bytes moving: from the first byte to the last one through the relay, without the
    /// helpers' start and exit (a fixed cost of about 0.4 s here, whatever the volume's size).
    pub data_seconds: f64,
    /// The whole copy: checks before, the stream, and reading the target back.
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

/// A helper container of the base image with `volume` at /v and the named pipe `fifo` at
/// [`STREAM`], without network, with only the capabilities tar needs, carrying `labels` so that
/// `harness gc` finds it if the run dies.
fn helper(
    rt: &Runtime,
    volume: &str,
    fifo: &std::path::Path,
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
    spec.arg("-v")
        .arg(format!("{volume}:/v{}", if writes { "" } else { ":ro" }))
        .arg("-v")
        .arg(format!(
            "{}:{STREAM}{}",
            fifo.display(),
            if writes { ":ro" } else { "" }
        ))
        .args(["--entrypoint", "sh", BASE_IMAGE, "-c", script])
}

const EXPORT: &str = "cd /v && exec tar --numeric-owner -cf /stream .";
const IMPORT_INTO_EMPTY: &str = "cd /v && exec tar --numeric-owner -xpf /stream";
const IMPORT_REPLACING: &str = "cd /v && find . -mindepth 1 -delete && exec tar --numeric-owner -xpf /stream";

/// Read and write size of the relay: one system call per this many bytes, not per tar block.
const RELAY_CHUNK: usize = 1 << 20;

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
        &helper(rt, volume, &fifo, labels, false, EXPORT),
        &fifo,
        timeout,
        Interrupt::Allowed,
        |r| {
            let mut r = std::io::BufReader::with_capacity(RELAY_CHUNK, r);
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
/// reads the target back. The source is only ever mounted read-only.
pub fn copy(
    from: &Runtime,
    from_volume: &str,
    to: &Runtime,
    to_volume: &str,
    into: Fill,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Transfer> {
    check_volume_name(from_volume)?;
    check_volume_name(to_volume)?;
    for (rt, v) in [(from, from_volume), (to, to_volume)] {
        if !rt.exists(ObjectKind::Volume, v) {
            return Err(HarnessError::usage(format!("{}: volume {v} does not exist", rt.kind())));
        }
    }
    let started = Instant::now();
    // A rootless target can only own files with the IDs of its user namespace: files owned by
    // others would fail half-way through the copy, or come out owned by nobody.
    if let Some(limits) = to.container_id_limits()? {
        let source = fingerprint(from, from_volume, labels, timeout)?;
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
    if into == Fill::Empty {
        let there = fingerprint(to, to_volume, labels, timeout)?;
        if there.entries.len() > 1 {
            return Err(HarnessError::usage(format!(
                "{}: volume {to_volume} already holds {} entries; refusing to mix two trees",
                to.kind(),
                there.entries.len() - 1
            )));
        }
    }
    let script = match into {
        Fill::Empty => IMPORT_INTO_EMPTY,
        Fill::Replace => IMPORT_REPLACING,
    };
    let mut dir = StreamDir::create()?;
    let (out, into_target) = (dir.fifo("out", from)?, dir.fifo("in", to)?);
    let stream_started = Instant::now();
    let piped = exec::pipe_fifos(
        &helper(from, from_volume, &out, labels, false, EXPORT),
        &out,
        &helper(to, to_volume, &into_target, labels, true, script),
        &into_target,
        timeout,
        Interrupt::Allowed,
        |r, w| {
            let mut tee = Tee::new(r, w);
            let fp = Fingerprint::from_tar(&mut tee).map_err(|e| std::io::Error::other(e.to_string()))?;
            // The archive's trailing blocks too: the reading tar expects them.
            std::io::copy(&mut tee, &mut std::io::sink())?;
            let data_seconds = tee.first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
            Ok((fp, tee.bytes, data_seconds))
        },
    )?;
    if !piped.success() {
        return Err(failed(
            &format!(
                "copying volume {from_volume} ({}) to {to_volume} ({})",
                from.kind(),
                to.kind()
            ),
            &piped,
        ));
    }
    let stream_seconds = stream_started.elapsed().as_secs_f64();
    let (source, stream_bytes, data_seconds) = piped.relayed.map_err(HarnessError::from)?;
    let target = fingerprint(to, to_volume, labels, timeout)?;
    Ok(Transfer {
        source,
        target,
        stream_bytes,
        stream_seconds,
        data_seconds,
        seconds: started.elapsed().as_secs_f64(),
    })
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

/// A reader that writes what it reads to `out`, in chunks of up to [`RELAY_CHUNK`] whatever
/// size its own reader asks for.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut dyn std::io::Write,
    bytes: u64,
    buf: Vec<u8>,
    pos: usize,
    /// When the first byte arrived.
    first: Option<Instant>,
}

impl<'a, R: Read> Tee<'a, R> {
    fn new(inner: R, out: &'a mut dyn std::io::Write) -> Self {
        Self {
            inner,
            out,
            bytes: 0,
            buf: Vec::with_capacity(RELAY_CHUNK),
            pos: 0,
            first: None,
        }
    }
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.resize(RELAY_CHUNK, 0);
            let n = loop {
                match self.inner.read(&mut self.buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r,
                }
            };
            let n = n.inspect_err(|_| self.buf.clear())?;
            self.buf.truncate(n);
            self.pos = 0;
            self.out.write_all(&self.buf)?;
            if self.first.is_none() && n > 0 {
                self.first = Some(Instant::now());
            }
            self.bytes += n as u64;
        }
        let n = (self.buf.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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
    fn a_tee_passes_every_byte_and_counts_them() {
        let input: Vec<u8> = (0..3 * RELAY_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut tee = Tee::new(&input[..], &mut out);
        let mut first = [0u8; 4];
        tee.read_exact(&mut first).unwrap();
        assert_eq!(first, input[..4]);
        let mut rest = Vec::new();
        std::io::copy(&mut tee, &mut rest).unwrap();
        assert_eq!(tee.bytes, input.len() as u64);
        assert_eq!(rest, input[4..]);
        assert_eq!(out, input);
    }

    #[test]
    fn helpers_mount_the_source_read_only_and_get_only_tar_capabilities() {
        let rt = Runtime::for_tests(crate::runtime::RuntimeKind::Docker);
        let labels = BTreeMap::from([("io.hydra.run".to_string(), "r1".to_string())]);
        let fifo = std::path::Path::new("/var/lib/hydra/state/streams/1-2/out");
        let read = helper(&rt, "vol", fifo, &labels, false, EXPORT).args;
        assert!(read.windows(2).any(|w| w == ["-v", "vol:/v:ro"]), "{read:?}");
        assert!(read
            .windows(2)
            .any(|w| w == ["-v", "/var/lib/hydra/state/streams/1-2/out:/stream"]));
        assert!(read.windows(2).any(|w| w == ["--network", "none"]));
        assert!(read.windows(2).any(|w| w == ["--log-driver", "none"]));
        assert!(read.windows(2).any(|w| w == ["--label", "io.hydra.run=r1"]));
        assert!(!read.contains(&"CHOWN".to_string()));
        let write = helper(&rt, "vol", fifo, &labels, true, IMPORT_INTO_EMPTY).args;
        assert!(write.windows(2).any(|w| w == ["-v", "vol:/v"]), "{write:?}");
        assert!(write
            .windows(2)
            .any(|w| w == ["-v", "/var/lib/hydra/state/streams/1-2/out:/stream:ro"]));
        assert!(write.windows(2).any(|w| w == ["--cap-add", "CHOWN"]));
    }
}
