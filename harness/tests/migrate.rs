//! `harness migrate` for real:
//! - the drill says GO on the bundled stack;
//! - stacks that keep state a move would lose (a writable bind mount, an anonymous volume, the
//!   container's own filesystem), or that use a device the target cannot give, get NO-GO naming
//!   the service and the path;
//! - a stack whose networks lack netavark's `isolate` gets NO-GO naming that remedy;
//! - a drill interrupted while it moves the volumes (Ctrl-C or kill -9) leaves the source's
//!   volumes as they were and its stack able to start again, and the next drill cleans up.
//!
//! Trials are named `migrate::<from>-to-<to>::<check>`. A pair with an engine that is not usable
//! here is ignored (reason on stderr), or fails when `HYDRA_REQUIRE` names it. The full drill runs
//! the whole spec three times (source, target, rollback): `HYDRA_DRILLS` picks its directions
//! (`docker:podman-rootless,...`; default: docker to rootless Podman, the one with the most to
//! prove), so that CI stays within its time.
//!
//! Two trials run at a time when they share no Podman engine (one stack per Podman engine: see
//! `hydra::runtime::slots`); the trials that leave a drill's state behind on purpose (SIGINT,
//! kill -9) run alone, since any drill's start cleans up the drills it finds dead. So each trial
//! checks for leftovers among the objects of the processes it started (their `owner-pid` label),
//! and the binary checks the engines' harness objects once more after the last trial.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydra::runtime::{Runtime, RuntimeKind};
use hydra::session::Availability;
use libtest_mimic::{Arguments, Failed};
use serde_json::Value;

fn main() {
    let mut args = Arguments::from_args();
    // Trials of different Podman engines side by side; see `Lanes` for what never overlaps.
    args.test_threads.get_or_insert(2);
    let available: BTreeMap<RuntimeKind, Availability> = common::runtimes().into_iter().collect();
    let mut trials = Vec::new();
    let mut add = |from: RuntimeKind,
                   to: RuntimeKind,
                   check: &str,
                   alone: bool,
                   f: Box<dyn FnOnce() -> Result<(), Failed> + Send>| {
        let availability = common::pair_availability(&available, from, to);
        let name = format!("migrate::{}-to-{}::{check}", from.ident(), to.ident());
        trials.push(common::trial(name, &availability, move || {
            let _lanes = Lanes::take(from, to, alone);
            f()
        }));
    };
    // The two long drills first, on different Podman engines, so that they overlap.
    for (from, to) in drills() {
        add(
            from,
            to,
            "drill_says_go",
            false,
            Box::new(move || drill_says_go(from, to)),
        );
    }
    // Networks without netavark's isolate option: Docker keeps them apart, Podman does not.
    let (iso_from, iso_to) = (RuntimeKind::Docker, RuntimeKind::Podman);
    add(
        iso_from,
        iso_to,
        "no_go_naming_the_isolate_remedy",
        false,
        Box::new(move || no_go_naming_the_isolate_remedy(iso_from, iso_to)),
    );
    // Each engine as the source once: where state outside the volumes is found.
    let fixture_pairs = [
        (RuntimeKind::Docker, RuntimeKind::Podman),
        (RuntimeKind::Podman, RuntimeKind::Docker),
        (RuntimeKind::PodmanRootless, RuntimeKind::Docker),
    ];
    for (from, to) in fixture_pairs {
        for (check, overlay, service, path) in NO_GO_FIXTURES {
            add(
                from,
                to,
                check,
                false,
                Box::new(move || no_go(from, to, overlay, service, path)),
            );
        }
    }
    // A device a rootful engine passes and rootless Podman cannot: NO-GO before anything moves.
    let (from, to) = (RuntimeKind::Docker, RuntimeKind::PodmanRootless);
    add(
        from,
        to,
        "no_go_for_a_device_the_target_lacks",
        false,
        Box::new(move || no_go(from, to, "migrate-needs-a-device.yml", "rubik-agent", "/dev/fuse")),
    );
    // Drills stopped on purpose: alone.
    add(
        from,
        to,
        "sigint_during_the_move_keeps_the_source",
        true,
        Box::new(move || sigint_during_the_move(from, to)),
    );
    add(
        from,
        to,
        "kill_9_during_the_move_then_the_next_drill_cleans_up",
        true,
        Box::new(move || kill_9_during_the_move(from, to)),
    );
    add(
        from,
        to,
        "kill_9_while_the_source_starts_then_the_next_drill_cleans_up",
        true,
        Box::new(move || kill_9_while_the_source_starts(from, to)),
    );
    let engines: Vec<RuntimeKind> = hydra::runtime::one_per_engine(
        &available
            .iter()
            .filter(|(_, a)| matches!(a, Availability::Use))
            .map(|(k, _)| *k)
            .collect::<Vec<_>>(),
    );
    let before = if args.list { Vec::new() } else { managed(&engines) };
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list {
        // Whatever a trial's own check could not see (an object without its owner's label).
        let left = left_since(&before, &engines);
        if !left.is_empty() {
            eprintln!("error: harness objects left after the migrate trials: {left:?}");
            std::process::exit(101);
        }
    }
    conclusion.exit();
}

