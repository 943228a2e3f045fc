//! What the source's containers use that the target engine might not give: capabilities beyond
//! none, host devices, the host's network namespace, privileged mode. Each need is read from the
//! running source (its inspect JSON, engine differences removed by posture's facts). A probe
//! container of the base image then asks for the same thing on both engines. Something the
//! source's engine gives and the target's does not is a NO-GO, named. Something neither gives
//! means the probe cannot be trusted; that is an error, not a verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::images::base::BASE_IMAGE;
use crate::posture::facts::{caps_from_mask, normalise_cap, parse_facts, Namespace, CAPABILITY_NAMES};
use crate::runtime::exec::{self, Interrupt};
use crate::runtime::{CommandSpec, Runtime};
use crate::stack::Stack;

const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// One thing one service's container uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Need {
    /// A capability in the container's bounding set (`CAP_` prefix dropped).
    Capability {
        /// The capability's name, e.g. `NET_ADMIN`.
        name: String,
    },
    /// A host device, at `path` inside the container, with the cgroup permissions (`rwm`).
    Device {
        /// The device's path on the host.
        host: String,
        /// The device's path inside the container.
        path: String,
        /// The cgroup permissions (`rwm`); empty when the engine did not say.
        permissions: String,
    },
    /// The host's network namespace.
    HostNetwork,
    /// Privileged mode.
    Privileged,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Capability { name } => write!(f, "capability {name}"),
            Need::Device { host, path, .. } if host == path => write!(f, "device {host}"),
            Need::Device { host, path, .. } => write!(f, "device {host} (at {path})"),
            Need::HostNetwork => f.write_str("the host's network (network_mode: host)"),
            Need::Privileged => f.write_str("privileged mode"),
        }
    }
}

/// One need the target does not meet, with what its probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The service whose container has the need.
    pub service: String,
    /// What the target does not give.
    pub need: Need,
    /// What the target's probe showed (or the engine's error when it refused the probe).
    pub evidence: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    #[serde(default)]
    host_config: RawHostConfig,
    #[serde(default)]
    config: RawConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHostConfig {
    #[serde(default)]
    devices: Option<Vec<RawDevice>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawDevice {
    path_on_host: String,
    path_in_container: String,
    #[serde(default)]
    cgroup_permissions: String,
}

/// The needs of every service, from the `container inspect` JSON of a running stack. Pure.
pub fn from_inspect(json: &str) -> Result<BTreeMap<String, BTreeSet<Need>>> {
    let mut out: BTreeMap<String, BTreeSet<Need>> = BTreeMap::new();
    for f in parse_facts(json)? {
        let Some(service) = f.service.clone() else {
            continue;
        };
        let needs = out.entry(service).or_default();
        if f.privileged {
            needs.insert(Need::Privileged);
        } else {
            needs.extend(
                f.caps
                    .bounding
                    .iter()
                    .map(|c| Need::Capability { name: normalise_cap(c) }),
            );
        }
        if f.namespaces.network == Namespace::Host {
            needs.insert(Need::HostNetwork);
        }
    }
    let raw: Vec<RawContainer> = serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "container inspect JSON".into(),
        reason: e.to_string(),
    })?;
    for c in raw {
        let Some(service) = c
            .config
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::readiness::SERVICE_LABEL))
            .cloned()
        else {
            continue;
        };
        let needs = out.entry(service).or_default();
        for d in c.host_config.devices.into_iter().flatten() {
            needs.insert(Need::Device {
                host: d.path_on_host,
                path: d.path_in_container,
                permissions: d.cgroup_permissions,
            });
        }
    }
    out.retain(|_, n| !n.is_empty());
    Ok(out)
}

/// The needs of the running `stack`'s services.
pub fn of_stack(stack: &Stack) -> Result<BTreeMap<String, BTreeSet<Need>>> {
    let ids: Vec<String> = stack.containers()?.into_values().map(|c| c.id).collect();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut args = vec!["container", "inspect"];
    args.extend(ids.iter().map(String::as_str));
    from_inspect(&stack.runtime().query(&args)?)
}

/// A device path as the probe passes it to the engine and the shell: absolute, plain.
fn plain_path(p: &str) -> bool {
    p.starts_with("/dev/")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
        && !p.contains("..")
}

