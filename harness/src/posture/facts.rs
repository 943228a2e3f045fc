//! Engine-normalised posture facts of one container, from `docker inspect` / `podman inspect`
//! JSON. Every engine difference the posture rules must not know about is absorbed here:
//! Podman computes CapAdd/CapDrop against its own default and reports EffectiveCaps/BoundingCaps,
//! Docker lists CapAdd/CapDrop as given; Docker embeds the seccomp profile JSON in SecurityOpt,
//! Podman keeps the path; Docker turns seccomp off for privileged containers, Podman keeps an
//! explicitly given profile; Podman prints an all-interfaces port binding as `""`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{HarnessError, Result};

/// Capability names by bit number (`CAP_` prefix dropped), as in `linux/capability.h`.
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set (moby `oci/caps/defaults.go`); Podman 4 computes its inspect
/// CapDrop against the same list.
pub const DOCKER_DEFAULT_CAPS: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// A set of capability names without the `CAP_` prefix.
pub type CapSet = BTreeSet<String>;

/// `cap_sys_admin`, `CAP_SYS_ADMIN`, `SYS_ADMIN` -> `SYS_ADMIN`.
pub fn normalise_cap(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}

/// Decodes a `/proc/PID/status` capability mask (`CapEff: 0000000000200000`).
pub fn caps_from_mask(hex: &str) -> Result<CapSet> {
    let mask = u64::from_str_radix(hex.trim(), 16).map_err(|e| HarnessError::Parse {
        what: "capability mask".into(),
        reason: format!("'{}': {e}", hex.trim()),
    })?;
    Ok((0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            CAPABILITY_NAMES
                .get(bit as usize)
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("CAP_{bit}"))
        })
        .collect())
}

/// Which engine wrote the JSON (told apart by fields only Podman prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Docker's inspect JSON.
    Docker,
    /// Podman's inspect JSON.
    Podman,
}

/// Where a custom seccomp profile came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileSource {
    /// Docker embeds the profile JSON in SecurityOpt.
    Inline(Value),
    /// Podman keeps the path as given (relative to the compose tool's working directory);
    /// `content` is filled by [`ContainerFacts::resolve_seccomp`].
    Path {
        /// The path as the engine reports it.
        path: String,
        /// The profile's JSON, once read; `None` until then or when it cannot be read.
        content: Option<Value>,
    },
    /// No option names one: the engine applies its configured default, which the harness set to
    /// this file for the run (`seccomp_profile` in the run's containers.conf), the remedy for
    /// Compose v2 on Podman 4.3 (see `compose::v2_on_podman`).
    EngineWide {
        /// The profile file set as the engine's default for the run.
        path: std::path::PathBuf,
        /// The profile's JSON; `None` when the file cannot be read.
        content: Option<Value>,
    },
}

impl ProfileSource {
    /// The profile's JSON, when known.
    pub fn content(&self) -> Option<&Value> {
        match self {
            ProfileSource::Inline(v) => Some(v),
            ProfileSource::Path { content, .. } | ProfileSource::EngineWide { content, .. } => content.as_ref(),
        }
    }
}

/// The seccomp filter the container actually runs with.
#[derive(Debug, Clone, PartialEq)]
pub enum Seccomp {
    /// The engine's built-in default profile.
    EngineDefault,
    /// A profile given by the configuration.
    Custom(ProfileSource),
    /// No filter: `seccomp=unconfined`, or turned off by `privileged` (Docker).
    Unconfined {
        /// Turned off by `privileged` rather than by `seccomp=unconfined`.
        by_privileged: bool,
    },
}

impl Seccomp {
    /// Whether any seccomp filter is on.
    pub fn is_filtering(&self) -> bool {
        !matches!(self, Seccomp::Unconfined { .. })
    }

