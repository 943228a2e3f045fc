//! Container runtimes (docker, podman, podman-rootless): how to reach each engine, and every engine
//! quirk the rest of the harness must not know about.

pub mod api_service;
pub mod dns_leftovers;
pub mod dns_server;
pub mod engine_api;
pub mod environment;
pub mod exec;
pub mod health_events;
pub mod inspect;
pub mod lost_containers;
pub mod orphan_netns;
pub(crate) mod procs;
pub mod rootless;
pub mod rootless_netns;
pub mod slots;
pub mod storage_only;
pub mod stray_commands;
pub mod systemd;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use engine_api::{json_array, segment, Answer, EngineApi};
pub use exec::{CommandSpec, Interrupt, Output};
pub use rootless::RootlessUser;

/// Deadline for quick engine queries (inspect, ps, exists).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A container engine as the harness reaches it: Docker, rootful Podman, or one user's rootless
/// Podman. Engine quirks (build flags, health driving, inspect wording) key on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// Docker (`docker`).
    Docker,
    /// Rootful Podman (`podman` as root).
    Podman,
    /// One unprivileged user's rootless Podman.
    PodmanRootless,
}

impl EngineKind {
    /// The engine's name in reports (`podman-rootless`).
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::PodmanRootless => "podman-rootless",
        }
    }
}

/// A run target: one engine driven by one compose tool. Every run, trial name
/// (`<target>::<area>::<check>`), JUnit suite, parity column and `HYDRA_RUNTIMES` entry names one.
///
/// | target | engine | compose tool |
/// |---|---|---|
/// | `docker` | Docker | Docker Compose v2 |
/// | `docker-v1` | Docker | docker-compose 1.29 (legacy) |
/// | `podman` | rootful Podman | podman-compose |
/// | `podman-v2` | rootful Podman, through its Docker-compatible API | Docker Compose v2 |
/// | `podman-rootless` | rootless Podman | podman-compose |
/// | `podman-rootless-v2` | rootless Podman, through the user's API | Docker Compose v2 |
/// | `podman-kube` | rootful Podman | `podman kube play` of YAML generated from the compose files |
/// | `podman-rootless-kube` | rootless Podman | `podman kube play`, as the user |
///
/// The compose targets ([`RuntimeKind::ALL`]) are the default selection; the kube-play targets
/// ([`RuntimeKind::KUBE`]) are chosen by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// Docker with Docker Compose v2.
    Docker,
    /// Docker with docker-compose 1.29.
    #[serde(rename = "docker-v1")]
    DockerV1,
    /// Rootful Podman with podman-compose.
    Podman,
    /// Rootful Podman with Docker Compose v2 through its Docker-compatible API.
    #[serde(rename = "podman-v2")]
    PodmanV2,
    /// Rootless Podman with podman-compose.
    PodmanRootless,
    /// Rootless Podman with Docker Compose v2 through the user's API.
    #[serde(rename = "podman-rootless-v2")]
    PodmanRootlessV2,
    /// Rootful Podman playing the stack as Kubernetes YAML.
    PodmanKube,
    /// Rootless Podman playing the stack as Kubernetes YAML.
    PodmanRootlessKube,
}

impl RuntimeKind {
    /// Every compose target, in report order: each engine with its usual tool, then the other
    /// tool. The default selection.
    pub const ALL: [RuntimeKind; 6] = [
        RuntimeKind::Docker,
        RuntimeKind::DockerV1,
        RuntimeKind::Podman,
        RuntimeKind::PodmanV2,
        RuntimeKind::PodmanRootless,
        RuntimeKind::PodmanRootlessV2,
    ];

    /// The targets that play the stack as Kubernetes YAML: chosen by name, not by default.
    pub const KUBE: [RuntimeKind; 2] = [RuntimeKind::PodmanKube, RuntimeKind::PodmanRootlessKube];

    /// Every target there is, in report order.
    pub const EVERY: [RuntimeKind; 8] = [
        RuntimeKind::Docker,
        RuntimeKind::DockerV1,
        RuntimeKind::Podman,
        RuntimeKind::PodmanV2,
        RuntimeKind::PodmanKube,
        RuntimeKind::PodmanRootless,
        RuntimeKind::PodmanRootlessV2,
        RuntimeKind::PodmanRootlessKube,
    ];

