//! Samples on disk: one JSON file per (group, metric, runtime) under `<target>/hydra/bench/samples`,
//! overwritten whenever that metric is measured again, plus one file per skipped runtime. Bench
//! targets run as separate processes; the report is built from whatever is stored.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hydra::RuntimeKind;
use serde::{Deserialize, Serialize};

/// Whether larger values are better (req/s) or worse (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Larger values are better (rates).
    Higher,
    /// Smaller values are better (durations, latencies).
    Lower,
}

/// What a metric is: its group, name, unit and direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    /// The bench group (`startup`, `throughput`).
    pub group: String,
    /// The metric's name within its group.
    pub name: String,
    /// The unit of its values (`s`, `req/s`, ...).
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// One line saying exactly what was timed or counted.
    pub what: String,
}

impl Metric {
    /// A metric where lower is better (durations, latencies).
    pub fn lower(group: &str, name: &str, unit: &str, what: &str) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            unit: unit.into(),
            better: Better::Lower,
            what: what.into(),
        }
    }

    /// A metric where higher is better (rates).
    pub fn higher(group: &str, name: &str, unit: &str, what: &str) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            unit: unit.into(),
            better: Better::Higher,
            what: what.into(),
        }
    }

    /// `group/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }
}

/// The samples of one metric under one runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Samples {
    /// The metric measured.
    pub metric: Metric,
    /// The runtime it was measured under.
    pub runtime: RuntimeKind,
    /// One value per sample, in the metric's unit.
    pub values: Vec<f64>,
    /// Whether the samples were taken in quick mode.
    pub quick: bool,
    /// When they were stored, in seconds since the Unix epoch.
    pub measured_unix: u64,
}

/// A runtime that was not measured (or whose measurement failed), and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skip {
    /// The runtime that was not measured.
    pub runtime: RuntimeKind,
    /// What it covers: a group (`startup`), or a measurement (`startup/container_api`,
    /// `throughput/nginx_health` covering `throughput/nginx_health_rps`, ...).
    pub scope: String,
    /// Why: the runtime's selection reason, or `failed: <first line of the error>`.
    pub reason: String,
}

impl Skip {
    /// Whether this skip covers `metric`.
    pub fn covers(&self, metric: &Metric) -> bool {
        scope_covers(&self.scope, metric)
    }
}

fn scope_covers(scope: &str, metric: &Metric) -> bool {
    let key = metric.key();
    metric.group == scope || key == scope || key.starts_with(&format!("{scope}_"))
}

fn scope_file(scope: &str) -> String {
    scope.replace('/', ".")
}

/// The directory holding sample files.
pub fn samples_dir(bench_dir: &Path) -> PathBuf {
    bench_dir.join("samples")
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sample_path(dir: &Path, metric: &Metric, runtime: RuntimeKind) -> PathBuf {
    dir.join(format!("{}.{}.{}.json", metric.group, metric.name, runtime.name()))
}

/// Writes (replaces) the samples of `metric` under `runtime`. A skip recorded for it is left
/// alone: [`clear_skip`] removes those.
pub fn save(
    bench_dir: &Path,
    metric: &Metric,
    runtime: RuntimeKind,
    values: &[f64],
    quick: bool,
) -> anyhow::Result<()> {
    let dir = samples_dir(bench_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let s = Samples {
        metric: metric.clone(),
        runtime,
        values: values.to_vec(),
        quick,
        measured_unix: now_unix(),
    };
    let path = sample_path(&dir, metric, runtime);
    std::fs::write(&path, serde_json::to_vec_pretty(&s)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Records that `runtime` was skipped in `scope` (a group or a measurement); its old samples in
/// that scope are removed so the report never shows stale numbers as current.
pub fn save_skip(bench_dir: &Path, runtime: RuntimeKind, scope: &str, reason: &str) -> anyhow::Result<()> {
    let dir = samples_dir(bench_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for s in load_samples(bench_dir)? {
        if s.runtime == runtime && scope_covers(scope, &s.metric) {
            let _ = std::fs::remove_file(sample_path(&dir, &s.metric, runtime));
        }
    }
    let path = dir.join(format!("skip.{}.{}.json", runtime.name(), scope_file(scope)));
    let skip = Skip {
        runtime,
        scope: scope.to_string(),
        reason: reason.to_string(),
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&skip)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Removes the skip records of `runtime` in `group`, and of measurements in it (they are being
/// measured now).
pub fn clear_skip(bench_dir: &Path, runtime: RuntimeKind, group: &str) {
    let Ok(skips) = load_skips(bench_dir) else {
        return;
    };
    for s in skips
        .iter()
        .filter(|s| s.runtime == runtime && (s.scope == group || s.scope.starts_with(&format!("{group}/"))))
    {
        let _ = std::fs::remove_file(samples_dir(bench_dir).join(format!(
            "skip.{}.{}.json",
            runtime.name(),
            scope_file(&s.scope)
        )));
    }
}

/// Every stored sample set.
pub fn load_samples(bench_dir: &Path) -> anyhow::Result<Vec<Samples>> {
    load_all(bench_dir, |name| !name.starts_with("skip."))
}

/// Every stored skip.
pub fn load_skips(bench_dir: &Path) -> anyhow::Result<Vec<Skip>> {
    load_all(bench_dir, |name| name.starts_with("skip."))
}

fn load_all<T: serde::de::DeserializeOwned>(bench_dir: &Path, want: impl Fn(&str) -> bool) -> anyhow::Result<Vec<T>> {
    let dir = samples_dir(bench_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.ends_with(".json") || !want(&name) {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        out.push(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_skip_replace_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metric::lower("startup", "cold_start", "s", "x");
        save(dir.path(), &m, RuntimeKind::Podman, &[1.0, 2.0], true).unwrap();
        save(dir.path(), &m, RuntimeKind::Docker, &[3.0], true).unwrap();
        assert_eq!(load_samples(dir.path()).unwrap().len(), 2);
        save_skip(dir.path(), RuntimeKind::Podman, "startup", "engine down").unwrap();
        let samples = load_samples(dir.path()).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].runtime, RuntimeKind::Docker);
        let skips = load_skips(dir.path()).unwrap();
        assert_eq!(skips[0].reason, "engine down");
        assert!(skips[0].covers(&m));
        clear_skip(dir.path(), RuntimeKind::Podman, "startup");
        assert!(load_skips(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_measurement_skip_covers_only_its_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let rps = Metric::higher("throughput", "nginx_health_rps", "req/s", "x");
        let other = Metric::higher("throughput", "nginx_summary_rps", "req/s", "x");
        save(dir.path(), &rps, RuntimeKind::Docker, &[1.0], true).unwrap();
        save(dir.path(), &other, RuntimeKind::Docker, &[1.0], true).unwrap();
        save_skip(dir.path(), RuntimeKind::Docker, "throughput/nginx_health", "failed").unwrap();
        let left = load_samples(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].metric, other);
        let skip = &load_skips(dir.path()).unwrap()[0];
        assert!(skip.covers(&rps) && !skip.covers(&other));
        clear_skip(dir.path(), RuntimeKind::Docker, "throughput");
        assert!(load_skips(dir.path()).unwrap().is_empty());
    }
}