    /// Whether `syscall` is allowed by the filter for a process holding `caps`: `None` when the
    /// profile's content is unknown. Argument conditions are ignored (a rule that allows the
    /// syscall for some arguments counts as allowing it).
    pub fn allows(&self, syscall: &str, caps: &CapSet) -> Option<bool> {
        match self {
            Seccomp::Unconfined { .. } => Some(true),
            // Docker's and Podman's defaults allow mount & co. only with CAP_SYS_ADMIN.
            Seccomp::EngineDefault => Some(match syscall {
                "mount" | "umount2" | "unshare" | "setns" => caps.contains("SYS_ADMIN"),
                _ => true,
            }),
            Seccomp::Custom(src) => src.content().map(|p| profile_allows(p, syscall, caps)),
        }
    }
}

/// Whether a seccomp profile (Docker/OCI JSON format) allows `syscall` for `caps`.
pub fn profile_allows(profile: &Value, syscall: &str, caps: &CapSet) -> bool {
    let default_allows = profile.get("defaultAction").and_then(Value::as_str) == Some("SCMP_ACT_ALLOW");
    let mut allowed = default_allows;
    for rule in profile.get("syscalls").and_then(Value::as_array).into_iter().flatten() {
        let names: Vec<&str> = rule
            .get("names")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let single = rule.get("name").and_then(Value::as_str);
        if !names.contains(&syscall) && single != Some(syscall) {
            continue;
        }
        let needs: Vec<String> = rule
            .pointer("/includes/caps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(normalise_cap)
            .collect();
        if !needs.iter().all(|c| caps.contains(c)) {
            continue;
        }
        let action = rule.get("action").and_then(Value::as_str).unwrap_or_default();
        if action == "SCMP_ACT_ALLOW" {
            allowed = true;
        } else if !default_allows {
            continue;
        } else {
            allowed = false;
        }
    }
    allowed
}

/// A namespace the container is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// The container's own namespace.
    Private,
    /// The host's namespace.
    Host,
    /// Joined another container's namespace (`container:ID`).
    Container(String),
}

impl Namespace {
    fn parse(mode: &str) -> Self {
        let mode = mode.trim();
        if mode == "host" {
            Namespace::Host
        } else if let Some(id) = mode.strip_prefix("container:") {
            Namespace::Container(id.to_string())
        } else {
            Namespace::Private
        }
    }
}

/// The container's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// Network namespace.
    pub network: Namespace,
    /// PID namespace.
    pub pid: Namespace,
    /// IPC namespace.
    pub ipc: Namespace,
    /// UTS namespace (host and domain name).
    pub uts: Namespace,
    /// User namespace.
    pub user: Namespace,
}

/// One mount as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFact {
    /// `bind`, `volume`, `tmpfs`.
    pub kind: String,
    /// The mount's source as the engine reports it (a host path for bind mounts).
    pub source: String,
    /// The path inside the container.
    pub destination: String,
    /// Whether it is mounted read-write.
    pub rw: bool,
}

/// One published port binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFact {
    /// `5432/tcp`.
    pub container_port: String,
    /// The host address; an empty address (Podman) is normalised to `0.0.0.0`.
    pub host_ip: String,
    /// The host port, as the engine prints it.
    pub host_port: String,
}

impl PortFact {
    /// Bound on every interface (`0.0.0.0` or `::`).
    pub fn all_interfaces(&self) -> bool {
        matches!(self.host_ip.as_str(), "0.0.0.0" | "::" | "[::]")
    }
}

/// The configured user: `uid` when numeric (or `root`), `None` for a name only the image knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFact {
    /// As configured (`999:999`, `postgres`); empty means the image default, root.
    pub raw: String,
    /// The numeric uid: 0 for `root` or an empty user, `None` for a user name.
    pub uid: Option<u32>,
}

impl UserFact {
    fn parse(raw: &str) -> Self {
        let user = raw.split(':').next().unwrap_or_default().trim();
        let uid = match user {
            "" | "root" => Some(0),
            u => u.parse().ok(),
        };
        UserFact {
            raw: raw.to_string(),
            uid,
        }
    }

    /// Whether the configured user is known to be root (uid 0).
    pub fn is_root(&self) -> bool {
        self.uid == Some(0)
    }
}

