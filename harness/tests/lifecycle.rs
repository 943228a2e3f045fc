//! Lifecycle under every runtime, for real: the bundled stack comes up healthy and `down` leaves
//! nothing; SIGINT during readiness leaves nothing; after `kill -9` of `harness up`, `harness gc`
//! removes that run's objects and leaves an unrelated container alone; on Podman, `gc` also
//! removes the storage-only container (no record, no label) a create cut off by kill -9 leaves,
//! and ends the Podman commands a killed run left running before it sweeps.
//!
//! Trials are named `<runtime>::lifecycle::<check>`. A runtime that is not usable here is shown as
//! ignored (reason on stderr), or fails when `HYDRA_REQUIRE` names it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydra::labels;
use hydra::runtime::{exec, CommandSpec, Interrupt, Runtime, RuntimeKind};
use hydra::stack::{Stack, StackOptions};
use libtest_mimic::{Arguments, Failed};

fn main() {
    let args = Arguments::from_args();
    let mut per_target = Vec::new();
    for (kind, availability) in common::runtimes() {
        let mut trials = Vec::new();
        let checks: [(&str, Check); 4] = [
            ("images_unchanged_rebuild_nothing", images_unchanged_rebuild_nothing),
            ("up_healthy_down_leaves_nothing", up_healthy_down_leaves_nothing),
            (
                "sigint_during_readiness_leaves_nothing",
                sigint_during_readiness_leaves_nothing,
            ),
            ("gc_sweeps_killed_run_only", gc_sweeps_killed_run_only),
        ];
        for (name, check) in checks {
            let trial_name = format!("{}::lifecycle::{name}", kind.ident());
            let trial = common::trial(trial_name, &availability, move || check(kind));
            trials.push(trial);
        }
        // Docker has no container without a record and no engine command that outlives its client:
        // these checks exist for Podman's engines only.
        if kind.is_podman() {
            let name = "gc_removes_storage_only_containers";
            let trial_name = format!("{}::lifecycle::{name}", kind.ident());
            trials.push(common::trial(trial_name, &availability, move || {
                gc_removes_storage_only_containers(kind)
            }));
            let name = "gc_ends_a_dead_runs_podman_commands";
            let trial_name = format!("{}::lifecycle::{name}", kind.ident());
            trials.push(common::trial(trial_name, &availability, move || {
                gc_ends_a_dead_runs_podman_commands(kind)
            }));
        }
        per_target.push((kind, trials));
    }
    // Engines in turn: the two test threads mostly work on different engines.
    libtest_mimic::run(&args, common::engines_in_turn(per_target)).exit();
}

/// One lifecycle check, run under a runtime.
type Check = fn(RuntimeKind) -> Result<(), Failed>;

fn images_unchanged_rebuild_nothing(kind: RuntimeKind) -> Result<(), Failed> {
    let rt = Runtime::resolve(kind)?;
    // Through the same path as `harness images`: a rootless user that cannot read the project
    // (a clone under /root) builds from a staged copy, and the tags must not depend on where.
    let compose = [hydra::workspace::bundled_compose_file()];
    let first = hydra::stack::build_images(&rt, &compose, &mut |_| {})?;
    let second = hydra::stack::build_images(&rt, &compose, &mut |_| {})?;
    let rebuilt: Vec<&str> = second
        .images
        .iter()
        .filter(|i| i.built)
        .map(|i| i.reference.as_str())
        .collect();
    if !rebuilt.is_empty() {
        return Err(format!("second `images` rebuilt {rebuilt:?}").into());
    }
    let refs = |r: &hydra::images::ImagesReport| r.images.iter().map(|i| i.reference.clone()).collect::<Vec<_>>();
    if refs(&first) != refs(&second) || second.images.len() != 7 {
        return Err(format!(
            "tags changed or images missing: {:?} vs {:?}",
            refs(&first),
            refs(&second)
        )
        .into());
    }
    eprintln!("{kind}: second `images` took {:.2}s and built nothing", second.seconds);
    Ok(())
}

