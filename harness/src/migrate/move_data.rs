//! Moving the data between engines: a stack quiesced and stopped, its named volumes
//! fingerprinted and copied into a new run's volumes on the other engine (or, for the logical
//! strategy, its database dumped and restored), and the data checked on arrival.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use super::{data, logical, Drill, VolumeMove, Volumes, MOVE_TIMEOUT};
use crate::checks::persistence::Db;
use crate::compose::file::{run_labels, run_labels_of_this_process};
use crate::compose::Action;
use crate::error::{HarnessError, Result};
use crate::outcome::Verdict;
use crate::runtime::{ObjectKind, Runtime, RuntimeKind};
use crate::spec::{Persistence, Strategy};
use crate::stack::Stack;
use crate::volumes;

impl Drill<'_> {
    /// Phase 4: the source quiesced and stopped, its volumes fingerprinted (into the report and
    /// the journal), its engine slot given up.
    pub(super) fn stop_source(
        &mut self,
        source: &mut Stack,
        p: Option<&Persistence>,
    ) -> Result<(Option<Dump>, Volumes)> {
        let from = self.opts.from;
        let t = Instant::now();
        let dump = self.quiesce(source, p, from, "source")?;
        let source_volumes = self.fingerprint_volumes(source)?;
        // Stopped, it creates and removes nothing until the end: the rollback may come up on
        // its engine (Podman's one-stack-at-a-time slot would otherwise wait for it).
        source.release_engine_slot();
        self.phase(
            "quiesce",
            t,
            Verdict::Pass,
            format!(
                "{from} stopped; {} volume(s) fingerprinted{}",
                source_volumes.len(),
                match dump.as_ref() {
                    Some(Dump { file: Some(_), .. }) => "; database read and dumped",
                    Some(_) => "; database read",
                    None => "",
                }
            ),
        );
        self.report.source_data = dump.as_ref().map(|d| d.snapshot.clone());
        self.report.source_fingerprints = source_volumes
            .values()
            .map(|(name, fp)| (name.clone(), fp.digest()))
            .collect();
        self.journal.source_fingerprints = self.report.source_fingerprints.clone();
        self.cancelled()?;
        Ok((dump, source_volumes))
    }

    /// Stops the writers, reads the data (and dumps the database for the logical strategy),
    /// then stops the whole stack, keeping containers and volumes.
    pub(super) fn quiesce(
        &mut self,
        stack: &Stack,
        p: Option<&Persistence>,
        runtime: RuntimeKind,
        side: &str,
    ) -> Result<Option<Dump>> {
        let db_service = p.map(|p| p.service.as_str());
        for service in stack.record().services.clone() {
            if Some(service.as_str()) != db_service {
                stack.compose_run(&Action::Stop { service })?;
            }
        }
        let dump = match p {
            Some(p) => {
                let db = Db::open(stack, p).map_err(HarnessError::usage)?;
                let snapshot = data::snapshot(&db, None).map_err(HarnessError::usage)?;
                let file = match self.strategy {
                    Strategy::Logical => Some(logical::pg_dump(stack, p, &format!("{side}-{runtime}"))?),
                    Strategy::Raw => None,
                };
                Some(Dump { snapshot, file })
            }
            None => None,
        };
        stack.compose_run(&Action::StopAll)?;
        // The compose tools' exit codes are not trusted: every container must be stopped.
        let running: Vec<String> = stack
            .containers()?
            .into_iter()
            .filter(|(_, c)| c.state.running)
            .map(|(s, _)| s)
            .collect();
        if !running.is_empty() {
            return Err(HarnessError::usage(format!(
                "{runtime}: `compose stop` left {} running",
                running.join(", ")
            )));
        }
        Ok(dump)
    }

    /// The stack's named volumes (by compose key), fingerprinted.
    pub(super) fn fingerprint_volumes(&self, stack: &Stack) -> Result<Volumes> {
        let rt = stack.runtime();
        let names = stack_volumes(stack)?;
        let labels = helper_labels(stack.record());
        let mut out = Volumes::new();
        for (key, name) in names {
            let fp = volumes::transfer::fingerprint(rt, &name, &labels, MOVE_TIMEOUT)?;
            out.insert(key, (name, fp));
        }
        Ok(out)
    }

    /// Creates the target project's volumes (with the target run's labels, and compose's own so
    /// that the compose tool takes them as its own) and copies each into it. With the logical
    /// strategy the database's volume is left for the target to create (pg_restore fills it).
    /// Returns false (after a NO-GO reason) when a copy did not come out identical.
    pub(super) fn move_volumes(
        &mut self,
        from: &Stack,
        vols: &Volumes,
        to: RuntimeKind,
        run_id: &str,
        p: Option<&Persistence>,
    ) -> Result<bool> {
        let t = Instant::now();
        let to_rt = Runtime::resolve(to)?;
        let project = crate::stack::project_name(to, run_id);
        let mut labels = run_labels_of_this_process(run_id, to.name());
        let helper = helper_labels(from.record());
        let phase = if from.record().runtime == self.opts.from {
            "move"
        } else {
            "rollback_move"
        };
        let mut moved = Vec::new();
        let mut created = Created {
            rt: &to_rt,
            names: Vec::new(),
        };
        // Every volume's helpers start at once, held at their gates: all but the first copy's
        // start overlap the copies before them.
        let mut prepared = Vec::new();
        for (key, (name, fp)) in vols {
            if self.strategy == Strategy::Logical && p.is_some_and(|p| &p.volume == key) {
                continue;
            }
            let target_name = format!("{project}_{key}");
            labels.insert("com.docker.compose.project".into(), project.clone());
            labels.insert("com.docker.compose.volume".into(), key.clone());
            volumes::create(&to_rt, &target_name, &labels)?;
            created.names.push(target_name.clone());
            let copy = volumes::transfer::prepare(
                from.runtime(),
                name,
                &to_rt,
                &target_name,
                volumes::Fill::Empty,
                &helper,
                MOVE_TIMEOUT,
            )?;
            prepared.push((key, fp, copy));
        }
        for (key, fp, copy) in prepared {
            // Fingerprinted at the stop: the copy takes that tree as its source.
            let tr = copy.run(fp.clone(), &helper, MOVE_TIMEOUT)?;
            let diff = fp.first_difference(&tr.target).map(|d| d.to_string());
            let m = VolumeMove {
                volume: key.clone(),
                from: from.record().runtime.to_string(),
                to: to.to_string(),
                bytes: tr.stream_bytes,
                seconds: tr.seconds,
                stream_seconds: tr.stream_seconds,
                start_seconds: tr.start_seconds,
                copy_seconds: tr.copy_seconds,
                data_seconds: tr.data_seconds,
                source_digest: fp.digest(),
                target_digest: tr.target.digest(),
                identical: diff.is_none(),
                first_difference: diff,
            };
            self.report.bytes_moved += m.bytes;
            moved.push(m.clone());
            self.report.moves.push(m);
        }
        if let Some(bad) = moved.iter().find(|m| !m.identical) {
            self.no_go(
                phase,
                t,
                format!(
                    "volume {} did not arrive identical on {to}: first difference at {}",
                    bad.volume,
                    bad.first_difference.as_deref().unwrap_or_default()
                ),
            );
            return Ok(false);
        }
        // The volumes are the target run's now: its stack takes them over, or its teardown
        // removes them.
        created.names.clear();
        let mb = moved.iter().map(|m| m.bytes).sum::<u64>() as f64 / 1e6;
        let secs: f64 = moved.iter().map(|m| m.seconds).sum();
        self.phase(
            phase,
            t,
            Verdict::Pass,
            format!(
                "{} volume(s) identical on {to} ({}), {mb:.1} MB in {secs:.1}s",
                moved.len(),
                moved.iter().map(|m| m.volume.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
        Ok(true)
    }

    /// Logical strategy: writers stopped, the dump restored over the fresh database, writers
    /// started again and the stack ready.
    pub(super) fn restore(&mut self, stack: &Stack, p: &Persistence, dump: &Dump) -> Result<()> {
        let Some(file) = &dump.file else { return Ok(()) };
        for service in stack.record().services.clone() {
            if service != p.service {
                stack.compose_run(&Action::Stop { service })?;
            }
        }
        logical::pg_restore(stack, p, file)?;
        // Down and up keeping volumes, not `start`: Podman 4.3 refuses to start containers that
        // `--requires` a running one ("depends on container ... not found in input list"), and
        // podman-compose 1.6 exits 0 all the same.
        stack.restart_keeping_volumes(self.opts.stack.ready_timeout)?;
        Ok(())
    }

    /// The data the other side had is here: every table up to the other side's keys, and the
    /// drill's rows by phase.
    pub(super) fn verify_data(
        &mut self,
        stack: &Stack,
        p: Option<&Persistence>,
        before: Option<&data::Snapshot>,
        name: &'static str,
        t: Instant,
        expect: &[(&str, u32)],
    ) -> Result<()> {
        let (Some(p), Some(before)) = (p, before) else {
            self.phase(name, t, Verdict::Skip, "no database in the spec");
            return Ok(());
        };
        let db = Db::open(stack, p).map_err(HarnessError::usage)?;
        let now = data::snapshot(&db, Some(before)).map_err(HarnessError::usage)?;
        let mut problems = data::differences(before, &now);
        let phases = data::rows_by_phase(&db).map_err(HarnessError::usage)?;
        for (phase, rows) in expect {
            let got = phases.get(*phase).copied().unwrap_or(0);
            if got != i64::from(*rows) {
                problems.push(format!("{got} of the {rows} rows written {phase}"));
            }
        }
        if problems.is_empty() {
            let tables = before.len();
            let rows: i64 = before.values().map(|s| s.rows).sum();
            self.phase(
                name,
                t,
                Verdict::Pass,
                format!(
                    "{tables} tables, {rows} rows identical under {}",
                    stack.record().runtime
                ),
            );
        } else {
            self.no_go(
                name,
                t,
                format!(
                    "data lost or changed under {}: {}",
                    stack.record().runtime,
                    problems.join("; ")
                ),
            );
        }
        Ok(())
    }
}

/// Volumes a move created on the target, removed if the move does not complete.
struct Created<'a> {
    rt: &'a Runtime,
    names: Vec<String>,
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            if let Err(e) = self.rt.remove(ObjectKind::Volume, &self.names) {
                tracing::warn!("could not remove the volumes of an unfinished move: {e}");
            }
        }
    }
}

