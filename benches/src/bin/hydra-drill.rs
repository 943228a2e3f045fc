//! The migration drill on the bundled stack, per direction and strategy: downtime (source stop to
//! target healthy), rollback downtime, the whole drill, and each volume copy's rate (helpers let go until both exited),
//! read from the `migration.json` of real `harness migrate` runs. The strategies of one direction
//! run in turn (raw, logical, raw, logical, ...), so that a noisy neighbour hits both alike, and
//! the table compares their medians.
//!
//!   hydra-drill [--drills docker:podman,docker:podman-rootless,podman-rootless:docker]
//!               [--strategies raw,logical] [--runs 1]
//!
//! A drill that does not say GO fails the bench: its figures would not be a migration's.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser)]
struct Args {
    /// Directions as `<from>:<to>`, comma-separated.
    #[arg(
        long,
        default_value = "docker:podman,docker:podman-rootless,podman-rootless:docker",
        value_delimiter = ','
    )]
    drills: Vec<String>,
    #[arg(long, default_value = "raw,logical", value_delimiter = ',')]
    strategies: Vec<String>,
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

#[derive(Deserialize)]
struct Report {
    downtime_seconds: Option<f64>,
    rollback_downtime_seconds: Option<f64>,
    seconds: f64,
    bytes_moved: u64,
    moves: Vec<Move>,
    verdict: Option<Verdict>,
}

#[derive(Deserialize)]
struct Move {
    bytes: u64,
    copy_seconds: f64,
}

#[derive(Deserialize)]
struct Verdict {
    decision: String,
    reasons: Vec<String>,
}

/// One drill's figures.
struct Figures {
    downtime: f64,
    rollback: f64,
    whole: f64,
    bytes: u64,
    /// MB/s of the volume copies (helpers let go until both exited; all copies together; 0 for a logical move
    /// without raw copies).
    copy_mbps: f64,
}

fn main() -> Result<()> {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    let args = Args::parse();
    let harness = std::env::current_exe()?
        .parent()
        .context("the bench's directory")?
        .join("harness");
    if !harness.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p hydra-harness)",
            harness.display()
        );
    }
    let mut rows = Vec::new();
    for drill in &args.drills {
        let (from, to) = drill
            .split_once(':')
            .with_context(|| format!("--drills: '{drill}' is not <from>:<to>"))?;
        let mut per: Vec<Vec<Figures>> = args.strategies.iter().map(|_| Vec::new()).collect();
        for run in 0..args.runs {
            for (i, strategy) in args.strategies.iter().enumerate() {
                let f = one(&harness, from, to, strategy)?;
                println!(
                    "{from} -> {to} {strategy} run {}: downtime {:.1}s, rollback downtime {:.1}s, drill {:.0}s, {} bytes, copy {:.0} MB/s",
                    run + 1,
                    f.downtime,
                    f.rollback,
                    f.whole,
                    f.bytes,
                    f.copy_mbps
                );
                per[i].push(f);
            }
        }
        for (strategy, figures) in args.strategies.iter().zip(per) {
            rows.push((format!("{from} -> {to}"), strategy.clone(), figures));
        }
    }
    println!(
        "\nmedians of {} run(s):\n| direction | strategy | downtime s | rollback downtime s | drill s | bytes moved | copy MB/s |\n|---|---|---|---|---|---|---|",
        args.runs
    );
    for (direction, strategy, figures) in rows {
        let m = |f: &dyn Fn(&Figures) -> f64| median(figures.iter().map(f).collect());
        println!(
            "| {direction} | {strategy} | {:.1} | {:.1} | {:.0} | {} | {:.0} |",
            m(&|f| f.downtime),
            m(&|f| f.rollback),
            m(&|f| f.whole),
            figures.last().map_or(0, |f| f.bytes),
            m(&|f| f.copy_mbps)
        );
    }
    Ok(())
}

/// One `harness migrate`, with its reports in a fresh directory (removed after).
fn one(harness: &std::path::Path, from: &str, to: &str, strategy: &str) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let out: PathBuf = dir.path().to_path_buf();
    let status = Command::new(harness)
        .args(["migrate", "--from", from, "--to", to, "--strategy", strategy])
        .arg("--report")
        .arg(&out)
        .arg("--junit")
        .arg(out.join("migrate.xml"))
        .status()
        .with_context(|| format!("running {}", harness.display()))?;
    let text = std::fs::read_to_string(out.join("migration.json"))
        .with_context(|| format!("{from} -> {to} ({strategy}) wrote no migration.json (exit {status})"))?;
    let r: Report = serde_json::from_str(&text).context("migration.json")?;
    match &r.verdict {
        Some(v) if v.decision == "go" => {}
        Some(v) => bail!(
            "{from} -> {to} ({strategy}) said {}: {}",
            v.decision,
            v.reasons.join("; ")
        ),
        None => bail!("{from} -> {to} ({strategy}) reached no verdict (exit {status})"),
    }
    let (bytes, secs) = r
        .moves
        .iter()
        .fold((0u64, 0f64), |(b, s), m| (b + m.bytes, s + m.copy_seconds));
    Ok(Figures {
        downtime: r.downtime_seconds.context("no downtime in migration.json")?,
        rollback: r
            .rollback_downtime_seconds
            .context("no rollback downtime in migration.json")?,
        whole: r.seconds,
        bytes: r.bytes_moved,
        copy_mbps: if secs > 0.0 { bytes as f64 / 1e6 / secs } else { 0.0 },
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
