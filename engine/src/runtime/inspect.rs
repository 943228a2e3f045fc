//! `docker inspect` / `podman inspect` output for containers, parsed into the typed subset the
//! lifecycle needs. Engine differences in field names are absorbed here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{HarnessError, Result};

/// A container as the engine reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    /// The container's full id.
    pub id: String,
    /// Its name as the engine reports it (Docker adds a leading `/`, see
    /// [`ContainerInspect::short_name`]).
    pub name: String,
    /// Whether it runs, how it exited, its health.
    pub state: State,
    /// Its labels and configured healthcheck.
    pub config: Config,
    /// Its mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Its published ports and network endpoints.
    #[serde(default)]
    pub network_settings: Option<NetworkSettings>,
    /// How often the engine restarted it under its restart policy.
    #[serde(default)]
    pub restart_count: u64,
    /// The part of its host configuration the lifecycle reads.
    #[serde(default)]
    pub host_config: Option<HostConfig>,
}

/// The part of `HostConfig` the lifecycle layer reads (posture parses the rest itself).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// As the engine keeps them: Docker holds a seccomp profile's JSON here, Podman its path.
    #[serde(default)]
    pub security_opt: Option<Vec<String>>,
}

/// The part of `NetworkSettings` the lifecycle reads: published ports and networks.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// `"5432/tcp"` to its host bindings (null when the port is exposed but not published).
    #[serde(default)]
    pub ports: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    /// Network name to this container's endpoint on it.
    #[serde(default)]
    pub networks: Option<BTreeMap<String, Endpoint>>,
}

/// One host binding of a port, as the engine prints it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// Host address (empty on Podman for all interfaces).
    #[serde(default)]
    pub host_ip: String,
    /// Host port, as a string.
    #[serde(default)]
    pub host_port: String,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    /// Its address on the network.
    #[serde(default, rename = "IPAddress")]
    pub ip_address: String,
    /// DNS names it answers to on the network.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
}

/// One published port: container port/protocol bound to a host address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address (`0.0.0.0` for all interfaces).
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// One mount of a container.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, ...
    #[serde(default, rename = "Type")]
    pub kind: String,
    /// The volume's name, for a volume mount.
    #[serde(default)]
    pub name: Option<String>,
    /// The path inside the container.
    #[serde(default)]
    pub destination: String,
}

/// A network or volume with its labels. Podman 4 prints network keys in lower case.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledObject {
    /// The network's or volume's name.
    #[serde(alias = "Name", alias = "name")]
    pub name: String,
    /// Its labels, if any.
    #[serde(default, alias = "Labels", alias = "labels")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Podman's mark on a volume made for one container (`volume inspect` only).
    #[serde(default, alias = "Anonymous")]
    pub anonymous: Option<bool>,
    /// Driver options (`isolate` on a Podman network).
    #[serde(default, alias = "Options", alias = "options")]
    pub options: Option<BTreeMap<String, String>>,
}

impl LabelledObject {
    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }
}

/// Parses `network inspect` / `volume inspect` JSON arrays.
pub fn parse_labelled(json: &str) -> Result<Vec<LabelledObject>> {
    serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "network/volume inspect".into(),
        reason: e.to_string(),
    })
}

/// One entry of a Podman listing in JSON (`ps -a`, `pod ps`, `network ls`, `volume ls`): its
/// key, labels and (containers) state. Podman 4 prints network keys in lower case.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedObject {
    /// Full ID (containers, pods, networks).
    #[serde(default, alias = "Id", alias = "id")]
    pub id: Option<String>,
    /// Name (pods, networks, volumes; containers print `Names` instead).
    #[serde(default, alias = "Name", alias = "name")]
    pub name: Option<String>,
    /// A container's names.
    #[serde(default, rename = "Names")]
    pub names: Vec<String>,
    /// A container's state (`running`, ..., `storage` for one Podman holds in storage only).
    #[serde(default, rename = "State")]
    pub state: Option<String>,
    /// Its labels, if any (`null` on a container without any).
    #[serde(default, alias = "Labels", alias = "labels")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Whether `labels` match a label filter: `key=value`, or `key` for the label being set.
