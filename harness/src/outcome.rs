//! The result of one check under one runtime: what checks produce and what the suite and the
//! reporters consume. Plain data, no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::runtime::RuntimeKind;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The check held.
    Pass,
    /// The check did not hold; the message says why.
    Fail,
    /// Not run (runtime absent and not required, setting not accepted by this runtime, ...).
    Skip,
    /// The host cannot enforce what is asked (e.g. memory limits for rootless on cgroup v1):
    /// reported as its own status, never as a pass.
    NotEnforceable,
    /// The run was stopped (SIGINT/SIGTERM) before this check reached a verdict.
    Interrupted,
}

/// The area a check belongs to: the middle part of its trial name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// Bringing the stack up and down, and whether a runtime could be used at all.
    Lifecycle,
    /// Name resolution between services, and its isolation.
    Dns,
    /// Published and internal ports.
    Ports,
    /// Health endpoints, the engine's health status, and transitive health.
    Health,
    /// Database data surviving restarts, recreation and kills.
    Persistence,
    /// Per-service security posture.
    Posture,
    /// What a real Prometheus scrapes of each service.
    Monitoring,
}

impl Area {
    /// Every area, in declaration order.
    pub const ALL: [Area; 7] = [
        Area::Lifecycle,
        Area::Dns,
        Area::Ports,
        Area::Health,
        Area::Persistence,
        Area::Posture,
        Area::Monitoring,
    ];

    /// The name used in trial names and reports: `lifecycle`, `dns`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Lifecycle => "lifecycle",
            Area::Dns => "dns",
            Area::Ports => "ports",
            Area::Health => "health",
            Area::Persistence => "persistence",
            Area::Posture => "posture",
            Area::Monitoring => "monitoring",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which check: its area, the service it is filed under (posture checks are per service) and its
/// name. `Display` is the check's part of a trial name: `dns::nginx_cannot_resolve_db`,
/// `posture::db::seccomp`; [`CheckId::trial_name`] adds the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckId {
    /// The area the check belongs to.
    pub area: Area,
    /// Set for checks filed under a service (`posture::<service>::<check>`); other areas name
    /// the services in `name` (`nginx_cannot_resolve_db`).
    pub service: Option<String>,
    /// The check's own name: the last part of its trial name.
    pub name: String,
}

impl CheckId {
    /// A check not filed under a service: `<area>::<name>`.
    pub fn new(area: Area, name: impl Into<String>) -> Self {
        Self {
            area,
            service: None,
            name: name.into(),
        }
    }

    /// A check filed under `service`: `<area>::<service>::<name>`.
    pub fn of_service(area: Area, service: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            area,
            service: Some(service.into()),
            name: name.into(),
        }
    }

    /// `lifecycle::up_healthy`: the stack came up and every service became healthy.
    pub fn up_healthy() -> Self {
        Self::new(Area::Lifecycle, "up_healthy")
    }

    /// `lifecycle::down_leaves_nothing`: teardown removed everything of the run.
    pub fn down_leaves_nothing() -> Self {
        Self::new(Area::Lifecycle, "down_leaves_nothing")
    }

    /// `lifecycle::runtime_available`: recorded only for a runtime that could not be used.
    pub fn runtime_available() -> Self {
        Self::new(Area::Lifecycle, "runtime_available")
    }

    /// The name within the area: `<service>::<name>` or `<name>` (JUnit testcase and parity
    /// rows show it after the area).
    pub fn name_in_area(&self) -> String {
        match &self.service {
            Some(service) => format!("{service}::{}", self.name),
            None => self.name.clone(),
        }
    }

    /// `<runtime>::<area>::<name>`, e.g. `podman_rootless::dns::nginx_cannot_resolve_db`.
    pub fn trial_name(&self, runtime: RuntimeKind) -> String {
        trial_name(runtime, self)
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service {
            Some(service) => write!(f, "{}::{service}::{}", self.area, self.name),
            None => write!(f, "{}::{}", self.area, self.name),
        }
    }
}

/// The one place a trial name is made: `<runtime ident>::<what>`, where `what` is a
/// [`CheckId`] (or, for a suite whose trials are not single checks, its own `<group>::<name>`).
pub fn trial_name(runtime: RuntimeKind, what: &dyn fmt::Display) -> String {
    format!("{}::{what}", runtime.ident())
}