    /// The target's name (`podman-rootless-v2`), as users write it and run labels record it.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::DockerV1 => "docker-v1",
            RuntimeKind::Podman => "podman",
            RuntimeKind::PodmanV2 => "podman-v2",
            RuntimeKind::PodmanRootless => "podman-rootless",
            RuntimeKind::PodmanRootlessV2 => "podman-rootless-v2",
            RuntimeKind::PodmanKube => "podman-kube",
            RuntimeKind::PodmanRootlessKube => "podman-rootless-kube",
        }
    }

    /// A short form used in trial names, JUnit suites and parity columns (`podman_rootless_v2`).
    pub fn ident(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::DockerV1 => "docker_v1",
            RuntimeKind::Podman => "podman",
            RuntimeKind::PodmanV2 => "podman_v2",
            RuntimeKind::PodmanRootless => "podman_rootless",
            RuntimeKind::PodmanRootlessV2 => "podman_rootless_v2",
            RuntimeKind::PodmanKube => "podman_kube",
            RuntimeKind::PodmanRootlessKube => "podman_rootless_kube",
        }
    }

    /// The engine this target runs containers on.
    pub fn engine(self) -> EngineKind {
        match self {
            RuntimeKind::Docker | RuntimeKind::DockerV1 => EngineKind::Docker,
            RuntimeKind::Podman | RuntimeKind::PodmanV2 | RuntimeKind::PodmanKube => EngineKind::Podman,
            RuntimeKind::PodmanRootless | RuntimeKind::PodmanRootlessV2 | RuntimeKind::PodmanRootlessKube => {
                EngineKind::PodmanRootless
            }
        }
    }

    /// Whether the target plays the stack as Kubernetes YAML (`podman kube play`).
    pub fn is_kube(self) -> bool {
        matches!(self, RuntimeKind::PodmanKube | RuntimeKind::PodmanRootlessKube)
    }

    /// The compose target of the same engine with its usual tool: what a kube-play target's
    /// parity is read against.
    pub fn compose_counterpart(self) -> RuntimeKind {
        match self.engine() {
            EngineKind::Docker => RuntimeKind::Docker,
            EngineKind::Podman => RuntimeKind::Podman,
            EngineKind::PodmanRootless => RuntimeKind::PodmanRootless,
        }
    }

    /// The network driver option (`driver_opts` key and value) this engine needs before it keeps
    /// two bridge networks of one stack apart; `None` where that is the default. netavark routes
    /// between the bridge networks of one engine unless each is created with `isolate=true`;
    /// Docker keeps them apart and ignores the option.
    pub fn network_isolation_option(self) -> Option<(&'static str, &'static str)> {
        match self.engine() {
            EngineKind::Docker => None,
            EngineKind::Podman | EngineKind::PodmanRootless => Some(("isolate", "true")),
        }
    }

    /// Whether the compose tool reaches a Podman engine through its Docker-compatible API (Compose
    /// v2 on Podman) rather than through the podman CLI.
    pub fn via_podman_api(self) -> bool {
        matches!(self, RuntimeKind::PodmanV2 | RuntimeKind::PodmanRootlessV2)
    }

    /// The engine's CLI program: `docker` or `podman`.
    pub fn engine_program(self) -> &'static str {
        match self.engine() {
            EngineKind::Docker => "docker",
            EngineKind::Podman | EngineKind::PodmanRootless => "podman",
        }
    }

    /// Whether the engine is Podman (rootful or rootless).
    pub fn is_podman(self) -> bool {
        self.engine() != EngineKind::Docker
    }

    /// Whether the engine is a user's rootless Podman.
    pub fn is_rootless(self) -> bool {
        self.engine() == EngineKind::PodmanRootless
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RuntimeKind {
    type Err = HarnessError;
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        let norm = if norm == "rootless" {
            "podman-rootless".to_string()
        } else {
            norm
        };
        RuntimeKind::EVERY
            .into_iter()
            .find(|k| k.name() == norm)
            .ok_or_else(|| {
                HarnessError::usage(format!("unknown runtime '{norm}'")).with_hint(format!(
                    "use one of {}",
                    RuntimeKind::EVERY.map(RuntimeKind::name).join(", ")
                ))
            })
    }
}

/// The first target of each engine in `kinds`, in order: for work on an engine's storage (images,
/// the label sweep), which the targets sharing that engine would only repeat.
pub fn one_per_engine(kinds: &[RuntimeKind]) -> Vec<RuntimeKind> {
    let mut out: Vec<RuntimeKind> = Vec::new();
    for &k in kinds {
        if !out.iter().any(|o| o.engine() == k.engine()) {
            out.push(k);
        }
    }
    out
}

/// Parses a comma- or space-separated runtime list such as `HYDRA_RUNTIMES=docker,podman`.
pub fn parse_list(s: &str) -> Result<Vec<RuntimeKind>> {
    let mut out = Vec::new();
    for part in s.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
        let kind: RuntimeKind = part.parse()?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

/// How container healthchecks get run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthDriver {
    /// The engine runs healthchecks itself (Docker; Podman with systemd).
    Engine,
    /// Nothing runs them (Podman without systemd): the harness runs `podman healthcheck run`.
    Harness,
}

/// One runtime, resolved to the commands that reach it.
#[derive(Debug, Clone)]
pub struct Runtime {
    kind: RuntimeKind,
    /// For rootless: whose podman we drive, and whether we must switch to that user.
    rootless: Option<RootlessUser>,
    /// Rootful Podman's standing API service, for reads, once looked for (see `engine_api`).
    api: Arc<OnceLock<Option<EngineApi>>>,
}

impl Runtime {
    /// Resolves a runtime for the current process (root drives rootless via `runuser`).
    pub fn resolve(kind: RuntimeKind) -> Result<Self> {
        let rootless = match kind.is_rootless() {
            true => Some(RootlessUser::resolve()?),
            false => None,
        };
        Ok(Self {
            kind,
            rootless,
            api: Arc::default(),
        })
    }

    /// A runtime with a fixed identity, for argv tests that must not look at the host.
    #[doc(hidden)]
    pub fn for_tests(kind: RuntimeKind) -> Self {
        let rootless = kind.is_rootless().then(|| RootlessUser {
            name: "hydra".into(),
            uid: 1001,
            gid: 1001,
            home: "/home/hydra".into(),
            runtime_dir: "/run/user/1001".into(),
            switch: true,
        });
        Self {
            kind,
            rootless,
            api: Arc::new(OnceLock::from(None)),
        }
    }

    /// This runtime with every read through the engine's CLI: an independent witness (tests
    /// check what the harness left with it, so a wrong API answer cannot hide a leftover).
    pub fn cli_only(&self) -> Self {
        Self {
            api: Arc::new(OnceLock::from(None)),
            ..self.clone()
        }
    }