pub fn labels_match(labels: Option<&BTreeMap<String, String>>, filter: &str) -> bool {
    let Some(labels) = labels else {
        return false;
    };
    match filter.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(filter),
    }
}

/// Parses a Podman listing in JSON (an empty output is an empty list).
pub fn parse_listed(json: &str) -> Result<Vec<ListedObject>> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "podman listing (--format json)".into(),
        reason: e.to_string(),
    })
}

/// Parses `pod inspect`: Podman 4.3 prints one object for one pod, an array for several.
pub fn parse_pods(json: &str) -> Result<Vec<LabelledObject>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<LabelledObject>),
        One(LabelledObject),
    }
    match serde_json::from_str(json) {
        Ok(OneOrMany::Many(v)) => Ok(v),
        Ok(OneOrMany::One(o)) => Ok(vec![o]),
        Err(e) => Err(HarnessError::Parse {
            what: "pod inspect".into(),
            reason: e.to_string(),
        }),
    }
}

/// Parses `secret inspect` (name and labels under `Spec`) into named objects with labels.
pub fn parse_secrets(json: &str) -> Result<Vec<LabelledObject>> {
    #[derive(Deserialize)]
    struct Secret {
        #[serde(rename = "Spec")]
        spec: LabelledObject,
    }
    let secrets: Vec<Secret> = serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "secret inspect".into(),
        reason: e.to_string(),
    })?;
    Ok(secrets.into_iter().map(|s| s.spec).collect())
}

/// The `Id` of an image's inspect object from Podman's API: bare hex, as Podman's
/// `image inspect --format {{.Id}}` prints it.
pub fn parse_image_id(json: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "Id")]
        id: String,
    }
    let image: Image = serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "image inspect".into(),
        reason: e.to_string(),
    })?;
    Ok(image.id)
}

/// The IDs in Podman's secret listing (`secret ls --format json`, the API's `secrets/json`).
pub fn parse_secret_ids(json: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Listed {
        #[serde(rename = "ID")]
        id: String,
    }
    let listed: Vec<Listed> = serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "secret listing".into(),
        reason: e.to_string(),
    })?;
    Ok(listed.into_iter().map(|s| s.id).collect())
}

/// A container's run state.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// `created`, `running`, `restarting`, `exited`, ...
    pub status: String,
    /// Whether it is running now.
    #[serde(default)]
    pub running: bool,
    /// Exit code of its last run (0 while running).
    #[serde(default)]
    pub exit_code: i64,
    /// Why the engine's last attempt to start it failed (empty when it did not).
    #[serde(default)]
    pub error: String,
    /// Docker calls it `Health`; Podman 4.x `Healthcheck` (and newer Podman `Health`).
    #[serde(default, alias = "Healthcheck")]
    pub health: Option<Health>,
}

/// The engine's record of a container's health.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy` (empty when unknown).
    #[serde(default)]
    pub status: String,
    /// Consecutive failed probes.
    #[serde(default)]
    pub failing_streak: i64,
    /// The most recent probes, oldest first.
    #[serde(default)]
    pub log: Option<Vec<HealthLog>>,
}

/// One health probe the engine ran.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    /// The probe's exit code (0 passed).
    #[serde(default)]
    pub exit_code: i64,
    /// What the probe printed.
    #[serde(default)]
    pub output: String,
}

/// The part of a container's `Config` the lifecycle reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    /// Its labels (compose's and the harness's).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Its healthcheck, if it has one.
    #[serde(default)]
    pub healthcheck: Option<HealthcheckConfig>,
}

/// The configured healthcheck; durations are nanoseconds in both engines' JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthcheckConfig {
    /// The test command (`CMD`/`CMD-SHELL` form; `NONE` disables the check).
    #[serde(default)]
    pub test: Option<Vec<String>>,
    /// Time between probes, in nanoseconds.
    #[serde(default)]
    pub interval: Option<u64>,
    /// Time one probe may take, in nanoseconds.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Time after start during which failures do not count, in nanoseconds.
    #[serde(default)]
    pub start_period: Option<u64>,
    /// Consecutive failures that make the container unhealthy.
    #[serde(default)]
    pub retries: Option<i64>,
}

