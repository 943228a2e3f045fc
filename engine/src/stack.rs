//! A running compose stack owned by one run. `Stack::up` builds what is missing, starts the stack
//! with the runtime's compose tool and waits until it is ready; `down(self)` removes everything the
//! run created and verifies nothing with its labels is left; `Drop` does the same best-effort, so a
//! failed, panicking or interrupted run leaves nothing behind.

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compose::file::{override_yaml, run_labels, ComposeFile};
use crate::compose::{self, Action, ComposeTool, Project, Provider};
use crate::error::{HarnessError, Result};
use crate::images::{self, ImagesReport};
use crate::labels;
use crate::readiness::{self, ServiceReady, WaitProgress};
use crate::runtime::{exec, short_id, Interrupt, ObjectKind, Runtime, RuntimeKind};
use crate::staging;
use crate::runs::{self, RunRecord, RunStatus};

/// Default deadline for the whole stack to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for `compose up -d` itself.
const UP_TIMEOUT: Duration = Duration::from_secs(600);
/// Deadline for `compose down`.
const DOWN_TIMEOUT: Duration = Duration::from_secs(240);

/// What to bring up and how.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub runtime: RuntimeKind,
    /// Compose files in `-f` order; the first decides the project directory.
    pub compose_files: Vec<PathBuf>,
    /// Host address published ports bind to (a loopback address).
    pub bind_ip: IpAddr,
    pub ready_timeout: Duration,
}

impl StackOptions {
    pub fn new(runtime: RuntimeKind) -> Self {
        Self {
            runtime,
            compose_files: vec![crate::workspace::bundled_compose_file()],
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

/// Lifecycle progress, for the CLI's display.
#[derive(Debug, Clone)]
pub enum Event {
    Phase(String),
    Waiting(WaitProgress),
}

/// What `up` did and measured.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub runtime: RuntimeKind,
    pub project: String,
    pub run_id: String,
    pub compose: Provider,
    pub images: ImagesReport,
    pub compose_up_seconds: f64,
    pub services: Vec<ServiceReady>,
    pub total_seconds: f64,
    /// What `compose up` printed on stderr (warnings such as ignored `depends_on` conditions).
    pub compose_up_stderr: String,
    /// Each service's state and health the moment `compose up` returned, before the harness ran
    /// any probe: shows whether the tool itself waited for `depends_on` conditions.
    pub at_compose_return: BTreeMap<String, String>,
}

/// What `down` found and removed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TeardownReport {
    pub compose_down_status: Option<i32>,
    /// Objects the compose tool's `down` left behind that the harness removed itself.
    pub removed_after_compose: Vec<String>,
    pub seconds: f64,
}

/// The merged view of the compose files of one run, with compose profiles applied.
#[derive(Debug, Clone)]
pub struct ComposeSet {
    pub files: Vec<ComposeFile>,
    /// Profiles enabled for the run: `COMPOSE_PROFILES` (comma separated) from the environment,
    /// else from the project's `.env` file, as the compose tools read it. Empty: only services
    /// without `profiles:` run.
    pub profiles: Vec<String>,
    /// The merged file with only the services that run.
    active: ComposeFile,
}

impl ComposeSet {
    /// Loads the files with the profiles the compose tools will see (see [`ComposeSet::profiles`]).
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let profiles = match paths.first() {
            Some(first) => enabled_profiles(first),
            None => Vec::new(),
        };
        Self::load_with_profiles(paths, profiles)
    }

    /// Loads the files with `profiles` enabled.
    pub fn load_with_profiles(paths: &[PathBuf], profiles: Vec<String>) -> Result<Self> {
        if paths.is_empty() {
            return Err(HarnessError::Usage(
                "no compose file given\n  hint: pass --compose FILE".into(),
            ));
        }
        let files: Vec<ComposeFile> = paths.iter().map(|p| ComposeFile::load(p)).collect::<Result<_>>()?;
        let all = merge_files(&files);
        // Overlays may name only what they change; the merged result must still be runnable.
        if let Some((name, _)) = all
            .services
            .iter()
            .find(|(_, s)| s.image.is_none() && s.build.is_none())
        {
            let path = files
                .iter()
                .rev()
                .find(|f| f.services.contains_key(name))
                .map(|f| f.path.clone())
                .unwrap_or_default();
            return Err(HarnessError::Compose {
                path,
                reason: format!("service '{name}' has neither image nor build"),
            });
        }
        let active = all.activate(&profiles)?;
        for (name, svc) in &active.services {
            for port in svc.fixed_address_ports() {
                tracing::warn!(
                    service = %name,
                    port,
                    "published on a fixed address, not on --bind-ip (all interfaces when it names none); use a variable such as ${{BIND_IP:-127.0.0.1}}"
                );
            }
        }
        Ok(Self {
            files,
            profiles,
            active,
        })
    }