/// The database's state at the stop, and its dump (logical strategy).
pub(super) struct Dump {
    pub(super) snapshot: data::Snapshot,
    pub(super) file: Option<PathBuf>,
}

/// Labels for the drill's helper containers: the run's, so `harness gc` finds them.
pub(super) fn helper_labels(record: &crate::runs::RunRecord) -> BTreeMap<String, String> {
    run_labels(
        &record.run_id,
        record.runtime.name(),
        record.owner_pid,
        record.owner_start,
    )
}

/// The run's named volumes by compose key (`<project>_<key>`, the three compose tools' naming).
fn stack_volumes(stack: &Stack) -> Result<BTreeMap<String, String>> {
    let rt = stack.runtime();
    let record = stack.record();
    let ids = rt.list_by_label(
        ObjectKind::Volume,
        &crate::labels::filter(crate::labels::RUN, &record.run_id),
    )?;
    let prefix = format!("{}_", record.project);
    let mut out = BTreeMap::new();
    for v in rt.inspect_labelled(ObjectKind::Volume, &ids)? {
        if v.anonymous == Some(true) {
            continue;
        }
        match v.name.strip_prefix(&prefix) {
            Some(key) => {
                out.insert(key.to_string(), v.name.clone());
            }
            None => {
                return Err(HarnessError::usage(format!(
                    "volume {} of {} is not named after the project ({prefix}<key>)",
                    v.name, record.project
                ))
                .with_hint("a volume with a fixed `name:` cannot be moved by the drill yet; drop `name:`"))
            }
        }
    }
    Ok(out)
}