/// Capabilities as configured: what the container may hold (bounding) and what its first process
/// holds (effective).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapFacts {
    /// Privileged: every capability the engine knows.
    pub all: bool,
    /// What the container may hold (the bounding set).
    pub bounding: CapSet,
    /// What its first process holds (the effective set).
    pub effective: CapSet,
}

/// Everything posture rules need to know about one container, engine differences removed.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFacts {
    /// The engine whose inspect JSON the facts come from.
    pub engine: Engine,
    /// The container id.
    pub id: String,
    /// The container name, without the leading `/`.
    pub name: String,
    /// The compose service (`com.docker.compose.service` label).
    pub service: Option<String>,
    /// Host PID of the container's first process (0 when not running).
    pub host_pid: u32,
    /// The configured user.
    pub user: UserFact,
    /// Whether the container runs privileged.
    pub privileged: bool,
    /// Capabilities as configured.
    pub caps: CapFacts,
    /// Whether `no-new-privileges` is set.
    pub no_new_privileges: bool,
    /// The seccomp filter the container runs with.
    pub seccomp: Seccomp,
    /// The AppArmor profile as the engine reports it (empty when none).
    pub apparmor_profile: String,
    /// SELinux process label (empty when SELinux is off).
    pub selinux_label: String,
    /// Whether the root filesystem is read-only.
    pub read_only_rootfs: bool,
    /// Which namespaces it has of its own and which it shares.
    pub namespaces: Namespaces,
    /// Its mounts.
    pub mounts: Vec<MountFact>,
    /// Its published port bindings.
    pub ports: Vec<PortFact>,
    /// Bytes; 0 = unlimited.
    pub memory_limit: i64,
    /// 0 = unlimited.
    pub pids_limit: i64,
    /// Empty or `no` = none.
    pub restart_policy: String,
    /// The healthcheck test; `None` when there is none or it is disabled (`NONE`).
    pub healthcheck: Option<Vec<String>>,
    /// `NAME=value` as the engine reports them; use [`redact_env`] before showing any.
    pub env: Vec<String>,
}

// ---- raw serde structs: the posture subset of both engines' inspect JSON ----

