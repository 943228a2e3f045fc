//! Volume copy throughput between engines against a raw floor: `harness migrate` moves a named
//! volume as a tar stream between helper containers of two engines; the floor is `tar` of the same
//! volume's directory piped to `tar` on the host, the least any copy of those files costs here.
//! Prints each run and the medians, and the ratio copy throughput ÷ floor throughput (goal ≥ 0.9)
//! for the copy (from the helpers let through their gates to both exited: the helpers start,
//! held at their gates, while the source is read), for the bytes moving (from both tars started
//! to the import's end), for the stream with its helper containers' start and exit, and for the
//! whole copy (source read, owner pre-check, copy and read-back).
//!
//!   hydra-volume-copy --from docker --to podman-rootless [--mb 256] [--runs 5] [--volume NAME]
//!
//! Under a rootless source the floor runs as the engine's user, in its user namespace.
//!
//! Runs take turns (floor, copy, floor, copy, ...) so that a noisy neighbour hits both alike.
//! Everything it creates carries a run's labels and is removed at the end (`harness gc` sweeps
//! what a killed run left).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hydra::runtime::{exec, Interrupt, ObjectKind, Runtime, RuntimeKind};
use hydra::volumes;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    from: RuntimeKind,
    #[arg(long)]
    to: RuntimeKind,
    /// Size of the volume's content (incompressible, in 64 files).
    #[arg(long, default_value_t = 256)]
    mb: u32,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Copy this existing volume of --from instead of a filled one (read only, never removed):
    /// a stopped stack's database volume, for the figure on real data.
    #[arg(long)]
    volume: Option<String>,
}

const DEADLINE: Duration = Duration::from_secs(1800);

fn main() -> Result<()> {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    let args = Args::parse();
    let from = Runtime::resolve(args.from)?;
    let to = Runtime::resolve(args.to)?;
    let run_id = hydra::runs::fresh_run_id();
    let labels = hydra::compose::file::run_labels_of_this_process(&run_id, "bench");
    let mut made = Made(Vec::new());
    let source = match &args.volume {
        Some(v) => {
            volumes::transfer::check_volume_name(v)?;
            if !from.exists(ObjectKind::Volume, v) {
                bail!("{}: volume {v} does not exist", args.from);
            }
            v.clone()
        }
        None => {
            let source = format!("hydra-bench-{run_id}-src");
            volumes::create(&from, &source, &labels)?;
            made.0.push((from.clone(), source.clone()));
            fill(&from, &source, &labels, args.mb)?;
            source
        }
    };
    // Root reads the volume's directory only for a root-owned engine. Under a rootless source that
    // directory is the user's to swap for a link to anywhere, so its floor runs as that user.
    let source_dir = if from.kind().is_rootless() {
        None
    } else {
        Some(mountpoint(&from, &source)?)
    };
    // On the same filesystem as the engines' volumes here; made by us (a fresh name, 0700), so
    // nobody else's file is written through or removed.
    let scratch = Scratch(std::env::temp_dir().join(format!("hydra-bench-{run_id}")));
    std::fs::create_dir(&scratch.0).with_context(|| format!("creating {}", scratch.0.display()))?;
    std::fs::set_permissions(&scratch.0, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;

    let (mut floor, mut data, mut stream, mut whole) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut copy, mut start) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for i in 0..args.runs {
        floor.push(match &source_dir {
            Some(dir) => tar_floor(dir, &scratch.0.join(format!("r{i}")))?,
            None => tar_floor_as_user(&from, &source)?,
        });
        let target = format!("hydra-bench-{run_id}-dst{i}");
        volumes::create(&to, &target, &labels)?;
        made.0.push((to.clone(), target.clone()));
        let t = volumes::copy(&from, &source, &to, &target, volumes::Fill::Empty, &labels, DEADLINE)?;
        if t.source.digest() != t.target.digest() {
            bail!(
                "the copy differs from the source: {:?}",
                t.source.first_difference(&t.target)
            );
        }
        bytes = t.stream_bytes;
        data.push(t.data_seconds);
        copy.push(t.copy_seconds);
        start.push(t.start_seconds);
        stream.push(t.stream_seconds);
        whole.push(t.seconds);
        to.remove(ObjectKind::Volume, std::slice::from_ref(&target))?;
        made.0.pop();
        println!(
            "run {}: floor {:.2}s, copy {:.2}s, data {:.2}s, helpers' start {:.2}s, stream {:.2}s, whole copy {:.2}s ({} MB)",
            i + 1,
            floor[i],
            t.copy_seconds,
            t.data_seconds,
            t.start_seconds,
            t.stream_seconds,
            t.seconds,
            bytes / 1_000_000
        );
    }
    let (c, st) = (median(&mut copy), median(&mut start));
    let (f, d, s, w) = (
        median(&mut floor),
        median(&mut data),
        median(&mut stream),
        median(&mut whole),
    );
    let mbps = |secs: f64| bytes as f64 / 1e6 / secs;
    println!(
        "\n{} -> {}, {} MB, medians of {} runs:",
        args.from,
        args.to,
        bytes / 1_000_000,
        args.runs
    );
    println!("  floor (host tar | tar)  {f:.2}s  {:.0} MB/s", mbps(f));
    println!(
        "  copy                    {c:.2}s  {:.0} MB/s  ratio {:.3}",
        mbps(c),
        f / c
    );
    println!("  helpers' start          {st:.2}s  (held at their gates while the source is read)");
    println!(
        "  bytes moving            {d:.2}s  {:.0} MB/s  ratio {:.3}",
        mbps(d),
        f / d
    );
    println!(
        "  stream with helpers     {s:.2}s  {:.0} MB/s  ratio {:.3}",
        mbps(s),
        f / s
    );
    println!(
        "  whole copy              {w:.2}s  {:.0} MB/s  ratio {:.3}",
        mbps(w),
        f / w
    );
    println!(
        "  goal: ratio >= 0.9 -> copy {}, bytes moving {}, stream with helpers {}",
        if f / c >= 0.9 { "met" } else { "missed" },
        if f / d >= 0.9 { "met" } else { "missed" },
        if f / s >= 0.9 { "met" } else { "missed" }
    );
    Ok(())
}

