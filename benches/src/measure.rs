//! Runs one measurement per (metric set, runtime) and stores its samples, always through
//! criterion's `iter_custom`, so that `--save-baseline` and `--baseline` work in both modes.
//!
//! - Full mode: flat sampling, one iteration per criterion sample, the warm-up call discarded
//!   from the stored samples (criterion takes at least 10 samples).
//! - Quick mode (criterion's own `--quick`, or `BENCH_QUICK=1`, which re-runs the bench with
//!   `--quick`): criterion measures one call without a warm-up and stops (the call outlasts its
//!   1 ms measurement time); that call takes the measurement's few samples and reports their
//!   median as the time of one iteration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use hydra::RuntimeKind;

use crate::store::{self, Metric};

/// One iteration: the time criterion sees, and one value per metric of the measurement.
#[derive(Debug, Clone)]
pub struct Iteration {
    /// The time criterion counts for this iteration.
    pub elapsed: Duration,
    /// One value per metric of the measurement, in the order of [`Measurement::metrics`].
    pub values: Vec<f64>,
}

/// What to measure: a criterion id, the metrics each iteration yields, how often.
pub struct Measurement<'a> {
    /// The criterion benchmark group (`startup`, `throughput`).
    pub group: &'a str,
    /// The criterion benchmark id within the group.
    pub id: &'a str,
    /// The runtime measured.
    pub runtime: RuntimeKind,
    /// The metrics each iteration yields, in the order of [`Iteration::values`].
    pub metrics: &'a [Metric],
    /// Samples to take (criterion, in full mode, takes at least 10).
    pub samples: usize,
    /// Elements per iteration (requests, transactions) for criterion's throughput display.
    pub elements: Option<u64>,
}

/// Sequences measurements in quick or full mode and stores their samples.
pub struct Runner {
    quick: bool,
    criterion: Criterion,
    bench_dir: PathBuf,
}