    /// The engine's API service for reads: rootful Podman's standing one when it answers (looked
    /// for once per runtime), none elsewhere (the rootless user's socket is the user's to serve;
    /// Docker's CLI is already a thin client of its daemon).
    fn api(&self) -> Option<&EngineApi> {
        if self.kind.engine() != EngineKind::Podman {
            return None;
        }
        self.api.get_or_init(EngineApi::rootful).as_ref()
    }

    /// The target this runtime reaches.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// The user whose engine this is, for rootless Podman.
    pub fn rootless_user(&self) -> Option<&RootlessUser> {
        self.rootless.as_ref()
    }

    /// A command run as whoever owns this runtime's engine (switching user for rootless-as-root).
    pub fn command(&self, program: &str) -> CommandSpec {
        match &self.rootless {
            Some(user) => user.wrap(program),
            None => CommandSpec::new(program),
        }
    }

    /// `docker ...` / `podman ...` for this runtime.
    pub fn engine(&self) -> CommandSpec {
        self.command(self.kind.engine_program())
    }

    /// Runs an engine subcommand with the query deadline and returns its stdout, failing on non-zero exit.
    pub fn query(&self, args: &[&str]) -> Result<String> {
        let spec = self.engine().args(args.iter().copied());
        Ok(exec::run_ok(&spec, QUERY_TIMEOUT, Interrupt::Ignored)?.stdout)
    }

    /// Whether a health driver is needed: Podman runs healthchecks through systemd timers only.
    pub fn health_driver(&self) -> HealthDriver {
        if self.kind.is_podman() && !systemd_is_init() {
            HealthDriver::Harness
        } else {
            HealthDriver::Engine
        }
    }

    /// Runs one healthcheck probe now (Podman); `Ok(true)` when healthy.
    pub fn run_healthcheck(&self, container: &str) -> Result<bool> {
        let spec = self.engine().args(["healthcheck", "run", container]);
        let out = exec::run(&spec, Duration::from_secs(60), Interrupt::Allowed)?;
        match out.status {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(HarnessError::Failed {
                cmd: spec.display(),
                status: out.status,
                stderr: out.stderr,
            }),
        }
    }

    /// Extra flags for `build` so the image keeps its HEALTHCHECK (Podman defaults to OCI format),
    /// and so that a failed build leaves no container behind (Docker's legacy builder keeps the
    /// failed step's container, build args in its environment, unless told `--force-rm`; Podman
    /// removes it by default).
    pub fn build_args(&self) -> Vec<String> {
        match self.kind.engine() {
            EngineKind::Docker => vec!["--force-rm".into()],
            _ => vec!["--format".into(), "docker".into(), "--layers".into()],
        }
    }

    /// Environment the compose tool needs so that builds keep HEALTHCHECK (pitfall 18).
    pub fn compose_env(&self) -> Vec<(String, String)> {
        match self.kind.engine() {
            EngineKind::Docker => vec![],
            _ => vec![("BUILDAH_FORMAT".into(), "docker".into())],
        }
    }

    /// Whether an image reference exists in this runtime's storage.
    pub fn image_exists(&self, reference: &str) -> Result<bool> {
        if let Some(answer) = self
            .api()
            .and_then(|a| a.libpod(&format!("images/{}/exists", segment(reference))))
        {
            return Ok(answer != Answer::Missing);
        }
        let spec = self
            .engine()
            .args(["image", "inspect", "--format", "{{.Id}}", reference]);
        Ok(exec::run(&spec, QUERY_TIMEOUT, Interrupt::Ignored)?.success())
    }

