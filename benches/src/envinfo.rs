//! The environment a comparison was measured in: cores, kernel, cgroup version, host interface
//! MTUs and, per runtime, engine and compose versions, storage driver and network mode (rootless:
//! slirp4netns and its MTU). Every engine query goes through the runtime layer
//! (`Runtime::version`, `storage_and_cgroups`, `network_summary`); each is best effort: a failure
//! is recorded as text.

use std::collections::BTreeMap;

use hydra::runtime::Runtime;
use hydra::RuntimeKind;
use serde::{Deserialize, Serialize};

/// The host and runtimes a comparison ran on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    /// CPUs available to the bench process (0 when unknown).
    pub cores: usize,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// The cgroup version the engines report (each engine's answer when they disagree).
    pub cgroup: String,
    /// MTU of each host network interface (`lo`, `eth0`, `docker0`, ...).
    pub host_mtu: BTreeMap<String, u32>,
    /// Each measured runtime, by name (`podman-rootless`).
    pub runtimes: BTreeMap<String, RuntimeEnv>,
}

/// What one runtime is made of.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuntimeEnv {
    /// Engine program and version, or why the runtime could not be used.
    pub engine: String,
    /// Compose tool and version.
    pub compose: String,
    /// The engine's storage driver.
    pub storage_driver: String,
    /// Network backend and, for rootless, the port forwarder and slirp4netns (with its MTU).
    pub network: String,
}

/// Collects the environment for `kinds`. The cgroup version is the one the engines report
/// (`Runtime::storage_and_cgroups`), so the report and the harness give one answer.
pub fn collect(kinds: &[RuntimeKind]) -> Environment {
    let mut env = Environment {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cgroup: String::new(),
        host_mtu: host_mtus(),
        runtimes: BTreeMap::new(),
    };
    let mut cgroups = Vec::new();
    for &kind in kinds {
        let (runtime_env, cgroup) = runtime_env(kind);
        cgroups.extend(cgroup.map(|c| (kind, c)));
        env.runtimes.insert(kind.name().to_string(), runtime_env);
    }
    env.cgroup = cgroup_summary(&cgroups);
    env
}

/// The host's cgroup version from what each engine reported (pure): `v1` when they agree,
/// each engine's answer when they do not, `unknown` when none answered.
pub fn cgroup_summary(reported: &[(RuntimeKind, String)]) -> String {
    let known: Vec<&(RuntimeKind, String)> = reported.iter().filter(|(_, v)| v != "unknown").collect();
    match known.first() {
        None => "unknown (no engine reported one)".into(),
        Some((_, first)) if known.iter().all(|(_, v)| v == first) => format!("v{first}"),
        Some(_) => known
            .iter()
            .map(|(kind, v)| format!("{kind}: v{v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn host_mtus() -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("veth") {
                continue; // per-container pairs come and go
            }
            if let Ok(Ok(mtu)) = std::fs::read_to_string(e.path().join("mtu")).map(|m| m.trim().parse::<u32>()) {
                out.insert(name, mtu);
            }
        }
    }
    out
}

/// What `kind` is made of, and the cgroup version its engine reports (none when unreachable).
fn runtime_env(kind: RuntimeKind) -> (RuntimeEnv, Option<String>) {
    let runtime = match Runtime::resolve(kind) {
        Ok(r) => r,
        Err(e) => {
            let env = RuntimeEnv {
                engine: format!("unavailable: {e}"),
                ..Default::default()
            };
            return (env, None);
        }
    };
    let engine = format!(
        "{} {}",
        kind.engine_program(),
        runtime
            .version()
            .unwrap_or_else(|e| format!("unknown ({})", first_line(&e.to_string())))
    );
    let compose = match hydra::compose::detect(&runtime) {
        Ok(p) => format!("{} {}", p.tool, p.version),
        Err(e) => format!("unknown ({})", first_line(&e.to_string())),
    };
    let (storage_driver, cgroup) = runtime.storage_and_cgroups();
    let env = RuntimeEnv {
        engine,
        compose,
        storage_driver,
        network: runtime.network_summary(),
    };
    (env, Some(cgroup))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_version_is_the_engines_answer() {
        let d = |v: &str| (RuntimeKind::Docker, v.to_string());
        let p = |v: &str| (RuntimeKind::Podman, v.to_string());
        assert_eq!(cgroup_summary(&[d("1"), p("1")]), "v1");
        assert_eq!(cgroup_summary(&[d("unknown"), p("2")]), "v2");
        assert_eq!(cgroup_summary(&[d("1"), p("2")]), "docker: v1, podman: v2");
        assert!(cgroup_summary(&[]).starts_with("unknown"));
    }
}
