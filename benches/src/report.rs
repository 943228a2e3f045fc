//! The comparison report: every metric with docker, podman and podman-rootless side by side
//! (median, 95% confidence interval, ratio to docker), and the environment it was measured in.
//! Built from stored samples (pure), rendered as Markdown and JSON, written once at the end of
//! each bench target to `<target>/hydra/bench/comparison.{md,json}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hydra::RuntimeKind;
use serde::Serialize;

use crate::envinfo::Environment;
use crate::stats::{self, Summary};
use crate::store::{self, Metric, Samples, Skip};

/// One runtime's column of one metric.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Cell {
    /// Samples are stored for the runtime.
    Measured {
        /// Median and confidence interval of the samples.
        #[serde(flatten)]
        summary: Summary,
        /// This runtime's median divided by docker's (None without a docker median).
        ratio_to_docker: Option<f64>,
        /// Whether the samples were taken in quick mode.
        quick: bool,
    },
    /// The runtime was skipped, or its measurement failed.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Neither samples nor a skip are stored for the runtime.
    Missing,
}

/// One metric across runtimes.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The metric.
    pub metric: Metric,
    /// One cell per runtime, by runtime name (`podman-rootless`).
    pub runtimes: BTreeMap<String, Cell>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// When the report was built, in seconds since the Unix epoch.
    pub generated_unix: u64,
    /// Whether any of the samples were taken in quick mode.
    pub quick: bool,
    /// What the comparison ran on.
    pub environment: Environment,
    /// One row per metric, in report order.
    pub rows: Vec<Row>,
}

/// Builds the comparison from samples and skips (pure). Rows keep the order metrics were first
/// stored in by group, then name.
pub fn build(samples: &[Samples], skips: &[Skip], environment: Environment, generated_unix: u64) -> Comparison {
    let mut metrics: Vec<Metric> = Vec::new();
    for s in samples {
        if !metrics.iter().any(|m| m.key() == s.metric.key()) {
            metrics.push(s.metric.clone());
        }
    }
    metrics.sort_by_key(|m| {
        (
            group_rank(&m.group),
            m.group.clone(),
            metric_rank(&m.name),
            m.name.clone(),
        )
    });
    let rows = metrics
        .into_iter()
        .map(|metric| {
            let find = |kind: RuntimeKind| {
                samples
                    .iter()
                    .find(|s| s.runtime == kind && s.metric.key() == metric.key())
            };
            let docker_median = find(RuntimeKind::Docker).and_then(|s| stats::median(&s.values));
            let runtimes = RuntimeKind::ALL
                .iter()
                .map(|&kind| {
                    let cell = match find(kind).and_then(|s| Some((stats::summarize(&s.values)?, s.quick))) {
                        Some((summary, quick)) => Cell::Measured {
                            ratio_to_docker: docker_median.filter(|d| *d != 0.0).map(|d| summary.median / d),
                            summary,
                            quick,
                        },
                        None => match skips.iter().find(|k| k.runtime == kind && k.covers(&metric)) {
                            Some(k) => Cell::Skipped {
                                reason: k.reason.clone(),
                            },
                            None => Cell::Missing,
                        },
                    };
                    (kind.name().to_string(), cell)
                })
                .collect();
            Row { metric, runtimes }
        })
        .collect();
    let quick = samples.iter().any(|s| s.quick);
    Comparison {
        generated_unix,
        quick,
        environment,
        rows,
    }
}

fn group_rank(group: &str) -> usize {
    ["startup", "throughput"].iter().position(|g| *g == group).unwrap_or(9)
}

fn metric_rank(name: &str) -> usize {
    const ORDER: [&str; 6] = [
        "cold_start",
        "teardown",
        "restart",
        "container_cli",
        "container_cli_detached",
        "container_api",
    ];
    ORDER.iter().position(|m| *m == name).unwrap_or(ORDER.len())
}