    /// Every `repository:tag` in this runtime's storage with its image ID, in one call (cheaper
    /// than one inspect per image when checking which hashed tags exist and reading base IDs).
    fn image_references(&self) -> Result<std::collections::HashMap<String, String>> {
        let out = self.query(&["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])?;
        Ok(parse_image_listing(&out, self.kind.is_podman()))
    }

    /// How to look images up by reference for a while: through the engine's API service one by
    /// one (1-2 ms each), else from one listing of every reference (one CLI process; asking the
    /// CLI per image costs a process each).
    pub fn image_lookup(&self) -> Result<ImageLookup<'_>> {
        match self.api() {
            Some(_) => Ok(ImageLookup::Asked(self)),
            None => Ok(ImageLookup::Listed(self.image_references()?)),
        }
    }

    /// The image ID of a reference, if present.
    pub fn image_id(&self, reference: &str) -> Result<Option<String>> {
        if let Some(answer) = self
            .api()
            .and_then(|a| a.libpod(&format!("images/{}/json", segment(reference))))
        {
            return match answer {
                Answer::Missing => Ok(None),
                Answer::Found(body) => Ok(Some(inspect::parse_image_id(&body)?)),
            };
        }
        let spec = self
            .engine()
            .args(["image", "inspect", "--format", "{{.Id}}", reference]);
        let out = exec::run(&spec, QUERY_TIMEOUT, Interrupt::Ignored)?;
        Ok(out.success().then(|| out.stdout.trim().to_string()))
    }

    /// IDs of objects of `kind` carrying `label` (`key=value`). Pods and secrets exist only
    /// under Podman (Docker's secrets are Swarm's): none under Docker.
    pub fn list_by_label(&self, kind: ObjectKind, label: &str) -> Result<Vec<String>> {
        if !self.kind.is_podman() && matches!(kind, ObjectKind::Pod | ObjectKind::Secret) {
            return Ok(Vec::new());
        }
        if let Some(objects) = self.api_listing(kind)? {
            return Ok(keys_matching(&objects, label));
        }
        let filter = format!("label={label}");
        let args: Vec<&str> = match kind {
            ObjectKind::Pod => vec!["pod", "ls", "-q", "--no-trunc", "--filter", &filter],
            ObjectKind::Container => vec!["ps", "-a", "-q", "--no-trunc", "--filter", &filter],
            ObjectKind::Network => vec!["network", "ls", "-q", "--filter", &filter],
            ObjectKind::Volume => vec!["volume", "ls", "-q", "--filter", &filter],
            // Podman 4.3 filters secrets by name and ID only: their labels are read instead.
            ObjectKind::Secret => {
                let (key, value) = label.split_once('=').unwrap_or((label, ""));
                return Ok(self
                    .secrets()?
                    .into_iter()
                    .filter(|s| s.label(key) == Some(value))
                    .map(|s| s.name)
                    .collect());
            }
        };
        Ok(ids_of(&self.query(&args)?))
    }

    /// Objects of `kind` carrying each of `filters` (`key=value`, as [`Self::list_by_label`]):
    /// one list per filter, in order. Podman ANDs label filters (but ORs them on volumes), so one
    /// listing with labels serves every filter there, where asking once per filter cost a Podman
    /// process each; Docker is asked once per filter.
    pub fn list_by_labels(&self, kind: ObjectKind, filters: &[&str]) -> Result<Vec<Vec<String>>> {
        if !self.kind.is_podman() || filters.len() < 2 {
            return filters.iter().map(|f| self.list_by_label(kind, f)).collect();
        }
        let objects: Vec<Keyed> = match self.api_listing(kind)? {
            Some(objects) => objects,
            None => match kind {
                ObjectKind::Secret => self.secrets()?.into_iter().map(|s| (s.name, s.labels)).collect(),
                _ => {
                    let args: &[&str] = match kind {
                        ObjectKind::Pod => &["pod", "ps", "--format", "json"],
                        ObjectKind::Container => &["ps", "-a", "--format", "json"],
                        ObjectKind::Network => &["network", "ls", "--format", "json"],
                        _ => &["volume", "ls", "--format", "json"],
                    };
                    keyed(kind, inspect::parse_listed(&self.query(args)?)?)
                }
            },
        };
        Ok(filters.iter().map(|f| keys_matching(&objects, f)).collect())
    }

    /// Every object of `kind` keyed as [`Self::list_by_label`] prints it, with its labels, from
    /// the engine's API service (`None`: there is none, or it failed: ask the CLI). The service
    /// answers with the JSON the CLI prints for `--format json` listings and `secret inspect`.
    fn api_listing(&self, kind: ObjectKind) -> Result<Option<Vec<Keyed>>> {
        let Some(api) = self.api() else {
            return Ok(None);
        };
        let path = match kind {
            ObjectKind::Pod => "pods/json",
            ObjectKind::Container => "containers/json?all=true",
            ObjectKind::Network => "networks/json",
            ObjectKind::Volume => "volumes/json",
            ObjectKind::Secret => "secrets/json",
        };
        let Some(Answer::Found(body)) = api.libpod(path) else {
            return Ok(None);
        };
        Ok(Some(match kind {
            // Podman 4.3's secret listing answers `"Labels": null` for every secret: only their
            // inspect carries the labels, so the listing gives the IDs to inspect.
            ObjectKind::Secret => {
                let Some(json) = self.api_inspect(ObjectKind::Secret, &inspect::parse_secret_ids(&body)?) else {
                    return Ok(None);
                };
                inspect::parse_secrets(&json)?
                    .into_iter()
                    .map(|s| (s.name, s.labels))
                    .collect()
            }
            _ => keyed(kind, inspect::parse_listed(&body)?),
        }))
    }

    /// Each of `ids` (of `kind`) as the engine's API service inspects it, in the array the CLI's
    /// `inspect` prints (those that no longer exist left out). `None`: ask the CLI.
    fn api_inspect(&self, kind: ObjectKind, ids: &[String]) -> Option<String> {
        let api = self.api()?;
        let mut found = Vec::new();
        for id in ids {
            match api.libpod(&format!("{}/{}/json", kind.api_collection(), segment(id)))? {
                Answer::Found(body) => found.push(body),
                Answer::Missing => {}
            }
        }
        Some(json_array(&found))
    }

    /// The name of every network the engine has.
    pub fn network_names(&self) -> Result<Vec<String>> {
        if let Some(objects) = self.api_listing(ObjectKind::Network)? {
            return Ok(objects.into_iter().map(|(name, _)| name).collect());
        }
        Ok(ids_of(&self.query(&["network", "ls", "--format", "{{.Name}}"])?))
    }

    /// Every secret with its labels: Podman 4.3 filters secrets by name and ID only.
    fn secrets(&self) -> Result<Vec<inspect::LabelledObject>> {
        let ids = ids_of(&self.query(&["secret", "ls", "--noheading", "--format", "{{.ID}}"])?);
        self.inspect_labelled(ObjectKind::Secret, &ids)
    }

    /// Removes objects by ID; containers with their anonymous volumes.
    pub fn remove(&self, kind: ObjectKind, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut spec = self.engine();
        spec = match kind {
            // A pod goes with its containers (its infra container carries no labels).
            ObjectKind::Pod => spec.args(["pod", "rm", "-f"]),
            ObjectKind::Secret => spec.args(["secret", "rm"]),
            // Podman refuses to remove a container others `--requires` (compose depends_on)
            // unless its dependants go with it.
            ObjectKind::Container if self.kind.is_podman() => spec.args(["rm", "-f", "-v", "--depend"]),
            ObjectKind::Container => spec.args(["rm", "-f", "-v"]),
            ObjectKind::Network => spec.args(["network", "rm"]),
            // Never forced: Podman's `volume rm -f` also removes every container using the volume.
            ObjectKind::Volume => spec.args(["volume", "rm"]),
        };
        let base = spec;
        let mut pending: Vec<String> = ids.to_vec();
        let mut last_err = None;
        // Another remover (compose, a dependant's removal, a probe still exec'ing in a container)
        // may be racing: retry with what still exists, a few times.
        for attempt in 0..4 {
            let spec = base.clone().args(pending.iter().cloned());
            let out = exec::run(&spec, Duration::from_secs(120), Interrupt::Ignored)?;
            pending.retain(|id| self.exists(kind, id));
            if pending.is_empty() {
                return Ok(());
            }
            tracing::debug!(attempt, stderr = %out.stderr, "remove left {} {}(s)", pending.len(), kind.name());
            last_err = Some(HarnessError::Failed {
                cmd: spec.display(),
                status: out.status,
                stderr: exec::tail(&out.stderr, 10),
            });
            std::thread::sleep(Duration::from_millis(500 * (attempt + 1)));
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// Those of `volumes` that are anonymous (created for one container, not named in a compose
    /// file): Podman marks them; Docker's compose tools remove them with their containers.
    pub fn anonymous_volumes(&self, volumes: &[String]) -> Result<Vec<String>> {
        if !self.kind.is_podman() || volumes.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .inspect_labelled(ObjectKind::Volume, volumes)?
            .into_iter()
            .filter(|v| v.anonymous == Some(true))
            .map(|v| v.name)
            .collect())
    }

    /// IDs of every container (running or not) that mounts volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        let filter = format!("volume={name}");
        Ok(ids_of(&self.query(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &filter,
        ])?))
    }

