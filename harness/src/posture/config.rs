//! The posture policy's configuration: which checks exist (with their CIS Docker Benchmark 1.6
//! ids), and per-service allowances that carry a reason. Meant to be embedded in the spec file
//! under each service; unknown keys are rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};

/// Every posture rule; each is one trial per service (`<runtime>::posture::<service>::<rule>`).
/// Configuration rules read the engine's inspect output (`rules::CONFIG_RULES`); `kernel_*` rules
/// and `userns_mapping` compare what the kernel enforces inside the container with what the
/// configuration claims (`probe::KERNEL_RULES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The container does not run as root.
    User,
    /// The container is not privileged.
    Privileged,
    /// The container may hold no capability that is not allowed.
    Capabilities,
    /// `no-new-privileges` is set.
    NoNewPrivileges,
    /// A seccomp filter is on: the project profile, when the configuration names one.
    Seccomp,
    /// The root filesystem is read-only.
    ReadOnlyRootfs,
    /// The container does not share the host's network namespace.
    HostNetwork,
    /// The container does not share the host's PID namespace.
    HostPid,
    /// The container does not share the host's IPC namespace.
    HostIpc,
    /// The container does not share the host's UTS namespace.
    HostUts,
    /// The container does not share the host's user namespace.
    HostUserns,
    /// No engine API socket is mounted.
    EngineSocket,
    /// No sensitive host path is bind-mounted.
    SensitiveMounts,
    /// Every published port binds the run's bind address only.
    PortBindIp,
    /// A memory limit is set (where the host can enforce it).
    MemoryLimit,
    /// A pids limit is set (where the host can enforce it).
    PidsLimit,
    /// The container has a healthcheck.
    Healthcheck,
    /// A restart policy is set.
    RestartPolicy,
    /// No secret-looking variable is passed in the plain environment.
    SecretEnv,
    /// The kernel runs the first process as the configured uid.
    KernelUser,
    /// The kernel's effective and bounding capability sets match the configuration.
    KernelCapabilities,
    /// The kernel's NoNewPrivs flag matches the configuration.
    KernelNoNewPrivileges,
    /// The kernel's seccomp mode matches whether the configuration filters.
    KernelSeccomp,
    /// The root mount, and a write to `/`, match the configured read-only root filesystem.
    KernelRootfs,
    /// Opening a raw socket succeeds or is refused as the configuration says.
    KernelRawSocket,
    /// A chown to another uid succeeds or is refused as the configuration says.
    KernelChown,
    /// A mount succeeds or is refused as the configuration says.
    KernelMount,
    /// The kernel enforces the configured seccomp profile itself, told apart by a ptrace attach.
    KernelSeccompProfile,
    /// Container uids map to unprivileged host uids under a rootless engine (the rootless proof).
    UsernsMapping,
}

impl Rule {
    /// Every check, in report order.
    pub const ALL: [Rule; 29] = [
        Rule::User,
        Rule::Privileged,
        Rule::Capabilities,
        Rule::NoNewPrivileges,
        Rule::Seccomp,
        Rule::ReadOnlyRootfs,
        Rule::HostNetwork,
        Rule::HostPid,
        Rule::HostIpc,
        Rule::HostUts,
        Rule::HostUserns,
        Rule::EngineSocket,
        Rule::SensitiveMounts,
        Rule::PortBindIp,
        Rule::MemoryLimit,
        Rule::PidsLimit,
        Rule::Healthcheck,
        Rule::RestartPolicy,
        Rule::SecretEnv,
        Rule::KernelUser,
        Rule::KernelCapabilities,
        Rule::KernelNoNewPrivileges,
        Rule::KernelSeccomp,
        Rule::KernelRootfs,
        Rule::KernelRawSocket,
        Rule::KernelChown,
        Rule::KernelMount,
        Rule::KernelSeccompProfile,
        Rule::UsernsMapping,
    ];

    /// Whether the check is about a resource limit (which rootless engines on cgroup v1 ignore).
    pub fn is_limit(self) -> bool {
        matches!(self, Rule::MemoryLimit | Rule::PidsLimit)
    }