/// Health as the lifecycle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Its healthcheck passes.
    Healthy,
    /// Its healthcheck failed often enough to count.
    Unhealthy,
    /// No verdict yet (or a status the harness does not know).
    Starting,
    /// The container has no healthcheck: running counts as ready.
    NoHealthcheck,
}

impl ContainerInspect {
    /// Container name without Docker's leading slash.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.config.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// Whether a real healthcheck is configured (`NONE` disables one).
    pub fn has_healthcheck(&self) -> bool {
        match self.config.healthcheck.as_ref().and_then(|h| h.test.as_ref()) {
            Some(test) => !test.is_empty() && test[0] != "NONE",
            None => false,
        }
    }

    /// Its health as the lifecycle sees it; the engine's status when a healthcheck is configured.
    pub fn health_status(&self) -> HealthStatus {
        if !self.has_healthcheck() {
            return HealthStatus::NoHealthcheck;
        }
        match self.state.health.as_ref().map(|h| h.status.as_str()) {
            Some("healthy") => HealthStatus::Healthy,
            Some("unhealthy") => HealthStatus::Unhealthy,
            _ => HealthStatus::Starting,
        }
    }

    /// The configured healthcheck interval (engine default 30 s when unset or zero).
    pub fn health_interval(&self) -> Duration {
        let ns = self
            .config
            .healthcheck
            .as_ref()
            .and_then(|h| h.interval)
            .filter(|&n| n > 0)
            .unwrap_or(30_000_000_000);
        Duration::from_nanos(ns)
    }

    /// Every host binding of every published port. Podman reports an all-interfaces binding
    /// with an empty `HostIp`, Docker with `0.0.0.0`: both come out as `0.0.0.0`.
    pub fn published(&self) -> Vec<Published> {
        let mut out = Vec::new();
        let Some(ports) = self.network_settings.as_ref().and_then(|n| n.ports.as_ref()) else {
            return out;
        };
        for (key, bindings) in ports {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let Ok(container_port) = port.parse() else { continue };
            for b in bindings.iter().flatten() {
                if let Ok(host_port) = b.host_port.parse() {
                    let host_ip = if b.host_ip.is_empty() {
                        "0.0.0.0".to_string()
                    } else {
                        b.host_ip.clone()
                    };
                    out.push(Published {
                        container_port,
                        protocol: proto.to_string(),
                        host_ip,
                        host_port,
                    });
                }
            }
        }
        out
    }

    /// Names of the networks the container is attached to, with its address on each.
    pub fn networks(&self) -> BTreeMap<String, String> {
        self.network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.ip_address.clone())).collect())
            .unwrap_or_default()
    }

    /// Names of the volumes mounted into the container (named and anonymous).
    pub fn volume_names(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter(|m| m.kind == "volume")
            .filter_map(|m| m.name.clone())
            .collect()
    }

    /// The output of the most recent health probe, if any.
    pub fn last_health_output(&self) -> Option<&str> {
        self.state
            .health
            .as_ref()?
            .log
            .as_ref()?
            .last()
            .map(|l| l.output.trim())
    }
}