/// What a trial holds while it runs: its Podman engines (one stack per Podman engine at a time,
/// [`common::engine_to_itself`]), and either a shared or the exclusive hold on the whole binary.
/// Taken in one order, so two trials never wait on each other in a cycle.
struct Lanes {
    _alone: Hold,
    _engines: Vec<std::sync::MutexGuard<'static, ()>>,
}

enum Hold {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

impl Lanes {
    fn take(from: RuntimeKind, to: RuntimeKind, alone: bool) -> Lanes {
        let hold = if alone {
            Hold::Alone(ALONE.write().unwrap_or_else(|p| p.into_inner()))
        } else {
            Hold::Shared(ALONE.read().unwrap_or_else(|p| p.into_inner()))
        };
        // Docker stacks never disturb each other; Podman engines in their fixed order.
        let mut podman: Vec<RuntimeKind> = [from, to].into_iter().filter(|k| k.is_podman()).collect();
        podman.sort_by_key(|k| k.engine());
        podman.dedup_by_key(|k| k.engine());
        Lanes {
            _alone: hold,
            _engines: podman.into_iter().map(common::engine_to_itself).collect(),
        }
    }
}

/// (trial, overlay, service, path the NO-GO must name).
const NO_GO_FIXTURES: [(&str, &str, &str, &str); 3] = [
    (
        "no_go_for_state_in_a_bind_mount",
        "migrate-state-in-bind-mount.yml",
        "model-service",
        "/var/lib/model-state",
    ),
    (
        "no_go_for_state_in_an_anonymous_volume",
        "migrate-state-in-anonymous-volume.yml",
        "model-service",
        "/var/lib/model-scratch",
    ),
    (
        "no_go_for_state_in_the_container_filesystem",
        "migrate-state-in-container-fs.yml",
        "model-service",
        "/var/tmp/model-state",
    ),
];

/// The full drill's directions: `HYDRA_DRILLS`, else docker → podman-rootless.
fn drills() -> Vec<(RuntimeKind, RuntimeKind)> {
    let spec = std::env::var("HYDRA_DRILLS").unwrap_or_else(|_| "docker:podman-rootless".into());
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (a, b) = pair
                .split_once(':')
                .unwrap_or_else(|| panic!("HYDRA_DRILLS: '{pair}' is not <from>:<to>"));
            (
                a.trim().parse().expect("HYDRA_DRILLS: from"),
                b.trim().parse().expect("HYDRA_DRILLS: to"),
            )
        })
        .collect()
}

fn root() -> PathBuf {
    hydra::workspace::bundled_compose_file()
        .parent()
        .and_then(Path::parent)
        .expect("workspace root")
        .to_path_buf()
}

/// `harness migrate` with its reports in a temporary directory.
fn migrate_command(from: RuntimeKind, to: RuntimeKind, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(["migrate", "--from", from.name(), "--to", to.name()])
        .arg("--report")
        .arg(dir)
        .arg("--junit")
        .arg(dir.join("migrate.xml"))
        .args(extra)
        .env_remove("HYDRA_RUN_ID")
        .stdin(Stdio::null());
    cmd
}