    /// A single file equivalent for planning: later files' services, networks and volumes win;
    /// services whose profiles are not enabled are left out (listed in `inactive`).
    pub fn merged(&self) -> ComposeFile {
        self.active.clone()
    }
}

/// The profiles compose enables: `COMPOSE_PROFILES` from the environment, else from the `.env`
/// file beside the first compose file (the project directory both tools read it from).
fn enabled_profiles(first_file: &Path) -> Vec<String> {
    profiles_from(std::env::var("COMPOSE_PROFILES").ok(), first_file)
}

/// [`enabled_profiles`] with the environment's value given.
fn profiles_from(env_value: Option<String>, first_file: &Path) -> Vec<String> {
    let value = env_value.or_else(|| {
        let env_file = first_file.parent()?.join(".env");
        crate::envfile::value(&std::fs::read_to_string(env_file).ok()?, "COMPOSE_PROFILES")
    });
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Merges compose files the way `-f a -f b` does for what the harness models.
fn merge_files(files: &[ComposeFile]) -> ComposeFile {
    fn union(into: &mut Vec<String>, from: &[String]) {
        for x in from {
            if !into.contains(x) {
                into.push(x.clone());
            }
        }
    }
    let mut merged = files[0].clone();
    for f in &files[1..] {
        for (name, svc) in &f.services {
            let entry = merged.services.entry(name.clone()).or_default();
            if svc.image.is_some() {
                entry.image = svc.image.clone();
            }
            if svc.build.is_some() {
                entry.build = svc.build.clone();
            }
            if svc.declares_networks || entry.networks.is_empty() {
                entry.networks = svc.networks.clone();
                entry.uses_default_network = svc.uses_default_network;
                entry.declares_networks |= svc.declares_networks;
            }
            entry.port_vars.extend(svc.port_vars.iter().cloned());
            entry.bind_vars.extend(svc.bind_vars.iter().cloned());
            union(&mut entry.ports, &svc.ports);
            union(&mut entry.profiles, &svc.profiles);
            union(&mut entry.depends_on, &svc.depends_on);
        }
        union(&mut merged.networks, &f.networks);
        union(&mut merged.volumes, &f.volumes);
    }
    merged
}

/// Removes a run's directory when `up` fails before the stack (which then owns it) exists.
struct RunDirGuard(Option<String>);

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        if let Some(run_id) = self.0.take() {
            runs::remove_run_dir(&run_id);
        }
    }
}

/// The variables the compose files interpolate that the caller's environment sets (and the
/// harness does not): passed explicitly, since the rootless user's tools get no other environment.
fn caller_env(files: &[PathBuf], set: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for var in interpolated_vars(&text) {
            if set.iter().chain(out.iter()).any(|(k, _)| *k == var) {
                continue;
            }
            if let Ok(value) = std::env::var(&var) {
                out.push((var, value));
            }
        }
    }
    out
}

/// Names used as `${NAME...}` or `$NAME` in compose text (`$$` escapes are skipped). Pure.
fn interpolated_vars(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let start = if b.get(i + 1) == Some(&b'{') { i + 2 } else { i + 1 };
        let len = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        if len > 0 && !b[start].is_ascii_digit() {
            let name = &text[start..start + len];
            if !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
        i = start + len.max(1) - 1 + 1;
    }
    out
}

/// A stack owned by this process. Dropping it tears it down.
pub struct Stack {
    runtime: Runtime,
    provider: Provider,
    record: RunRecord,
    armed: bool,
}