impl Runner {
    /// A runner for the current mode. Criterion reads its mode from the command line only, so
    /// `BENCH_QUICK=1` without `--quick` runs this bench again with `--quick` and exits with its
    /// status.
    pub fn from_env() -> Self {
        crate::config::rerun_with_quick_flag_if_asked();
        let quick = crate::config::quick();
        let criterion = Criterion::default()
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_millis(1))
            .without_plots()
            .configure_from_args();
        Self {
            quick,
            criterion,
            bench_dir: crate::bench_dir(),
        }
    }

    /// Whether the runner is in quick mode (`--quick` or `BENCH_QUICK=1`).
    pub fn quick(&self) -> bool {
        self.quick
    }

    /// Where samples and the comparison report are written.
    pub fn bench_dir(&self) -> &std::path::Path {
        &self.bench_dir
    }

    /// Runs `m`, calling `iteration` once per sample (plus one warm-up in full mode), stores each
    /// metric's samples and prints their medians. The first error stops the measurement.
    pub fn run(
        &mut self,
        m: &Measurement<'_>,
        mut iteration: impl FnMut() -> anyhow::Result<Iteration>,
    ) -> anyhow::Result<()> {
        let samples = m.samples.max(1);
        let mut collected: Vec<Vec<f64>> = vec![Vec::new(); m.metrics.len()];
        let mut error: Option<anyhow::Error> = None;
        let record = |it: Iteration, collected: &mut Vec<Vec<f64>>| {
            for (i, v) in it.values.iter().enumerate().take(collected.len()) {
                collected[i].push(*v);
            }
        };
        let quick = self.quick;
        let label = format!("{} {}/{}", m.runtime, m.group, m.id);
        let mut group = self.criterion.benchmark_group(m.group);
        group.sample_size(samples.max(10)).sampling_mode(SamplingMode::Flat);
        if let Some(n) = m.elements {
            group.throughput(Throughput::Elements(n));
        }
        let mut calls = 0usize;
        group.bench_function(BenchmarkId::new(m.id, m.runtime.name()), |b| {
            b.iter_custom(|iters| {
                calls += 1;
                // Criterion's quick mode has no warm-up and stops after a first call that outlasts
                // its measurement time: that call takes all the samples and stands for one
                // iteration (their median). Any further call, and every call in full mode, runs
                // `iters` iterations and returns their sum, as criterion expects.
                let quick_call = quick && calls == 1;
                let runs = if quick_call { samples } else { iters as usize };
                let mut times = Vec::with_capacity(runs);
                for i in 0..runs {
                    if error.is_some() {
                        break;
                    }
                    match iteration() {
                        Ok(it) => {
                            if quick {
                                eprintln!("bench: {label} {}/{runs}: {:.3}s", i + 1, it.elapsed.as_secs_f64());
                            }
                            times.push(it.elapsed);
                            // Full mode's first call is criterion's warm-up: not a sample.
                            if quick || calls > 1 {
                                record(it, &mut collected);
                            }
                        }
                        Err(e) => error = Some(e.context(format!("{label} iteration {}", i + 1))),
                    }
                }
                let total = if quick_call {
                    let secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
                    Duration::from_secs_f64(crate::stats::median(&secs).unwrap_or_default())
                } else {
                    times.iter().sum()
                };
                total.max(Duration::from_nanos(1))
            })
        });
        group.finish();
        if let Some(e) = error {
            return Err(e);
        }
        for (metric, values) in m.metrics.iter().zip(&collected) {
            if values.is_empty() {
                return Err(anyhow!("{} {}: no samples were taken", m.runtime, metric.key()));
            }
            store::save(&self.bench_dir, metric, m.runtime, values, self.quick)?;
            let med = crate::stats::median(values).unwrap_or_default();
            eprintln!(
                "bench: {} {} median {med:.3} {} (n={})",
                m.runtime,
                metric.key(),
                metric.unit,
                values.len()
            );
        }
        Ok(())
    }

    /// Runs one bench group over every selected runtime: skipped runtimes are recorded with their
    /// reason, `per_runtime` returns the scopes that failed (each already recorded), and the
    /// report is written before the group fails for any of them.
    pub fn run_group(
        mut self,
        group: &str,
        selection: &[crate::config::Selected],
        mut per_runtime: impl FnMut(&mut Runner, RuntimeKind) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<()> {
        use crate::config::Selected;
        let mut failed = Vec::new();
        let mut kinds = Vec::new();
        for sel in selection {
            match sel {
                Selected::NotSelected(_) => {}
                Selected::Skip(kind, reason) => {
                    kinds.push(*kind);
                    store::save_skip(self.bench_dir(), *kind, group, reason)?;
                }
                Selected::Use(kind) => {
                    kinds.push(*kind);
                    store::clear_skip(self.bench_dir(), *kind, group);
                    match per_runtime(&mut self, *kind) {
                        Ok(scopes) => failed.extend(scopes.into_iter().map(|s| format!("{kind} {s}"))),
                        Err(e) => {
                            record_failure(self.bench_dir(), *kind, group, &e);
                            failed.push(format!("{kind} {group}"));
                        }
                    }
                }
            }
        }
        self.finish(&kinds)?;
        if !failed.is_empty() {
            return Err(anyhow!("failed: {} (see the report)", failed.join(", ")));
        }
        Ok(())
    }

    /// Prints criterion's summary, writes the comparison report for `runtimes` and
    /// prints its path.
    pub fn finish(self, runtimes: &[RuntimeKind]) -> anyhow::Result<()> {
        self.criterion.final_summary();
        let env = crate::envinfo::collect(runtimes);
        let path = crate::report::write(&self.bench_dir, env)?;
        eprintln!("bench: comparison report: {}", path.display());
        Ok(())
    }
}

/// Reports a failed measurement: prints it and records it as a skip of `scope`
/// (`group/id`) with the first line of the error, so the report shows it as failed.
pub fn record_failure(bench_dir: &std::path::Path, runtime: RuntimeKind, scope: &str, e: &anyhow::Error) {
    eprintln!("bench: {runtime} {scope} FAILED: {e:#}");
    let first = format!("{e:#}").lines().next().unwrap_or_default().to_string();
    if let Err(e) = store::save_skip(bench_dir, runtime, scope, &format!("failed: {first}")) {
        eprintln!("bench: cannot record the failure: {e:#}");
    }
}
