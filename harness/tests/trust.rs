//! The harness runs as root; these trials act as the less trusted parties it must not obey: the
//! rootless user and its containers, another local user, and the files they can write. Each one
//! reproduces a way root was once steered, and fails if it still can be.
//!
//! Trials are `<runtime>::trust::<check>` when they need an engine (ignored with the reason when
//! the runtime is not usable, failing when `HYDRA_REQUIRE` names it), `host::trust::<check>` otherwise.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hydra::runtime::{exec, CommandSpec, Interrupt, ObjectKind, Runtime, RuntimeKind};
use hydra::stack::{Stack, StackOptions};
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(RuntimeKind) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let per_runtime: [(&str, &[RuntimeKind], Check); 6] = [
        (
            "gc_ignores_crafted_run_labels",
            &[RuntimeKind::PodmanRootless],
            gc_ignores_crafted_run_labels,
        ),
        (
            "user_environment_is_minimal",
            &[RuntimeKind::PodmanRootless],
            user_environment_is_minimal,
        ),
        (
            "staging_is_private_and_minimal",
            &[RuntimeKind::PodmanRootless],
            staging_is_private_and_minimal,
        ),
        (
            "staging_is_removed_when_up_fails",
            &[RuntimeKind::PodmanRootless],
            staging_is_removed_when_up_fails,
        ),
        (
            "teardown_spares_volumes_it_did_not_create",
            &RuntimeKind::ALL,
            teardown_spares_volumes_it_did_not_create,
        ),
        (
            "setup_writes_user_config_as_the_user",
            &[RuntimeKind::PodmanRootless],
            setup_writes_user_config_as_the_user,
        ),
    ];
    let available = common::runtimes();
    for (name, kinds, check) in per_runtime {
        for (kind, availability) in available.iter().filter(|(k, _)| kinds.contains(k)) {
            let kind = *kind;
            let trial_name = format!("{}::trust::{name}", kind.ident());
            trials.push(common::trial(trial_name, availability, move || check(kind)));
        }
    }
    trials.push(Trial::test(
        "host::trust::state_dir_of_another_user_is_refused",
        state_dir_of_another_user_is_refused,
    ));
    libtest_mimic::run(&args, trials).exit();
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

fn tag() -> String {
    format!("{:06x}", std::process::id() & 0xffffff)
}

/// A root-owned scratch directory that is removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &str, name: &str) -> Result<Self, Failed> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = Path::new(parent).join(format!("hydra-trust-{name}-{}-{n}", tag()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `argv` as the rootless user (through the runtime's own wrapper) and returns stdout.
fn as_user(rt: &Runtime, argv: &[&str]) -> Result<String, Failed> {
    let spec = rt.command(argv[0]).args(argv[1..].iter().copied());
    let out = exec::run(&spec, Duration::from_secs(60), Interrupt::Ignored)?;
    if !out.success() {
        return Err(format!("`{}` as the rootless user failed: {}", spec.display(), out.stderr).into());
    }
    Ok(out.stdout)
}

