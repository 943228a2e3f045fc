//! Bench settings from the environment: quick mode (`BENCH_QUICK=1`), which runtimes to measure
//! (`HYDRA_RUNTIMES`, else every runtime `harness doctor` finds usable), and per-mode counts.

use std::time::Duration;

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

/// Quick mode (`BENCH_QUICK=1`): every group with few samples, for CI smoke.
pub fn quick() -> bool {
    std::env::var("BENCH_QUICK")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
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
#[derive(Debug, Clone)]
pub enum Selected {
    Use(RuntimeKind),
    Skip(RuntimeKind, String),
}

/// Runtimes named by `HYDRA_RUNTIMES` (else all), each checked with `doctor::diagnose`. Skips
/// are printed with their reason.
pub fn select_runtimes() -> anyhow::Result<Vec<Selected>> {
    let kinds = match std::env::var("HYDRA_RUNTIMES") {
        Ok(list) if !list.trim().is_empty() => hydra::runtime::parse_list(&list)?,
        _ => RuntimeKind::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for kind in kinds {
        let report = hydra::doctor::diagnose(kind);
        if report.usable() {
            out.push(Selected::Use(kind));
        } else {
            let reason = report.reason().unwrap_or_else(|| "not usable".into());
            eprintln!("bench: skipping {kind}: {reason}");
            out.push(Selected::Skip(kind, reason));
        }
    }
    Ok(out)
}

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
}