/// One check's outcome. `message` names the service and the cause when it fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The runtime the check ran under.
    pub runtime: RuntimeKind,
    /// Which check this is.
    pub id: CheckId,
    /// How the check ended.
    pub verdict: Verdict,
    /// What the check found, in words.
    pub message: String,
    /// The service the check is about, when there is one.
    pub service: Option<String>,
    /// Recent logs of the services involved in a failure (raw; reporters sanitise and redact).
    pub logs: Option<String>,
    /// Time the check took, in seconds.
    pub seconds: f64,
}

impl CheckOutcome {
    /// `<runtime>::<area>::<name>`, e.g. `podman_rootless::dns::nginx_cannot_resolve_db`.
    pub fn trial_name(&self) -> String {
        self.id.trial_name(self.runtime)
    }

    /// `lifecycle::runtime_available` for a runtime that was not used: skipped, or failed when
    /// it was required.
    pub fn runtime_unavailable(runtime: RuntimeKind, verdict: Verdict, reason: String) -> Self {
        Self {
            runtime,
            id: CheckId::runtime_available(),
            verdict,
            message: reason,
            service: None,
            logs: None,
            seconds: 0.0,
        }
    }
}

/// What was run under one runtime: report properties, and the parity report's environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RuntimeInfo {
    /// Serialised as the runtime's ident (`podman_rootless`), `unknown` when not known.
    #[serde(with = "runtime_ident")]
    pub runtime: Option<RuntimeKind>,
    /// The engine the target runs on (`docker`, `podman`, `podman-rootless`).
    #[serde(default)]
    pub engine: String,
    /// The engine's version, empty when it could not be asked.
    pub engine_version: String,
    /// The compose tool that drove the stack (set once the stack came up).
    pub compose_tool: String,
    /// That compose tool's version.
    pub compose_version: String,
    /// Whether the engine runs rootless.
    pub rootless: bool,
    /// The engine's storage driver (e.g. `overlay`).
    pub storage_driver: String,
    /// Anything else worth recording (cgroup version, network mode, health driver, ...).
    pub extra: BTreeMap<String, String>,
}

impl RuntimeInfo {
    /// The runtime's ident, `unknown` when not known.
    pub fn ident(&self) -> &'static str {
        self.runtime.map(RuntimeKind::ident).unwrap_or("unknown")
    }
}

mod runtime_ident {
    use super::RuntimeKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Option<RuntimeKind>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.map(RuntimeKind::ident).unwrap_or("unknown"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RuntimeKind>, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().ok())
    }
}

/// A behaviour a compose tool or engine showed (e.g. whether `depends_on: service_healthy` was
/// honoured), recorded so that differences are visible in the parity report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observation {
    /// The runtime that showed the behaviour.
    pub runtime: RuntimeKind,
    /// What was observed (e.g. `seconds_to_all_healthy`).
    pub key: String,
    /// What the runtime showed for it.
    pub value: String,
}

/// Everything one validation run produced.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RunSummary {
    /// What was run under each runtime.
    pub runtimes: Vec<RuntimeInfo>,
    /// Every check's outcome, under every runtime.
    pub outcomes: Vec<CheckOutcome>,
    /// The behaviours each runtime showed.
    pub observations: Vec<Observation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_names_use_the_runtime_ident_and_the_service_part() {
        let o = CheckOutcome {
            runtime: RuntimeKind::PodmanRootless,
            id: CheckId::new(Area::Dns, "nginx_cannot_resolve_db"),
            verdict: Verdict::Pass,
            message: String::new(),
            service: Some("nginx".into()),
            logs: None,
            seconds: 0.1,
        };
        assert_eq!(o.trial_name(), "podman_rootless::dns::nginx_cannot_resolve_db");
        let posture = CheckId::of_service(Area::Posture, "db", "seccomp");
        assert_eq!(posture.to_string(), "posture::db::seccomp");
        assert_eq!(posture.name_in_area(), "db::seccomp");
        assert_eq!(posture.trial_name(RuntimeKind::Docker), "docker::posture::db::seccomp");
        assert_eq!(CheckId::up_healthy().to_string(), "lifecycle::up_healthy");
    }

    #[test]
    fn areas_serialise_as_their_names() {
        for area in Area::ALL {
            assert_eq!(serde_json::to_string(&area).unwrap(), format!("\"{area}\""));
        }
    }
}