impl Stack {
    /// Builds missing images, starts the stack and waits until every service is ready. On any
    /// error the partial stack is torn down before returning.
    pub fn up(opts: &StackOptions, on_event: &mut dyn FnMut(&Event)) -> Result<(Stack, UpReport)> {
        let started = Instant::now();
        if !opts.bind_ip.is_loopback() {
            return Err(HarnessError::Usage(format!(
                "bind address {} is not a loopback address\n  hint: published ports must bind to 127.0.0.0/8 (for example 127.0.0.1)",
                opts.bind_ip
            )));
        }
        let runtime = Runtime::resolve(opts.runtime)?;
        let provider = compose::detect(&runtime)?;
        let run_id = runs::new_run_id()?;
        let project = project_name(opts.runtime, &run_id);
        let run_dir = RunRecord::create_dir(&run_id)?;
        // Until the Stack exists, the run directory (and any staged copy) goes with this guard.
        let mut run_dir_guard = RunDirGuard(Some(run_id.clone()));
        let files = stage_if_needed(&runtime, &opts.compose_files, &run_dir)?;
        let set = ComposeSet::load(&files)?;
        let merged = set.merged();

        on_event(&Event::Phase(format!("images ({})", opts.runtime)));
        let images = images::prepare(&runtime, &merged, &mut |msg| on_event(&Event::Phase(msg.to_string())))?;

        let owner_pid = std::process::id();
        let owner_start = runs::process_start_time(owner_pid).unwrap_or(0);
        let labels = run_labels(&run_id, opts.runtime.name(), owner_pid, owner_start);
        let override_path = run_dir.join("hydra.override.yml");
        std::fs::write(
            &override_path,
            override_yaml(&merged, &labels, &images.service_images()),
        )?;

        let (mut env, ports) = publish_env(&merged, opts.bind_ip)?;
        env.extend(caller_env(&files, &env));
        let mut compose_files = files.clone();
        compose_files.push(override_path);
        let workdir = files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let record = RunRecord {
            run_id: run_id.clone(),
            project: project.clone(),
            runtime: opts.runtime,
            tool: provider.tool,
            compose_files,
            workdir,
            env,
            services: merged.services.keys().cloned().collect(),
            ports,
            bind_ip: opts.bind_ip,
            owner_pid,
            owner_start,
            status: RunStatus::Starting,
            created_unix: runs::now_unix(),
        };
        record.save()?;
        // From here on, anything that fails tears down through Drop.
        run_dir_guard.0 = None;
        let stack = Stack {
            runtime,
            provider: provider.clone(),
            record,
            armed: true,
        };

        on_event(&Event::Phase(format!("{} up", provider.tool)));
        let t = Instant::now();
        let out = exec::run(&stack.compose(&Action::Up), UP_TIMEOUT, Interrupt::Allowed)?;
        let compose_up_seconds = t.elapsed().as_secs_f64();
        if !out.success() {
            return Err(HarnessError::Failed {
                cmd: stack.compose(&Action::Up).display(),
                status: out.status,
                stderr: exec::tail(&out.stderr, 30),
            });
        }
        let at_compose_return = stack
            .containers()?
            .into_iter()
            .map(|(svc, c)| {
                let health = c
                    .state
                    .health
                    .as_ref()
                    .map(|h| h.status.clone())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "none".into());
                (svc, format!("{}/{}", c.state.status, health))
            })
            .collect();
        on_event(&Event::Phase(format!(
            "waiting for {} services to become healthy",
            stack.record.services.len()
        )));
        let services = readiness::wait(
            &stack.runtime,
            &run_id,
            &project,
            &stack.record.services,
            started,
            opts.ready_timeout,
            &mut |p| on_event(&Event::Waiting(p.clone())),
        )?;
        let report = UpReport {
            runtime: opts.runtime,
            project,
            run_id,
            compose: provider,
            images,
            compose_up_seconds,
            services,
            total_seconds: started.elapsed().as_secs_f64(),
            compose_up_stderr: out.stderr,
            at_compose_return,
        };
        Ok((stack, report))
    }

    /// Reattaches to a stack that `harness up` left running.
    pub fn attach(record: RunRecord) -> Result<Stack> {
        let runtime = Runtime::resolve(record.runtime)?;
        let provider = Provider {
            tool: record.tool,
            version: String::new(),
        };
        Ok(Stack {
            runtime,
            provider,
            record,
            armed: true,
        })
    }

    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn tool(&self) -> ComposeTool {
        self.provider.tool
    }

    /// Host port chosen for each port variable of the compose file.
    pub fn ports(&self) -> &BTreeMap<String, u16> {
        &self.record.ports
    }

    /// The run's containers by compose service name, as the engine reports them now.
    pub fn containers(&self) -> Result<BTreeMap<String, crate::runtime::inspect::ContainerInspect>> {
        let ids = self
            .runtime
            .list_by_label(ObjectKind::Container, &labels::filter(labels::RUN, &self.record.run_id))?;
        Ok(self
            .runtime
            .inspect_containers(&ids)?
            .into_iter()
            .filter_map(|c| Some((c.label(readiness::SERVICE_LABEL)?.to_string(), c)))
            .collect())
    }

    /// Runs `argv` inside `service`'s container without a TTY (`exec -T` semantics) and returns
    /// its output; a non-zero exit is returned, not raised.
    pub fn exec(&self, service: &str, argv: &[&str], timeout: Duration) -> Result<exec::Output> {
        let containers = self.containers()?;
        let c = containers.get(service).ok_or_else(|| {
            HarnessError::Usage(format!(
                "service '{service}' has no container in {}",
                self.record.project
            ))
        })?;
        let spec = self.runtime.engine().args(["exec", &c.id]).args(argv.iter().copied());
        exec::run(&spec, timeout, Interrupt::Allowed)
    }

    /// Runs a compose action on this run's project; the tool's exit code is returned, not trusted.
    pub fn compose_run(&self, action: &Action) -> Result<exec::Output> {
        exec::run(&self.compose(action), UP_TIMEOUT, Interrupt::Allowed)
    }

    /// Waits until every service is ready again (after a stop/start or a restart).
    pub fn wait_ready(&self, timeout: Duration) -> Result<Vec<ServiceReady>> {
        readiness::wait(
            &self.runtime,
            &self.record.run_id,
            &self.record.project,
            &self.record.services,
            Instant::now(),
            timeout,
            &mut |_| {},
        )
    }

    /// `compose down` without removing volumes, then `compose up -d` and wait: the volumes of the
    /// run must survive. Verifies the containers were really removed in between.
    pub fn restart_keeping_volumes(&self, timeout: Duration) -> Result<()> {
        let before: Vec<String> = self.containers()?.values().map(|c| c.id.clone()).collect();
        self.compose_run(&Action::DownKeepVolumes { timeout_secs: 10 })?;
        let left: Vec<String> = self
            .containers()?
            .values()
            .map(|c| c.id.clone())
            .filter(|id| before.contains(id))
            .collect();
        if !left.is_empty() {
            return Err(HarnessError::Failed {
                cmd: self.compose(&Action::DownKeepVolumes { timeout_secs: 10 }).display(),
                status: Some(0),
                stderr: format!("exited but {} containers still exist", left.len()),
            });
        }
        let out = self.compose_run(&Action::Up)?;
        if !out.success() {
            return Err(HarnessError::Failed {
                cmd: self.compose(&Action::Up).display(),
                status: out.status,
                stderr: exec::tail(&out.stderr, 20),
            });
        }
        self.wait_ready(timeout).map(|_| ())
    }

    /// Host address published ports bind to.
    pub fn bind_ip(&self) -> std::net::IpAddr {
        self.record.bind_ip
    }

    /// Leaves the stack running and records it so that `harness down` finds it.
    pub fn keep(mut self) -> Result<RunRecord> {
        self.record.status = RunStatus::Kept;
        self.record.save()?;
        self.armed = false;
        Ok(self.record.clone())
    }

    /// Removes everything the run created and verifies nothing with its labels is left.
    pub fn down(mut self) -> Result<TeardownReport> {
        self.armed = false;
        let result = teardown(&self.runtime, &self.provider, &self.record);
        match &result {
            Ok(_) => self.record.remove(),
            Err(e) => note_teardown_failure(&self.record.project, e),
        }
        result
    }

    /// The compose command for `action` on this run's project.
    pub fn compose(&self, action: &Action) -> crate::runtime::CommandSpec {
        compose::command(&self.runtime, self.provider.tool, &project_of(&self.record), action)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match teardown(&self.runtime, &self.provider, &self.record) {
            Ok(_) => self.record.remove(),
            Err(e) => {
                eprintln!(
                    "error: teardown of {} failed: {e}\n  hint: run `harness gc` to sweep what is left",
                    self.record.project
                );
                note_teardown_failure(&self.record.project, &e);
            }
        }
    }
}