    /// The snake_case name used in outcome names (`db::no_new_privileges`) and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Rule::User => "user",
            Rule::Privileged => "privileged",
            Rule::Capabilities => "capabilities",
            Rule::NoNewPrivileges => "no_new_privileges",
            Rule::Seccomp => "seccomp",
            Rule::ReadOnlyRootfs => "read_only_rootfs",
            Rule::HostNetwork => "host_network",
            Rule::HostPid => "host_pid",
            Rule::HostIpc => "host_ipc",
            Rule::HostUts => "host_uts",
            Rule::HostUserns => "host_userns",
            Rule::EngineSocket => "engine_socket",
            Rule::SensitiveMounts => "sensitive_mounts",
            Rule::PortBindIp => "port_bind_ip",
            Rule::MemoryLimit => "memory_limit",
            Rule::PidsLimit => "pids_limit",
            Rule::Healthcheck => "healthcheck",
            Rule::RestartPolicy => "restart_policy",
            Rule::SecretEnv => "secret_env",
            Rule::KernelUser => "kernel_user",
            Rule::KernelCapabilities => "kernel_capabilities",
            Rule::KernelNoNewPrivileges => "kernel_no_new_privileges",
            Rule::KernelSeccomp => "kernel_seccomp",
            Rule::KernelRootfs => "kernel_rootfs",
            Rule::KernelRawSocket => "kernel_raw_socket",
            Rule::KernelChown => "kernel_chown",
            Rule::KernelMount => "kernel_mount",
            Rule::KernelSeccompProfile => "kernel_seccomp_profile",
            Rule::UsernsMapping => "userns_mapping",
        }
    }

    /// The CIS Docker Benchmark 1.6.0 recommendation this check implements, if one exists.
    pub fn cis(self) -> Option<&'static str> {
        Some(match self {
            Rule::User => "4.1",
            Rule::Capabilities => "5.3",
            Rule::Privileged => "5.4",
            Rule::SensitiveMounts => "5.5",
            Rule::HostNetwork => "5.9",
            Rule::MemoryLimit => "5.10",
            Rule::ReadOnlyRootfs => "5.12",
            Rule::PortBindIp => "5.13",
            Rule::RestartPolicy => "5.14",
            Rule::HostPid => "5.15",
            Rule::HostIpc => "5.16",
            Rule::HostUts => "5.20",
            Rule::Seccomp => "5.21",
            Rule::NoNewPrivileges => "5.25",
            Rule::Healthcheck => "5.26",
            Rule::PidsLimit => "5.28",
            Rule::HostUserns => "5.30",
            Rule::EngineSocket => "5.31",
            _ => return None,
        })
    }

    /// Whether this check runs inside the container (needs `exec`).
    pub fn is_behavioural(self) -> bool {
        self.name().starts_with("kernel_") || self == Rule::UsernsMapping
    }
}

impl fmt::Display for Rule {
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
    /// The service's allowances, each with its reason.
    #[serde(default)]
    pub allow: Vec<Allowance>,
}

/// An explicit exception. `value` narrows it: a capability (`NET_BIND_SERVICE`) for
/// `capabilities`, an env var name for `secret_env`, a host path for `engine_socket` /
/// `sensitive_mounts`, a host address for `port_bind_ip`; without it the whole check is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    /// The rule the allowance covers.
    pub check: Rule,
    /// Why the service needs it; must not be empty.
    pub reason: String,
    /// The one capability, variable, host path or address allowed; `None` allows the whole rule.
    #[serde(default)]
    pub value: Option<String>,
}

impl PostureConfig {
    /// Parses YAML (the spec file's `posture:` section) and validates it.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let config: PostureConfig = serde_yaml::from_str(text)
            .map_err(|e| HarnessError::usage(format!("invalid posture configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Every allowance must say why.
    pub fn validate(&self) -> Result<()> {
        for (service, posture) in &self.services {
            for a in &posture.allow {
                if a.reason.trim().is_empty() {
                    return Err(HarnessError::usage(format!(
                        "posture allowance '{}' for service '{service}' has no reason",
                        a.check
                    ))
                    .with_hint("add `reason: <why the service needs it>`".to_string()));
                }
            }
        }
        Ok(())
    }

    /// The allowance covering `check` (and `value`, when the allowance names one) for `service`.
    pub fn allowance(&self, service: &str, check: Rule, value: Option<&str>) -> Option<&Allowance> {
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
        for id in Rule::ALL {
            let yaml = serde_yaml::to_string(&id).unwrap();
            assert_eq!(yaml.trim(), id.name());
            assert_eq!(serde_yaml::from_str::<Rule>(&yaml).unwrap(), id);
        }
    }

    #[test]
    fn parses_allowances_and_matches_values_case_insensitively() {
        let c = PostureConfig::from_yaml(
            "seccomp_profile: ../fixtures/seccomp/phoenix.json\nservices:\n  nginx:\n    allow:\n      - {check: capabilities, value: NET_BIND_SERVICE, reason: binds port 80}\n      - {check: healthcheck, reason: probed from outside}\n",
        )
        .unwrap();
        assert!(c
            .allowance("nginx", Rule::Capabilities, Some("net_bind_service"))
            .is_some());
        assert!(c.allowance("nginx", Rule::Capabilities, Some("SYS_ADMIN")).is_none());
        assert!(c.allowance("nginx", Rule::Capabilities, None).is_none());
        assert!(c.allowance("nginx", Rule::Healthcheck, None).is_some());
        assert!(c.allowance("db", Rule::Healthcheck, None).is_none());
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
        let mut ids: Vec<&str> = Rule::ALL.iter().filter_map(|c| c.cis()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