/// Writes `mb` MB of random bytes into the volume, in 64 files, through a helper container.
fn fill(rt: &Runtime, volume: &str, labels: &BTreeMap<String, String>, mb: u32) -> Result<()> {
    let per_file_kb = (u64::from(mb) * 1024) / 64;
    let mut spec = rt
        .engine()
        .args(["run", "--rm", "--pull", "never", "--network", "none"]);
    for (k, v) in labels {
        spec = spec.arg("--label").arg(format!("{k}={v}"));
    }
    let script = format!(
        "for i in $(seq 1 64); do head -c {}K /dev/urandom > /v/f$i; done",
        per_file_kb
    );
    spec = spec.arg("-v").arg(format!("{volume}:/v")).args([
        "--entrypoint",
        "sh",
        hydra::images::base::BASE_IMAGE,
        "-c",
        &script,
    ]);
    exec::run_ok(&spec, DEADLINE, Interrupt::Allowed)?;
    Ok(())
}

/// The volume's directory on the host. Read by root (the bench runs as root, as the harness does).
fn mountpoint(rt: &Runtime, volume: &str) -> Result<PathBuf> {
    let out = rt.query(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume])?;
    let p = PathBuf::from(out.trim());
    if !p.is_absolute() {
        bail!("volume {volume} has no host directory ({out:?})");
    }
    Ok(p)
}

/// Seconds for `tar -cf - . | tar -xf -` of `dir` into `into`, numeric owners kept.
fn tar_floor(dir: &Path, into: &Path) -> Result<f64> {
    std::fs::create_dir(into)?;
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar --numeric-owner -C \"$1\" -cf - . | tar --numeric-owner -C \"$2\" -xpf -")
        .args(["sh", &dir.display().to_string(), &into.display().to_string()])
        .status()?;
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the floor's tar pipe failed: {status}");
    }
    std::fs::remove_dir_all(into)?;
    Ok(secs)
}

/// The floor of a rootless source: the same tar pipe, run by the engine's user inside its user
/// namespace (so numeric owners are kept as they are in the volume), into a scratch directory of
/// that user's, timed inside so that entering the namespace is not counted.
fn tar_floor_as_user(rt: &Runtime, volume: &str) -> Result<f64> {
    // The path is the user's engine's answer: it is only ever handed back to that user.
    let dir = rt.query(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume])?;
    let script = r#"d=$(mktemp -d) || exit 1
s=$(date +%s%N)
tar --numeric-owner -C "$1" -cf - . | tar --numeric-owner -C "$d" -xpf -
rc=$?
e=$(date +%s%N)
rm -rf "$d"
[ $rc -eq 0 ] && echo $((e - s))"#;
    let spec = rt.engine().args(["unshare", "sh", "-c", script, "sh", dir.trim()]);
    let out = exec::run_ok(&spec, DEADLINE, Interrupt::Allowed)?;
    let ns: u64 = out
        .stdout
        .trim()
        .parse()
        .with_context(|| format!("the floor's tar pipe printed {:?}, not nanoseconds", out.stdout))?;
    Ok(ns as f64 / 1e9)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The floor's scratch directory, removed however the bench ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Volumes the bench created, removed however it ends.
struct Made(Vec<(Runtime, String)>);

impl Drop for Made {
    fn drop(&mut self) {
        for (rt, v) in &self.0 {
            let _ = rt.remove(ObjectKind::Volume, std::slice::from_ref(v));
        }
    }
}