fn report(dir: &Path) -> Result<Value, Failed> {
    let text = std::fs::read_to_string(dir.join("migration.json"))
        .map_err(|e| format!("no migration.json in {}: {e}", dir.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Every harness-labelled object of the engines involved, for the leftover checks.
fn managed(kinds: &[RuntimeKind]) -> Vec<String> {
    let managed = hydra::labels::filter(hydra::labels::MANAGED, "true");
    kinds
        .iter()
        .flat_map(|k| {
            let rt = Runtime::resolve(*k).expect("runtime");
            common::objects_with(&rt, &managed)
                .into_iter()
                .map(move |o| format!("{k}: {o}"))
        })
        .collect()
}

/// Harness objects of `kinds` that were not there `before`.
fn left_since(before: &[String], kinds: &[RuntimeKind]) -> Vec<String> {
    managed(kinds).into_iter().filter(|o| !before.contains(o)).collect()
}

/// Harness objects on `kinds` that the processes `pids` created (their owner-pid label): what a
/// trial left, whatever the trial beside it is doing.
fn owned_by(pids: &[u32], kinds: &[RuntimeKind]) -> Vec<String> {
    let mut out = Vec::new();
    for pid in pids {
        let owner = hydra::labels::filter(hydra::labels::OWNER_PID, &pid.to_string());
        for k in kinds {
            let rt = Runtime::resolve(*k).expect("runtime");
            out.extend(
                common::objects_with(&rt, &owner)
                    .into_iter()
                    .map(|o| format!("{k}: {o}")),
            );
        }
    }
    out
}

/// Processes a killed drill (`pids`) may leave on the Podman engines of `kinds`: Podman commands
/// carrying its labels, and container monitors Podman has no record of (the trials that call this
/// run alone, so no other drill's container is being created meanwhile).
fn processes_left(pids: &[u32], kinds: &[RuntimeKind]) -> Vec<String> {
    let mut out = Vec::new();
    for k in kinds {
        let rt = Runtime::resolve(*k).expect("runtime");
        for c in hydra::runtime::stray_commands::list(&rt) {
            if c.labels
                .get(hydra::labels::OWNER_PID)
                .is_some_and(|p| pids.iter().any(|pid| pid.to_string() == *p))
            {
                out.push(format!("{k}: {} of run {}", c.describe(), c.run_id()));
            }
        }
        match hydra::runtime::lost_containers::unknown_monitors(&rt) {
            Ok(lost) => out.extend(lost.iter().map(|m| {
                format!(
                    "{k}: monitor pid {} of container {} Podman has no record of",
                    m.pid,
                    m.container()
                )
            })),
            Err(e) => out.push(format!("{k}: monitors not checked: {e}")),
        }
    }
    out
}

/// Runs `cmd` to its end, with its PID (to find what it created) and its output.
fn run_to_end(mut cmd: Command) -> std::io::Result<(u32, std::process::Output)> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    Ok((pid, child.wait_with_output()?))
}

/// `harness migrate` on the bundled stack with `fixtures/overlays/<overlay>`, to the end.
fn migrate_with_overlay(
    from: RuntimeKind,
    to: RuntimeKind,
    dir: &Path,
    overlay: &str,
) -> std::io::Result<(u32, std::process::Output)> {
    let base = hydra::workspace::bundled_compose_file();
    let overlay = root().join("fixtures/overlays").join(overlay);
    run_to_end(migrate_command(
        from,
        to,
        dir,
        &[
            "--compose",
            &base.display().to_string(),
            "--compose",
            &overlay.display().to_string(),
        ],
    ))
}

/// The entry of the report's `interrupted_drills` for source run `run_id`.
fn interrupted_entry<'a>(r: &'a Value, run_id: &str) -> Option<&'a Value> {
    r["interrupted_drills"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["source_run"] == run_id))
}

