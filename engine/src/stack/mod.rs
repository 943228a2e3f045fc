//! A running compose stack owned by one run. `Stack::up` builds what is missing, starts the stack
//! with the runtime's compose tool and waits until it is ready; `down(self)` removes everything the
//! run created and verifies nothing with its labels is left; `Drop` does the same best-effort, so a
//! failed, panicking or interrupted run leaves nothing behind.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compose::file::{override_yaml, run_labels};
use crate::compose::v2_on_podman::{self, InlineSeccomp, ResolvedModel};
use crate::compose::{self, Action, ComposeTool, Project, Provider};
use crate::error::{HarnessError, Result};
use crate::images::{self, ImagesReport};
use crate::labels;
use crate::readiness::{self, ServiceReady, WaitProgress};
use crate::runs::{self, RunRecord, RunStatus};
use crate::runtime::api_service::ApiService;
use crate::runtime::exec::Signals;
use crate::runtime::{dns_leftovers, exec, Interrupt, ObjectKind, Runtime, RuntimeKind};

mod compose_set;
mod ports;
mod sidecar;
pub mod staging;
mod teardown;

pub use compose_set::ComposeSet;
pub use sidecar::{Sidecar, SidecarSpec};
pub use teardown::{teardown, TeardownReport};

/// Default deadline for the whole stack to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for `compose up -d` itself.
const UP_TIMEOUT: Duration = Duration::from_secs(600);

/// What to bring up and how.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The target to run the stack on.
    pub runtime: RuntimeKind,
    /// Compose files in `-f` order; the first decides the project directory.
    pub compose_files: Vec<PathBuf>,
    /// Host address published ports bind to (a loopback address).
    pub bind_ip: IpAddr,
    /// How long to wait for every service to become ready.
    pub ready_timeout: Duration,
    /// The run's id, when the caller must know it before `up` (to create the run's volumes with
    /// its labels beforehand, as a migration does); else `HYDRA_RUN_ID` or a fresh one.
    pub run_id: Option<String>,
}

impl StackOptions {
    /// Options for `runtime` with the defaults: the bundled compose file, ports bound to
    /// 127.0.0.1, [`DEFAULT_READY_TIMEOUT`], and a run id chosen at `up`.
    pub fn new(runtime: RuntimeKind) -> Self {
        Self {
            runtime,
            compose_files: vec![crate::workspace::bundled_compose_file()],
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            run_id: None,
        }
    }
}

/// Lifecycle progress, for the CLI's display.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step of the lifecycle began, described in a line.
    Phase(String),
    /// Where the wait for readiness stands.
    Waiting(WaitProgress),
}

/// What `up` did and measured.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// The target the stack runs on.
    pub runtime: RuntimeKind,
    /// The compose project name.
    pub project: String,
    /// The run's id.
    pub run_id: String,
    /// The compose tool and its version.
    pub compose: Provider,
    /// How the images were obtained.
    pub images: ImagesReport,
    /// Seconds `compose up` took, its reruns included.
    pub compose_up_seconds: f64,
    /// When each service became ready.
    pub services: Vec<ServiceReady>,
    /// Seconds for the whole of `up`.
    pub total_seconds: f64,
    /// What `compose up` printed on stderr (warnings such as ignored `depends_on` conditions).
    pub compose_up_stderr: String,
    /// Each service's state and health the moment `compose up` returned: shows whether the tool
    /// itself waited for `depends_on` conditions (and, with `--wait`, for health).
    pub at_compose_return: BTreeMap<String, String>,
    /// Seconds from the start of `up` until the harness's own loop saw every service ready; the
    /// compose tool runs alongside, so this compares with `compose_up_seconds` (Compose v2's
    /// `--wait`).
    pub harness_ready_seconds: f64,
    /// The seccomp remedy this run needed (Compose v2 on Podman 4.3), if any.
    pub seccomp_remedy: Option<SeccompRemedy>,
    /// Each time Compose v2 aborted `up` because a service was unhealthy for a moment (it is run
    /// again until the stack is ready or the deadline passes): when, and what it said.
    pub compose_gave_up: Vec<String>,
    /// For the kube-play targets: what did not carry over from compose into the played YAML.
    pub kube_divergences: Vec<crate::kube::KubeDivergence>,
}

