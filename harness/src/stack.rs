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
use crate::state::{self, RunRecord, RunStatus};

/// Default deadline for the whole stack to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for `compose up -d` itself.
const UP_TIMEOUT: Duration = Duration::from_secs(600);
/// Deadline for `compose down`.
const DOWN_TIMEOUT: Duration = Duration::from_secs(240);

/// The bundled Phoenix Hydra compose file.
pub fn bundled_compose_file() -> PathBuf {
    workspace_root().join("compose/phoenix.yml")
}

/// The workspace root: `HYDRA_ROOT`, else the directory holding this crate's workspace.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("HYDRA_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

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
            compose_files: vec![bundled_compose_file()],
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

/// The merged view of the compose files of one run.
#[derive(Debug, Clone)]
pub struct ComposeSet {
    pub files: Vec<ComposeFile>,
}

impl ComposeSet {
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        if paths.is_empty() {
            return Err(HarnessError::Usage(
                "no compose file given\n  hint: pass --compose FILE".into(),
            ));
        }
        let set = Self {
            files: paths.iter().map(|p| ComposeFile::load(p)).collect::<Result<_>>()?,
        };
        // Overlays may name only what they change; the merged result must still be runnable.
        if let Some((name, _)) = set
            .merged()
            .services
            .iter()
            .find(|(_, s)| s.image.is_none() && s.build.is_none())
        {
            let path = set
                .files
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
        Ok(set)
    }

    /// A single file equivalent for planning: later files' services, networks and volumes win.
    pub fn merged(&self) -> ComposeFile {
        let mut merged = self.files[0].clone();
        for f in &self.files[1..] {
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
            }
            for n in &f.networks {
                if !merged.networks.contains(n) {
                    merged.networks.push(n.clone());
                }
            }
            for v in &f.volumes {
                if !merged.volumes.contains(v) {
                    merged.volumes.push(v.clone());
                }
            }
        }
        merged
    }
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
        let run_id = state::new_run_id();
        let project = project_name(opts.runtime, &run_id);
        let run_dir = RunRecord::dir_for(&run_id);
        state::create_dir(&run_dir)?;
        let files = stage_if_needed(&runtime, &opts.compose_files, &run_dir)?;
        let set = ComposeSet::load(&files)?;
        let merged = set.merged();

        on_event(&Event::Phase(format!("images ({})", opts.runtime)));
        let images = images::prepare(&runtime, &merged, &mut |msg| on_event(&Event::Phase(msg.to_string())))?;

        let owner_pid = std::process::id();
        let owner_start = state::process_start_time(owner_pid).unwrap_or(0);
        let labels = run_labels(&run_id, opts.runtime.name(), owner_pid, owner_start);
        let override_path = run_dir.join("hydra.override.yml");
        std::fs::write(
            &override_path,
            override_yaml(&merged, &labels, &images.service_images()),
        )?;

        let (env, ports) = publish_env(&merged, opts.bind_ip)?;
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
            created_unix: state::now_unix(),
        };
        record.save()?;
        // From here on, anything that fails tears down through Drop.
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

/// Removes a run's objects: compose `down`, then whatever it left (by the run's label, by the
/// compose project label, and the volumes its containers had mounted), then verifies.
pub fn teardown(runtime: &Runtime, provider: &Provider, record: &RunRecord) -> Result<TeardownReport> {
    let started = Instant::now();
    let mut report = TeardownReport::default();
    let run_filter = labels::filter(labels::RUN, &record.run_id);
    let project_filter = labels::filter("com.docker.compose.project", &record.project);
    // podman-compose `down -v` leaks anonymous volumes: note every volume mounted before removing.
    let ids = runtime.list_by_label(ObjectKind::Container, &run_filter)?;
    let mounted: Vec<String> = runtime
        .inspect_containers(&ids)?
        .iter()
        .flat_map(|c| c.volume_names())
        .collect();

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
        for id in runtime.list_by_label(kind, &project_filter)? {
            if !left.contains(&id) {
                left.push(id);
            }
        }
        if kind == ObjectKind::Volume {
            for v in &mounted {
                if !left.contains(v) && runtime.exists(ObjectKind::Volume, v) {
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
    // Verify: nothing of the run may remain.
    let mut remaining = Vec::new();
    for kind in ObjectKind::ALL {
        for filter in [&run_filter, &project_filter] {
            for id in runtime.list_by_label(kind, filter)? {
                remaining.push(format!("{} {}", kind.name(), short_id(&id)));
            }
        }
    }
    for v in &mounted {
        if runtime.exists(ObjectKind::Volume, v) {
            remaining.push(format!("volume {}", short_id(v)));
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
/// that cannot read them) copies of the project tree under the run directory.
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
    if files.iter().all(|f| user.can_read(f)) {
        return Ok(files);
    }
    let root = project_root(&files);
    let stage = run_dir.join("stage");
    tracing::info!(user = %user.name, root = %root.display(), "staging a readable copy for the rootless user");
    copy_tree(&root, &stage)?;
    Ok(files
        .iter()
        .map(|f| stage.join(f.strip_prefix(&root).unwrap_or(f)))
        .collect())
}

/// The nearest common ancestor of the compose files that holds a `.git` or `Cargo.toml`, else the
/// parent of the first file's directory (compose files refer to `../` build contexts).
fn project_root(files: &[PathBuf]) -> PathBuf {
    let first = files[0].parent().unwrap_or(Path::new("/"));
    for dir in first.ancestors() {
        if files.iter().all(|f| f.starts_with(dir)) && (dir.join(".git").exists() || dir.join("Cargo.toml").exists()) {
            return dir.to_path_buf();
        }
    }
    first.parent().unwrap_or(first).to_path_buf()
}

/// Copies a source tree (skipping `target/` and `.git/`) with world-readable permissions.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(from).into_iter().filter_entry(|e| {
        let name = e.file_name().to_string_lossy();
        !(e.depth() == 1 && (name == "target" || name == ".git"))
    }) {
        let entry = entry.map_err(|e| std::io::Error::other(e.to_string()))?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            state::create_dir(&dest)?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest)?;
            let exec = entry
                .metadata()
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))?;
        }
    }
    Ok(())
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
    fn copy_tree_skips_build_output_and_keeps_exec_bits() {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("compose")).unwrap();
        std::fs::create_dir_all(src.path().join("target/debug")).unwrap();
        std::fs::write(src.path().join("compose/a.yml"), "x").unwrap();
        std::fs::write(src.path().join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(src.path().join("run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(src.path().join("target/debug/big"), "x").unwrap();
        copy_tree(src.path(), &dst.path().join("s")).unwrap();
        assert!(dst.path().join("s/compose/a.yml").exists());
        assert!(!dst.path().join("s/target").exists());
        let mode = std::fs::metadata(dst.path().join("s/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755);
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