/// Parses the JSON array printed by `inspect` for one or more containers.
pub fn parse_containers(json: &str) -> Result<Vec<ContainerInspect>> {
    serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "container inspect".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    use crate::test_support::inspect_fixture as fixture;

    #[rstest]
    #[case::one_pod("podman-pod-one.json", &["hydra-fixture-a"])]
    #[case::two_pods("podman-pod-two.json", &["hydra-fixture-a", "hydra-fixture-b"])]
    fn parses_recorded_pod_inspect_in_both_shapes(#[case] file: &str, #[case] names: &[&str]) {
        let pods = parse_pods(&fixture(file)).unwrap();
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), names);
        assert_eq!(pods[0].label("io.hydra.run"), Some("fixture1"));
        assert_eq!(pods[0].label("io.hydra.managed"), Some("true"));
    }

    #[test]
    fn parses_recorded_secret_inspect_with_its_labels() {
        let secrets = parse_secrets(&fixture("podman-secret.json")).unwrap();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].name, "hydra-fixture-secret");
        assert_eq!(secrets[0].label("io.hydra.run"), Some("fixture1"));
        assert!(parse_secrets("{}").is_err());
    }

    #[rstest]
    #[case::docker("docker-gap-detector.json")]
    #[case::podman("podman-gap-detector.json")]
    #[case::podman_rootless("podman-rootless-gap-detector.json")]
    fn parses_recorded_inspect_of_a_healthy_service(#[case] file: &str) {
        let c = &parse_containers(&fixture(file)).unwrap()[0];
        assert!(c.state.running);
        assert_eq!(c.health_status(), HealthStatus::Healthy);
        assert_eq!(c.label("com.docker.compose.service"), Some("gap-detector"));
        assert!(c.label("io.hydra.run").is_some());
        assert!(c.health_interval() < Duration::from_secs(30));
        assert!(!c.short_name().starts_with('/'));
    }

    #[rstest]
    #[case::docker("docker-db.json")]
    #[case::podman("podman-db.json")]
    #[case::podman_rootless("podman-rootless-db.json")]
    fn db_publishes_5432_on_loopback_only_and_sits_on_the_data_network(#[case] file: &str) {
        let c = &parse_containers(&fixture(file)).unwrap()[0];
        let published = c.published();
        assert_eq!(published.len(), 1, "{published:?}");
        assert_eq!(
            (published[0].container_port, published[0].host_ip.as_str()),
            (5432, "127.0.0.1")
        );
        let nets = c.networks();
        assert_eq!(nets.len(), 1);
        let (name, ip) = nets.iter().next().unwrap();
        assert!(name.ends_with("phoenix-data"), "{name}");
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    }

    #[rstest]
    #[case::docker("docker-flaws.json")]
    #[case::podman("podman-flaws.json")]
    #[case::podman_rootless("podman-rootless-flaws.json")]
    fn an_all_interfaces_binding_reads_as_0_0_0_0_on_every_engine(#[case] file: &str) {
        // Podman records it as HostIp "", Docker as "0.0.0.0" (fixtures/overlays/posture-flaws.yml).
        let all = parse_containers(&fixture(file)).unwrap();
        let model = all
            .iter()
            .find(|c| c.label("com.docker.compose.service") == Some("model-service"))
            .unwrap();
        assert!(
            model
                .published()
                .iter()
                .any(|p| p.container_port == 8081 && p.host_ip == "0.0.0.0"),
            "{:?}",
            model.published()
        );
    }

    #[test]
    fn no_healthcheck_and_none_test_mean_running_is_ready() {
        let json = r#"[{"Id":"x","Name":"/a","State":{"Status":"running","Running":true},"Config":{"Labels":null,"Healthcheck":{"Test":["NONE"]}}}]"#;
        let c = &parse_containers(json).unwrap()[0];
        assert_eq!(c.health_status(), HealthStatus::NoHealthcheck);
        assert_eq!(c.health_interval(), Duration::from_secs(30));
    }

    #[test]
    fn podman_healthcheck_key_is_understood() {
        let json = r#"[{"Id":"x","Name":"a","State":{"Status":"running","Running":true,"Healthcheck":{"Status":"unhealthy","FailingStreak":3,"Log":[{"ExitCode":1,"Output":"boom"}]}},"Config":{"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":2000000000}}}]"#;
        let c = &parse_containers(json).unwrap()[0];
        assert_eq!(c.health_status(), HealthStatus::Unhealthy);
        assert_eq!(c.last_health_output(), Some("boom"));
        assert_eq!(c.health_interval(), Duration::from_secs(2));
    }

    #[test]
    fn network_labels_in_both_key_cases() {
        let docker = r#"[{"Name":"p_net","Id":"1","Labels":{"io.hydra.run":"a"}}]"#;
        let podman = r#"[{"name":"p_net","id":"1","labels":{"io.hydra.run":"b"}}]"#;
        assert_eq!(parse_labelled(docker).unwrap()[0].label("io.hydra.run"), Some("a"));
        assert_eq!(parse_labelled(podman).unwrap()[0].label("io.hydra.run"), Some("b"));
        let none = r#"[{"Name":"v","Labels":null}]"#;
        assert_eq!(parse_labelled(none).unwrap()[0].label("io.hydra.run"), None);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(parse_containers("json"), Err(HarnessError::Parse { .. })));
    }
}