/// Finding: `harness gc` trusted a label as a path. A volume the rootless user labels with a
/// traversal run id, beside a record it wrote, made root's gc delete a directory of root's.
fn gc_ignores_crafted_run_labels(kind: RuntimeKind) -> Result<(), Failed> {
    let rt = Runtime::resolve(kind)?;
    let user = rt.rootless_user().ok_or("no rootless user")?.clone();
    let victim = Scratch::new("/var/lib", "victim")?;
    std::fs::write(victim.0.join("keep"), "root's data")?;
    let state = Scratch::new("/var/lib", "state")?;
    std::fs::set_permissions(&state.0, std::fs::Permissions::from_mode(0o755))?;
    // As after any earlier run: the traversal below resolves through it.
    std::fs::create_dir_all(state.0.join("runs"))?;
    let up = "../".repeat(state.0.join("runs").components().count() - 1);
    // The record the user plants in its own home, naming root's directory as its run id.
    let evil = user.home.join(format!("hydra-trust-evil-{}", tag()));
    let evil_id = format!("{up}{}", evil.strip_prefix("/").unwrap().display());
    let record = serde_json::json!({
        "run_id": format!("{up}{}", victim.0.strip_prefix("/").unwrap().display()),
        "project": "x", "runtime": "podman-rootless", "tool": "podman-compose",
        "compose_files": [], "workdir": "/", "env": [], "services": [], "ports": {},
        "owner_pid": 1, "owner_start": 1, "status": "starting", "created_unix": 0
    });
    as_user(&rt, &["mkdir", "-p", &evil.display().to_string()])?;
    let json = serde_json::to_string(&record)?;
    let path = evil.join("run.json").display().to_string();
    as_user(&rt, &["sh", "-c", "printf %s \"$2\" > \"$1\"", "sh", &path, &json])?;
    let volume = format!("hydra-trust-crafted-{}", tag());
    let labels = [
        "io.hydra.managed=true".to_string(),
        format!("io.hydra.run={evil_id}"),
        "io.hydra.owner-pid=999999999".to_string(),
        "io.hydra.owner-start=1".to_string(),
    ];
    let mut create = vec!["podman", "volume", "create"];
    for l in &labels {
        create.extend(["--label", l.as_str()]);
    }
    create.push(&volume);
    as_user(&rt, &create)?;

    let out = harness()
        .args(["gc", "--runtime", kind.name()])
        .env("HYDRA_STATE_DIR", &state.0)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let still_there = rt.exists(ObjectKind::Volume, &volume);
    let _ = as_user(&rt, &["podman", "volume", "rm", &volume]);
    let _ = as_user(&rt, &["rm", "-rf", &evil.display().to_string()]);
    if !victim.0.join("keep").exists() {
        return Err(format!("root's gc deleted {} on the word of a label", victim.0.display()).into());
    }
    if !out.status.success() {
        return Err(format!("gc failed: {stdout}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    if !still_there || !stdout.contains("left alone") {
        return Err(format!("a crafted label was treated as a run of the harness:\n{stdout}").into());
    }
    Ok(())
}

/// Finding: `runuser` passed root's whole environment (CI tokens included) to the user's tools.
fn user_environment_is_minimal(kind: RuntimeKind) -> Result<(), Failed> {
    let rt = Runtime::resolve(kind)?;
    std::env::set_var("HYDRA_TRUST_CANARY_TOKEN", "root-only-value");
    let env = as_user(&rt, &["env"])?;
    if env.contains("root-only-value") {
        return Err("root's environment reached the rootless user's tools".into());
    }
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    for want in ["PATH", "HOME", "XDG_RUNTIME_DIR"] {
        if !names.contains(&want) {
            return Err(format!("{want} missing from the user's environment: {names:?}").into());
        }
    }
    Ok(())
}

/// A project only root can read: the second stack's web service with its build context in
/// `web/`, a 0600 env file it references, and a secret it does not reference.
fn private_project(extra_service_yaml: &str) -> Result<Scratch, Failed> {
    let p = Scratch::new("/root", "project")?;
    // A repository of its own: its root is the project, whatever lies around it in /root.
    std::fs::create_dir_all(p.0.join(".git"))?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/second-stack");
    std::fs::create_dir_all(p.0.join("web/site"))?;
    std::fs::copy(src.join("Containerfile"), p.0.join("web/Containerfile"))?;
    for f in std::fs::read_dir(src.join("site"))? {
        let f = f?;
        std::fs::copy(f.path(), p.0.join("web/site").join(f.file_name()))?;
    }
    std::fs::write(p.0.join("app.env"), "APP_MODE=test\n")?;
    std::fs::set_permissions(p.0.join("app.env"), std::fs::Permissions::from_mode(0o600))?;
    std::fs::create_dir_all(p.0.join("notes"))?;
    std::fs::write(p.0.join("notes/unreferenced-secret.txt"), "not for the rootless user")?;
    let compose = std::fs::read_to_string(src.join("compose.yml"))?
        .replace(
            "build: {context: ., dockerfile: Containerfile}",
            "build: {context: ./web, dockerfile: Containerfile}",
        )
        .replace(
            "    networks: [front]\n",
            &format!("    networks: [front]\n    env_file: app.env\n{extra_service_yaml}"),
        );
    std::fs::write(p.0.join("compose.yml"), compose)?;
    Ok(p)
}

fn run_dir(state: &Path, run_id: &str) -> PathBuf {
    state.join("runs").join(run_id)
}

/// Finding: staging copied the whole tree world-readable and followed links.
fn staging_is_private_and_minimal(kind: RuntimeKind) -> Result<(), Failed> {
    let project = private_project("")?;
    let state = Scratch::new("/var/lib", "state")?;
    std::fs::set_permissions(&state.0, std::fs::Permissions::from_mode(0o755))?;
    let run_id = format!("tstage{}", tag());
    let up = harness()
        .args(["up", "--runtime", kind.name(), "--compose"])
        .arg(project.0.join("compose.yml"))
        .env("HYDRA_STATE_DIR", &state.0)
        .env("HYDRA_RUN_ID", &run_id)
        .output()?;
    let stage = run_dir(&state.0, &run_id).join("stage");
    let facts = (|| -> Result<(), Failed> {
        if !up.status.success() {
            return Err(format!("up failed: {}", String::from_utf8_lossy(&up.stderr)).into());
        }
        let user = Runtime::resolve(kind)?
            .rootless_user()
            .ok_or("no rootless user")?
            .clone();
        let meta = std::fs::metadata(&stage)?;
        if meta.uid() != user.uid || meta.mode() & 0o777 != 0o700 {
            return Err(format!(
                "stage is uid {} mode {:o}; want the rootless user's, 0700",
                meta.uid(),
                meta.mode() & 0o777
            )
            .into());
        }
        if stage.join("notes").exists() {
            return Err("a file the compose file does not reference was staged".into());
        }
        let env_mode = std::fs::metadata(stage.join("app.env"))?.mode() & 0o777;
        if env_mode != 0o600 {
            return Err(format!("the 0600 env file was staged with mode {env_mode:o}").into());
        }
        if !stage.join("web/site").is_dir() {
            return Err("the build context was not staged".into());
        }
        Ok(())
    })();
    let down = harness()
        .args(["down", "--runtime", kind.name(), "--run", &run_id])
        .env("HYDRA_STATE_DIR", &state.0)
        .output()?;
    facts?;
    if !down.status.success() {
        return Err(format!("down failed: {}", String::from_utf8_lossy(&down.stderr)).into());
    }
    if run_dir(&state.0, &run_id).exists() {
        return Err("down left the run directory (and its staged copy) behind".into());
    }
    Ok(())
}

/// Finding: a staged copy was left behind when `up` failed before the stack existed.
fn staging_is_removed_when_up_fails(kind: RuntimeKind) -> Result<(), Failed> {
    let project = private_project("")?;
    // A build that fails: the failure comes before any container exists.
    std::fs::write(
        project.0.join("web/Containerfile"),
        "ARG BASE_IMAGE=localhost/hydra/bookworm-minbase:latest\nFROM ${BASE_IMAGE}\nRUN false\n",
    )?;
    let state = Scratch::new("/var/lib", "state")?;
    std::fs::set_permissions(&state.0, std::fs::Permissions::from_mode(0o755))?;
    let run_id = format!("tfail{}", tag());
    let out = harness()
        .args(["up", "--runtime", kind.name(), "--compose"])
        .arg(project.0.join("compose.yml"))
        .env("HYDRA_STATE_DIR", &state.0)
        .env("HYDRA_RUN_ID", &run_id)
        .output()?;
    if out.status.success() {
        let _ = harness()
            .args(["down", "--runtime", kind.name()])
            .env("HYDRA_STATE_DIR", &state.0)
            .output();
        return Err("up succeeded with a failing build".into());
    }
    if run_dir(&state.0, &run_id).exists() {
        return Err(format!(
            "a failed up left {} behind (its staged copy included)",
            run_dir(&state.0, &run_id).display()
        )
        .into());
    }
    Ok(())
}

/// Finding: teardown removed every named volume the run's containers mounted, external ones
/// included, and Podman's `volume rm -f` then removed other containers using them.
fn teardown_spares_volumes_it_did_not_create(kind: RuntimeKind) -> Result<(), Failed> {
    let rt = Runtime::resolve(kind)?;
    let volume = format!("hydra-trust-external-{}-{}", kind.ident().replace('_', "-"), tag());
    let foreign = format!("{volume}-user");
    let engine = |args: &[&str]| -> Result<String, Failed> {
        Ok(exec::run_ok(
            &rt.engine().args(args.iter().copied()),
            Duration::from_secs(60),
            Interrupt::Ignored,
        )?
        .stdout)
    };
    engine(&["volume", "create", &volume])?;
    let cleanup = || {
        let _ = engine(&["rm", "-f", &foreign]);
        let _ = engine(&["volume", "rm", &volume]);
    };
    let result = (|| -> Result<(), Failed> {
        engine(&[
            "create",
            "--name",
            &foreign,
            "-v",
            &format!("{volume}:/data"),
            "localhost/hydra/bookworm-minbase:latest",
            "true",
        ])?;
        let dir = Scratch::new("/var/lib", "overlay")?;
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755))?;
        let overlay = dir.0.join("external-volume.yml");
        // One variable per trial: the runtimes' trials run in parallel in this process.
        let var = format!("HYDRA_TRUST_EXTERNAL_VOLUME_{}", kind.ident().to_uppercase());
        std::fs::write(
            &overlay,
            format!("services:\n  worker:\n    volumes: [\"shared:/shared:ro\"]\nvolumes:\n  shared:\n    external: true\n    name: ${{{var}}}\n"),
        )?;
        std::fs::set_permissions(&overlay, std::fs::Permissions::from_mode(0o644))?;
        std::env::set_var(&var, &volume);
        let second = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/second-stack/compose.yml");
        let mut opts = StackOptions::new(kind);
        opts.compose_files = vec![second, overlay];
        let (stack, _) = Stack::up(&opts, &mut |_| {})?;
        let mounted = stack.containers()?.values().any(|c| c.volume_names().contains(&volume));
        let down = stack.down();
        if !mounted {
            return Err("the run's worker did not mount the external volume (test setup)".into());
        }
        if let Err(e) = down {
            return Err(format!("down failed: {e}").into());
        }
        if !rt.exists(ObjectKind::Volume, &volume) {
            return Err("teardown removed an external volume the run did not create".into());
        }
        if !rt.exists(ObjectKind::Container, &foreign) {
            return Err("teardown removed another container that uses that volume".into());
        }
        Ok(())
    })();
    cleanup();
    result
}

