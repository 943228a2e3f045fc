//! The posture policy's configuration: which checks exist (with their CIS Docker Benchmark 1.6
//! ids), and per-service allowances that carry a reason. Meant to be embedded in the spec file
//! under each service; unknown keys are rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};

/// Every posture check. Configuration checks read the engine's inspect output; `kernel_*` checks
/// compare what the kernel enforces inside the container with what the configuration claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    User,
    Privileged,
    Capabilities,
    NoNewPrivileges,
    Seccomp,
    ReadOnlyRootfs,
    HostNetwork,
    HostPid,
    HostIpc,
    HostUts,
    HostUserns,
    EngineSocket,
    SensitiveMounts,
    PortBindIp,
    MemoryLimit,
    PidsLimit,
    Healthcheck,
    RestartPolicy,
    SecretEnv,
    KernelUser,
    KernelCapabilities,
    KernelNoNewPrivileges,
    KernelSeccomp,
    KernelRootfs,
    KernelRawSocket,
    KernelChown,
    KernelMount,
    UsernsMapping,
}

impl CheckId {
    /// Every check, in report order.
    pub const ALL: [CheckId; 28] = [
        CheckId::User,
        CheckId::Privileged,
        CheckId::Capabilities,
        CheckId::NoNewPrivileges,
        CheckId::Seccomp,
        CheckId::ReadOnlyRootfs,
        CheckId::HostNetwork,
        CheckId::HostPid,
        CheckId::HostIpc,
        CheckId::HostUts,
        CheckId::HostUserns,
        CheckId::EngineSocket,
        CheckId::SensitiveMounts,
        CheckId::PortBindIp,
        CheckId::MemoryLimit,
        CheckId::PidsLimit,
        CheckId::Healthcheck,
        CheckId::RestartPolicy,
        CheckId::SecretEnv,
        CheckId::KernelUser,
        CheckId::KernelCapabilities,
        CheckId::KernelNoNewPrivileges,
        CheckId::KernelSeccomp,
        CheckId::KernelRootfs,
        CheckId::KernelRawSocket,
        CheckId::KernelChown,
        CheckId::KernelMount,
        CheckId::UsernsMapping,
    ];

    /// The snake_case name used in outcome names (`db::no_new_privileges`) and in configuration.
    /// Whether the check is about a resource limit (which rootless engines on cgroup v1 ignore).
    pub fn is_limit(self) -> bool {
        matches!(self, CheckId::MemoryLimit | CheckId::PidsLimit)
    }

    pub fn name(self) -> &'static str {
        match self {
            CheckId::User => "user",
            CheckId::Privileged => "privileged",
            CheckId::Capabilities => "capabilities",
            CheckId::NoNewPrivileges => "no_new_privileges",
            CheckId::Seccomp => "seccomp",
            CheckId::ReadOnlyRootfs => "read_only_rootfs",
            CheckId::HostNetwork => "host_network",
            CheckId::HostPid => "host_pid",
            CheckId::HostIpc => "host_ipc",
            CheckId::HostUts => "host_uts",
            CheckId::HostUserns => "host_userns",
            CheckId::EngineSocket => "engine_socket",
            CheckId::SensitiveMounts => "sensitive_mounts",
            CheckId::PortBindIp => "port_bind_ip",
            CheckId::MemoryLimit => "memory_limit",
            CheckId::PidsLimit => "pids_limit",
            CheckId::Healthcheck => "healthcheck",
            CheckId::RestartPolicy => "restart_policy",
            CheckId::SecretEnv => "secret_env",
            CheckId::KernelUser => "kernel_user",
            CheckId::KernelCapabilities => "kernel_capabilities",
            CheckId::KernelNoNewPrivileges => "kernel_no_new_privileges",
            CheckId::KernelSeccomp => "kernel_seccomp",
            CheckId::KernelRootfs => "kernel_rootfs",
            CheckId::KernelRawSocket => "kernel_raw_socket",
            CheckId::KernelChown => "kernel_chown",
            CheckId::KernelMount => "kernel_mount",
            CheckId::UsernsMapping => "userns_mapping",
        }
    }

    /// The CIS Docker Benchmark 1.6.0 recommendation this check implements, if one exists.
    pub fn cis(self) -> Option<&'static str> {
        Some(match self {
            CheckId::User => "4.1",
            CheckId::Capabilities => "5.3",
            CheckId::Privileged => "5.4",
            CheckId::SensitiveMounts => "5.5",
            CheckId::HostNetwork => "5.9",
            CheckId::MemoryLimit => "5.10",
            CheckId::ReadOnlyRootfs => "5.12",
            CheckId::PortBindIp => "5.13",
            CheckId::RestartPolicy => "5.14",
            CheckId::HostPid => "5.15",
            CheckId::HostIpc => "5.16",
            CheckId::HostUts => "5.20",
            CheckId::Seccomp => "5.21",
            CheckId::NoNewPrivileges => "5.25",
            CheckId::Healthcheck => "5.26",
            CheckId::PidsLimit => "5.28",
            CheckId::HostUserns => "5.30",
            CheckId::EngineSocket => "5.31",
            _ => return None,
        })
    }

    /// Whether this check runs inside the container (needs `exec`).
    pub fn is_behavioural(self) -> bool {
        self.name().starts_with("kernel_") || self == CheckId::UsernsMapping
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Posture configuration of a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureConfig {
    /// The project's seccomp profile: when set, every service must run with exactly this profile
    /// (not only "some filter"). A relative path is resolved against the first compose file's
    /// directory, like the compose tools do.
    #[serde(default)]
    pub seccomp_profile: Option<PathBuf>,
    /// Per compose service; a service not listed gets the defaults with no allowance.
    #[serde(default)]
    pub services: BTreeMap<String, ServicePosture>,
}

/// What one service is allowed to deviate from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePosture {
    #[serde(default)]
    pub allow: Vec<Allowance>,
}