    /// The user and group IDs a container of this engine can own files with: `0..n` of each.
    /// `None` when there is no limit below the kernel's (rootful engines); for rootless Podman,
    /// the size of the user's namespace maps (its own ID plus its subordinate range).
    pub fn container_id_limits(&self) -> Result<Option<(u64, u64)>> {
        if !self.kind.is_rootless() {
            return Ok(None);
        }
        let out = self.query(&["unshare", "cat", "/proc/self/uid_map", "/proc/self/gid_map"])?;
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        // uid_map then gid_map, each as many lines as ranges; both are written by newuidmap /
        // newgidmap with the same shape, so the halves are the two maps.
        let (uids, gids) = lines.split_at(lines.len() / 2);
        Ok(Some((id_map_size(uids), id_map_size(gids))))
    }

    /// Whether an object still exists.
    pub fn exists(&self, kind: ObjectKind, id: &str) -> bool {
        let sub = match kind {
            ObjectKind::Pod => "pod",
            ObjectKind::Container => "container",
            ObjectKind::Network => "network",
            ObjectKind::Volume => "volume",
            ObjectKind::Secret => "secret",
        };
        // Secrets have no `exists` endpoint: their inspect answers the same.
        let endpoint = match kind {
            ObjectKind::Secret => "json",
            _ => "exists",
        };
        if let Some(answer) = self
            .api()
            .and_then(|a| a.libpod(&format!("{}/{}/{endpoint}", kind.api_collection(), segment(id))))
        {
            return answer != Answer::Missing;
        }
        let spec = self.engine().args([sub, "inspect", id]);
        exec::run(&spec, QUERY_TIMEOUT, Interrupt::Ignored)
            .map(|o| o.success())
            .unwrap_or(true)
    }

    /// Inspects containers by ID (none given, none returned).
    pub fn inspect_containers(&self, ids: &[String]) -> Result<Vec<inspect::ContainerInspect>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(json) = self.api_inspect(ObjectKind::Container, ids) {
            return inspect::parse_containers(&json);
        }
        let spec = self.engine().arg("container").arg("inspect").args(ids.iter().cloned());
        let out = exec::run(&spec, QUERY_TIMEOUT, Interrupt::Ignored)?;
        // A container removed between list and inspect makes the call fail for that ID only: parse what came back.
        if out.stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        inspect::parse_containers(&out.stdout)
    }

    /// Paths a container added to or changed in its own filesystem (not in its volumes or
    /// tmpfs mounts): `engine diff`, whose `A path` / `C path` / `D path` lines both engines print.
    pub fn changed_paths(&self, container: &str) -> Result<Vec<(char, String)>> {
        Ok(parse_diff(&self.query(&["diff", container])?))
    }

    /// Inspects pods, networks, volumes or secrets for their labels.
    pub fn inspect_labelled(&self, kind: ObjectKind, ids: &[String]) -> Result<Vec<inspect::LabelledObject>> {
        let sub = match kind {
            _ if ids.is_empty() => return Ok(Vec::new()),
            ObjectKind::Container => return Ok(Vec::new()),
            ObjectKind::Pod => "pod",
            ObjectKind::Network => "network",
            ObjectKind::Volume => "volume",
            ObjectKind::Secret => "secret",
        };
        let stdout = match self.api_inspect(kind, ids) {
            Some(json) => json,
            None => {
                let spec = self.engine().args([sub, "inspect"]).args(ids.iter().cloned());
                exec::run(&spec, QUERY_TIMEOUT, Interrupt::Ignored)?.stdout
            }
        };
        if stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        match kind {
            ObjectKind::Pod => inspect::parse_pods(&stdout),
            ObjectKind::Secret => inspect::parse_secrets(&stdout),
            _ => inspect::parse_labelled(&stdout),
        }
    }

    /// The last `lines` lines of a container's log (stdout and stderr).
    pub fn logs_tail(&self, container: &str, lines: usize) -> String {
        let spec = self.engine().args(["logs", "--tail", &lines.to_string(), container]);
        match exec::run(&spec, QUERY_TIMEOUT, Interrupt::Ignored) {
            Ok(out) => format!("{}{}", out.stdout, out.stderr),
            Err(e) => format!("(logs unavailable: {e})"),
        }
    }

    /// The cgroup version the engine runs containers on, as the engine itself reports it: the one
    /// answer to "can limits be enforced here" for every layer above.
    pub fn cgroup_version(&self) -> CgroupVersion {
        CgroupVersion::parse(&self.storage_and_cgroups().1)
    }

    /// Storage driver and cgroup version as the engine reports them (`overlay2`, `1`). The
    /// version is the bare number for every engine: Docker says `1`, Podman `v1`.
    pub fn storage_and_cgroups(&self) -> (String, String) {
        let fmt = match self.kind.engine() {
            EngineKind::Docker => "{{.Driver}} {{.CgroupVersion}}",
            _ => "{{.Store.GraphDriverName}} {{.Host.CgroupsVersion}}",
        };
        let out = self.query(&["info", "--format", fmt]).unwrap_or_default();
        parse_storage_and_cgroups(&out)
    }

    /// Engine version string (`20.10.24`, `4.3.1`).
    pub fn version(&self) -> Result<String> {
        let out = self
            .query(&["version", "--format", "{{.Server.Version}}"])
            .or_else(|_| self.query(&["--version"]))?;
        Ok(out.trim().rsplit(' ').next().unwrap_or_default().to_string())
    }
}