/// A number with 3 significant digits or so, for tables.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Renders the comparison as Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Hydra benchmarks: Docker vs Podman, per target\n");
    let _ = writeln!(
        md,
        "Mode: **{}**. Each cell: median [95% CI] (n samples); `×` is the ratio of the median to docker's. \
         Lower is better for seconds and milliseconds, higher for req/s and tps. \
         criterion's own report: `target/criterion/report/index.html` (full mode).\n",
        if c.quick {
            "quick (BENCH_QUICK=1, few samples: smoke numbers, not for quoting)"
        } else {
            "full"
        }
    );
    // A column per target that was measured or skipped in this run.
    let names: Vec<&str> = RuntimeKind::ALL
        .iter()
        .map(|k| k.name())
        .filter(|n| {
            c.rows
                .iter()
                .any(|r| r.runtimes.get(*n).is_some_and(|cell| *cell != Cell::Missing))
        })
        .collect();
    let _ = writeln!(md, "| metric | unit | {} |", names.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---|".repeat(names.len()));
    for row in &c.rows {
        let cells: Vec<String> = names
            .iter()
            .map(|n| cell_md(row.runtimes.get(*n).unwrap_or(&Cell::Missing)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            row.metric.key(),
            row.metric.unit,
            cells.join(" | ")
        );
    }
    let _ = writeln!(md, "\n## What each metric is\n");
    for row in &c.rows {
        let _ = writeln!(md, "- `{}`: {}", row.metric.key(), row.metric.what);
    }
    let skipped: Vec<String> = c
        .rows
        .iter()
        .flat_map(|r| {
            r.runtimes.iter().filter_map(|(k, cell)| match cell {
                Cell::Skipped { reason } => Some(format!("- {k} ({}): {reason}", r.metric.key())),
                _ => None,
            })
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(md, "\n## Skipped\n\n{}", skipped.join("\n"));
    }
    let e = &c.environment;
    let _ = writeln!(md, "\n## Environment\n");
    let _ = writeln!(md, "- cores: {}, kernel {}, cgroup {}", e.cores, e.kernel, e.cgroup);
    let mtus: Vec<String> = e.host_mtu.iter().map(|(i, m)| format!("{i} {m}")).collect();
    let _ = writeln!(md, "- host interface MTU: {}", mtus.join(", "));
    for (name, r) in &e.runtimes {
        let _ = writeln!(
            md,
            "- **{name}**: {}; compose {}; storage {}; network: {}",
            r.engine, r.compose, r.storage_driver, r.network
        );
    }
    md
}

fn cell_md(cell: &Cell) -> String {
    match cell {
        Cell::Measured {
            summary: s,
            ratio_to_docker,
            ..
        } => {
            let ratio = ratio_to_docker.map(|r| format!(" ×{r:.2}")).unwrap_or_default();
            format!(
                "{} [{}, {}] (n={}){ratio}",
                num(s.median),
                num(s.ci_low),
                num(s.ci_high),
                s.n
            )
        }
        Cell::Skipped { reason } if reason.starts_with("failed") => "failed".into(),
        Cell::Skipped { .. } => "skipped".into(),
        Cell::Missing => "–".into(),
    }
}

/// Builds the comparison from what is stored under `bench_dir` and writes
/// `comparison.md` and `comparison.json` there. Returns the Markdown path.
pub fn write(bench_dir: &Path, environment: Environment) -> anyhow::Result<PathBuf> {
    let samples = store::load_samples(bench_dir)?;
    let skips = store::load_skips(bench_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let c = build(&samples, &skips, environment, now);
    std::fs::create_dir_all(bench_dir).with_context(|| format!("creating {}", bench_dir.display()))?;
    let md_path = bench_dir.join("comparison.md");
    std::fs::write(&md_path, markdown(&c)).with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = bench_dir.join("comparison.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&c)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(md_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envinfo::RuntimeEnv;

    fn samples(metric: &Metric, kind: RuntimeKind, values: &[f64]) -> Samples {
        Samples {
            metric: metric.clone(),
            runtime: kind,
            values: values.to_vec(),
            quick: true,
            measured_unix: 1,
        }
    }

    fn fixture() -> Comparison {
        let cold = Metric::lower("startup", "cold_start", "s", "up until healthy");
        let rps = Metric::higher("throughput", "nginx_health_rps", "req/s", "GET /health via nginx");
        let s = vec![
            samples(&rps, RuntimeKind::Docker, &[1000.0, 1100.0, 900.0]),
            samples(&cold, RuntimeKind::Podman, &[15.0, 17.0]),
            samples(&cold, RuntimeKind::Docker, &[10.0]),
            samples(&rps, RuntimeKind::Podman, &[500.0]),
        ];
        let skips = vec![Skip {
            runtime: RuntimeKind::PodmanRootless,
            scope: "startup".into(),
            reason: "no subuid range".into(),
        }];
        let mut env = Environment {
            cores: 2,
            kernel: "6.1".into(),
            cgroup: "v1".into(),
            ..Default::default()
        };
        env.host_mtu.insert("lo".into(), 65536);
        env.runtimes.insert(
            "docker".into(),
            RuntimeEnv {
                engine: "docker 20.10.24".into(),
                compose: "docker-compose 1.29.2".into(),
                storage_driver: "overlay2".into(),
                network: "bridge".into(),
            },
        );
        build(&s, &skips, env, 42)
    }

    #[test]
    fn rows_are_ordered_with_ratios_to_docker_and_skips() {
        let c = fixture();
        assert_eq!(
            c.rows.iter().map(|r| r.metric.key()).collect::<Vec<_>>(),
            ["startup/cold_start", "throughput/nginx_health_rps"]
        );
        match &c.rows[0].runtimes["podman"] {
            Cell::Measured {
                summary,
                ratio_to_docker,
                ..
            } => {
                assert_eq!(summary.median, 16.0);
                assert_eq!(*ratio_to_docker, Some(1.6));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.rows[0].runtimes["podman-rootless"],
            Cell::Skipped {
                reason: "no subuid range".into()
            }
        );
        assert_eq!(
            c.rows[1].runtimes["podman-rootless"],
            Cell::Missing,
            "skipped in startup only"
        );
        assert!(c.quick);
    }

    #[test]
    fn markdown_has_a_table_row_per_metric_and_the_environment() {
        let md = markdown(&fixture());
        assert!(
            md.contains("| metric | unit | docker | podman | podman-rootless |"),
            "{md}"
        );
        assert!(md.contains("| startup/cold_start | s | 10.00 [10.00, 10.00] (n=1) ×1.00 | 16.00 [15.00, 17.00] (n=2) ×1.60 | skipped |"), "{md}");
        assert!(md.contains("| throughput/nginx_health_rps | req/s | 1000 [900.0, 1100] (n=3) ×1.00 | 500.0 [500.0, 500.0] (n=1) ×0.50 | – |"), "{md}");
        assert!(md.contains("- podman-rootless (startup/cold_start): no subuid range"));
        assert!(md.contains("**docker**: docker 20.10.24; compose docker-compose 1.29.2; storage overlay2"));
        assert!(md.contains("quick (BENCH_QUICK=1"));
    }

    #[test]
    fn json_carries_status_median_interval_and_ratio() {
        let v = serde_json::to_value(fixture()).unwrap();
        let cell = &v["rows"][0]["runtimes"]["podman"];
        assert_eq!(cell["status"], "measured");
        assert_eq!(cell["median"], 16.0);
        assert_eq!(cell["ratio_to_docker"], 1.6);
        assert!(cell["ci_low"].is_number() && cell["ci_high"].is_number());
        assert_eq!(v["rows"][0]["runtimes"]["podman-rootless"]["status"], "skipped");
        assert_eq!(v["environment"]["cores"], 2);
    }

    #[test]
    fn write_produces_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metric::lower("startup", "restart", "s", "x");
        store::save(dir.path(), &m, RuntimeKind::Docker, &[1.0, 2.0, 3.0], false).unwrap();
        let md = write(dir.path(), Environment::default()).unwrap();
        assert!(std::fs::read_to_string(md).unwrap().contains("startup/restart"));
        assert!(dir.path().join("comparison.json").exists());
    }
}