/// An explicit exception. `value` narrows it: a capability (`NET_BIND_SERVICE`) for
/// `capabilities`, an env var name for `secret_env`, a host path for `engine_socket` /
/// `sensitive_mounts`, a host address for `port_bind_ip`; without it the whole check is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    pub check: CheckId,
    pub reason: String,
    #[serde(default)]
    pub value: Option<String>,
}

impl PostureConfig {
    /// Parses YAML (the spec file's `posture:` section) and validates it.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let config: PostureConfig = serde_yaml::from_str(text)
            .map_err(|e| HarnessError::Usage(format!("invalid posture configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Every allowance must say why.
    pub fn validate(&self) -> Result<()> {
        for (service, posture) in &self.services {
            for a in &posture.allow {
                if a.reason.trim().is_empty() {
                    return Err(HarnessError::Usage(format!(
                        "posture allowance '{}' for service '{service}' has no reason\n  hint: add `reason: <why the service needs it>`",
                        a.check
                    )));
                }
            }
        }
        Ok(())
    }

    /// The allowance covering `check` (and `value`, when the allowance names one) for `service`.
    pub fn allowance(&self, service: &str, check: CheckId, value: Option<&str>) -> Option<&Allowance> {
        self.services.get(service)?.allow.iter().find(|a| {
            a.check == check
                && match (&a.value, value) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                    (Some(_), None) => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for id in CheckId::ALL {
            let yaml = serde_yaml::to_string(&id).unwrap();
            assert_eq!(yaml.trim(), id.name());
            assert_eq!(serde_yaml::from_str::<CheckId>(&yaml).unwrap(), id);
        }
    }

    #[test]
    fn parses_allowances_and_matches_values_case_insensitively() {
        let c = PostureConfig::from_yaml(
            "seccomp_profile: ../fixtures/seccomp/phoenix.json\nservices:\n  nginx:\n    allow:\n      - {check: capabilities, value: NET_BIND_SERVICE, reason: binds port 80}\n      - {check: healthcheck, reason: probed from outside}\n",
        )
        .unwrap();
        assert!(c
            .allowance("nginx", CheckId::Capabilities, Some("net_bind_service"))
            .is_some());
        assert!(c.allowance("nginx", CheckId::Capabilities, Some("SYS_ADMIN")).is_none());
        assert!(c.allowance("nginx", CheckId::Capabilities, None).is_none());
        assert!(c.allowance("nginx", CheckId::Healthcheck, None).is_some());
        assert!(c.allowance("db", CheckId::Healthcheck, None).is_none());
    }

    #[test]
    fn rejects_unknown_keys_unknown_checks_and_missing_reasons() {
        assert!(PostureConfig::from_yaml("services:\n  db:\n    allow: []\n    extra: 1\n").is_err());
        assert!(PostureConfig::from_yaml("seccomp: x\n").is_err());
        assert!(PostureConfig::from_yaml("services:\n  db:\n    allow: [{check: nope, reason: r}]\n").is_err());
        let err = PostureConfig::from_yaml("services:\n  db:\n    allow: [{check: user, reason: ' '}]\n").unwrap_err();
        assert!(err.to_string().contains("has no reason"), "{err}");
    }

    #[test]
    fn cis_ids_are_unique() {
        let mut ids: Vec<&str> = CheckId::ALL.iter().filter_map(|c| c.cis()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