/// The cgroup version of a host, as its engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// cgroup v1 (or a hybrid host).
    V1,
    /// The unified cgroup v2 hierarchy.
    V2,
    /// The engine did not say, or said something else.
    Unknown,
}

impl CgroupVersion {
    /// Parses the engines' wording (`1`, `2`, `v1`, `v2`). Pure.
    pub fn parse(s: &str) -> Self {
        match s.trim().trim_start_matches('v') {
            "1" => CgroupVersion::V1,
            "2" => CgroupVersion::V2,
            _ => CgroupVersion::Unknown,
        }
    }
}

/// `<driver> <cgroup version>` from `info` (pure): the version without Podman's `v` prefix;
/// `unknown` for what is missing.
fn parse_storage_and_cgroups(out: &str) -> (String, String) {
    let mut parts = out.split_whitespace();
    let driver = parts.next().unwrap_or("unknown").to_string();
    let cgroups = parts.next().map(|v| v.trim_start_matches('v')).unwrap_or("unknown");
    (driver, cgroups.to_string())
}

/// `images --no-trunc` lines (`reference id`) into reference → ID, the ID written as
/// `image inspect --format {{.Id}}` gives it (Podman's without the `sha256:` its listing adds),
/// so that content hashes stay what they were when taken from `image inspect`.
fn parse_image_listing(out: &str, podman: bool) -> std::collections::HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(reference, _)| !reference.contains("<none>"))
        .map(|(reference, id)| {
            let id = id.trim();
            let id = if podman {
                id.strip_prefix("sha256:").unwrap_or(id)
            } else {
                id
            };
            (reference.to_string(), id.to_string())
        })
        .collect()
}

/// An object by the key `list_by_label` prints for its kind, with its labels.
type Keyed = (String, Option<BTreeMap<String, String>>);

/// A listing's objects by the key `list_by_label` prints for `kind` (IDs for pods and
/// containers, names for networks and volumes), with their labels.
fn keyed(kind: ObjectKind, listed: Vec<inspect::ListedObject>) -> Vec<Keyed> {
    listed
        .into_iter()
        .filter_map(|o| {
            let key = match kind {
                ObjectKind::Pod | ObjectKind::Container => o.id,
                _ => o.name,
            }?;
            Some((key, o.labels))
        })
        .collect()
}

/// The keys of the objects whose labels match `filter`.
fn keys_matching(objects: &[Keyed], filter: &str) -> Vec<String> {
    objects
        .iter()
        .filter(|(_, labels)| inspect::labels_match(labels.as_ref(), filter))
        .map(|(key, _)| key.clone())
        .collect()
}

/// The IDs a `-q` listing printed, one per line. Pure.
fn ids_of(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Kinds of engine objects the harness creates and must clean up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A Podman pod (the kube-play targets'), removed with its containers.
    Pod,
    /// A container.
    Container,
    /// A network.
    Network,
    /// A volume.
    Volume,
    /// A Podman secret (the kube-play targets' env file values).
    Secret,
}

impl ObjectKind {
    /// Every kind, in the order in which they can be removed: pods and containers before the
    /// networks and volumes they use.
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Pod,
        ObjectKind::Container,
        ObjectKind::Network,
        ObjectKind::Volume,
        ObjectKind::Secret,
    ];

    /// The kind's name in messages and reports (`container`, `network`, `volume`).
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pod",
            ObjectKind::Container => "container",
            ObjectKind::Network => "network",
            ObjectKind::Volume => "volume",
            ObjectKind::Secret => "secret",
        }
    }

    /// The kind's collection in Podman's libpod API (`containers`, `volumes`).
    fn api_collection(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pods",
            ObjectKind::Container => "containers",
            ObjectKind::Network => "networks",
            ObjectKind::Volume => "volumes",
            ObjectKind::Secret => "secrets",
        }
    }
}

/// Images looked up by reference over a while (one build preparation), the cheapest way the
/// engine offers: see [`Runtime::image_lookup`].
pub enum ImageLookup<'a> {
    /// Every reference listed once: reference → ID.
    Listed(std::collections::HashMap<String, String>),
    /// Each reference asked of the engine's API service when needed.
    Asked(&'a Runtime),
}

impl ImageLookup<'_> {
    /// The ID of `reference`, if the engine has it.
    pub fn id(&self, reference: &str) -> Result<Option<String>> {
        match self {
            ImageLookup::Listed(ids) => Ok(ids.get(reference).cloned()),
            ImageLookup::Asked(runtime) => runtime.image_id(reference),
        }
    }
}