/// Compose v2 could not pass the project's seccomp profile to the engine, so the run's API
/// service applies it engine-wide (`seccomp_profile` in containers.conf) and an override leaves
/// it out of the named services.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompRemedy {
    /// The project's seccomp profile, applied engine-wide instead.
    pub profile: PathBuf,
    /// The services whose own `seccomp=` option the override leaves out.
    pub services: Vec<String>,
    /// What the engine answered to the profile sent inline.
    pub refusal: String,
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

/// Builds the images of `compose_files` in `runtime` (only those whose inputs changed). A rootless
/// user that cannot read the project builds from a private staged copy, as `Stack::up` does; the
/// copy is removed when the build is done.
pub fn build_images(
    runtime: &Runtime,
    compose_files: &[PathBuf],
    on_phase: &mut dyn FnMut(&str),
) -> Result<ImagesReport> {
    let run_id = runs::fresh_run_id();
    let run_dir = RunRecord::create_dir(&run_id)?;
    let _guard = RunDirGuard(Some(run_id));
    let files = staging::stage_if_needed(runtime, compose_files, &run_dir)?;
    let merged = ComposeSet::load(&files)?.merged();
    images::prepare(runtime, &merged, on_phase)
}

/// A stack owned by this process. Dropping it tears it down.
pub struct Stack {
    runtime: Runtime,
    provider: Provider,
    record: RunRecord,
    armed: bool,
    /// The run's own Podman API service (Compose v2 on Podman), held for its `Drop`: it stops
    /// after the teardown that still needs it.
    #[allow(dead_code)]
    api: Option<ApiService>,
    seccomp_remedy: Option<SeccompRemedy>,
    /// This process's one stack of a Podman engine (see [`crate::runtime::slots`]); declared
    /// last, so it is released after the teardown and the API service.
    #[allow(dead_code)]
    slot: crate::runtime::slots::EngineSlot,
}