fn up_healthy_down_leaves_nothing(kind: RuntimeKind) -> Result<(), Failed> {
    let (stack, report) = Stack::up(&StackOptions::new(kind), &mut |_| {}).map_err(|e| format!("{e}"))?;
    let expected = stack.record().services.clone();
    let got: Vec<String> = report.services.iter().map(|s| s.service.clone()).collect();
    if got != expected {
        return Err(format!("ready services {got:?} != compose services {expected:?}").into());
    }
    // Independent of the readiness loop: every container of the run is running and healthy now.
    let rt = stack.runtime().clone();
    let run_label = labels::filter(labels::RUN, &stack.record().run_id);
    let ids = rt.list_by_label(hydra::runtime::ObjectKind::Container, &run_label)?;
    let containers = rt.inspect_containers(&ids)?;
    if containers.len() != expected.len() {
        return Err(format!("{} containers for {} services", containers.len(), expected.len()).into());
    }
    for c in &containers {
        if !c.state.running || c.health_status() != hydra::runtime::inspect::HealthStatus::Healthy {
            return Err(format!("{} is {} / {:?}", c.short_name(), c.state.status, c.health_status()).into());
        }
    }
    if common::objects_with(&rt, &run_label)
        .iter()
        .filter(|o| o.starts_with("network"))
        .count()
        == 0
    {
        return Err("the run's networks do not carry its label".into());
    }
    let project = stack.record().project.clone();
    stack.down().map_err(|e| format!("{e}"))?;
    let mut left: Vec<String> = [run_label, labels::filter("com.docker.compose.project", &project)]
        .iter()
        .flat_map(|l| common::objects_with(&rt, l))
        .collect();
    left.extend(common::stale_dns_of(&rt, &project));
    left.extend(common::monitors_of(&rt, &project));
    left.extend(common::storage_only_of(&rt, &project));
    if !left.is_empty() {
        return Err(format!("left after down: {left:?}").into());
    }
    Ok(())
}

/// Starts `harness up` for `kind` with a fixed run id and returns it once readiness has begun.
fn start_up_until_waiting(kind: RuntimeKind, run_id: &str) -> Result<std::process::Child, Failed> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["up", "--runtime", kind.name()])
        .env("HYDRA_RUN_ID", run_id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let lines = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Printed once compose up has returned, before the first readiness poll.
            let waiting = line.contains("services to become healthy");
            lines.lock().unwrap().push(line);
            if waiting {
                let _ = tx.send(());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(()) => Ok(child),
        Err(why) => {
            let _ = child.kill();
            let status = child.wait().ok().and_then(|s| s.code());
            let out = seen.lock().unwrap().join("\n");
            Err(format!(
                "harness up never reported readiness in progress ({why:?}; exit {status:?}); it printed:\n{out}"
            )
            .into())
        }
    }
}

