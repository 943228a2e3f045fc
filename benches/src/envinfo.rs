//! The environment a comparison was measured in: cores, kernel, cgroup version, host interface
//! MTUs and, per runtime, engine and compose versions, storage driver and network mode (rootless:
//! slirp4netns and its MTU). Every query is best effort: a failure is recorded as text.

use std::collections::BTreeMap;
use std::path::Path;

use hydra::runtime::Runtime;
use hydra::RuntimeKind;
use serde::{Deserialize, Serialize};

/// The host and runtimes a comparison ran on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub cores: usize,
    pub kernel: String,
    pub cgroup: String,
    /// MTU of each host network interface (`lo`, `eth0`, `docker0`, ...).
    pub host_mtu: BTreeMap<String, u32>,
    pub runtimes: BTreeMap<String, RuntimeEnv>,
}

/// What one runtime is made of.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuntimeEnv {
    pub engine: String,
    pub compose: String,
    pub storage_driver: String,
    /// Network backend and, for rootless, the port forwarder and slirp4netns (with its MTU).
    pub network: String,
}

/// Collects the environment for `kinds`.
pub fn collect(kinds: &[RuntimeKind]) -> Environment {
    let mut env = Environment {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cgroup: if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "v2".into()
        } else {
            "v1 (hybrid or legacy)".into()
        },
        host_mtu: host_mtus(),
        runtimes: BTreeMap::new(),
    };
    for &kind in kinds {
        env.runtimes.insert(kind.name().to_string(), runtime_env(kind));
    }
    env
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

fn runtime_env(kind: RuntimeKind) -> RuntimeEnv {
    let runtime = match Runtime::resolve(kind) {
        Ok(r) => r,
        Err(e) => {
            return RuntimeEnv {
                engine: format!("unavailable: {e}"),
                ..Default::default()
            }
        }
    };
    let q = |args: &[&str]| {
        runtime
            .query(args)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({})", first_line(&e.to_string())))
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
    let (storage_driver, network) = match kind {
        RuntimeKind::Docker => {
            let mtu = q(&[
                "network",
                "inspect",
                "bridge",
                "--format",
                "{{index .Options \"com.docker.network.driver.mtu\"}}",
            ]);
            (
                q(&["info", "--format", "{{.Driver}}"]),
                format!(
                    "bridge (docker0), published ports via iptables DNAT / docker-proxy, bridge mtu {}",
                    if mtu.is_empty() {
                        "1500 (default)".to_string()
                    } else {
                        mtu
                    }
                ),
            )
        }
        RuntimeKind::Podman => (
            q(&["info", "--format", "{{.Store.GraphDriverName}}"]),
            format!(
                "{} bridge, rootful port forwarding",
                q(&["info", "--format", "{{.Host.NetworkBackend}}"])
            ),
        ),
        RuntimeKind::PodmanRootless => {
            let slirp = q(&["info", "--format", "{{.Host.Slirp4NetNS.Version}}"]);
            let slirp = slirp.lines().next().unwrap_or_default().to_string();
            (
                q(&["info", "--format", "{{.Store.GraphDriverName}}"]),
                format!(
                    "{} inside the rootless netns; slirp4netns ({slirp}), mtu {}; published ports via rootlessport",
                    q(&["info", "--format", "{{.Host.NetworkBackend}}"]),
                    slirp_mtu()
                ),
            )
        }
    };
    RuntimeEnv {
        engine,
        compose,
        storage_driver,
        network,
    }
}

/// slirp4netns MTU: `mtu=` in containers.conf's `network_cmd_options`, else Podman's default.
fn slirp_mtu() -> String {
    let conf = std::fs::read_to_string("/etc/containers/containers.conf").unwrap_or_default();
    parse_slirp_mtu(&conf)
        .map(|m| m.to_string())
        .unwrap_or_else(|| "65520 (podman default)".into())
}

/// The `mtu=N` option of `network_cmd_options` in a containers.conf text (pure).
pub fn parse_slirp_mtu(conf: &str) -> Option<u32> {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.starts_with("network_cmd_options"))
        .find_map(|l| {
            l.split(['"', '\'', ',', '[', ']', ' '])
                .find_map(|p| p.strip_prefix("mtu=")?.parse().ok())
        })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slirp_mtu_from_containers_conf() {
        assert_eq!(
            parse_slirp_mtu("[engine]\nnetwork_cmd_options = [\"mtu=1500\", \"enable_ipv6=false\"]\n"),
            Some(1500)
        );
        assert_eq!(parse_slirp_mtu("# network_cmd_options = [\"mtu=9000\"]\n"), None);
        assert_eq!(parse_slirp_mtu(""), None);
    }
}