impl Stack {
    /// Builds missing images, starts the stack and waits until every service is ready. On any
    /// error the partial stack is torn down before returning.
    pub fn up(opts: &StackOptions, on_event: &mut dyn FnMut(&Event)) -> Result<(Stack, UpReport)> {
        let started = Instant::now();
        if !opts.bind_ip.is_loopback() {
            return Err(
                HarnessError::usage(format!("bind address {} is not a loopback address", opts.bind_ip))
                    .with_hint("published ports must bind to 127.0.0.0/8 (for example 127.0.0.1)".to_string()),
            );
        }
        let runtime = Runtime::resolve(opts.runtime)?;
        // The compose tool is asked for its version while the run is prepared; which tool it is
        // follows from the target.
        let tool = compose::tool_for(opts.runtime);
        let slot = crate::runtime::slots::acquire(opts.runtime, crate::runtime::slots::SLOT_WAIT)?;
        let run_id = match &opts.run_id {
            Some(id) if runs::valid_run_id(id) => id.clone(),
            Some(id) => return Err(runs::invalid_run_id(id)),
            None => runs::new_run_id()?,
        };
        let project = project_name(opts.runtime, &run_id);
        let run_dir = RunRecord::create_dir(&run_id)?;
        // Until the Stack exists, the run directory (and any staged copy) goes with this guard.
        let mut run_dir_guard = RunDirGuard(Some(run_id.clone()));
        let files = staging::stage_if_needed(&runtime, &opts.compose_files, &run_dir)?;
        let set = ComposeSet::load(&files)?;
        let merged = set.merged();

        let (mut env, ports) = ports::publish_env(&merged, opts.bind_ip)?;
        env.extend(ports::caller_env(
            &files,
            &env,
            runtime.rootless_user().is_some_and(|u| u.switch),
        ));
        let workdir = files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let owner_pid = std::process::id();
        let owner_start = runs::process_start_time(owner_pid).unwrap_or(0);
        let labels = run_labels(&run_id, opts.runtime.name(), owner_pid, owner_start);

        // The compose tool's version only goes into the report: it is asked alongside the whole
        // start (podman-compose answers in 0.12-0.16 s, more than the image lookups take) and
        // awaited once `up` is over; a missing tool still fails the run, with its own error.
        let detect = {
            let runtime = runtime.clone();
            std::thread::spawn(move || compose::detect(&runtime))
        };
        let detected = |detect: std::thread::JoinHandle<Result<Provider>>| {
            detect.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        // Compose v2 on Podman: its resolved model and the run's API service are made while the
        // images are prepared (neither needs the other). The service is started from this
        // thread: its parent-death signal follows the thread that spawned it.
        let (images, v2_api) = std::thread::scope(|scope| {
            let (progress, messages) = std::sync::mpsc::channel::<String>();
            let (runtime, merged) = (&runtime, &merged);
            let images = scope.spawn(move || {
                images::prepare(runtime, merged, &mut |msg| {
                    let _ = progress.send(msg.to_string());
                })
            });
            // Names a killed start left in Podman's DNS server would answer for this run's
            // networks too, when they get the same subnet: removed before any network is made.
            let dns = scope.spawn(move || dns_leftovers::sweep(runtime));
            // A stale rootless network namespace (a killed teardown's) would leave every
            // container `created`; with the engine's slot held, nothing of this process is
            // setting one up (image lookups, `compose config` and the API service use none).
            let netns = scope.spawn(move || crate::runtime::rootless_netns::repair_stale(runtime));
            on_event(&Event::Phase(format!("images ({})", opts.runtime)));
            let v2_api = opts
                .runtime
                .via_podman_api()
                .then(|| {
                    on_event(&Event::Phase("starting the run's Podman API service".into()));
                    let project = Project {
                        name: project.clone(),
                        files: files.clone(),
                        workdir: workdir.clone(),
                        env: env.clone(),
                        kube: None,
                    };
                    start_v2_api(runtime, tool, &project, &run_id, &run_dir)
                })
                .transpose();
            // Ends when the images thread is done (it drops the sender).
            for msg in messages {
                on_event(&Event::Phase(msg));
            }
            let images = images.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            match netns.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                Ok(Some(removed)) => on_event(&Event::Phase(format!("repaired: {removed}"))),
                Ok(None) => {}
                Err(e) => tracing::warn!("could not check the rootless network namespace: {e}"),
            }
            match dns.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                Ok(sweep) => {
                    for f in sweep.foreign {
                        tracing::warn!(
                            "aardvark-dns still serves names of network {}, which no longer exists: a network of \
                             this run that gets its subnet resolves them too (remove {} as the engine's user)",
                            f.network,
                            f.path.display()
                        );
                    }
                }
                Err(e) => tracing::warn!("could not look for stale aardvark-dns entries: {e}"),
            }
            (images, v2_api)
        });
        // A missing compose tool first: it explains a failed `compose config` too.
        let (images, v2_api) = match (images, v2_api) {
            (Ok(images), Ok(v2_api)) => (images, v2_api),
            (Err(e), _) | (_, Err(e)) => return Err(detected(detect).err().unwrap_or(e)),
        };

        let override_path = run_dir.join("hydra.override.yml");
        std::fs::write(
            &override_path,
            override_yaml(&merged, &labels, &images.service_images()),
        )?;
        let mut compose_files = files.clone();
        compose_files.push(override_path);
        let (api, seccomp_remedy) = match v2_api {
            Some(v2) => {
                env.push(("DOCKER_HOST".into(), v2.api.docker_host()));
                let remedy = seccomp_remedy(&runtime, &v2, &labels, &images)?;
                if let Some(remedy) = &remedy {
                    let path = run_dir.join("hydra.seccomp-remedy.yml");
                    std::fs::write(&path, &remedy.1)?;
                    compose_files.push(path);
                }
                (Some(v2.api), remedy.map(|r| r.0))
            }
            None => (None, None),
        };
        // The kube-play targets: the YAML played instead of the compose files.
        let kube = opts
            .runtime
            .is_kube()
            .then(|| {
                on_event(&Event::Phase("kube YAML from the compose files".into()));
                // What `podman run` drops on this host, kube play must not be given.
                let drop_limits =
                    runtime.kind().is_rootless() && runtime.cgroup_version() == crate::runtime::CgroupVersion::V1;
                crate::kube::play::write(
                    &merged,
                    &project,
                    &env,
                    &labels,
                    &images.service_images(),
                    drop_limits,
                    &run_dir,
                )
            })
            .transpose()?;
        let record = RunRecord {
            run_id: run_id.clone(),
            project: project.clone(),
            runtime: opts.runtime,
            tool,
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
            kube: kube.as_ref().map(|k| k.played.clone()),
        };
        record.save()?;
        // From here on, anything that fails tears down through Drop.
        run_dir_guard.0 = None;
        let mut stack = Stack {
            runtime,
            provider: Provider {
                tool,
                version: String::new(),
            },
            record,
            armed: true,
            api,
            seccomp_remedy: seccomp_remedy.clone(),
            slot,
        };