fn drill_says_go(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (pid, out) = run_to_end(migrate_command(from, to, dir.path(), &[]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r = report(dir.path())?;
    if out.status.code() != Some(0) {
        return Err(format!(
            "exit {:?}, expected 0 (GO):\n{stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    if r["verdict"]["decision"] != "go" {
        return Err(format!("migration.json says {}", r["verdict"]).into());
    }
    let phases: Vec<(String, String)> = r["phases"]
        .as_array()
        .ok_or("no phases")?
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in [
        "plan",
        "source_up",
        "source_checks",
        "seed",
        "container_filesystem",
        "quiesce",
        "move",
        "target_up",
        "target_data",
        "target_checks",
        "serve",
        "rollback",
        "rollback_data",
        "rollback_checks",
    ] {
        match phases.iter().find(|(n, _)| n == want) {
            Some((_, v)) if v == "pass" => {}
            Some((_, v)) => return Err(format!("phase {want} is {v}:\n{stdout}").into()),
            None => return Err(format!("phase {want} missing:\n{stdout}").into()),
        }
    }
    let moves = r["moves"].as_array().ok_or("no moves")?;
    // Two named volumes, each there and back.
    if moves.len() != 4 || moves.iter().any(|m| m["identical"] != true) {
        return Err(format!("moves: {moves:?}").into());
    }
    let xml = std::fs::read_to_string(dir.path().join("migrate.xml"))?;
    let trial = format!("{}-to-{}::target_data", from.ident(), to.ident());
    if !xml.contains(&trial) {
        return Err(format!("JUnit lacks {trial}").into());
    }
    let new = owned_by(&[pid], &[from, to]);
    if !new.is_empty() {
        return Err(format!("left after the drill: {new:?}").into());
    }
    eprintln!(
        "{from} -> {to}: GO; downtime {}s, rollback downtime {}s, {} bytes moved",
        r["downtime_seconds"], r["rollback_downtime_seconds"], r["bytes_moved"]
    );
    Ok(())
}

fn no_go(from: RuntimeKind, to: RuntimeKind, overlay: &str, service: &str, path: &str) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (pid, out) = migrate_with_overlay(from, to, dir.path(), overlay)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        return Err(format!(
            "exit {:?}, expected 1 (NO-GO):\n{stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let r = report(dir.path())?;
    let reasons = r["verdict"]["reasons"].to_string();
    if r["verdict"]["decision"] != "no-go" || !reasons.contains(service) || !reasons.contains(path) {
        return Err(format!("the NO-GO does not name {service} and {path}: {reasons}").into());
    }
    // Nothing was moved, and nothing of the drill is left.
    if r["moves"].as_array().is_some_and(|m| !m.is_empty()) {
        return Err(format!("volumes were moved before the NO-GO: {}", r["moves"]).into());
    }
    let new = owned_by(&[pid], &[from, to]);
    if !new.is_empty() {
        return Err(format!("left after the NO-GO: {new:?}").into());
    }
    Ok(())
}

/// The whole drill on a stack whose networks lack `isolate`: the data moves and comes back, but
/// nginx reaches services across networks on Podman, so NO-GO, each reason naming the option.
fn no_go_naming_the_isolate_remedy(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (pid, out) = migrate_with_overlay(from, to, dir.path(), "migrate-networks-not-isolated.yml")?;
    let r = report(dir.path())?;
    let reasons: Vec<String> = r["verdict"]["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if out.status.code() != Some(1) || r["verdict"]["decision"] != "no-go" {
        return Err(format!("exit {:?}, expected 1 (NO-GO): {reasons:?}", out.status.code()).into());
    }
    let isolation: Vec<&String> = reasons
        .iter()
        .filter(|r| r.contains("_unreachable_from_nginx"))
        .collect();
    if isolation.is_empty() || isolation.len() != reasons.len() {
        return Err(format!("expected only cross-network reachability as reasons: {reasons:?}").into());
    }
    if let Some(bare) = isolation
        .iter()
        .find(|r| !r.contains(r#"remedy: set `driver_opts: {isolate: "true"}`"#))
    {
        return Err(format!("a reason without the isolate remedy: {bare}").into());
    }
    // The rest of the drill still ran and held: the data came back.
    let passed = |name: &str| {
        r["phases"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == name && p["verdict"] == "pass"))
    };
    for phase in ["target_data", "rollback_data", "rollback_checks"] {
        if !passed(phase) {
            return Err(format!("phase {phase} did not pass: {}", r["phases"]).into());
        }
    }
    let left = owned_by(&[pid], &[from, to]);
    if !left.is_empty() {
        return Err(format!("left after the drill: {left:?}").into());
    }
    Ok(())
}

/// SIGINT once the move has begun: exit 130, the source's volumes hold what they held (same
/// fingerprints), nothing of the target is left, and the kept source starts again, with its rows.
/// A drill started in the background, its stderr read on a thread, stopped once it announces the
/// volume move: the child, the receiver of its remaining stderr lines, and the lines seen so far.
fn drill_until_the_move(
    from: RuntimeKind,
    to: RuntimeKind,
    dir: &Path,
) -> Result<(std::process::Child, std::sync::mpsc::Receiver<String>, Vec<String>), Failed> {
    let mut child = migrate_command(from, to, dir, &[])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the drill never reached the move:\n{}", seen.join("\n")).into());
            }
        };
        let hit = line.contains("moving volumes");
        seen.push(line);
        if hit {
            return Ok((child, rx, seen));
        }
    }
}

fn sigint_during_the_move(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (mut child, rx, mut seen) = drill_until_the_move(from, to, dir.path())?;
    // SAFETY: signalling our own child process by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            return Err("the drill did not exit within 120 s of SIGINT".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = rx.try_recv() {
        seen.push(line);
    }
    if status.code() != Some(hydra::error::exit::INTERRUPTED) {
        return Err(format!("exit {:?}, expected 130:\n{}", status.code(), seen.join("\n")).into());
    }
    // The kept source: its record, its volumes as they were at the stop, and a stack that starts.
    let record = hydra::runs::RunRecord::load_all()?
        .into_iter()
        .find(|r| r.runtime == from && r.status == hydra::runs::RunStatus::DrillSource && r.owner_pid == child.id())
        .ok_or("no kept source run after the interrupt")?;
    let stack = hydra::stack::Stack::attach(record)?;
    let cleanup = Cleanup(Some(stack));
    let stack = cleanup.0.as_ref().expect("set");
    let left_on_target = owned_by(&[child.id()], &[to]);
    // The volumes as the drill found them at the stop (migration.json is written on interrupt).
    let r = report(dir.path())?;
    let at_stop = r["source_fingerprints"]
        .as_object()
        .ok_or("no source fingerprints in migration.json")?;
    if at_stop.is_empty() {
        return Err("migration.json lists no source volumes".into());
    }
    let rt = stack.runtime().clone();
    let labels = BTreeMap::from([(hydra::labels::RUN.to_string(), stack.record().run_id.clone())]);
    for (volume, digest) in at_stop {
        let now = hydra::volumes::transfer::fingerprint(&rt, volume, &labels, Duration::from_secs(300))?;
        if Some(now.digest().as_str()) != digest.as_str() {
            return Err(format!("source volume {volume} changed after the interrupt").into());
        }
    }
    // As the drill's --keep does: down and up keeping volumes (Podman 4.3's `start` of stopped
    // containers that require a running one fails).
    stack.restart_keeping_volumes(Duration::from_secs(300))?;
    let spec = hydra::spec::Spec::load(&hydra::spec::bundled_spec_file(), &[])?;
    let p = spec.persistence.as_ref().ok_or("bundled spec without persistence")?;
    let query = format!(
        "PGPASSWORD=\"$POSTGRES_PASSWORD\" psql -h 127.0.0.1 -U {} -d {} -tAc 'SELECT count(*) FROM hydra_migration'",
        p.user, p.database
    );
    let db = stack.exec(&p.service, &["sh", "-c", &query], Duration::from_secs(60))?;
    if db.stdout.trim() != p.rows.to_string() {
        return Err(format!(
            "the restarted source holds {:?} drill rows, expected {} (stderr: {})",
            db.stdout.trim(),
            p.rows,
            db.stderr
        )
        .into());
    }
    if !left_on_target.is_empty() {
        return Err(format!("the interrupted drill left on {to}: {left_on_target:?}").into());
    }
    drop(cleanup);
    Ok(())
}

/// kill -9 once the move has begun: nothing can clean up, so the source and the drill's journal
/// stay. The source volumes still match the journal's digests from the stop; then the next drill
/// (here one that stops early, at a NO-GO) finds the dead one, checks it, and removes everything
/// it left, on both engines.
fn kill_9_during_the_move(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (mut child, _rx, _seen) = drill_until_the_move(from, to, dir.path())?;
    // Let the copy start: its helpers and named pipes exist.
    std::thread::sleep(Duration::from_millis(300));
    child.kill()?;
    child.wait()?;
    let killed = child.id();
    let record = hydra::runs::RunRecord::load_all()?
        .into_iter()
        .find(|r| r.status == hydra::runs::RunStatus::DrillSource && r.owner_pid == killed)
        .ok_or("no drill source run after kill -9")?;
    let journal = hydra::migrate::journal::Journal::load(&record).ok_or("no drill journal after kill -9")?;
    if journal.phase != "move" || journal.source_fingerprints.is_empty() || journal.other_runs.is_empty() {
        return Err(format!("the journal does not show a drill killed in its move: {journal:?}").into());
    }
    let rt = Runtime::resolve(from)?;
    let labels = BTreeMap::from([(hydra::labels::RUN.to_string(), record.run_id.clone())]);
    for (volume, digest) in &journal.source_fingerprints {
        let now = hydra::volumes::transfer::fingerprint(&rt, volume, &labels, Duration::from_secs(300))?;
        if now.digest() != *digest {
            return Err(format!("source volume {volume} changed after kill -9").into());
        }
    }
    // The next drill: NO-GO at its own start (a device the target lacks), after cleaning up.
    let next = tempfile::tempdir()?;
    let (next_pid, out) = migrate_with_overlay(from, to, next.path(), "migrate-needs-a-device.yml")?;
    let r = report(next.path())?;
    let found = interrupted_entry(&r, &record.run_id).ok_or_else(|| {
        format!(
            "the next drill did not report the killed one (exit {:?}): {}\n{}",
            out.status.code(),
            r["interrupted_drills"],
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if found["removed"] != true || found["checked"].as_u64() != Some(journal.source_fingerprints.len() as u64) {
        return Err(format!("the killed drill was not checked and removed: {found}").into());
    }
    let phase_ok = r["phases"].as_array().is_some_and(|p| {
        p.iter()
            .any(|p| p["name"] == "interrupted_drills" && p["verdict"] == "pass")
    });
    if !phase_ok {
        return Err(format!("no passing interrupted_drills phase: {}", r["phases"]).into());
    }
    if hydra::runs::RunRecord::load(&record.run_id).is_some() {
        return Err("the killed drill's source record is still there".into());
    }
    let mut left = owned_by(&[killed, next_pid], &[from, to]);
    left.extend(processes_left(&[killed, next_pid], &[from, to]));
    if !left.is_empty() {
        return Err(format!("left after the next drill: {left:?}").into());
    }
    let streams = hydra::runs::state_dir().join("streams");
    let stale: Vec<String> = std::fs::read_dir(&streams)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{killed}-")))
        .collect();
    if !stale.is_empty() {
        return Err(format!("stream directories of the killed drill left: {stale:?}").into());
    }
    Ok(())
}

/// kill -9 while the source stack is still coming up (no journal yet): the next drill finds the
/// dead drill's starting source by its run id and removes it; nothing of it is left.
fn kill_9_while_the_source_starts(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let mut child = migrate_command(from, to, dir.path(), &[])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let killed = child.id();
    // Wait until the source's run is recorded (compose is starting it), then kill.
    let deadline = Instant::now() + Duration::from_secs(300);
    let run = loop {
        let found = hydra::runs::RunRecord::load_all()?
            .into_iter()
            .find(|r| r.owner_pid == killed && r.run_id.starts_with(hydra::migrate::journal::SOURCE_RUN_PREFIX));
        if let Some(r) = found {
            break r;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the drill never recorded its source run".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(2));
    child.kill()?;
    child.wait()?;
    let next = tempfile::tempdir()?;
    let (next_pid, _) = migrate_with_overlay(from, to, next.path(), "migrate-needs-a-device.yml")?;
    let r = report(next.path())?;
    let found = interrupted_entry(&r, &run.run_id).ok_or_else(|| {
        format!(
            "the next drill did not report the killed one: {}",
            r["interrupted_drills"]
        )
    })?;
    if found["removed"] != true {
        return Err(format!("the killed drill's source was not removed: {found}").into());
    }
    if hydra::runs::RunRecord::load(&run.run_id).is_some() {
        return Err("the killed drill's source record is still there".into());
    }
    let mut left = owned_by(&[killed, next_pid], &[from, to]);
    left.extend(processes_left(&[killed, next_pid], &[from, to]));
    if !left.is_empty() {
        return Err(format!("left after the next drill: {left:?}").into());
    }
    Ok(())
}

/// Takes the kept source down however the test ends.
struct Cleanup(Option<hydra::stack::Stack>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.down();
        }
    }
}