/// `engine diff` lines (`C /run`, `A /run/app.pid`) as (kind, path); other lines are ignored.
pub fn parse_diff(text: &str) -> Vec<(char, String)> {
    text.lines()
        .filter_map(|l| {
            let (kind, path) = l.trim().split_once(' ')?;
            let kind = match kind {
                "A" | "C" | "D" => kind.chars().next()?,
                _ => return None,
            };
            path.starts_with('/').then(|| (kind, path.trim().to_string()))
        })
        .collect()
}

/// Whether `id` is a full engine ID (64 hexadecimal digits): safe to pass on as an argument.
pub fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A 64-hex-digit engine ID shortened to 12 digits; names are left whole.
pub fn short_id(id: &str) -> &str {
    if is_full_id(id) {
        &id[..12]
    } else {
        id
    }
}

/// Whether PID 1 is systemd (then Podman runs healthchecks through timers).
pub fn systemd_is_init() -> bool {
    std::fs::read_to_string("/proc/1/comm")
        .map(|c| c.trim() == "systemd")
        .unwrap_or(false)
}

/// Effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// How many IDs a `/proc/<pid>/uid_map` maps (`inside outside count` per line), as the highest
/// inside ID plus one.
pub fn id_map_size(lines: &[&str]) -> u64 {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (f.len() == 3).then(|| f[0] + f[2])
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// `images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'` as each engine printed it
    /// here, and the ID its `image inspect --format {{.Id}}` printed for the same image.
    #[rstest::rstest]
    #[case::docker(
        false,
        "localhost/hydra/bookworm-minbase:latest sha256:088591bf8a9784536c8de5a275ff233abc6ac76560c001094f4b7ac1bbccfb70\n<none>:<none> sha256:1111\n",
        "sha256:088591bf8a9784536c8de5a275ff233abc6ac76560c001094f4b7ac1bbccfb70"
    )]
    #[case::podman(
        true,
        "localhost/podman-pause:4.3.1-0 sha256:2222\n<none>:<none> sha256:1111\nlocalhost/hydra/bookworm-minbase:latest sha256:550dd8d3fce6179b59c795e630be5c4ccf0a532f3888cae004642434529e7ab0\n",
        "550dd8d3fce6179b59c795e630be5c4ccf0a532f3888cae004642434529e7ab0"
    )]
    fn image_listing_gives_ids_as_image_inspect_does(
        #[case] podman: bool,
        #[case] listing: &str,
        #[case] inspected: &str,
    ) {
        let images = super::parse_image_listing(listing, podman);
        assert_eq!(
            images
                .get("localhost/hydra/bookworm-minbase:latest")
                .map(String::as_str),
            Some(inspected)
        );
        assert!(!images.keys().any(|r| r.contains("<none>")), "{images:?}");
        assert_eq!(images.len(), if podman { 2 } else { 1 });
    }

    #[test]
    fn diff_lines_parse_on_both_engines() {
        let text = "C /var\nA /var/lib/state/counter.txt\nD /etc/motd\nsomething else\nX /x\n";
        assert_eq!(
            super::parse_diff(text),
            [
                ('C', "/var".to_string()),
                ('A', "/var/lib/state/counter.txt".to_string()),
                ('D', "/etc/motd".to_string())
            ]
        );
        assert!(super::parse_diff("").is_empty());
    }

    #[test]
    fn an_id_map_allows_ids_below_its_highest_range_end() {
        let map = ["         0       1001          1", "         1     100000      65536"];
        assert_eq!(super::id_map_size(&map), 65537);
        assert_eq!(super::id_map_size(&["0 0 4294967295"]), 4294967295);
        assert_eq!(super::id_map_size(&[]), 0);
    }

    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("docker", RuntimeKind::Docker)]
    #[case("podman", RuntimeKind::Podman)]
    #[case("podman-rootless", RuntimeKind::PodmanRootless)]
    #[case("podman_rootless", RuntimeKind::PodmanRootless)]
    #[case(" Docker ", RuntimeKind::Docker)]
    fn parses_runtime_names(#[case] input: &str, #[case] expected: RuntimeKind) {
        assert_eq!(input.parse::<RuntimeKind>().unwrap(), expected);
    }

    #[test]
    fn unknown_runtime_is_a_usage_error_with_hint() {
        let err = "containerd".parse::<RuntimeKind>().unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert_eq!(err.to_string(), "unknown runtime 'containerd'");
        assert_eq!(
            err.hint(),
            Some("use one of docker, docker-v1, podman, podman-v2, podman-kube, podman-rootless, podman-rootless-v2, podman-rootless-kube")
        );
    }

    #[rstest]
    #[case("1", CgroupVersion::V1)]
    #[case("v1", CgroupVersion::V1)]
    #[case("2", CgroupVersion::V2)]
    #[case("v2", CgroupVersion::V2)]
    #[case("unknown", CgroupVersion::Unknown)]
    fn cgroup_versions_in_both_engines_wording(#[case] s: &str, #[case] v: CgroupVersion) {
        assert_eq!(CgroupVersion::parse(s), v);
    }

    #[test]
    fn one_target_per_engine_keeps_the_first() {
        assert_eq!(
            one_per_engine(&RuntimeKind::ALL),
            [RuntimeKind::Docker, RuntimeKind::Podman, RuntimeKind::PodmanRootless]
        );
        assert_eq!(
            one_per_engine(&[RuntimeKind::PodmanV2, RuntimeKind::Podman]),
            [RuntimeKind::PodmanV2]
        );
    }

    #[test]
    fn parses_lists_without_duplicates() {
        assert_eq!(
            parse_list("docker, podman,docker").unwrap(),
            vec![RuntimeKind::Docker, RuntimeKind::Podman]
        );
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn cgroup_version_is_the_bare_number_for_every_engine() {
        let both = |out: &str| parse_storage_and_cgroups(out);
        assert_eq!(both("overlay2 1\n"), ("overlay2".into(), "1".into()));
        assert_eq!(both("overlay v1\n"), ("overlay".into(), "1".into()));
        assert_eq!(both("overlay v2"), ("overlay".into(), "2".into()));
        assert_eq!(both(""), ("unknown".into(), "unknown".into()));
    }

    #[test]
    fn podman_builds_keep_healthchecks() {
        let rt = Runtime::for_tests(RuntimeKind::Podman);
        assert!(rt.build_args().windows(2).any(|w| w == ["--format", "docker"]));
        assert!(rt.compose_env().contains(&("BUILDAH_FORMAT".into(), "docker".into())));
        let docker = Runtime::for_tests(RuntimeKind::Docker);
        assert_eq!(docker.build_args(), ["--force-rm"]);
    }

    /// What rootful Podman's API service answered here for a running bundled stack (compact
    /// JSON, the CLI's types): read by the same parsers as the CLI's output.
    #[test]
    fn podman_api_answers_read_like_the_cli() {
        let fixture = |f: &str| {
            std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../fixtures/runtime")
                    .join(f),
            )
            .unwrap()
        };
        // `GET /libpod/containers/json?all=true`: the run's seven containers by full ID.
        let listed = keyed(
            ObjectKind::Container,
            inspect::parse_listed(&fixture("api-containers-json-podman.json")).unwrap(),
        );
        let by_run = keys_matching(&listed, "io.hydra.run=06342722");
        assert_eq!(by_run.len(), 7);
        assert!(by_run.iter().all(|id| is_full_id(id)));
        assert!(keys_matching(&listed, "io.hydra.run=0634272").is_empty());
        // `GET /libpod/containers/{id}/json` objects, joined as the CLI's inspect array.
        let one = fixture("api-container-json-podman.json");
        let inspected = inspect::parse_containers(&engine_api::json_array(&[one.clone(), one])).unwrap();
        assert_eq!(inspected.len(), 2);
        assert_eq!(inspected[0].name, "hydra-podman-06342722-db-1");
        assert!(inspected[0]
            .volume_names()
            .contains(&"hydra-podman-06342722_db_data".to_string()));
        // `GET /libpod/secrets/json` lists a labelled secret with `"Labels": null` (Podman
        // 4.3): its labels must come from its inspect, so only the IDs are taken from it.
        let secrets = fixture("api-secrets-json-podman.json");
        assert!(inspect::parse_secrets(&secrets).unwrap()[0].labels.is_none());
        assert_eq!(
            inspect::parse_secret_ids(&secrets).unwrap(),
            ["782326ee6bdf2f8a1c5114070"]
        );
        // `GET /libpod/images/{reference}/json`: the bare ID `image inspect --format {{.Id}}` prints.
        assert_eq!(
            inspect::parse_image_id(&fixture("api-image-json-podman.json")).unwrap(),
            "34e2cc8d9aa3ae21a79cb9b31a75d2d6943bcd47ec488cc7bf17eba2a898c245"
        );
        assert!(inspect::parse_image_id("{}").is_err());
    }

    /// Podman listings in JSON as recorded here (a running bundled stack on rootful Podman, and a
    /// labelled pod): keyed as `list_by_label` prints them, each filter matched on its own.
    #[rstest::rstest]
    #[case::containers(ObjectKind::Container, "ps-all-podman.json", "io.hydra.run=8834f0b7", 2, 64)]
    #[case::volumes(ObjectKind::Volume, "volume-ls-podman.json", "io.hydra.run=8834f0b7", 2, 0)]
    #[case::networks(ObjectKind::Network, "network-ls-podman.json", "io.hydra.run=8834f0b7", 2, 0)]
    #[case::pods(ObjectKind::Pod, "pod-ps-podman.json", "io.hydra.run=fixture", 1, 64)]
    fn podman_listings_serve_each_label_filter(
        #[case] kind: ObjectKind,
        #[case] file: &str,
        #[case] run: &str,
        #[case] matched: usize,
        #[case] id_len: usize,
    ) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/runtime")
            .join(file);
        let json = std::fs::read_to_string(&path).unwrap();
        let objects = keyed(kind, inspect::parse_listed(&json).unwrap());
        let by_run = keys_matching(&objects, run);
        assert_eq!(by_run.len(), matched, "{by_run:?}");
        if id_len > 0 {
            assert!(by_run
                .iter()
                .all(|k| k.len() == id_len && k.bytes().all(|b| b.is_ascii_hexdigit())));
        } else {
            assert!(
                by_run.iter().all(|k| k.starts_with("hydra-podman-8834f0b7")),
                "{by_run:?}"
            );
        }
        // The project's label finds the same objects; another run's, a missing value or another
        // key finds none; the key alone finds every labelled one.
        let project = if kind == ObjectKind::Pod {
            "com.docker.compose.project=hydra-podman-kube-fixture"
        } else {
            "com.docker.compose.project=hydra-podman-8834f0b7"
        };
        assert_eq!(keys_matching(&objects, project), by_run);
        assert!(keys_matching(&objects, "io.hydra.run=8834f0b").is_empty());
        assert!(keys_matching(&objects, "io.hydra.run=").is_empty());
        assert_eq!(keys_matching(&objects, "io.hydra.run"), by_run);
    }
}