        if let Some(kube) = &kube {
            on_event(&Event::Phase("the run's network, secrets and claims".into()));
            crate::kube::play::create_objects(&stack.runtime, kube, &labels, &project)?;
        }
        on_event(&Event::Phase(format!("{tool} up")));
        let waited = stack.up_and_wait(started, opts.ready_timeout, on_event);
        // A tool that cannot say its version explains a failed `up` best; either fails the run.
        let provider = detected(detect)?;
        let waited = waited?;
        debug_assert_eq!(provider.tool, tool);
        stack.provider = provider.clone();
        let report = UpReport {
            runtime: opts.runtime,
            project,
            run_id,
            compose: provider,
            images,
            compose_up_seconds: waited.compose_seconds,
            services: waited.services,
            total_seconds: started.elapsed().as_secs_f64(),
            compose_up_stderr: waited.compose_stderr,
            at_compose_return: waited.at_compose_return,
            harness_ready_seconds: waited.harness_ready_seconds,
            seccomp_remedy,
            compose_gave_up: waited.compose_gave_up,
            kube_divergences: kube.map(|k| k.divergences).unwrap_or_default(),
        };
        Ok((stack, report))
    }

    /// Runs `compose up` and, alongside it, the harness's readiness loop: Compose v2 waits for
    /// `depends_on` health (and `--wait`) itself, and on Podman without systemd only the harness's
    /// loop runs healthchecks, so waiting after `up` returned would wait forever.
    fn up_and_wait(&self, started: Instant, timeout: Duration, on_event: &mut dyn FnMut(&Event)) -> Result<UpAndWait> {
        let up = self.compose(&Action::Up);
        let up_signals = std::sync::Arc::new(Signals::new());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let runtime = self.runtime.clone();
        let run_id = self.record.run_id.clone();
        let gave_up = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let retry_until = Instant::now() + timeout;
        let thread = {
            let (up, up_signals, done, failed, gave_up) = (
                up.clone(),
                up_signals.clone(),
                done.clone(),
                failed.clone(),
                gave_up.clone(),
            );
            let v2 = self.provider.tool == ComposeTool::DockerComposeV2;
            std::thread::spawn(move || {
                let t = Instant::now();
                let out = loop {
                    let out = exec::run_with(&up_signals, &up, UP_TIMEOUT, Interrupt::Allowed);
                    // Compose v2 aborts `up` (and `--wait`) the moment a dependency reports
                    // unhealthy, even briefly (aardvark-dns 1.4 outages after restarts): it is
                    // run again, as a user would, while the harness's loop keeps probing; each
                    // abort is reported.
                    match &out {
                        Ok(o) if !o.success() && v2 && Instant::now() < retry_until => {
                            if let Some(line) = o.stderr.lines().find(|l| l.contains("is unhealthy")) {
                                tracing::warn!("compose up gave up ({}); running it again", line.trim());
                                gave_up.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                                    "{:.1}s: {}",
                                    t.elapsed().as_secs_f64(),
                                    line.trim()
                                ));
                                if up_signals.sleep(Duration::from_secs(3)).is_ok() {
                                    continue;
                                }
                            }
                            break out;
                        }
                        _ => break out,
                    }
                };
                let seconds = t.elapsed().as_secs_f64();
                let states = states_now(&runtime, &run_id);
                failed.store(
                    !matches!(&out, Ok(o) if o.success()),
                    std::sync::atomic::Ordering::SeqCst,
                );
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                (out, seconds, states)
            })
        };
        // Announced once the tool has created the first container: from then on the run has
        // objects to tear down (an interrupt before that finds none).
        let mut announced = false;
        let total = self.record.services.len();
        let waited = readiness::wait_while(
            &self.runtime,
            &self.record.run_id,
            &self.record.project,
            &self.record.services,
            started,
            timeout,
            &|| !failed.load(std::sync::atomic::Ordering::SeqCst),
            &|| done.load(std::sync::atomic::Ordering::SeqCst),
            &mut |p| {
                if !announced && p.created > 0 {
                    announced = true;
                    on_event(&Event::Phase(format!("waiting for {total} services to become healthy")));
                }
                on_event(&Event::Waiting(p.clone()))
            },
        );
        let harness_ready_seconds = started.elapsed().as_secs_f64();
        if waited.is_err() && !done.load(std::sync::atomic::Ordering::SeqCst) {
            // Not ready (or interrupted): the compose tool must not outlive the wait.
            up_signals.cancel();
        }
        let (out, compose_seconds, at_compose_return) = thread
            .join()
            .map_err(|_| HarnessError::usage("the compose up thread panicked".to_string()))?;
        let out = match out {
            Ok(out) => out,
            Err(HarnessError::Interrupted) if waited.is_err() => return Err(waited.expect_err("checked")),
            Err(e) => return Err(e),
        };
        if !out.success() {
            let failed = HarnessError::Failed {
                cmd: up.display(),
                status: out.status,
                stderr: exec::tail(&out.stderr, 30),
            };
            // Compose v2 gives up as soon as a service exits or stays unhealthy, before the
            // harness's loop would: report what the engine shows now, with the logs of every
            // service not ready (the cause is usually there), then the tool's own words.
            let now = readiness::wait_while(
                &self.runtime,
                &self.record.run_id,
                &self.record.project,
                &self.record.services,
                started,
                Duration::ZERO,
                &|| true,
                &|| true,
                &mut |_| {},
            );
            return Err(match now {
                Err(HarnessError::Unhealthy { project, detail, .. }) => HarnessError::Unhealthy {
                    project,
                    after: started.elapsed(),
                    detail: format!("{detail}\n  {failed}"),
                },
                _ => failed,
            });
        }
        let compose_gave_up = gave_up.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(UpAndWait {
            services: waited?,
            compose_seconds,
            compose_stderr: out.stderr,
            at_compose_return,
            harness_ready_seconds,
            compose_gave_up,
        })
    }

    /// The seccomp remedy this run applied (Compose v2 on Podman 4.3), if any: posture reads the
    /// engine's default profile as the project's own for the named services.
    pub fn seccomp_remedy(&self) -> Option<&SeccompRemedy> {
        self.seccomp_remedy.as_ref()
    }

    /// Reattaches to a stack that `harness up` left running.
    pub fn attach(record: RunRecord) -> Result<Stack> {
        let runtime = Runtime::resolve(record.runtime)?;
        let provider = Provider {
            tool: record.tool,
            version: String::new(),
        };
        let slot = crate::runtime::slots::acquire(record.runtime, crate::runtime::slots::SLOT_WAIT)?;
        // Compose v2 on Podman needs the run's API service to take the stack down again.
        let api = match record.runtime.via_podman_api() {
            // Started here, waited for by the first compose command: `down` looks up the run's
            // anonymous volumes meanwhile.
            true => Some(ApiService::spawn(&runtime, &record.run_id, &record.dir(), None)?),
            false => None,
        };
        Ok(Stack {
            runtime,
            provider,
            record,
            armed: true,
            api,
            seccomp_remedy: None,
            slot,
        })
    }

    /// The run's record.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The runtime the stack runs in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The compose tool that drives the stack.
    pub fn tool(&self) -> ComposeTool {
        self.provider.tool
    }

    /// Host port chosen for each port variable of the compose file.
    pub fn ports(&self) -> &BTreeMap<String, u16> {
        &self.record.ports
    }

    /// The run's containers by compose service name, as the engine reports them now.
    pub fn containers(&self) -> Result<BTreeMap<String, crate::runtime::inspect::ContainerInspect>> {
        containers_of(&self.runtime, &self.record.run_id)
    }

    /// Runs `argv` inside `service`'s container without a TTY (`exec -T` semantics) and returns
    /// its output; a non-zero exit is returned, not raised.
    pub fn exec(&self, service: &str, argv: &[&str], timeout: Duration) -> Result<exec::Output> {
        let containers = self.containers()?;
        let c = containers.get(service).ok_or_else(|| HarnessError::NoContainer {
            service: service.to_string(),
            project: self.record.project.clone(),
        })?;
        let spec = self.runtime.engine().args(["exec", &c.id]).args(argv.iter().copied());
        exec::run(&spec, timeout, Interrupt::Allowed)
    }

    /// Runs a compose action on this run's project; the tool's exit code is returned, not trusted.
    pub fn compose_run(&self, action: &Action) -> Result<exec::Output> {
        self.api_answering()?;
        exec::run(&self.compose(action), UP_TIMEOUT, Interrupt::Allowed)
    }

    /// Waits for the run's API service (Compose v2 on Podman) to answer, if it has one.
    pub fn api_answering(&self) -> Result<()> {
        self.api.as_ref().map_or(Ok(()), ApiService::wait_answering)
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
        self.up_and_wait(Instant::now(), timeout, &mut |_| {}).map(|_| ())
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

    /// Lets another stack of this engine start in this process while this one is stopped (see
    /// [`crate::runtime::slots`]): the drill's rollback comes up beside its stopped source.
    pub fn release_engine_slot(&mut self) {
        self.slot.release();
    }

    /// Leaves the stack (and its volumes) in place if this process ends before [`Stack::down`]:
    /// recorded as kept, so `harness gc` leaves it alone and `harness down` removes it.
    pub fn keep_on_exit(&mut self) -> Result<()> {
        self.outlive_process_as(RunStatus::Kept)
    }

    /// Leaves the stack (and its volumes) in place if this process ends before [`Stack::down`],
    /// recorded as a drill's source ([`RunStatus::DrillSource`]): unlike a kept stack, it is
    /// swept once this process is gone.
    pub fn outlive_process(&mut self) -> Result<()> {
        self.outlive_process_as(RunStatus::DrillSource)
    }

    fn outlive_process_as(&mut self, status: RunStatus) -> Result<()> {
        self.record.status = status;
        self.record.save()?;
        self.armed = false;
        Ok(())
    }

    /// Removes everything the run created and verifies nothing with its labels is left.
    pub fn down(mut self) -> Result<TeardownReport> {
        self.armed = false;
        let result = teardown(&self.runtime, &self.provider, &self.record, self.api.as_ref());
        match &result {
            Ok(_) => self.record.remove(),
            Err(e) => note_teardown_failure(&self.record.project, e),
        }
        result
    }

    /// The compose command for `action` on this run's project. Call [`Stack::api_answering`]
    /// before running it on a reattached Compose v2 on Podman run.
    pub fn compose(&self, action: &Action) -> crate::runtime::CommandSpec {
        compose::command(&self.runtime, self.provider.tool, &project_of(&self.record), action)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match teardown(&self.runtime, &self.provider, &self.record, self.api.as_ref()) {
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

/// What [`Stack::up_and_wait`] saw.
struct UpAndWait {
    services: Vec<ServiceReady>,
    compose_seconds: f64,
    compose_stderr: String,
    at_compose_return: BTreeMap<String, String>,
    harness_ready_seconds: f64,
    compose_gave_up: Vec<String>,
}

/// Run `run_id`'s containers by compose service name, as the engine reports them now.
fn containers_of(
    runtime: &Runtime,
    run_id: &str,
) -> Result<BTreeMap<String, crate::runtime::inspect::ContainerInspect>> {
    let ids = runtime.list_by_label(ObjectKind::Container, &labels::filter(labels::RUN, run_id))?;
    Ok(runtime
        .inspect_containers(&ids)?
        .into_iter()
        .filter_map(|c| Some((c.label(readiness::SERVICE_LABEL)?.to_string(), c)))
        .collect())
}

/// Each service's `state/health` now (`none` without a healthcheck); empty when the engine
/// cannot be asked.
fn states_now(runtime: &Runtime, run_id: &str) -> BTreeMap<String, String> {
    containers_of(runtime, run_id)
        .unwrap_or_default()
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
        .collect()
}

/// The run's Podman API service for Compose v2, started with the project's seccomp profile set
/// engine-wide, and Compose v2's resolved model of the user's files, where that profile was read.
struct V2Api {
    api: ApiService,
    model: ResolvedModel,
    /// Each service's seccomp profile file, from the model.
    profiles: BTreeMap<String, PathBuf>,
    /// The one profile all those services share, if any.
    profile: Option<PathBuf>,
}

/// Reads the user's files through Compose v2 (`config`) and starts the run's API service. Needs
/// neither the images nor the harness's override, so it runs while the images are prepared.
fn start_v2_api(
    runtime: &Runtime,
    tool: ComposeTool,
    project: &Project,
    run_id: &str,
    run_dir: &Path,
) -> Result<V2Api> {
    let config = compose::command(runtime, tool, project, &Action::Config);
    let out = exec::run_ok(&config, Duration::from_secs(60), Interrupt::Allowed)?;
    let model = ResolvedModel::parse(&out.stdout)?;
    let profiles = model.seccomp_profiles(&project.workdir);
    let mut distinct: Vec<&PathBuf> = profiles.values().collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > 1 {
        return Err(HarnessError::compose(
            format!(
                "services use {} different seccomp profiles ({}); Compose v2 on Podman 4.3 can only apply one, engine-wide",
                distinct.len(),
                distinct.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            "give every service the same profile, or run this stack with podman-compose (target podman / podman-rootless)",
        ));
    }
    let profile = distinct.first().map(|p| p.to_path_buf());
    let api = ApiService::start(runtime, run_id, run_dir, profile.as_deref())?;
    Ok(V2Api {
        api,
        model,
        profiles,
        profile,
    })
}

/// Whether the project's seccomp profile needs the engine-wide remedy under Compose v2 on Podman,
/// observed with a throwaway container created the way Compose v2 would; the remedy with its
/// override text when the engine refuses the inline profile.
fn seccomp_remedy(
    runtime: &Runtime,
    v2: &V2Api,
    labels: &BTreeMap<String, String>,
    images: &ImagesReport,
) -> Result<Option<(SeccompRemedy, String)>> {
    let (Some(profile), Some(image)) = (&v2.profile, images.service_images().into_values().next()) else {
        return Ok(None);
    };
    match v2_on_podman::probe_inline_seccomp(runtime, &v2.api.docker_host(), &image, profile, labels)? {
        InlineSeccomp::Accepted => Ok(None),
        InlineSeccomp::Refused(refusal) => {
            let services: Vec<String> = v2.profiles.keys().cloned().collect();
            let text = v2_on_podman::remedy_override(&v2.model, &services);
            Ok(Some((
                SeccompRemedy {
                    profile: profile.clone(),
                    services,
                    refusal,
                },
                text,
            )))
        }
    }
}

pub(crate) fn project_of(record: &RunRecord) -> Project {
    Project {
        name: record.project.clone(),
        files: record.compose_files.clone(),
        workdir: record.workdir.clone(),
        env: record.env.clone(),
        kube: record.kube.clone(),
    }
}

/// `hydra-<runtime>-<run id>`, a valid compose project name unique per run.
pub fn project_name(runtime: RuntimeKind, run_id: &str) -> String {
    format!("hydra-{}-{}", runtime.name(), run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_valid_and_name_the_runtime() {
        for kind in RuntimeKind::ALL {
            let name = project_name(kind, "1a2b3c4d");
            assert!(compose::valid_project_name(&name), "{name}");
            assert!(name.contains(kind.name()));
        }
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
            kube: None,
        };
        let stack = Stack {
            runtime: Runtime::resolve(RuntimeKind::Docker).unwrap(),
            provider: Provider {
                tool: ComposeTool::DockerComposeV1,
                version: String::new(),
            },
            record,
            armed: true,
            api: None,
            seccomp_remedy: None,
            slot: crate::runtime::slots::acquire(RuntimeKind::Docker, Duration::ZERO).expect("Docker never waits"),
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