/// Keeps the difference between a missing key (`None`) and `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    config: RawConfig,
    #[serde(default)]
    host_config: RawHostConfig,
    #[serde(default)]
    mounts: Option<Vec<RawMount>>,
    #[serde(default)]
    network_settings: Option<RawNetworkSettings>,
    #[serde(default, deserialize_with = "present")]
    effective_caps: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    bounding_caps: Option<Option<Vec<String>>>,
    #[serde(default, rename = "OCIRuntime")]
    oci_runtime: Option<String>,
    #[serde(default)]
    app_armor_profile: String,
    #[serde(default)]
    process_label: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawState {
    #[serde(default)]
    pid: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    user: String,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    healthcheck: Option<RawHealthcheck>,
    /// Podman's OCI annotations: where `podman kube play` records a pod's seccomp profiles.
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealthcheck {
    #[serde(default)]
    test: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHostConfig {
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    cap_add: Option<Vec<String>>,
    #[serde(default)]
    cap_drop: Option<Vec<String>>,
    #[serde(default)]
    security_opt: Option<Vec<String>>,
    #[serde(default)]
    readonly_rootfs: bool,
    #[serde(default)]
    network_mode: String,
    #[serde(default)]
    pid_mode: String,
    #[serde(default)]
    ipc_mode: String,
    #[serde(default, rename = "UTSMode")]
    uts_mode: String,
    #[serde(default)]
    userns_mode: String,
    #[serde(default)]
    memory: Option<i64>,
    #[serde(default)]
    pids_limit: Option<i64>,
    #[serde(default)]
    restart_policy: Option<RawRestart>,
    #[serde(default)]
    port_bindings: Option<BTreeMap<String, Option<Vec<RawBinding>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRestart {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawBinding {
    #[serde(default)]
    host_ip: String,
    #[serde(default)]
    host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetworkSettings {
    #[serde(default)]
    ports: Option<BTreeMap<String, Option<Vec<RawBinding>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawMount {
    #[serde(default, rename = "Type")]
    kind: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
    #[serde(default, rename = "RW")]
    rw: bool,
}

/// Parses the JSON array printed by `docker inspect` / `podman inspect` into facts.
pub fn parse_facts(json: &str) -> Result<Vec<ContainerFacts>> {
    let raw: Vec<RawContainer> = serde_json::from_str(json).map_err(|e| HarnessError::Parse {
        what: "container inspect (posture)".into(),
        reason: e.to_string(),
    })?;
    raw.into_iter().map(normalise).collect()
}

fn normalise(raw: RawContainer) -> Result<ContainerFacts> {
    let hc = &raw.host_config;
    let engine = engine_of(&raw);
    let user = UserFact::parse(&raw.config.user);
    let caps = capabilities(&raw, &user);
    let mut security = SecurityOpts::parse(hc, &raw.process_label, engine)?;
    if security.seccomp == Seccomp::EngineDefault && !hc.privileged {
        if let Some(kube) = kube_seccomp(&raw.config) {
            security.seccomp = kube;
        }
    }
    Ok(ContainerFacts {
        engine,
        service: service_label(&raw.config),
        id: raw.id.clone(),
        name: raw.name.trim_start_matches('/').to_string(),
        host_pid: u32::try_from(raw.state.pid).unwrap_or(0),
        user,
        privileged: hc.privileged,
        caps,
        no_new_privileges: security.no_new_privileges,
        seccomp: security.seccomp,
        apparmor_profile: raw.app_armor_profile.clone(),
        selinux_label: security.selinux_label,
        read_only_rootfs: hc.readonly_rootfs,
        namespaces: namespaces(hc),
        mounts: mounts(&raw),
        ports: ports(&raw),
        memory_limit: limit(hc.memory),
        pids_limit: limit(hc.pids_limit),
        restart_policy: hc.restart_policy.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
        healthcheck: healthcheck(&raw.config),
        env: raw.config.env.clone().unwrap_or_default(),
    })
}

/// Podman prints fields Docker does not.
fn engine_of(raw: &RawContainer) -> Engine {
    if raw.oci_runtime.is_some() || raw.effective_caps.is_some() || raw.bounding_caps.is_some() {
        Engine::Podman
    } else {
        Engine::Docker
    }
}

fn service_label(config: &RawConfig) -> Option<String> {
    config
        .labels
        .as_ref()
        .and_then(|l| l.get("com.docker.compose.service").cloned())
}

fn cap_set<'a>(names: impl IntoIterator<Item = &'a String>) -> CapSet {
    names.into_iter().map(|c| normalise_cap(c)).collect()
}

fn capabilities(raw: &RawContainer, user: &UserFact) -> CapFacts {
    let privileged = raw.host_config.privileged;
    match (&raw.bounding_caps, &raw.effective_caps) {
        // Podman: trust what it computed from the OCI spec (null = none).
        (Some(bounding), effective) => CapFacts {
            all: privileged,
            bounding: cap_set(bounding.iter().flatten()),
            effective: effective
                .as_ref()
                .map(|e| cap_set(e.iter().flatten()))
                .unwrap_or_default(),
        },
        (None, _) => docker_capabilities(&raw.host_config, user),
    }
}

/// Docker: apply CapDrop then CapAdd (as given) to its default; the first process of a non-root
/// user starts with no effective capabilities (Docker sets no ambient set).
fn docker_capabilities(hc: &RawHostConfig, user: &UserFact) -> CapFacts {
    let drop = cap_set(hc.cap_drop.iter().flatten());
    let add = cap_set(hc.cap_add.iter().flatten());
    let bounding: CapSet = if hc.privileged || add.contains("ALL") {
        CAPABILITY_NAMES.iter().map(|c| c.to_string()).collect()
    } else {
        let mut base: CapSet = if drop.contains("ALL") {
            CapSet::new()
        } else {
            DOCKER_DEFAULT_CAPS
                .iter()
                .map(|c| c.to_string())
                .filter(|c| !drop.contains(c))
                .collect()
        };
        base.extend(add);
        base
    };
    let effective = if user.is_root() {
        bounding.clone()
    } else {
        CapSet::new()
    };
    CapFacts {
        all: hc.privileged,
        bounding,
        effective,
    }
}

/// What the security options (and the process label) say.
struct SecurityOpts {
    no_new_privileges: bool,
    seccomp: Seccomp,
    selinux_label: String,
}

impl SecurityOpts {
    fn parse(hc: &RawHostConfig, process_label: &str, engine: Engine) -> Result<Self> {
        let mut opts = SecurityOpts {
            no_new_privileges: false,
            seccomp: Seccomp::EngineDefault,
            selinux_label: process_label.to_string(),
        };
        for opt in hc.security_opt.iter().flatten() {
            let (key, value) = match opt.split_once('=') {
                Some(kv) => kv,
                None => opt.split_once(':').unwrap_or((opt.as_str(), "")),
            };
            match key {
                "no-new-privileges" => opts.no_new_privileges = value.is_empty() || value == "true",
                // The last seccomp option wins in both engines.
                "seccomp" => opts.seccomp = seccomp_option(value)?,
                "label" if opts.selinux_label.is_empty() => opts.selinux_label = value.to_string(),
                _ => {}
            }
        }
        // Docker does not apply any seccomp profile to a privileged container; Podman keeps an
        // explicitly given profile (and drops only its default).
        if hc.privileged && (engine == Engine::Docker || opts.seccomp == Seccomp::EngineDefault) {
            opts.seccomp = Seccomp::Unconfined { by_privileged: true };
        }
        Ok(opts)
    }
}

/// The seccomp profile `podman kube play` applied from the pod's annotation
/// (`container.seccomp.security.alpha.kubernetes.io/<container>` or the pod-wide
/// `seccomp.security.alpha.kubernetes.io/pod`): Podman 4.3 records it there, not in the security
/// options. A `localhost/<file>` profile is a path relative to the run's seccomp profile root.
fn kube_seccomp(config: &RawConfig) -> Option<Seccomp> {
    let annotations = config.annotations.as_ref()?;
    let value = annotations
        .iter()
        .find(|(k, _)| k.starts_with("container.seccomp.security.alpha.kubernetes.io/"))
        .or_else(|| {
            annotations
                .iter()
                .find(|(k, _)| *k == "seccomp.security.alpha.kubernetes.io/pod")
        })
        .map(|(_, v)| v.as_str())?;
    match value {
        "unconfined" => Some(Seccomp::Unconfined { by_privileged: false }),
        v => v.strip_prefix("localhost/").map(|file| {
            Seccomp::Custom(ProfileSource::Path {
                path: file.to_string(),
                content: None,
            })
        }),
    }
}

/// The value of a `seccomp=` security option: `unconfined`, inline JSON (Docker) or a path (Podman).
fn seccomp_option(value: &str) -> Result<Seccomp> {
    if value == "unconfined" {
        return Ok(Seccomp::Unconfined { by_privileged: false });
    }
    if value.trim_start().starts_with('{') {
        let v = serde_json::from_str(value).map_err(|e| HarnessError::Parse {
            what: "inline seccomp profile".into(),
            reason: e.to_string(),
        })?;
        return Ok(Seccomp::Custom(ProfileSource::Inline(v)));
    }
    Ok(Seccomp::Custom(ProfileSource::Path {
        path: value.to_string(),
        content: None,
    }))
}

fn namespaces(hc: &RawHostConfig) -> Namespaces {
    Namespaces {
        network: Namespace::parse(&hc.network_mode),
        pid: Namespace::parse(&hc.pid_mode),
        ipc: Namespace::parse(&hc.ipc_mode),
        uts: Namespace::parse(&hc.uts_mode),
        user: Namespace::parse(&hc.userns_mode),
    }
}

fn mounts(raw: &RawContainer) -> Vec<MountFact> {
    raw.mounts
        .iter()
        .flatten()
        .map(|m| MountFact {
            kind: m.kind.clone(),
            source: m.source.clone(),
            destination: m.destination.clone(),
            rw: m.rw,
        })
        .collect()
}

/// Published ports from the network settings (running container) or, failing that, the host
/// configuration; Podman's empty host address means every interface.
fn ports(raw: &RawContainer) -> Vec<PortFact> {
    let bindings = raw
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .or(raw.host_config.port_bindings.as_ref());
    let mut ports = Vec::new();
    for (port, list) in bindings.into_iter().flatten() {
        for b in list.iter().flatten() {
            let host_ip = if b.host_ip.is_empty() {
                "0.0.0.0".to_string()
            } else {
                b.host_ip.clone()
            };
            ports.push(PortFact {
                container_port: port.clone(),
                host_ip,
                host_port: b.host_port.clone(),
            });
        }
    }
    ports
}

/// A limit as the engine reports it; absent or negative means unlimited (0).
fn limit(value: Option<i64>) -> i64 {
    value.unwrap_or(0).max(0)
}

/// The healthcheck test, unless absent or disabled (`NONE`).
fn healthcheck(config: &RawConfig) -> Option<Vec<String>> {
    config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.clone())
        .filter(|t| !t.is_empty() && t[0] != "NONE")
}

impl ContainerFacts {
    /// Loads a path-given seccomp profile (Podman) relative to `base_dir`, the compose tool's
    /// working directory. A file that cannot be read leaves the content unknown.
    pub fn resolve_seccomp(&mut self, base_dir: &Path) {
        if let Seccomp::Custom(ProfileSource::Path { path, content }) = &mut self.seccomp {
            let full = base_dir.join(&*path);
            *content = std::fs::read_to_string(&full)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        }
    }

    /// Records that the engine's default profile is `profile` for this container (the seccomp
    /// remedy of the run): an engine default becomes that profile, read from the file.
    pub fn apply_engine_wide_seccomp(&mut self, profile: &Path) {
        if self.seccomp == Seccomp::EngineDefault {
            let content = std::fs::read_to_string(profile)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            self.seccomp = Seccomp::Custom(ProfileSource::EngineWide {
                path: profile.to_path_buf(),
                content,
            });
        }
    }

    /// Names of environment variables that look like secrets (values are never returned).
    pub fn secret_env_names(&self) -> Vec<String> {
        self.env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, v)| is_secret_name(k) && !v.is_empty())
            .map(|(k, _)| k.to_string())
            .collect()
    }
}

pub use crate::secrets::is_secret_name;

/// `NAME=value` entries with every secret-looking value replaced by `<redacted>`.
pub fn redact_env(env: &[String]) -> Vec<String> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_name(k) => format!("{k}=<redacted>"),
            _ => kv.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    pub(crate) use crate::test_support::inspect_fixture as fixture;

    fn by_service(file: &str) -> BTreeMap<String, ContainerFacts> {
        parse_facts(&fixture(file))
            .unwrap()
            .into_iter()
            .map(|f| (f.service.clone().unwrap(), f))
            .collect()
    }

    fn set(names: &[&str]) -> CapSet {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[rstest]
    #[case::docker("docker-db.json", Engine::Docker)]
    #[case::podman("podman-db.json", Engine::Podman)]
    #[case::podman_rootless("podman-rootless-db.json", Engine::Podman)]
    fn hardened_db_reads_the_same_under_every_engine(#[case] file: &str, #[case] engine: Engine) {
        let f = &parse_facts(&fixture(file)).unwrap()[0];
        assert_eq!(f.engine, engine);
        assert_eq!(f.service.as_deref(), Some("db"));
        assert_eq!(f.user.uid, Some(999));
        assert!(!f.privileged);
        assert!(
            f.caps.bounding.is_empty() && f.caps.effective.is_empty(),
            "{:?}",
            f.caps
        );
        assert!(f.no_new_privileges);
        assert!(matches!(f.seccomp, Seccomp::Custom(_)), "{:?}", f.seccomp);
        assert!(f.read_only_rootfs);
        let ns = &f.namespaces;
        assert!([&ns.network, &ns.pid, &ns.ipc, &ns.uts, &ns.user]
            .iter()
            .all(|n| **n != Namespace::Host));
        assert_eq!(f.ports.len(), 1);
        assert_eq!(f.ports[0].host_ip, "127.0.0.1");
        assert!(f
            .mounts
            .iter()
            .any(|m| m.kind == "bind" && !m.rw && m.source.ends_with("schema.sql")));
        assert_eq!(f.restart_policy, "unless-stopped");
        assert!(f.healthcheck.is_some());
        assert_eq!(f.secret_env_names(), ["POSTGRES_PASSWORD"]);
    }

    #[rstest]
    #[case::docker("docker-db.json", 268435456, 128)]
    #[case::podman("podman-db.json", 268435456, 128)]
    // Rootless on cgroup v1: Podman ignores the limits and reports none.
    #[case::podman_rootless("podman-rootless-db.json", 0, 0)]
    fn limits_as_the_engine_reports_them(#[case] file: &str, #[case] memory: i64, #[case] pids: i64) {
        let f = &parse_facts(&fixture(file)).unwrap()[0];
        assert_eq!((f.memory_limit, f.pids_limit), (memory, pids));
    }

    #[test]
    fn a_played_container_filters_with_the_profile_its_annotation_names() {
        // Recorded under podman-kube: SecurityOpt says only no-new-privileges; the profile is in
        // the pod's seccomp annotation, a file name under the run's seccomp profile root.
        let mut played = parse_facts(&fixture("podman-kube-db.json")).unwrap().remove(0);
        assert_eq!(played.service.as_deref(), Some("db"));
        assert!(played.no_new_privileges);
        let Seccomp::Custom(ProfileSource::Path { path, .. }) = &played.seccomp else {
            panic!("{:?}", played.seccomp)
        };
        assert_eq!(path, "phoenix.json");
        played.resolve_seccomp(&crate::workspace::root().join("fixtures/seccomp"));
        let mut composed = parse_facts(&fixture("podman-db.json")).unwrap().remove(0);
        composed.resolve_seccomp(&crate::workspace::root().join("compose"));
        let (Seccomp::Custom(k), Seccomp::Custom(c)) = (&played.seccomp, &composed.seccomp) else {
            panic!()
        };
        assert!(k.content().is_some());
        assert_eq!(k.content(), c.content());
    }

    #[test]
    fn docker_inline_profile_and_podman_path_are_the_same_profile() {
        let docker = &parse_facts(&fixture("docker-db.json")).unwrap()[0];
        let mut podman = parse_facts(&fixture("podman-db.json")).unwrap().remove(0);
        podman.resolve_seccomp(&crate::workspace::root().join("compose"));
        let (Seccomp::Custom(d), Seccomp::Custom(p)) = (&docker.seccomp, &podman.seccomp) else {
            panic!()
        };
        assert!(d.content().is_some());
        assert_eq!(d.content(), p.content());
        // The project profile blocks mount even with CAP_SYS_ADMIN; sockets are allowed.
        assert_eq!(docker.seccomp.allows("mount", &set(&["SYS_ADMIN"])), Some(false));
        assert_eq!(docker.seccomp.allows("socket", &CapSet::new()), Some(true));
    }

    #[rstest]
    #[case::docker("docker-flaws.json")]
    #[case::podman("podman-flaws.json")]
    #[case::podman_rootless("podman-rootless-flaws.json")]
    fn planted_flaws_are_visible_in_the_facts(#[case] file: &str) {
        let f = by_service(file);
        assert_eq!(f["gap-detector"].user.uid, Some(0));
        assert!(f["rubik-agent"].privileged && f["rubik-agent"].caps.bounding.contains("SYS_ADMIN"));
        assert_eq!(f["analysis-engine"].caps.bounding, set(&["SYS_ADMIN"]));
        assert!(f["recurrent-processor"]
            .mounts
            .iter()
            .any(|m| m.source == "/var/run/docker.sock"));
        assert!(
            f["model-service"].ports.iter().any(PortFact::all_interfaces),
            "{:?}",
            f["model-service"].ports
        );
        assert!(!f["nginx"].read_only_rootfs);
        assert_eq!(f["nginx"].secret_env_names(), ["PHOENIX_API_TOKEN"]);
    }

    #[rstest]
    // docker-compose 1.29 merges security_opt lists as a sorted set: the inline profile sorts
    // after `seccomp=unconfined` and Docker applies the last seccomp option.
    #[case::docker("docker-flaws.json", false)]
    #[case::podman("podman-flaws.json", true)]
    #[case::podman_rootless("podman-rootless-flaws.json", true)]
    fn seccomp_unconfined_overlay_reaches_the_engine(#[case] file: &str, #[case] unconfined: bool) {
        assert_eq!(
            by_service(file)["db"].seccomp == Seccomp::Unconfined { by_privileged: false },
            unconfined
        );
    }

    #[rstest]
    // Docker: privileged turns seccomp off; a non-root first process has no effective caps.
    #[case::docker("docker-flaws.json", false, false)]
    // Podman: an explicit profile stays on; cap_add gives a non-root process effective caps.
    #[case::podman("podman-flaws.json", true, true)]
    #[case::podman_rootless("podman-rootless-flaws.json", true, true)]
    fn engines_differ_on_privileged_seccomp_and_non_root_effective_caps(
        #[case] file: &str,
        #[case] privileged_filters: bool,
        #[case] added_is_effective: bool,
    ) {
        let f = by_service(file);
        assert_eq!(f["rubik-agent"].seccomp.is_filtering(), privileged_filters);
        assert_eq!(
            f["analysis-engine"].caps.effective.contains("SYS_ADMIN"),
            added_is_effective
        );
    }

    #[test]
    fn capability_masks_decode() {
        assert_eq!(caps_from_mask("0000000000200000").unwrap(), set(&["SYS_ADMIN"]));
        assert!(caps_from_mask("0000000000000000").unwrap().is_empty());
        assert_eq!(caps_from_mask("000001fffeffffff").unwrap().len(), 40);
        assert!(caps_from_mask("zz").is_err());
    }

    #[rstest]
    #[case("POSTGRES_PASSWORD", true)]
    #[case("PHOENIX_API_TOKEN", true)]
    #[case("AWS_SECRET_ACCESS_KEY", true)]
    #[case("SSH_KEY", true)]
    #[case("POSTGRES_PASSWORD_FILE", false)]
    #[case("PGHOST", false)]
    #[case("MONKEY_BUSINESS", false)]
    #[case("PATH", false)]
    fn secret_names(#[case] name: &str, #[case] secret: bool) {
        assert_eq!(is_secret_name(name), secret);
    }

    #[test]
    fn redact_env_hides_values_of_secret_names_only() {
        let env = vec![
            "PGHOST=db".to_string(),
            "POSTGRES_PASSWORD=hunter2".into(),
            "EMPTY".into(),
        ];
        assert_eq!(redact_env(&env), ["PGHOST=db", "POSTGRES_PASSWORD=<redacted>", "EMPTY"]);
    }

    #[test]
    fn engine_modes_normalise() {
        assert_eq!(Namespace::parse("host"), Namespace::Host);
        assert_eq!(Namespace::parse(""), Namespace::Private);
        assert_eq!(Namespace::parse("shareable"), Namespace::Private);
        assert_eq!(Namespace::parse("container:abc"), Namespace::Container("abc".into()));
        assert_eq!(UserFact::parse("").uid, Some(0));
        assert_eq!(UserFact::parse("postgres").uid, None);
        assert_eq!(UserFact::parse("10001:10001").uid, Some(10001));
    }
}
