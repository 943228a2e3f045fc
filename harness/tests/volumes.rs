//! Named volumes moved between engines for real, in the directions a migration and its rollback
//! take: every path, type, mode, numeric owner and byte arrives (fingerprints compared), a target
//! that already holds data is refused, a rollback replaces what the source held, and owners a
//! rootless target cannot represent are refused by name before anything is written.
//!
//! Trials are named `migrate::<from>-to-<to>::<check>`. A pair with an engine that is not usable
//! here is ignored (reason on stderr), or fails when `HYDRA_REQUIRE` names it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use hydra::runtime::{exec, Interrupt, ObjectKind, Runtime, RuntimeKind};
use hydra::session::Availability;
use hydra::volumes::transfer::{self, Fill};
use libtest_mimic::{Arguments, Failed};

const DEADLINE: Duration = Duration::from_secs(300);

fn main() {
    let args = Arguments::from_args();
    let available: BTreeMap<RuntimeKind, Availability> = common::runtimes().into_iter().collect();
    let pairs = [
        (RuntimeKind::Docker, RuntimeKind::Podman),
        (RuntimeKind::Docker, RuntimeKind::PodmanRootless),
        (RuntimeKind::PodmanRootless, RuntimeKind::Docker),
    ];
    let mut trials = Vec::new();
    for (from, to) in pairs {
        let availability = common::pair_availability(&available, from, to);
        let prefix = format!("migrate::{}-to-{}", from.ident(), to.ident());
        trials.push(common::trial(
            format!("{prefix}::volume_copy_keeps_the_tree"),
            &availability,
            move || copy_keeps_the_tree(from, to),
        ));
        trials.push(common::trial(
            format!("{prefix}::a_copy_given_up_at_its_gates_writes_nothing"),
            &availability,
            move || a_copy_given_up_writes_nothing(from, to),
        ));
        if to.is_rootless() {
            trials.push(common::trial(
                format!("{prefix}::owners_outside_the_user_namespace_are_refused"),
                &availability,
                move || owners_outside_are_refused(from, to),
            ));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Volumes this test created, removed when it ends however it ends; labelled as a run of this
/// process so that `harness gc` sweeps them if the test is killed.
struct Volumes {
    labels: BTreeMap<String, String>,
    made: Vec<(Runtime, String)>,
}

impl Volumes {
    fn new(what: &str) -> Result<Self, Failed> {
        let run_id = hydra::runs::new_run_id()?;
        let pid = std::process::id();
        let start = hydra::runs::process_start_time(pid).unwrap_or(0);
        Ok(Volumes {
            labels: hydra::compose::file::run_labels(&run_id, what, pid, start),
            made: Vec::new(),
        })
    }

    fn create(&mut self, rt: &Runtime, name: &str) -> Result<String, Failed> {
        let name = format!("hydra-voltest-{}-{name}", self.labels[hydra::labels::RUN]);
        let mut spec = rt.engine().args(["volume", "create"]);
        for (k, v) in &self.labels {
            spec = spec.arg("--label").arg(format!("{k}={v}"));
        }
        exec::run_ok(&spec.arg(&name), Duration::from_secs(60), Interrupt::Allowed)?;
        self.made.push((rt.clone(), name.clone()));
        Ok(name)
    }

    /// Runs `script` as root in a container of the base image with `volume` at /v.
    fn shell(&self, rt: &Runtime, volume: &str, script: &str) -> Result<(), Failed> {
        let mut spec = rt
            .engine()
            .args(["run", "--rm", "--pull", "never", "--network", "none"]);
        for (k, v) in &self.labels {
            spec = spec.arg("--label").arg(format!("{k}={v}"));
        }
        let spec = spec.arg("-v").arg(format!("{volume}:/v")).args([
            "--entrypoint",
            "sh",
            hydra::images::base::BASE_IMAGE,
            "-c",
            script,
        ]);
        exec::run_ok(&spec, DEADLINE, Interrupt::Allowed)?;
        Ok(())
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        for (rt, name) in &self.made {
            let _ = rt.remove(ObjectKind::Volume, std::slice::from_ref(name));
        }
    }
}

/// What a PostgreSQL data directory looks like to a migration: a 0700 tree owned by 999, a
/// setgid directory, a name with spaces, a symlink, a hard link and a megabyte of random bytes.
const SEED: &str = "set -e; mkdir -p /v/pgdata/base/1; echo rows > '/v/pgdata/base/1/a file with spaces'; \
    head -c 1048576 /dev/urandom > /v/blob; ln /v/blob /v/blob.hardlink; ln -s pgdata/base /v/link; \
    chown -R 999:999 /v/pgdata; chmod 0700 /v/pgdata; chmod 2750 /v/pgdata/base; chmod 0640 /v/blob";

fn copy_keeps_the_tree(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let (src_rt, dst_rt) = (Runtime::resolve(from)?, Runtime::resolve(to)?);
    let mut vols = Volumes::new("voltest")?;
    let src = vols.create(&src_rt, "src")?;
    let dst = vols.create(&dst_rt, "dst")?;
    vols.shell(&src_rt, &src, SEED)?;

    let moved = transfer::copy(&src_rt, &src, &dst_rt, &dst, Fill::Empty, &vols.labels, DEADLINE)?;
    if let Some(diff) = moved.source.first_difference(&moved.target) {
        return Err(format!("{from} -> {to}: the copy differs at {diff}").into());
    }
    let pg = moved
        .source
        .entries
        .get("pgdata")
        .ok_or("pgdata missing from the source")?;
    let base = &moved.target.entries["pgdata/base"];
    if (pg.uid, pg.gid, pg.mode, base.mode) != (999, 999, 0o700, 0o2750) {
        return Err(format!("owners or modes not as seeded: pgdata {pg:?}, pgdata/base {base:?}").into());
    }
    if moved.source.bytes < 1_048_576 || !moved.target.entries.contains_key("pgdata/base/1/a file with spaces") {
        return Err(format!(
            "content missing: {} bytes, {:?}",
            moved.source.bytes,
            moved.target.entries.keys()
        )
        .into());
    }
    // The source as read on its own equals what went through the stream.
    let again = transfer::fingerprint(&src_rt, &src, &vols.labels, DEADLINE)?;
    if again.digest() != moved.source.digest() {
        return Err("the source read twice gave two fingerprints".into());
    }
    eprintln!(
        "{from} -> {to}: {} entries, {} bytes of files, {} stream bytes in {:.2}s",
        moved.source.entries.len(),
        moved.source.bytes,
        moved.stream_bytes,
        moved.seconds
    );

    // A target that holds data is never mixed into.
    match transfer::copy(&src_rt, &src, &dst_rt, &dst, Fill::Empty, &vols.labels, DEADLINE) {
        Err(e) if e.to_string().contains("already holds") => {}
        other => return Err(format!("a second copy into a full volume was not refused: {other:?}").into()),
    }

    // Rollback: rows written on the target come back, and nothing of the old source stays.
    vols.shell(
        &dst_rt,
        &dst,
        "echo after-switch > /v/pgdata/base/1/new-row && chown 999:999 /v/pgdata/base/1/new-row && rm /v/blob.hardlink",
    )?;
    let back = transfer::copy(&dst_rt, &dst, &src_rt, &src, Fill::Replace, &vols.labels, DEADLINE)?;
    if let Some(diff) = back.source.first_difference(&back.target) {
        return Err(format!("rollback {to} -> {from} differs at {diff}").into());
    }
    if !back.target.entries.contains_key("pgdata/base/1/new-row") || back.target.entries.contains_key("blob.hardlink") {
        return Err("the rollback did not replace the source's tree with the target's".into());
    }
    Ok(())
}

/// A copy whose helpers were started (as the drill starts every volume's at once) and then given
/// up, as on Ctrl-C or a failed check: the target stays empty and no helper container is left.
fn a_copy_given_up_writes_nothing(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let (src_rt, dst_rt) = (Runtime::resolve(from)?, Runtime::resolve(to)?);
    let mut vols = Volumes::new("voltest")?;
    let src = vols.create(&src_rt, "src")?;
    let dst = vols.create(&dst_rt, "dst")?;
    vols.shell(&src_rt, &src, SEED)?;
    let prepared = transfer::prepare(&src_rt, &src, &dst_rt, &dst, Fill::Empty, &vols.labels, DEADLINE)?;
    // Long enough for both helpers to reach their gates here (about 0.5 s).
    std::thread::sleep(Duration::from_secs(3));
    drop(prepared);
    // The helpers are gone first (a helper let through would still be writing), then the target
    // is read.
    let run = hydra::labels::filter(hydra::labels::RUN, &vols.labels[hydra::labels::RUN]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = [&src_rt, &dst_rt]
            .iter()
            .map(|rt| rt.list_by_label(ObjectKind::Container, &run))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("helper containers left after a copy was given up: {left:?}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let target = transfer::fingerprint(&dst_rt, &dst, &vols.labels, DEADLINE)?;
    if target.entries.len() != 1 {
        return Err(format!("a copy given up wrote into the target: {:?}", target.entries.keys()).into());
    }
    Ok(())
}

fn owners_outside_are_refused(from: RuntimeKind, to: RuntimeKind) -> Result<(), Failed> {
    let (src_rt, dst_rt) = (Runtime::resolve(from)?, Runtime::resolve(to)?);
    let (uids, _) = dst_rt.container_id_limits()?.ok_or("a rootless target has ID limits")?;
    let mut vols = Volumes::new("voltest")?;
    let src = vols.create(&src_rt, "src")?;
    let dst = vols.create(&dst_rt, "dst")?;
    vols.shell(
        &src_rt,
        &src,
        &format!("echo x > /v/ok && echo y > /v/foreign && chown {uids}:0 /v/foreign"),
    )?;
    match transfer::copy(&src_rt, &src, &dst_rt, &dst, Fill::Empty, &vols.labels, DEADLINE) {
        Err(e) if e.to_string().contains(&format!("foreign ({uids}:0)")) && !e.to_string().contains("ok (") => {}
        other => return Err(format!("expected a refusal naming foreign: {other:?}").into()),
    }
    let target = transfer::fingerprint(&dst_rt, &dst, &vols.labels, DEADLINE)?;
    if target.entries.len() != 1 {
        return Err(format!("the refused copy wrote into the target: {:?}", target.entries.keys()).into());
    }
    Ok(())
}
