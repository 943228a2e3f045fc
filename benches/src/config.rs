//! Bench settings from the environment: quick mode (`--quick` or `BENCH_QUICK=1`), which runtimes to measure
//! (the harness's own selection: `HYDRA_RUNTIMES`, else every runtime `harness doctor` finds
//! usable; `HYDRA_REQUIRE` makes one mandatory), and per-mode counts.

use std::time::Duration;

use anyhow::bail;
use hydra::session::Availability;
use hydra::RuntimeKind;

/// How many times each measurement runs, and how long load runs last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Cold starts (each followed by a measured teardown).
    pub cold_starts: usize,
    /// Restarts of one running stack.
    pub restarts: usize,
    /// Single-container starts, per path (CLI, API).
    pub containers: usize,
    /// Load runs per endpoint and for PostgreSQL.
    pub load_runs: usize,
    /// Length of one load run.
    pub load_run: Duration,
}

/// Quick mode: criterion's `--quick` on the command line, or `BENCH_QUICK=1` (every group with
/// few samples, for a smoke run).
pub fn quick() -> bool {
    quick_from_env() || quick_flag()
}

fn quick_from_env() -> bool {
    std::env::var("BENCH_QUICK")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

fn quick_flag() -> bool {
    std::env::args().skip(1).any(|a| a == "--quick")
}

/// `BENCH_QUICK=1` without `--quick`: runs this bench binary again with `--quick` added and exits
/// with its status. Criterion takes its mode from the command line only, and its quick mode is
/// what lets a quick run save and compare baselines.
pub fn rerun_with_quick_flag_if_asked() {
    if !quick_from_env() || quick_flag() {
        return;
    }
    let status = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .arg("--quick")
            .status()
    });
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("bench: BENCH_QUICK=1: cannot run this bench again with --quick: {e}");
            std::process::exit(1);
        }
    }
}

/// Counts for the mode. Full mode counts match criterion's samples (10 is its minimum).
pub fn counts(quick: bool) -> Counts {
    if quick {
        Counts {
            cold_starts: 2,
            restarts: 2,
            containers: 5,
            load_runs: 2,
            load_run: Duration::from_secs(1),
        }
    } else {
        Counts {
            cold_starts: 10,
            restarts: 10,
            containers: 20,
            load_runs: 10,
            load_run: Duration::from_secs(3),
        }
    }
}

/// Concurrent HTTP connections of the load generator (`HYDRA_BENCH_CONNECTIONS`, default 16).
pub fn http_connections() -> usize {
    env_usize("HYDRA_BENCH_CONNECTIONS", 16)
}

/// Concurrent PostgreSQL clients (`HYDRA_BENCH_PG_CLIENTS`, default 8).
pub fn pg_clients() -> usize {
    env_usize("HYDRA_BENCH_PG_CLIENTS", 8)
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// A runtime to measure, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// Usable: measure it.
    Use(RuntimeKind),
    /// Not usable here and not required: recorded in the report with the reason.
    Skip(RuntimeKind, String),
    /// Left out by `HYDRA_RUNTIMES`: not measured, and its stored samples are kept.
    NotSelected(RuntimeKind),
}

/// The harness's own runtime selection (`hydra::session::availability`: `HYDRA_RUNTIMES`, else
/// every runtime, each diagnosed by doctor; `HYDRA_REQUIRE` makes a runtime mandatory). Skips
/// are printed with their reason; a required (or explicitly selected) runtime that is not usable
/// fails the bench run before anything is measured.
pub fn select_runtimes() -> anyhow::Result<Vec<Selected>> {
    let availability = hydra::session::availability(&[], &[])?;
    let selection = from_availability(availability)?;
    for sel in &selection {
        match sel {
            Selected::Skip(kind, reason) => eprintln!("bench: skipping {kind}: {reason}"),
            Selected::NotSelected(kind) => eprintln!("bench: skipping {kind}: not selected (HYDRA_RUNTIMES)"),
            Selected::Use(_) => {}
        }
    }
    Ok(selection)
}

/// Turns the harness's availability into the bench selection (pure): any broken runtime is an
/// error naming each one with its reason.
pub fn from_availability(list: Vec<(RuntimeKind, Availability)>) -> anyhow::Result<Vec<Selected>> {
    let mut broken = Vec::new();
    let mut out = Vec::new();
    for (kind, availability) in list {
        match availability {
            Availability::Use => out.push(Selected::Use(kind)),
            Availability::Skip(reason) if reason.starts_with(NOT_SELECTED) => out.push(Selected::NotSelected(kind)),
            Availability::Skip(reason) => out.push(Selected::Skip(kind, reason)),
            Availability::Broken(reason) => broken.push(format!("{kind}: {reason}")),
        }
    }
    if !broken.is_empty() {
        bail!(
            "required runtime not usable, nothing measured:\n  {}\n  hint: fix it (`harness doctor`) or drop it from HYDRA_REQUIRE / HYDRA_RUNTIMES",
            broken.join("\n  ")
        );
    }
    Ok(out)
}

/// How `availability` words a runtime left out by `HYDRA_RUNTIMES` (pinned by a test).
const NOT_SELECTED: &str = "not selected";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_mode_is_smaller_everywhere() {
        let (q, f) = (counts(true), counts(false));
        assert!(q.cold_starts < f.cold_starts && q.restarts < f.restarts && q.load_runs < f.load_runs);
        assert!(
            f.cold_starts >= 10 && f.load_runs >= 10,
            "criterion needs at least 10 samples"
        );
    }

    #[test]
    fn a_required_runtime_that_is_not_usable_fails_the_run_with_its_reason() {
        let err = from_availability(vec![
            (RuntimeKind::Docker, Availability::Use),
            (
                RuntimeKind::Podman,
                Availability::Broken("podman: not installed".into()),
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("podman: podman: not installed") && err.contains("HYDRA_REQUIRE"),
            "{err}"
        );
    }

    #[test]
    fn unusable_runtimes_are_skipped_with_their_reason_unless_not_selected() {
        let sel = from_availability(vec![
            (RuntimeKind::Docker, Availability::Use),
            (RuntimeKind::Podman, Availability::Skip("engine down".into())),
            (
                RuntimeKind::PodmanRootless,
                Availability::Skip("not selected (HYDRA_RUNTIMES / --runtime)".into()),
            ),
        ])
        .unwrap();
        assert_eq!(
            sel,
            [
                Selected::Use(RuntimeKind::Docker),
                Selected::Skip(RuntimeKind::Podman, "engine down".into()),
                Selected::NotSelected(RuntimeKind::PodmanRootless),
            ]
        );
    }

    /// Through the environment, as `cargo bench` runs it: `HYDRA_REQUIRE` names a runtime that
    /// `HYDRA_RUNTIMES` leaves out, which the harness's selection reports as broken (no engine
    /// is queried for it). The benches used to ignore `HYDRA_REQUIRE` and measure docker alone.
    #[test]
    fn hydra_require_is_honoured() {
        std::env::set_var("HYDRA_RUNTIMES", "docker");
        std::env::set_var("HYDRA_REQUIRE", "podman");
        let result = select_runtimes();
        std::env::remove_var("HYDRA_RUNTIMES");
        std::env::remove_var("HYDRA_REQUIRE");
        let err = result.expect_err("a required runtime that is not selected must fail the run");
        let msg = format!("{err:#}");
        assert!(msg.contains("podman: required but not selected"), "{msg}");
    }
}