fn wait_exit(child: &mut std::process::Child, deadline: Duration) -> Result<Option<i32>, Failed> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            return Err(format!("harness did not exit within {deadline:?}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A run id unique to this test process, trial and runtime: the runtimes' trials run in parallel
/// and the harness refuses to reuse an existing run's directory.
fn test_run_id(tag: &str, kind: RuntimeKind) -> String {
    format!("t{tag}-{}-{:06x}", kind.name(), std::process::id() & 0xffffff)
}

fn sigint_during_readiness_leaves_nothing(kind: RuntimeKind) -> Result<(), Failed> {
    let run_id = test_run_id("i", kind);
    let rt = Runtime::resolve(kind)?;
    let run_label = labels::filter(labels::RUN, &run_id);
    let mut child = start_up_until_waiting(kind, &run_id)?;
    if common::objects_with(&rt, &run_label).is_empty() {
        let _ = child.kill();
        return Err("no object of the run existed when readiness began".into());
    }
    // On rootful Podman, what a start cut off after netavark set its container's network up
    // leaves (seen in CI after this very test): a namespace with a veth on the run's bridge.
    let planted = if kind.is_podman() && !kind.is_rootless() {
        match PlantedNetns::on_a_bridge_of(&rt, &run_label) {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = hydra::gc::sweep(&rt, false);
                return Err(e);
            }
        }
    } else {
        None
    };
    // SAFETY: signalling our own child process by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let code = wait_exit(&mut child, Duration::from_secs(300))?;
    let mut left = common::objects_with(&rt, &run_label);
    if let Some(p) = &planted {
        left.extend(p.left(&rt));
    }
    left.extend(common::stale_dns_of(&rt, &hydra::stack::project_name(kind, &run_id)));
    left.extend(common::monitors_of(&rt, &hydra::stack::project_name(kind, &run_id)));
    left.extend(common::storage_only_of(&rt, &hydra::stack::project_name(kind, &run_id)));
    if !left.is_empty() {
        let _ = hydra::gc::sweep(&rt, false);
        return Err(format!("left after SIGINT: {left:?}").into());
    }
    if code != Some(hydra::error::exit::INTERRUPTED) {
        return Err(format!("exit code {code:?}, expected {}", hydra::error::exit::INTERRUPTED).into());
    }
    if hydra::runs::RunRecord::load(&run_id).is_some() {
        return Err("the interrupted run's record was not removed".into());
    }
    Ok(())
}

/// A network namespace with a veth on one of a run's bridges and no process inside, as netavark
/// leaves it for a `podman start` cut off after the network was set up; removed on drop.
struct PlantedNetns {
    netns: String,
    veth: String,
    bridge: String,
}

impl PlantedNetns {
    /// Waits (up to 60 s) for one of the run's bridges to exist (netavark makes it with the first
    /// container on the network), then plants the namespace there.
    fn on_a_bridge_of(rt: &Runtime, run_label: &str) -> Result<PlantedNetns, Failed> {
        use hydra::runtime::orphan_netns;
        let deadline = Instant::now() + Duration::from_secs(60);
        let bridge = loop {
            let bridges = orphan_netns::bridges_of(rt, Some(run_label))?;
            if let Some(b) = bridges
                .iter()
                .find(|b| std::path::Path::new("/sys/class/net").join(b).exists())
            {
                break b.clone();
            }
            if Instant::now() > deadline {
                return Err(format!("no bridge of the run appeared (its networks' bridges: {bridges:?})").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let hex = format!("{:032x}", nanos ^ ((std::process::id() as u128) << 64));
        let planted = PlantedNetns {
            netns: format!(
                "netns-{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            ),
            veth: format!("hyt{}", &hex[24..32]),
            bridge,
        };
        let ip = |args: &[&str]| -> Result<(), Failed> {
            let spec = CommandSpec::new("ip").args(args.iter().copied());
            exec::run_ok(&spec, Duration::from_secs(10), Interrupt::Ignored)?;
            Ok(())
        };
        ip(&["netns", "add", &planted.netns])?;
        ip(&[
            "link",
            "add",
            &planted.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &planted.netns,
        ])?;
        ip(&["link", "set", &planted.veth, "master", &planted.bridge, "up"])?;
        Ok(planted)
    }

    /// What is left of it: the namespace, its veth, and its bridge unless a Podman network uses
    /// that bridge (again).
    fn left(&self, rt: &Runtime) -> Vec<String> {
        let mut left = Vec::new();
        if std::path::Path::new("/run/netns").join(&self.netns).exists() {
            left.push(format!("network namespace {}", self.netns));
        }
        if std::path::Path::new("/sys/class/net").join(&self.veth).exists() {
            left.push(format!("veth {}", self.veth));
        }
        let in_use = hydra::runtime::orphan_netns::bridges_of(rt, None).unwrap_or_default();
        if std::path::Path::new("/sys/class/net").join(&self.bridge).exists() && !in_use.contains(&self.bridge) {
            left.push(format!("bridge {}", self.bridge));
        }
        left
    }
}

impl Drop for PlantedNetns {
    fn drop(&mut self) {
        for args in [
            vec!["netns", "delete", self.netns.as_str()],
            vec!["link", "delete", self.veth.as_str()],
        ] {
            let _ = exec::run(
                &CommandSpec::new("ip").args(args),
                Duration::from_secs(10),
                Interrupt::Ignored,
            );
        }
    }
}

/// An unrelated container (not created by the harness) that must survive `gc`; removed on drop.
struct Unrelated {
    rt: Runtime,
    id: String,
}

impl Drop for Unrelated {
    fn drop(&mut self) {
        let _ = self
            .rt
            .remove(hydra::runtime::ObjectKind::Container, std::slice::from_ref(&self.id));
    }
}

/// Held by the trials that kill a run and run `harness gc`: gc sweeps every dead run of an
/// engine, so one trial's gc would sweep the run another trial just killed, before that trial
/// looked at what its kill left (seen in CI: podman-rootless-v2's two gc trials at once).
static GC_TRIALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gc_sweeps_killed_run_only(kind: RuntimeKind) -> Result<(), Failed> {
    let _gc = GC_TRIALS.lock().unwrap_or_else(|p| p.into_inner());
    let rt = Runtime::resolve(kind)?;
    let spec: CommandSpec = rt.engine().args([
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "io.hydra.test=unrelated",
        hydra::images::base::BASE_IMAGE,
        "sleep",
        "600",
    ]);
    let out = exec::run_ok(&spec, Duration::from_secs(60), Interrupt::Ignored)?;
    let unrelated = Unrelated {
        rt: rt.clone(),
        id: out.stdout.trim().to_string(),
    };

    let run_id = test_run_id("k", kind);
    let run_label = labels::filter(labels::RUN, &run_id);
    let mut child = start_up_until_waiting(kind, &run_id)?;
    child.kill()?; // SIGKILL: no teardown runs
    child.wait()?;
    // Give compose a moment to finish what it was doing; then the run's objects must still be there.
    std::thread::sleep(Duration::from_secs(2));
    let leaked = common::objects_with(&rt, &run_label);
    if leaked.is_empty() {
        return Err("nothing leaked after kill -9: the test proves nothing".into());
    }
    let stdout = common::run_gc(kind)?;
    if !stdout.contains(&format!("run {run_id} removed")) {
        return Err(format!("gc did not report removing {run_id}:\n{stdout}").into());
    }
    let mut left = common::objects_with(&rt, &run_label);
    left.extend(common::stale_dns_of(&rt, &hydra::stack::project_name(kind, &run_id)));
    left.extend(common::monitors_of(&rt, &hydra::stack::project_name(kind, &run_id)));
    left.extend(common::storage_only_of(&rt, &hydra::stack::project_name(kind, &run_id)));
    if !left.is_empty() {
        return Err(format!("left after gc: {left:?}").into());
    }
    let still = rt.list_by_label(hydra::runtime::ObjectKind::Container, "io.hydra.test=unrelated")?;
    if !still
        .iter()
        .any(|id| id.starts_with(&unrelated.id) || unrelated.id.starts_with(id.as_str()))
    {
        return Err("gc removed an unrelated container".into());
    }
    drop(unrelated);
    Ok(())
}

/// A `podman build` of a killed run, waiting on its `ADD` from a loopback server that never
/// answers (its working container exists from `FROM` on and is named after its base image, here
/// one tagged with the run's project name). Dropping it removes what it set up, whatever happened.
struct HangingBuild {
    rt: Runtime,
    run_id: String,
    project: String,
    image: String,
    volume: String,
    labels: [String; 4],
    build: Option<std::process::Child>,
    _dir: tempfile::TempDir,
    _server: std::net::TcpListener,
    _held: std::net::TcpStream,
}

impl HangingBuild {
    /// Starts it (with the run's labels on its command line when `labelled`, as podman-compose
    /// and the volume helpers pass them) and returns once the `ADD` waits.
    fn start(kind: RuntimeKind, prefix: &str, labelled: bool) -> Result<HangingBuild, Failed> {
        let rt = Runtime::resolve(kind)?;
        let run_id = test_run_id(prefix, kind);
        let project = hydra::stack::project_name(kind, &run_id);
        // An owner that has exited: the run is orphaned.
        let mut gone = Command::new("true").spawn()?;
        let dead_pid = gone.id();
        gone.wait()?;
        let labels = [
            format!("{}=true", labels::MANAGED),
            format!("{}={run_id}", labels::RUN),
            format!("{}={dead_pid}", labels::OWNER_PID),
            format!("{}=1", labels::OWNER_START),
        ];
        let image = format!("localhost/{project}-db:test");
        rt.query(&["tag", hydra::images::base::BASE_IMAGE, &image])?;
        let server = std::net::TcpListener::bind("127.0.0.1:0")?;
        server.set_nonblocking(true)?;
        let port = server.local_addr()?.port();
        let dir = tempfile::Builder::new().prefix("hydra-hanging-build").tempdir()?;
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let containerfile = dir.path().join("Containerfile");
        std::fs::write(
            &containerfile,
            format!("FROM {image}\nADD http://127.0.0.1:{port}/never /never\n"),
        )?;
        std::fs::set_permissions(&containerfile, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let mut args = vec!["build".to_string(), "--layers=false".into()];
        if labelled {
            for l in &labels {
                args.extend(["--label".to_string(), l.clone()]);
            }
        }
        args.extend([
            "-f".into(),
            containerfile.display().to_string(),
            dir.path().display().to_string(),
        ]);
        let log = dir.path().join("build.log");
        let build = exec::spawn_background(&rt.engine().args(args), &log)?;
        // The download has begun once the server has a connection: the working container exists.
        let deadline = Instant::now() + Duration::from_secs(120);
        let held = loop {
            match server.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let mut build = build;
                    // SAFETY: SIGKILL to the process group of our own child.
                    unsafe { libc::killpg(build.id() as i32, libc::SIGKILL) };
                    let _ = build.wait();
                    let _ = hydra::runtime::storage_only::sweep_project(&rt, &project);
                    let _ = rt.query(&["rmi", &image]);
                    let printed = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(format!("the build never fetched its ADD ({e}); it printed:\n{printed}").into());
                }
            }
        };
        Ok(HangingBuild {
            volume: format!("{project}_data"),
            rt,
            run_id,
            project,
            image,
            labels,
            build: Some(build),
            _dir: dir,
            _server: server,
            _held: held,
        })
    }

    /// A volume with the run's labels, as a killed run leaves them.
    fn labelled_volume(&self) -> Result<(), Failed> {
        let mut create = vec!["volume", "create"];
        for l in &self.labels {
            create.extend(["--label", l.as_str()]);
        }
        create.push(&self.volume);
        self.rt.query(&create)?;
        Ok(())
    }

    /// Whether the build is still running, given up to `wait` to end.
    fn still_running(&mut self, wait: Duration) -> Result<bool, Failed> {
        let deadline = Instant::now() + wait;
        let Some(build) = self.build.as_mut() else {
            return Ok(false);
        };
        loop {
            if build.try_wait()?.is_some() {
                return Ok(false);
            }
            if Instant::now() >= deadline {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of the build, as the harness's death gives it: no cleanup runs.
    fn kill(&mut self) -> Result<(), Failed> {
        if let Some(mut build) = self.build.take() {
            // SAFETY: SIGKILL to the process group of our own child.
            unsafe { libc::killpg(build.id() as i32, libc::SIGKILL) };
            build.wait()?;
        }
        Ok(())
    }

    /// What is left of the run: labelled objects and storage-only containers of its project.
    fn left(&self) -> Vec<String> {
        let mut left = common::storage_only_of(&self.rt, &self.project);
        left.extend(common::objects_with(
            &self.rt,
            &labels::filter(labels::RUN, &self.run_id),
        ));
        left
    }
}

impl Drop for HangingBuild {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = hydra::runtime::storage_only::sweep_project(&self.rt, &self.project);
        let _ = self
            .rt
            .remove(hydra::runtime::ObjectKind::Volume, std::slice::from_ref(&self.volume));
        let _ = self.rt.query(&["rmi", &self.image]);
    }
}

/// A killed run whose only trace besides a labelled volume is a container Podman has storage
/// for but no record of: made for real by killing a [`HangingBuild`] (-9). `harness gc` must
/// remove both.
fn gc_removes_storage_only_containers(kind: RuntimeKind) -> Result<(), Failed> {
    use hydra::runtime::storage_only;
    let _gc = GC_TRIALS.lock().unwrap_or_else(|p| p.into_inner());
    let mut setup = HangingBuild::start(kind, "s", false)?;
    setup.labelled_volume()?;
    setup.kill()?;
    let (rt, project, run_id) = (&setup.rt, &setup.project, &setup.run_id);
    let before = common::storage_only_of(rt, project);
    if before.is_empty() {
        return Err("no storage-only container after killing the build: the test proves nothing".into());
    }
    if storage_only::list(rt)?
        .iter()
        .any(|c| c.of_project(project) && rt.exists(hydra::runtime::ObjectKind::Container, &c.id))
    {
        return Err("the working container has a record: it is not storage-only".into());
    }

    let stdout = common::run_gc(kind)?;
    if !stdout.contains(&format!("run {run_id} removed")) || !stdout.contains("storage-only container") {
        return Err(format!("gc did not report removing {run_id} with its storage-only container:\n{stdout}").into());
    }
    let left = setup.left();
    if !left.is_empty() {
        return Err(format!("left after gc: {left:?} (had {before:?})").into());
    }
    Ok(())
}

/// A Podman command a killed run left running (the harness's children die with it, theirs do
/// not: podman-compose's `podman create`, rootless Podman's re-executed copy), here a
/// [`HangingBuild`] with the run's labels on its command line. `harness gc` must end it before it
/// sweeps, then remove what it made: a sweep that leaves it running races with it.
fn gc_ends_a_dead_runs_podman_commands(kind: RuntimeKind) -> Result<(), Failed> {
    use hydra::runtime::stray_commands;
    let _gc = GC_TRIALS.lock().unwrap_or_else(|p| p.into_inner());
    let mut setup = HangingBuild::start(kind, "c", true)?;
    let listed: Vec<u32> = stray_commands::list(&setup.rt)
        .into_iter()
        .filter(|c| c.run_id() == setup.run_id)
        .map(|c| c.pid)
        .collect();
    if listed.is_empty() {
        return Err("the build's podman process is not listed with its run: the test proves nothing".into());
    }
    let stdout = common::run_gc(kind)?;
    if setup.still_running(Duration::from_secs(10))? {
        return Err(format!("gc left the dead run's podman command running (pids {listed:?}):\n{stdout}").into());
    }
    let run_id = &setup.run_id;
    if !stdout.contains(&format!("run {run_id} removed")) || !stdout.contains("podman command pid") {
        return Err(format!("gc did not report ending {run_id}'s podman command:\n{stdout}").into());
    }
    let running: Vec<u32> = stray_commands::list(&setup.rt)
        .into_iter()
        .filter(|c| c.run_id() == *run_id)
        .map(|c| c.pid)
        .collect();
    if !running.is_empty() {
        return Err(format!("podman processes of {run_id} still run after gc: {running:?}").into());
    }
    let left = setup.left();
    if !left.is_empty() {
        return Err(format!("left after gc: {left:?}").into());
    }
    Ok(())
}