/// Projects whose teardown failed in this process, so that the exit code says so (4) even when
/// the failure happened in the drop guard, where no error can be returned.
static TEARDOWN_FAILURES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn note_teardown_failure(project: &str, e: &HarnessError) {
    TEARDOWN_FAILURES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{project}: {e}"));
}

/// Every teardown of this process that failed (may have left objects behind), with the error.
pub fn teardown_failures() -> Vec<String> {
    TEARDOWN_FAILURES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn project_of(record: &RunRecord) -> Project {
    Project {
        name: record.project.clone(),
        files: record.compose_files.clone(),
        workdir: record.workdir.clone(),
        env: record.env.clone(),
    }
}

/// `hydra-<runtime>-<run id>`, a valid compose project name unique per run.
pub fn project_name(runtime: RuntimeKind, run_id: &str) -> String {
    format!("hydra-{}-{}", runtime.name(), run_id)
}

/// Removes a run's objects: compose `down`, then whatever it left that carries the run's label,
/// and the anonymous volumes the run's containers had (which podman-compose `down -v` leaks) when
/// no other container uses them. Volumes that are not the run's own (`external: true`, or created
/// by someone else) are never removed, and nothing is removed by force: a volume another
/// container still uses stays, and is reported as left behind.
pub fn teardown(runtime: &Runtime, provider: &Provider, record: &RunRecord) -> Result<TeardownReport> {
    let started = Instant::now();
    let mut report = TeardownReport::default();
    let run_filter = labels::filter(labels::RUN, &record.run_id);
    let project_filter = labels::filter("com.docker.compose.project", &record.project);
    let ids = runtime.list_by_label(ObjectKind::Container, &run_filter)?;
    let mounted: Vec<String> = runtime
        .inspect_containers(&ids)?
        .iter()
        .flat_map(|c| c.volume_names())
        .collect();
    let anonymous = runtime.anonymous_volumes(&mounted)?;

    let down = compose::command(
        runtime,
        provider.tool,
        &project_of(record),
        &Action::Down { timeout_secs: 10 },
    );
    // A second signal skips the compose tool (or kills it mid-way): the label sweep below removes
    // everything on its own, only faster.
    if exec::is_aborted() {
        tracing::warn!("second interrupt: skipping compose down, removing the run's objects by label");
    } else {
        match exec::run(&down, DOWN_TIMEOUT, Interrupt::UntilAborted) {
            Ok(out) => report.compose_down_status = out.status,
            Err(e) => tracing::warn!("compose down failed: {e}"),
        }
    }
    for kind in ObjectKind::ALL {
        let mut left = runtime.list_by_label(kind, &run_filter)?;
        if kind == ObjectKind::Volume {
            for v in &anonymous {
                if !left.contains(v) && runtime.exists(ObjectKind::Volume, v) && runtime.volume_users(v)?.is_empty() {
                    left.push(v.clone());
                }
            }
        }
        if !left.is_empty() {
            report
                .removed_after_compose
                .extend(left.iter().map(|id| format!("{} {}", kind.name(), short_id(id))));
            runtime.remove(kind, &left)?;
        }
    }
    // Verify: nothing of the run may remain (objects with its project label included, which the
    // harness reports but does not remove unless they carry the run's label).
    let mut remaining = Vec::new();
    for kind in ObjectKind::ALL {
        for filter in [&run_filter, &project_filter] {
            for id in runtime.list_by_label(kind, filter)? {
                remaining.push(format!("{} {}", kind.name(), short_id(&id)));
            }
        }
    }
    for v in &anonymous {
        if runtime.exists(ObjectKind::Volume, v) {
            remaining.push(format!("volume {} (anonymous, still in use)", short_id(v)));
        }
    }
    remaining.sort();
    remaining.dedup();
    if !remaining.is_empty() {
        return Err(HarnessError::Leftovers {
            project: record.project.clone(),
            left: remaining.join(", "),
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Environment for compose: bind variables get the bind address, port variables a free port on
/// it unless the caller set them. Returns the env and the chosen ports.
/// Compose environment and the host port chosen for each port variable.
type PublishEnv = (Vec<(String, String)>, BTreeMap<String, u16>);

fn publish_env(file: &ComposeFile, bind_ip: IpAddr) -> Result<PublishEnv> {
    let mut env = Vec::new();
    let mut ports = BTreeMap::new();
    for var in file.bind_vars() {
        env.push((var, bind_ip.to_string()));
    }
    let mut held = Vec::new();
    for var in file.port_vars() {
        let port = match std::env::var(&var).ok().and_then(|v| v.parse::<u16>().ok()) {
            Some(p) => p,
            None => {
                // Keep each listener open until all are chosen so two variables never get one port.
                let l = TcpListener::bind((bind_ip, 0))?;
                let p = l.local_addr()?.port();
                held.push(l);
                p
            }
        };
        env.push((var.clone(), port.to_string()));
        ports.insert(var, port);
    }
    drop(held);
    Ok((env, ports))
}

/// Returns compose file paths the runtime's user can read: the originals, or (for a rootless user
/// that cannot read them) a private copy of what they reference, owned by that user.
fn stage_if_needed(runtime: &Runtime, files: &[PathBuf], run_dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            std::fs::canonicalize(f).map_err(|e| HarnessError::Compose {
                path: f.clone(),
                reason: format!("cannot read it: {e}\n  hint: pass an existing file with --compose"),
            })
        })
        .collect::<Result<_>>()?;
    let Some(user) = runtime.rootless_user() else {
        return Ok(files);
    };
    let root = staging::project_root(&files);
    let lookup = |name: &str| std::env::var(name).ok();
    let needed = staging::needed_paths(&files, &root, &lookup)?;
    if needed.iter().all(|p| user.can_read(p)) {
        return Ok(files);
    }
    let stage = run_dir.join("stage");
    tracing::info!(user = %user.name, root = %root.display(), files = needed.len(), "staging a private copy for the rootless user");
    staging::unpack_as(user, &stage, staging::pack(&root, &needed)?)?;
    Ok(files
        .iter()
        .map(|f| stage.join(f.strip_prefix(&root).unwrap_or(f)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_keep_base_networks_unless_they_name_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yml");
        let ports = dir.path().join("ports.yml");
        let nets = dir.path().join("nets.yml");
        std::fs::write(&base, "services:\n  web: {image: x, networks: [front]}\n").unwrap();
        std::fs::write(&ports, "services:\n  web: {ports: ['0.0.0.0::80']}\n").unwrap();
        std::fs::write(&nets, "services:\n  web: {networks: [front, back]}\n").unwrap();
        let keep = ComposeSet::load(&[base.clone(), ports]).unwrap().merged();
        assert_eq!(keep.services["web"].networks.keys().collect::<Vec<_>>(), ["front"]);
        let moved = ComposeSet::load(&[base, nets]).unwrap().merged();
        assert_eq!(
            moved.services["web"].networks.keys().collect::<Vec<_>>(),
            ["back", "front"]
        );
        let partial = dir.path().join("partial.yml");
        std::fs::write(&partial, "services:\n  api: {ports: ['1:1']}\n").unwrap();
        let err = ComposeSet::load(&[partial]).unwrap_err().to_string();
        assert!(err.contains("service 'api' has neither image nor build"), "{err}");
    }

    /// A port reached through a merge key gets the run's bind address and a free port, exactly as
    /// the same port written inline: it never publishes on the file's 0.0.0.0/8080 defaults.
    #[test]
    fn ports_from_an_anchor_are_published_on_the_bind_ip_like_inline_ones() {
        let dir = tempfile::tempdir().unwrap();
        let inline = dir.path().join("inline.yml");
        let anchored = dir.path().join("anchored.yml");
        std::fs::write(
            &inline,
            "services:\n  web:\n    image: x\n    ports: ['${ANCHOR_BIND_T:-0.0.0.0}:${ANCHOR_PORT_T:-8080}:80']\n",
        )
        .unwrap();
        std::fs::write(
            &anchored,
            "x-web: &web\n  image: x\n  ports: ['${ANCHOR_BIND_T:-0.0.0.0}:${ANCHOR_PORT_T:-8080}:80']\nservices:\n  web:\n    <<: *web\n",
        )
        .unwrap();
        let bind = IpAddr::from([127, 0, 0, 1]);
        for file in [inline, anchored] {
            let merged = ComposeSet::load_with_profiles(std::slice::from_ref(&file), vec![])
                .unwrap()
                .merged();
            let (env, ports) = publish_env(&merged, bind).unwrap();
            assert!(
                env.contains(&("ANCHOR_BIND_T".into(), "127.0.0.1".into())),
                "{}: {env:?}",
                file.display()
            );
            let port = ports.get("ANCHOR_PORT_T").copied();
            assert!(port.is_some_and(|p| p != 8080), "{}: {ports:?}", file.display());
        }
    }

    /// Services behind a profile that is not enabled are not planned, built or waited on.
    #[test]
    fn services_of_disabled_profiles_are_left_out_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yml");
        let overlay = dir.path().join("overlay.yml");
        std::fs::write(
            &base,
            "services:\n  app: {image: a}\n  dbg: {image: d, profiles: [debug]}\n  web: {image: w}\n",
        )
        .unwrap();
        // An overlay can put a service behind a profile too.
        std::fs::write(&overlay, "services:\n  web: {profiles: [web]}\n").unwrap();
        let files = [base, overlay];
        let none = ComposeSet::load_with_profiles(&files, vec![]).unwrap().merged();
        assert_eq!(none.services.keys().collect::<Vec<_>>(), ["app"]);
        assert_eq!(none.inactive.keys().collect::<Vec<_>>(), ["dbg", "web"]);
        let all = ComposeSet::load_with_profiles(&files, vec!["debug".into(), "web".into()])
            .unwrap()
            .merged();
        assert_eq!(all.services.keys().collect::<Vec<_>>(), ["app", "dbg", "web"]);
        // COMPOSE_PROFILES in the project's .env enables profiles as the compose tools do.
        std::fs::write(dir.path().join(".env"), "COMPOSE_PROFILES=debug\n").unwrap();
        assert_eq!(profiles_from(None, &files[0]), ["debug"]);
        // The environment wins over the .env file.
        assert_eq!(profiles_from(Some(" web , x,".into()), &files[0]), ["web", "x"]);
    }

    #[test]
    fn depending_on_a_disabled_service_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(
            &file,
            "services:\n  app: {image: a, depends_on: [dbg]}\n  dbg: {image: d, profiles: [debug]}\n",
        )
        .unwrap();
        let err = ComposeSet::load_with_profiles(std::slice::from_ref(&file), vec![]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&file.display().to_string()) && msg.contains("'app' depends on 'dbg', which is not enabled"),
            "{msg}"
        );
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(ComposeSet::load_with_profiles(&[file], vec!["debug".into()]).is_ok());
    }

    /// The stricter model still accepts every stack the project ships: the bundled one with each
    /// negative overlay, and the second stack.
    #[test]
    fn every_shipped_compose_combination_loads() {
        let root = crate::workspace::root();
        let overlays: Vec<PathBuf> = std::fs::read_dir(root.join("fixtures/overlays"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        assert!(overlays.len() >= 5, "{overlays:?}");
        let bundled = ComposeSet::load_with_profiles(&[crate::workspace::bundled_compose_file()], vec![])
            .unwrap()
            .merged();
        assert_eq!(bundled.services.len(), 7);
        assert!(bundled.inactive.is_empty());
        for overlay in overlays {
            let set = ComposeSet::load_with_profiles(&[crate::workspace::bundled_compose_file(), overlay.clone()], vec![]);
            assert!(set.is_ok(), "{}: {}", overlay.display(), set.unwrap_err());
        }
        let second = ComposeSet::load_with_profiles(&[root.join("fixtures/second-stack/compose.yml")], vec![])
            .unwrap()
            .merged();
        assert_eq!(second.services.keys().collect::<Vec<_>>(), ["web", "worker"]);
        assert_eq!(second.port_vars(), ["SECOND_WEB_PORT"]);
        for entry in std::fs::read_dir(root.join("fixtures/second-stack/overlays")).unwrap() {
            let overlay = entry.unwrap().path();
            if overlay.extension().is_some_and(|e| e == "yml") {
                let set = ComposeSet::load_with_profiles(
                    &[root.join("fixtures/second-stack/compose.yml"), overlay.clone()],
                    vec![],
                );
                assert!(set.is_ok(), "{}: {}", overlay.display(), set.unwrap_err());
            }
        }
    }

    #[test]
    fn project_names_are_valid_and_name_the_runtime() {
        for kind in RuntimeKind::ALL {
            let name = project_name(kind, "1a2b3c4d");
            assert!(compose::valid_project_name(&name), "{name}");
            assert!(name.contains(kind.name()));
        }
    }

    #[test]
    fn publish_env_picks_distinct_free_ports_on_the_bind_ip() {
        let text = "services:\n  a:\n    image: x\n    ports: ['${BIND_T:-127.0.0.1}:${A_PORT_T:-1}:80', '${BIND_T:-127.0.0.1}:${B_PORT_T:-2}:81']\n";
        let f = ComposeFile::parse(Path::new("/x/c.yml"), text).unwrap();
        let (env, ports) = publish_env(&f, IpAddr::from([127, 0, 0, 1])).unwrap();
        assert!(env.contains(&("BIND_T".into(), "127.0.0.1".into())));
        assert_eq!(ports.len(), 2);
        assert_ne!(ports["A_PORT_T"], ports["B_PORT_T"]);
        assert!(ports.values().all(|&p| p > 1024));
    }

    #[test]
    fn interpolated_variables_are_found_in_both_syntaxes() {
        let text = "a: ${PHOENIX_DB_PORT:-15432}\nb: $HOME_DIR/x\nc: $$NOT_A_VAR\nd: ${PHOENIX_DB_PORT}\ne: $1\n";
        assert_eq!(interpolated_vars(text), ["PHOENIX_DB_PORT", "HOME_DIR"]);
    }

    /// A teardown that fails in the drop guard (after an error or an interruption) cannot return
    /// an error; it must still reach the exit code.
    #[test]
    fn a_failed_teardown_in_the_drop_guard_is_noted_for_the_exit_code() {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let fake = bin.path().join("docker");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Only `docker` is shadowed: no other unit test runs it.
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", bin.path().display()));
        let record = RunRecord {
            run_id: "tdrop0001".into(),
            project: project_name(RuntimeKind::Docker, "tdrop0001"),
            runtime: RuntimeKind::Docker,
            tool: ComposeTool::DockerComposeV1,
            compose_files: vec![],
            workdir: PathBuf::from("/nonexistent"),
            env: vec![],
            services: vec![],
            ports: BTreeMap::new(),
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            owner_pid: std::process::id(),
            owner_start: 0,
            status: RunStatus::Starting,
            created_unix: 0,
        };
        let stack = Stack {
            runtime: Runtime::resolve(RuntimeKind::Docker).unwrap(),
            provider: Provider {
                tool: ComposeTool::DockerComposeV1,
                version: String::new(),
            },
            record,
            armed: true,
        };
        drop(stack);
        std::env::set_var("PATH", path);
        let failures = teardown_failures();
        assert!(
            failures.iter().any(|f| f.contains("hydra-docker-tdrop0001")),
            "{failures:?}"
        );
    }

    #[test]
    fn bind_address_must_be_loopback() {
        let mut opts = StackOptions::new(RuntimeKind::Docker);
        opts.bind_ip = IpAddr::from([0, 0, 0, 0]);
        let err = Stack::up(&opts, &mut |_| {}).err().unwrap();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(err.to_string().contains("not a loopback address"));
    }
}