/// Finding: setup wrote and chowned the rootless user's `storage.conf` as root, following a link
/// the user planted. Run against a throwaway user so the real rootless storage is not touched.
fn setup_writes_user_config_as_the_user(_kind: RuntimeKind) -> Result<(), Failed> {
    let name = format!("hydra-t{}", tag());
    let ok = Command::new("useradd")
        .args(["-m", "-s", "/bin/sh", &name])
        .status()?
        .success();
    if !ok {
        return Err(format!("useradd {name} failed").into());
    }
    struct User(String);
    impl Drop for User {
        fn drop(&mut self) {
            let _ = Command::new("userdel").args(["-r", &self.0]).output();
        }
    }
    let user = User(name.clone());
    let home = PathBuf::from(format!("/home/{name}"));
    let victim = Scratch::new("/var/lib", "victim")?;
    let target = victim.0.join("written-by-root");
    let mut plant = CommandSpec::new("runuser")
        .args(["-u", &name, "--", "sh", "-c"])
        .arg(format!(
            "mkdir -p {0}/.config/containers && ln -s {1} {0}/.config/containers/storage.conf",
            home.display(),
            target.display()
        ));
    plant.cwd = Some("/".into());
    exec::run_ok(&plant, Duration::from_secs(30), Interrupt::Ignored)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-host.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--rootless-storage-only")
        .env("HYDRA_ROOTLESS_USER", &name)
        .output()?;
    drop(user);
    if target.exists() {
        return Err(format!(
            "setup wrote {} as root through the user's planted link",
            target.display()
        )
        .into());
    }
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("could not write") {
        return Err(format!("setup failed in another way: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// Finding: state lived under world-writable `/var/tmp/hydra`; whoever created it first
/// controlled the run records root acts on. A state directory another user owns is refused.
fn state_dir_of_another_user_is_refused() -> Result<(), Failed> {
    let base = Scratch::new("/var/lib", "planted")?;
    std::fs::set_permissions(&base.0, std::fs::Permissions::from_mode(0o755))?;
    let planted = base.0.join("state");
    let run = planted.join("runs/1a2b3c4d");
    std::fs::create_dir_all(&run)?;
    let record = serde_json::json!({
        "run_id": "1a2b3c4d", "project": "hydra-docker-1a2b3c4d", "runtime": "docker",
        "tool": "docker-compose-v1", "compose_files": ["/nonexistent/attacker.yml"], "workdir": "/",
        "env": [], "services": [], "ports": {}, "owner_pid": 1, "owner_start": 1,
        "status": "kept", "created_unix": 0
    });
    std::fs::write(run.join("run.json"), serde_json::to_vec(&record)?)?;
    for p in [&planted, &planted.join("runs"), &run, &run.join("run.json")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534))?;
    }
    let out = harness()
        .args(["down", "--runtime", "docker"])
        .env("HYDRA_STATE_DIR", &planted)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !stderr.contains("refusing to use") || !stderr.contains("owned by uid 65534") {
        return Err(format!(
            "a state directory owned by another user was used (exit {:?}): {stderr}",
            out.status.code()
        )
        .into());
    }
    Ok(())
}
