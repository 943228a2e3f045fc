//! What an engine's setup looks like from outside, for the benches and their reports: the
//! Docker-compatible API socket of each runtime, the network path its containers use, and the
//! command that removes a container at once. Every per-engine answer lives here, not in callers.

use super::{CommandSpec, EngineKind, Runtime};

/// Podman's slirp4netns MTU when containers.conf does not set one.
const SLIRP_DEFAULT_MTU: &str = "65520 (podman default)";

impl Runtime {
    /// The engine's Docker-compatible API socket as a `DOCKER_HOST` value: Docker's socket, the
    /// rootful Podman API service's, or the rootless user's under its `XDG_RUNTIME_DIR`.
    pub fn api_socket(&self) -> String {
        match self.kind.engine() {
            EngineKind::Docker => "unix:///var/run/docker.sock".into(),
            EngineKind::Podman => "unix:///run/podman/podman.sock".into(),
            EngineKind::PodmanRootless => {
                let dir = self
                    .rootless
                    .as_ref()
                    .map(|u| u.runtime_dir.display().to_string())
                    .unwrap_or_default();
                format!("unix://{dir}/podman/podman.sock")
            }
        }
    }

    /// `rm -f -v` of `ids` that kills at once. Podman's `rm -f` first stops with the default 10 s
    /// timeout (a `sleep` as PID 1 ignores SIGTERM); `-t 0` kills at once, as Docker's `rm -f`
    /// and the API's force removal do.
    pub fn remove_now(&self, ids: &[String]) -> CommandSpec {
        let spec = self.engine().args(["rm", "-f", "-v"]);
        let spec = if self.kind.is_podman() {
            spec.args(["-t", "0"])
        } else {
            spec
        };
        spec.args(ids.iter().cloned())
    }

    /// How this runtime's containers reach the network and get published ports, with the MTUs
    /// that bound throughput. Best effort: a failed query is shown as `unknown (...)`.
    pub fn network_summary(&self) -> String {
        let q = |args: &[&str]| {
            self.query(args)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|e| format!("unknown ({})", first_line(&e.to_string())))
        };
        match self.kind.engine() {
            EngineKind::Docker => {
                let mtu = q(&[
                    "network",
                    "inspect",
                    "bridge",
                    "--format",
                    "{{index .Options \"com.docker.network.driver.mtu\"}}",
                ]);
                let mtu = if mtu.is_empty() {
                    "1500 (default)".to_string()
                } else {
                    mtu
                };
                format!("bridge (docker0), published ports via iptables DNAT / docker-proxy, bridge mtu {mtu}")
            }
            EngineKind::Podman => format!(
                "{} bridge, rootful port forwarding",
                q(&["info", "--format", "{{.Host.NetworkBackend}}"])
            ),
            EngineKind::PodmanRootless => {
                let slirp = q(&["info", "--format", "{{.Host.Slirp4NetNS.Version}}"]);
                let slirp = slirp.lines().next().unwrap_or_default();
                format!(
                    "{} inside the rootless netns; slirp4netns ({slirp}), mtu {}; published ports via rootlessport",
                    q(&["info", "--format", "{{.Host.NetworkBackend}}"]),
                    slirp_mtu()
                )
            }
        }
    }
}

/// slirp4netns MTU: `mtu=` in containers.conf's `network_cmd_options`, else Podman's default.
fn slirp_mtu() -> String {
    let conf = std::fs::read_to_string("/etc/containers/containers.conf").unwrap_or_default();
    parse_slirp_mtu(&conf)
        .map(|m| m.to_string())
        .unwrap_or_else(|| SLIRP_DEFAULT_MTU.into())
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
    use crate::runtime::RuntimeKind;

    #[test]
    fn slirp_mtu_from_containers_conf() {
        assert_eq!(
            parse_slirp_mtu("[engine]\nnetwork_cmd_options = [\"mtu=1500\", \"enable_ipv6=false\"]\n"),
            Some(1500)
        );
        assert_eq!(parse_slirp_mtu("# network_cmd_options = [\"mtu=9000\"]\n"), None);
        assert_eq!(parse_slirp_mtu(""), None);
    }

    #[test]
    fn api_socket_per_runtime() {
        let socket = |kind| Runtime::for_tests(kind).api_socket();
        assert_eq!(socket(RuntimeKind::Docker), "unix:///var/run/docker.sock");
        assert_eq!(socket(RuntimeKind::Podman), "unix:///run/podman/podman.sock");
        assert_eq!(
            socket(RuntimeKind::PodmanRootless),
            "unix:///run/user/1001/podman/podman.sock"
        );
    }

    #[test]
    fn remove_now_kills_without_podmans_stop_timeout() {
        let ids = ["abc".to_string()];
        let argv = |kind| Runtime::for_tests(kind).remove_now(&ids).display();
        assert!(
            argv(RuntimeKind::Docker).ends_with("docker rm -f -v abc"),
            "{}",
            argv(RuntimeKind::Docker)
        );
        assert!(
            argv(RuntimeKind::Podman).ends_with("podman rm -f -v -t 0 abc"),
            "{}",
            argv(RuntimeKind::Podman)
        );
        let rootless = argv(RuntimeKind::PodmanRootless);
        assert!(
            rootless.contains("runuser") && rootless.ends_with("podman rm -f -v -t 0 abc"),
            "{rootless}"
        );
    }
}
