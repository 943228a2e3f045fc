//! The result of one check under one runtime: what checks produce and what the suite and the
//! reporters consume. Plain data, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::runtime::RuntimeKind;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not run (runtime absent and not required, setting not accepted by this runtime, ...).
    Skip,
    /// The host cannot enforce what is asked (e.g. memory limits for rootless on cgroup v1):
    /// reported as its own status, never as a pass.
    NotEnforceable,
    /// The run was stopped (SIGINT/SIGTERM) before this check reached a verdict.
    Interrupted,
}

/// One check's outcome. `message` names the service and the cause when it fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub runtime: RuntimeKind,
    /// `dns`, `ports`, `health`, `persistence`, `posture`, `lifecycle`, `parity`.
    pub area: String,
    /// Check name; posture checks use `<service>::<check>`.
    pub name: String,
    pub verdict: Verdict,
    pub message: String,
    /// The service the check is about, when there is one.
    pub service: Option<String>,
    /// Recent logs of the services involved in a failure (raw; reporters sanitise and redact).
    pub logs: Option<String>,
    pub seconds: f64,
}

impl CheckOutcome {
    /// `<runtime>::<area>::<name>`, e.g. `podman_rootless::dns::nginx_cannot_resolve_db`.
    pub fn id(&self) -> String {
        format!("{}::{}::{}", self.runtime.ident(), self.area, self.name)
    }
}

/// What was run under one runtime, for report properties.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RuntimeInfo {
    pub runtime: Option<RuntimeKind>,
    pub engine_version: String,
    pub compose_tool: String,
    pub compose_version: String,
    pub rootless: bool,
    pub storage_driver: String,
    /// Anything else worth recording (cgroup version, network mode, health driver, ...).
    pub extra: BTreeMap<String, String>,
}

/// A behaviour a compose tool or engine showed (e.g. whether `depends_on: service_healthy` was
/// honoured), recorded so that differences are visible in the parity report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observation {
    pub runtime: RuntimeKind,
    pub key: String,
    pub value: String,
}

/// Everything one validation run produced.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub runtimes: Vec<RuntimeInfo>,
    pub outcomes: Vec<CheckOutcome>,
    pub observations: Vec<Observation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_the_runtime_ident() {
        let o = CheckOutcome {
            runtime: RuntimeKind::PodmanRootless,
            area: "dns".into(),
            name: "nginx_cannot_resolve_db".into(),
            verdict: Verdict::Pass,
            message: String::new(),
            service: Some("nginx".into()),
            logs: None,
            seconds: 0.1,
        };
        assert_eq!(o.id(), "podman_rootless::dns::nginx_cannot_resolve_db");
    }
}