/// The probe container for one service's needs: it asks the engine for all of them and prints
/// its bounding set and whether each device opens.
fn probe_spec(rt: &Runtime, needs: &BTreeSet<Need>, labels: &BTreeMap<String, String>) -> Result<CommandSpec> {
    let mut spec = rt
        .engine()
        .args(["run", "--rm", "--pull", "never", "--log-driver", "none"]);
    for (k, v) in labels {
        spec = spec.arg("--label").arg(format!("{k}={v}"));
    }
    let network = if needs.contains(&Need::HostNetwork) {
        "host"
    } else {
        "none"
    };
    spec = spec.args(["--network", network, "--cap-drop", "ALL"]);
    let mut devices = Vec::new();
    for n in needs {
        match n {
            Need::Capability { name } => {
                // Names come from the source's inspect JSON: only known capabilities reach a command.
                if !CAPABILITY_NAMES.contains(&name.as_str()) {
                    return Err(HarnessError::usage(format!(
                        "capability {name:?} is not a Linux capability; the drill will not pass it to a probe"
                    )));
                }
                spec = spec.args(["--cap-add", name]);
            }
            Need::Privileged => spec = spec.arg("--privileged"),
            Need::Device {
                host,
                path,
                permissions,
            } => {
                if !plain_path(host) || !plain_path(path) {
                    return Err(HarnessError::usage(format!(
                        "device {host}:{path} is not a plain /dev path; the drill will not pass it to a probe"
                    )));
                }
                let perms = if permissions.is_empty() { "rwm" } else { permissions };
                spec = spec.arg("--device").arg(format!("{host}:{path}:{perms}"));
                let mode = if perms.contains('w') { "rw" } else { "r" };
                devices.push(format!("{mode}:{path}"));
            }
            Need::HostNetwork => {}
        }
    }
    let script = r#"grep '^CapBnd:' /proc/self/status
for d in "$@"; do
  p=${d#*:}
  case $d in
    rw:*) if (: <> "$p") 2>/dev/null; then echo "device $p ok"; else echo "device $p denied"; fi ;;
    *) if (: < "$p") 2>/dev/null; then echo "device $p ok"; else echo "device $p denied"; fi ;;
  esac
done"#;
    Ok(spec
        .args(["--entrypoint", "sh", BASE_IMAGE, "-c", script, "probe"])
        .args(devices))
}

/// Which of `needs` the probe's output shows unmet. Pure.
pub fn unmet(needs: &BTreeSet<Need>, output: &str) -> Result<Vec<(Need, String)>> {
    let bounding = output
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(caps_from_mask)
        .transpose()?
        .ok_or_else(|| HarnessError::Parse {
            what: "needs probe output".into(),
            reason: format!("no CapBnd line in {output:?}"),
        })?;
    let mut out = Vec::new();
    for n in needs {
        match n {
            Need::Capability { name } if !bounding.contains(name) => out.push((
                n.clone(),
                format!("not in the probe's bounding set ({} held)", bounding.len()),
            )),
            Need::Device { path, .. } => {
                let line = format!("device {path} ");
                match output.lines().find_map(|l| l.strip_prefix(&line)) {
                    Some("ok") => {}
                    Some(_) => out.push((n.clone(), format!("{path} is there but cannot be opened"))),
                    None => out.push((n.clone(), format!("the probe did not report {path}"))),
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Runs one service's probe on `rt`: the unmet needs, or all of them when the engine refused to
/// start the probe (with its error).
fn probe(rt: &Runtime, needs: &BTreeSet<Need>, labels: &BTreeMap<String, String>) -> Result<Vec<(Need, String)>> {
    let out = exec::run(&probe_spec(rt, needs, labels)?, PROBE_TIMEOUT, Interrupt::Allowed)?;
    if !out.success() {
        let why = format!(
            "the engine did not start the probe: {}",
            exec::tail(out.stderr.trim(), 3)
        );
        return Ok(needs.iter().map(|n| (n.clone(), why.clone())).collect());
    }
    unmet(needs, &out.stdout)
}

/// What `target` does not give that the source's engine (`source`) does, for every service's
/// needs. A need the source's own probe does not meet is an error: the probe is wrong there.
pub fn missing_on(
    needs: &BTreeMap<String, BTreeSet<Need>>,
    source: &Runtime,
    target: &Runtime,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Missing>> {
    let mut missing = Vec::new();
    for (service, n) in needs {
        let control = probe(source, n, labels)?;
        if let Some((need, why)) = control.first() {
            return Err(HarnessError::usage(format!(
                "the probe for {service}'s {need} fails on {} too, where the service runs: {why}",
                source.kind()
            )));
        }
        for (need, evidence) in probe(target, n, labels)? {
            missing.push(Missing {
                service: service.clone(),
                need,
                evidence,
            });
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn fixture(name: &str) -> String {
        let p = crate::workspace::root().join("fixtures/inspect").join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[rstest]
    #[case::docker("docker-gap-detector.json")]
    #[case::podman("podman-gap-detector.json")]
    #[case::podman_rootless("podman-rootless-gap-detector.json")]
    fn the_bundled_stack_needs_nothing(#[case] file: &str) {
        assert_eq!(from_inspect(&fixture(file)).unwrap(), BTreeMap::new());
    }

    #[rstest]
    #[case::docker("docker-flaws.json")]
    #[case::podman("podman-flaws.json")]
    #[case::podman_rootless("podman-rootless-flaws.json")]
    fn added_capabilities_and_privileged_mode_are_needs(#[case] file: &str) {
        let needs = from_inspect(&fixture(file)).unwrap();
        let all: BTreeSet<&Need> = needs.values().flatten().collect();
        assert!(
            all.iter()
                .any(|n| matches!(n, Need::Capability { name } if name == "SYS_ADMIN") || **n == Need::Privileged),
            "{needs:?}"
        );
    }

    #[test]
    fn devices_come_from_the_host_config() {
        let json = r#"[{"Id":"x","Name":"/a","Config":{"Labels":{"com.docker.compose.service":"agent"}},
            "HostConfig":{"CapDrop":["ALL"],"Devices":[{"PathOnHost":"/dev/fuse","PathInContainer":"/dev/fuse","CgroupPermissions":"rwm"}]}}]"#;
        let needs = from_inspect(json).unwrap();
        assert_eq!(
            needs["agent"].iter().collect::<Vec<_>>(),
            [&Need::Device {
                host: "/dev/fuse".into(),
                path: "/dev/fuse".into(),
                permissions: "rwm".into()
            }]
        );
    }

    fn device(p: &str) -> Need {
        Need::Device {
            host: p.into(),
            path: p.into(),
            permissions: "rwm".into(),
        }
    }

    #[test]
    fn unmet_needs_are_read_from_the_probe() {
        let needs = BTreeSet::from([
            Need::Capability {
                name: "NET_ADMIN".into(),
            },
            Need::Capability {
                name: "SYS_TIME".into(),
            },
            device("/dev/fuse"),
            device("/dev/kvm"),
        ]);
        // NET_ADMIN is bit 12.
        let out = "CapBnd:\t0000000000001000\ndevice /dev/fuse denied\n";
        let unmet = unmet(&needs, out).unwrap();
        let names: Vec<String> = unmet.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["capability SYS_TIME", "device /dev/fuse", "device /dev/kvm"]);
        assert!(unmet[1].1.contains("cannot be opened"));
        assert!(super::unmet(&needs, "device /dev/fuse ok").is_err(), "no CapBnd line");
    }

    #[rstest]
    #[case("/dev/fuse", true)]
    #[case("/dev/net/tun", true)]
    #[case("/etc/shadow", false)]
    #[case("/dev/../etc/shadow", false)]
    #[case("/dev/x;reboot", false)]
    #[case("/dev/x:/y", false)]
    fn only_plain_device_paths_reach_a_probe(#[case] p: &str, #[case] ok: bool) {
        assert_eq!(plain_path(p), ok);
    }

    #[test]
    fn the_probe_asks_for_exactly_the_needs() {
        let rt = Runtime::for_tests(crate::runtime::RuntimeKind::PodmanRootless);
        let needs = BTreeSet::from([
            Need::Capability {
                name: "NET_ADMIN".into(),
            },
            device("/dev/fuse"),
        ]);
        let args = probe_spec(&rt, &needs, &BTreeMap::new()).unwrap().args;
        assert!(args.windows(2).any(|w| w == ["--cap-drop", "ALL"]));
        assert!(args.windows(2).any(|w| w == ["--cap-add", "NET_ADMIN"]));
        assert!(args.windows(2).any(|w| w == ["--device", "/dev/fuse:/dev/fuse:rwm"]));
        assert!(args.windows(2).any(|w| w == ["--network", "none"]));
        assert_eq!(args.last().unwrap(), "rw:/dev/fuse");
        let bad = BTreeSet::from([device("/dev/../etc/shadow")]);
        assert!(probe_spec(&rt, &bad, &BTreeMap::new()).is_err());
        let bad = BTreeSet::from([Need::Capability {
            name: "--privileged".into(),
        }]);
        assert!(probe_spec(&rt, &bad, &BTreeMap::new()).is_err());
    }
}
