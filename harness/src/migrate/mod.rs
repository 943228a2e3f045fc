//! `harness migrate`: the migration drill. The stack comes up under the source target and passes
//! the spec; rows are written; the writers stop and the named volumes are fingerprinted; the
//! volumes move to the target engine (raw, or the database through `pg_dump`/`pg_restore`); the
//! target comes up from the same compose files and must hold the same data and pass the spec;
//! rows are written there; then the same move runs back (the rollback) into a new source-side
//! project, which must hold the rows of both sides. The verdict is GO or NO-GO with its reasons.
//!
//! The source's volumes are never written and never removed before the drill ends: from the
//! moment it is up, the source stack is recorded as a drill's source with a journal
//! ([`journal`]), so an interrupted drill (Ctrl-C or kill -9) leaves it, with its data. The next
//! drill checks its volumes against the journal and removes it; `harness gc` sweeps it too. The
//! target and rollback projects carry their runs' labels and go with their runs.

pub mod data;
pub mod journal;
mod logical;
pub mod needs;
pub mod report;
mod state;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checks::persistence::Db;
use crate::compose::file::run_labels;
use crate::compose::Action;
use crate::error::{HarnessError, Result};
use crate::outcome::{CheckOutcome, Verdict};
use crate::runtime::{exec, ObjectKind, Runtime, RuntimeKind};
use crate::session::{self, Plan};
use crate::spec::{Persistence, Strategy};
use crate::stack::{Event, Stack, StackOptions};
use crate::volumes::{self, Fingerprint, MovePlan};

pub use verdict::{Decision, DrillVerdict};

/// Rows the drill writes on the target after the switch (the rollback must bring them back).
const AFTER_SWITCH_ROWS: u32 = 100;
/// Deadline for one volume copy or one dump/restore.
pub(crate) const MOVE_TIMEOUT: Duration = Duration::from_secs(900);

/// What a drill is asked to do.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub from: RuntimeKind,
    pub to: RuntimeKind,
    /// The spec's strategy unless set.
    pub strategy: Option<Strategy>,
    /// Bind address, readiness deadline and compose files for every stack of the drill.
    pub stack: StackOptions,
    /// Leave the target stack up at the end (recorded as kept).
    pub keep: bool,
}

/// One phase: a JUnit trial `migrate::<from>-to-<to>::<phase>`.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub verdict: Verdict,
    pub message: String,
    pub seconds: f64,
}

/// One volume's move (either direction).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeMove {
    pub volume: String,
    pub from: String,
    pub to: String,
    pub bytes: u64,
    /// The whole copy (checks, stream, read-back), the stream with its helper containers, and
    /// the bytes moving (first to last byte).
    pub seconds: f64,
    pub stream_seconds: f64,
    pub data_seconds: f64,
    /// Digest of the source tree, and of the target tree read back.
    pub source_digest: String,
    pub target_digest: String,
    pub identical: bool,
    /// The first differing path, when not identical.
    pub first_difference: Option<String>,
}

/// Everything a drill did, measured and decided; `migration.json` is this.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub from: RuntimeKind,
    pub to: RuntimeKind,
    pub strategy: Strategy,
    pub phases: Vec<Phase>,
    pub plan: MovePlan,
    /// What each service's container used on the source (capabilities, devices, host network).
    pub needs: BTreeMap<String, std::collections::BTreeSet<needs::Need>>,
    /// Earlier drills found interrupted at the start, and what was done with them.
    pub interrupted_drills: Vec<journal::Interrupted>,
    pub moves: Vec<VolumeMove>,
    /// Seconds from the source's writers stopping to the target serving (healthy, data in place).
    pub downtime_seconds: Option<f64>,
    /// The same for the rollback.
    pub rollback_downtime_seconds: Option<f64>,
    pub bytes_moved: u64,
    /// The source's run and project: kept, with its data, when the drill stops early.
    pub source_run: Option<String>,
    pub source_project: Option<String>,
    /// Each source volume's fingerprint digest at the stop (name to digest): what an interrupted
    /// drill must leave unchanged.
    pub source_fingerprints: BTreeMap<String, String>,
    pub source_data: Option<data::Snapshot>,
    pub target_checks: Vec<CheckOutcome>,
    pub source_checks: Vec<CheckOutcome>,
    pub rollback_checks: Vec<CheckOutcome>,
    pub verdict: Option<DrillVerdict>,
    pub seconds: f64,
}

impl DrillReport {
    /// `<from>-to-<to>` as in trial names (targets written as everywhere in trial names:
    /// `docker-to-podman_rootless`).
    pub fn direction(&self) -> String {
        format!("{}-to-{}", self.from.ident(), self.to.ident())
    }
}

/// Runs the drill. Errors that stop it before a verdict (an engine that cannot be used, a stack
/// that does not come up) are returned with what ran so far in the report's phases; a verdict
/// (GO or NO-GO) is in the report.
pub fn drill(plan: &Plan, opts: &DrillOptions, on_event: &mut dyn FnMut(&Event)) -> (DrillReport, Result<()>) {
    let strategy = opts.strategy.unwrap_or(plan.spec.migrate.strategy);
    let mut d = Drill {
        plan,
        opts,
        strategy,
        report: DrillReport {
            from: opts.from,
            to: opts.to,
            strategy,
            phases: Vec::new(),
            plan: MovePlan::default(),
            needs: BTreeMap::new(),
            interrupted_drills: Vec::new(),
            moves: Vec::new(),
            downtime_seconds: None,
            rollback_downtime_seconds: None,
            bytes_moved: 0,
            source_run: None,
            source_project: None,
            source_fingerprints: BTreeMap::new(),
            source_data: None,
            target_checks: Vec::new(),
            source_checks: Vec::new(),
            rollback_checks: Vec::new(),
            verdict: None,
            seconds: 0.0,
        },
        reasons: Vec::new(),
        journal: journal::Journal::new(opts.from, opts.to),
    };
    let started = Instant::now();
    let result = d.run(on_event);
    d.report.seconds = started.elapsed().as_secs_f64();
    (d.report, result)
}

struct Drill<'a> {
    plan: &'a Plan,
    opts: &'a DrillOptions,
    strategy: Strategy,
    report: DrillReport,
    /// NO-GO reasons found so far.
    reasons: Vec<String>,
    /// What an interruption would leave for the next drill, kept with the source's record.
    journal: journal::Journal,
}

/// A stopped stack's named volumes by compose key, with the fingerprints taken after the stop.
type Volumes = BTreeMap<String, (String, Fingerprint)>;

impl Drill<'_> {
    fn phase(&mut self, name: &'static str, started: Instant, verdict: Verdict, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(phase = name, ?verdict, "{message}");
        self.report.phases.push(Phase {
            name,
            verdict,
            message,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    /// A phase that failed for a NO-GO reason (the drill goes on where it can, or stops).
    fn no_go(&mut self, name: &'static str, started: Instant, reason: String) {
        self.reasons.push(reason.clone());
        self.phase(name, started, Verdict::Fail, reason);
    }

    fn cancelled(&self) -> Result<()> {
        if exec::is_cancelled() {
            Err(HarnessError::Interrupted)
        } else {
            Ok(())
        }
    }

    fn stack_options(&self, runtime: RuntimeKind, run_id: Option<String>) -> StackOptions {
        let mut o = self.opts.stack.clone();
        o.runtime = runtime;
        o.compose_files = self.plan.spec.compose.clone();
        o.run_id = run_id;
        o
    }

    fn run(&mut self, on_event: &mut dyn FnMut(&Event)) -> Result<()> {
        let (from, to) = (self.opts.from, self.opts.to);
        if from.engine() == to.engine() {
            return Err(HarnessError::usage(format!(
                "{from} and {to} share one engine: a migration moves between engines"
            ))
            .with_hint("pick --from and --to among docker, podman and podman-rootless (or their -v1/-v2 variants)"));
        }
        let persistence = self.plan.spec.persistence.clone();

        // 0. Drills that were interrupted before: their sources are checked, then removed.
        let t = Instant::now();
        let found = journal::clean_interrupted()?;
        if !found.is_empty() {
            let lines: Vec<String> = found.iter().map(journal::Interrupted::describe).collect();
            if found.iter().all(|i| i.changed.is_empty()) {
                self.phase("interrupted_drills", t, Verdict::Pass, lines.join("; "));
            } else {
                self.no_go(
                    "interrupted_drills",
                    t,
                    format!("an interrupted drill's source volumes changed: {}", lines.join("; ")),
                );
            }
        }
        self.report.interrupted_drills = found;

        // 1. What a move would carry and lose, from the compose model alone: nothing starts
        //    when state would be lost.
        let t = Instant::now();
        let lookup = |k: &str| std::env::var(k).ok();
        self.report.plan = volumes::plan(&self.plan.compose, &lookup);
        if !self.report.plan.at_risk.is_empty() {
            let lost: Vec<String> = self
                .report
                .plan
                .at_risk
                .iter()
                .map(|r| {
                    format!(
                        "{} keeps state in a {} at {} (remedy: {})",
                        r.service, r.kind, r.target, r.remedy
                    )
                })
                .collect();
            self.no_go("plan", t, format!("a move would lose state: {}", lost.join("; ")));
            return self.finish();
        }
        let carried: Vec<String> = self.report.plan.carried.iter().map(|c| c.volume.clone()).collect();
        self.phase(
            "plan",
            t,
            Verdict::Pass,
            format!("named volumes to move: {}", carried.join(", ")),
        );

        // 2. Source up, checked, seeded.
        let t = Instant::now();
        on_event(&Event::Phase(format!("source: {from} up")));
        let (mut source, up) = Stack::up(&self.stack_options(from, None), on_event)?;
        // From here the source and its volumes outlive an interrupted drill, with its journal.
        source.outlive_process()?;
        self.journal.save(source.record())?;
        self.report.source_run = Some(source.record().run_id.clone());
        self.report.source_project = Some(source.record().project.clone());
        self.phase(
            "source_up",
            t,
            Verdict::Pass,
            format!(
                "{} services healthy in {:.1}s (project {})",
                up.services.len(),
                up.total_seconds,
                up.project
            ),
        );
        // What the source's containers use that the target may not give: NO-GO before any
        // data is written or moved.
        let t = Instant::now();
        if !self.target_gives_what_the_source_uses(&source, t)? {
            source.down()?;
            return self.finish();
        }
        let t = Instant::now();
        if let Some(p) = &persistence {
            let db = Db::open(&source, p).map_err(HarnessError::usage)?;
            data::write_rows(&db, "before-switch", p.rows).map_err(HarnessError::usage)?;
            self.phase(
                "seed",
                t,
                Verdict::Pass,
                format!("{} rows written to {} on {from}", p.rows, data::DRILL_TABLE),
            );
        } else {
            self.phase(
                "seed",
                t,
                Verdict::Skip,
                "the spec has no [persistence] database to write to",
            );
        }

        // 3. State written outside the named volumes (the container's own filesystem): looked
        //    for once the stack has started, and again after the checks, before the stop.
        let t = Instant::now();
        if !self.container_fs(&source, t, true)? {
            source.down()?;
            return self.finish();
        }
        let t = Instant::now();
        self.report.source_checks = session::run_checks(&source, self.plan, on_event);
        self.cancelled()?;
        self.phase_for_checks("source_checks", t, from, &self.report.source_checks.clone(), false);

        if !self.container_fs(&source, Instant::now(), false)? {
            source.down()?;
            return self.finish();
        }
        self.cancelled()?;

        // 4. Quiesce: writers stop, the data is read, then everything stops.
        let t = Instant::now();
        let switch_started = Instant::now();
        let dump = self.quiesce(&source, persistence.as_ref(), from, "source")?;
        let source_volumes = self.fingerprint_volumes(&source)?;
        // Stopped, it creates and removes nothing until the end: the rollback may come up on
        // its engine (Podman's one-stack-at-a-time slot would otherwise wait for it forever).
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

        // 5. Move to the target, bring it up, verify data and checks.
        let target_run = crate::runs::fresh_run_id();
        self.journal.phase = "move".into();
        self.journal.other_runs.push((to, target_run.clone()));
        self.journal.save(source.record())?;
        on_event(&Event::Phase(format!("moving volumes to {to}")));
        let moved = self.move_volumes(&source, &source_volumes, to, &target_run, persistence.as_ref())?;
        if !moved {
            return self.abandon(source);
        }
        let t = Instant::now();
        on_event(&Event::Phase(format!("target: {to} up")));
        let (target, up) = match Stack::up(&self.stack_options(to, Some(target_run.clone())), on_event) {
            Ok(x) => x,
            Err(e) => {
                self.no_go("target_up", t, format!("the stack did not come up under {to}: {e}"));
                source.down()?;
                return self.finish();
            }
        };
        if let (Some(dump), Some(p)) = (&dump, &persistence) {
            if let Err(e) = self.restore(&target, p, dump) {
                self.no_go(
                    "target_up",
                    t,
                    format!("restoring the database dump under {to} failed: {e}"),
                );
                target.down()?;
                source.down()?;
                return self.finish();
            }
        }
        self.report.downtime_seconds = Some(switch_started.elapsed().as_secs_f64());
        self.phase(
            "target_up",
            t,
            Verdict::Pass,
            format!(
                "{} services healthy in {:.1}s; downtime {:.1}s",
                up.services.len(),
                up.total_seconds,
                switch_started.elapsed().as_secs_f64()
            ),
        );
        let t = Instant::now();
        self.verify_data(
            &target,
            persistence.as_ref(),
            dump.as_ref().map(|d| &d.snapshot),
            "target_data",
            t,
            &[("before-switch", persistence.as_ref().map_or(0, |p| p.rows))],
        )?;
        let t = Instant::now();
        self.report.target_checks = session::run_checks(&target, self.plan, on_event);
        self.cancelled()?;
        let target_checks = self.report.target_checks.clone();
        let (reasons, accepted) = verdict::judge_checks(
            &target_checks,
            &self.report.source_checks,
            &self.plan.spec.migrate.accept,
            &self.plan.compose.networks,
        );
        let failed = reasons.len();
        self.reasons.extend(reasons);
        self.phase_for_checks("target_checks", t, to, &target_checks, failed == 0);
        let accepted_note = accepted;

        // 6. Serve on the target, then roll back into a new project on the source's engine.
        let t = Instant::now();
        if let Some(p) = &persistence {
            let db = Db::open(&target, p).map_err(HarnessError::usage)?;
            data::write_rows(&db, "after-switch", AFTER_SWITCH_ROWS).map_err(HarnessError::usage)?;
            self.phase(
                "serve",
                t,
                Verdict::Pass,
                format!("{AFTER_SWITCH_ROWS} rows written on {to} after the switch"),
            );
        } else {
            self.phase("serve", t, Verdict::Skip, "no database to write to");
        }
        let t = Instant::now();
        let back_started = Instant::now();
        let back_dump = self.quiesce(&target, persistence.as_ref(), to, "target")?;
        let target_volumes = self.fingerprint_volumes(&target)?;
        let rollback_run = crate::runs::fresh_run_id();
        self.journal.phase = "rollback".into();
        self.journal.other_runs.push((from, rollback_run.clone()));
        self.journal.save(source.record())?;
        on_event(&Event::Phase(format!("moving volumes back to {from}")));
        let moved = self.move_volumes(&target, &target_volumes, from, &rollback_run, persistence.as_ref())?;
        if !moved {
            self.phase("rollback", t, Verdict::Fail, "the volumes did not move back");
            target.down()?;
            return self.abandon(source);
        }
        let (rollback, _) = match Stack::up(&self.stack_options(from, Some(rollback_run)), on_event) {
            Ok(x) => x,
            Err(e) => {
                self.no_go(
                    "rollback",
                    t,
                    format!("the stack did not come back up under {from}: {e}"),
                );
                target.down()?;
                source.down()?;
                return self.finish();
            }
        };
        if let (Some(dump), Some(p)) = (&back_dump, &persistence) {
            if let Err(e) = self.restore(&rollback, p, dump) {
                self.no_go(
                    "rollback",
                    t,
                    format!("restoring the database dump under {from} failed: {e}"),
                );
                rollback.down()?;
                target.down()?;
                source.down()?;
                return self.finish();
            }
        }
        self.report.rollback_downtime_seconds = Some(back_started.elapsed().as_secs_f64());
        self.phase(
            "rollback",
            t,
            Verdict::Pass,
            format!(
                "back under {from} in {:.1}s of downtime",
                back_started.elapsed().as_secs_f64()
            ),
        );
        let t = Instant::now();
        let expect = persistence
            .as_ref()
            .map(|p| vec![("before-switch", p.rows), ("after-switch", AFTER_SWITCH_ROWS)])
            .unwrap_or_default();
        self.verify_data(
            &rollback,
            persistence.as_ref(),
            back_dump.as_ref().map(|d| &d.snapshot),
            "rollback_data",
            t,
            &expect,
        )?;
        let t = Instant::now();
        self.report.rollback_checks = session::run_checks(&rollback, self.plan, on_event);
        self.cancelled()?;
        let rollback_checks = self.report.rollback_checks.clone();
        let failing: Vec<String> = rollback_checks
            .iter()
            .filter(|o| o.verdict == Verdict::Fail)
            .map(|o| format!("{}: {}", o.id, o.message))
            .collect();
        if failing.is_empty() {
            self.phase_for_checks("rollback_checks", t, from, &rollback_checks, true);
        } else {
            self.no_go(
                "rollback_checks",
                t,
                format!("after the rollback, under {from}: {}", failing.join("; ")),
            );
        }

        // 7. Clean up (the target may stay) and decide.
        rollback.down()?;
        if self.opts.keep {
            self.restart_and_keep(target)?;
        } else {
            target.down()?;
        }
        source.down()?;
        let mut v = verdict::decide(std::mem::take(&mut self.reasons), accepted_note);
        if v.decision == Decision::Go && !v.accepted.is_empty() {
            tracing::info!("GO with {} accepted difference(s)", v.accepted.len());
        }
        v.reasons.dedup();
        self.report.verdict = Some(v);
        Ok(())
    }

    /// Whether the target engine gives every capability, device and network mode the source's
    /// containers use (else a NO-GO naming service and need).
    fn target_gives_what_the_source_uses(&mut self, source: &Stack, t: Instant) -> Result<bool> {
        let used = needs::of_stack(source)?;
        self.report.needs = used.clone();
        if used.is_empty() {
            self.phase(
                "target_capabilities",
                t,
                Verdict::Pass,
                "the source uses no capability, device, host network or privileged mode: nothing to probe",
            );
            return Ok(true);
        }
        let to = Runtime::resolve(self.opts.to)?;
        let missing = needs::missing_on(&used, source.runtime(), &to, &helper_labels(source.record()))?;
        let asked: usize = used.values().map(|n| n.len()).sum();
        if missing.is_empty() {
            self.phase(
                "target_capabilities",
                t,
                Verdict::Pass,
                format!(
                    "{} gives all {asked} need(s) of {} service(s), probed on both engines",
                    self.opts.to,
                    used.len()
                ),
            );
            return Ok(true);
        }
        let named: Vec<String> = missing
            .iter()
            .map(|m| {
                format!(
                    "{} uses {}, which {} does not give ({})",
                    m.service, m.need, self.opts.to, m.evidence
                )
            })
            .collect();
        self.no_go(
            "target_capabilities",
            t,
            format!(
                "the target lacks what the source uses: {} (remedy: drop the need from the service, or grant it to the target's engine: for a device under rootless Podman, a device the user may open)",
                named.join("; ")
            ),
        );
        Ok(false)
    }

    /// Whether no container wrote outside its mounts (else a NO-GO naming service and path).
    /// `record_pass`: also record the phase when nothing was written.
    fn container_fs(&mut self, stack: &Stack, t: Instant, record_pass: bool) -> Result<bool> {
        let written = state::container_writes(stack)?;
        if !written.is_empty() {
            self.no_go(
                "container_filesystem",
                t,
                format!(
                    "state written in containers' own filesystems would not move: {} (remedy: mount a named volume there, or set read_only: true to prove nothing is written)",
                    written.join("; ")
                ),
            );
            return Ok(false);
        }
        if record_pass {
            self.phase(
                "container_filesystem",
                t,
                Verdict::Pass,
                "no service wrote outside its volumes and tmpfs mounts",
            );
        }
        Ok(true)
    }

    /// Decides on what was found (for a drill that stopped at a NO-GO before the end).
    fn finish(&mut self) -> Result<()> {
        self.report.verdict = Some(verdict::decide(std::mem::take(&mut self.reasons), Vec::new()));
        Ok(())
    }

    /// The move failed or was refused: the source is removed with what the drill made (it holds
    /// only the drill's data) and the verdict is NO-GO.
    fn abandon(&mut self, source: Stack) -> Result<()> {
        source.down()?;
        self.finish()
    }

    /// Records a check-running phase: pass when nothing failed (or `ok`), with counts.
    fn phase_for_checks(
        &mut self,
        name: &'static str,
        t: Instant,
        runtime: RuntimeKind,
        outcomes: &[CheckOutcome],
        ok: bool,
    ) {
        let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Fail)
            .map(|o| o.id.to_string())
            .collect();
        let message = format!(
            "under {runtime}: {} passed, {} failed{}, {} not enforceable",
            count(Verdict::Pass),
            failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.join(", "))
            },
            count(Verdict::NotEnforceable)
        );
        let verdict = if failed.is_empty() || ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        self.phase(name, t, verdict, message);
    }

    /// Stops the writers, reads the data (and dumps the database for the logical strategy),
    /// then stops the whole stack, keeping containers and volumes.
    fn quiesce(
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
    fn fingerprint_volumes(&self, stack: &Stack) -> Result<Volumes> {
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
    fn move_volumes(
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
        let owner = std::process::id();
        let mut labels = run_labels(
            run_id,
            to.name(),
            owner,
            crate::runs::process_start_time(owner).unwrap_or(0),
        );
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
        for (key, (name, fp)) in vols {
            if self.strategy == Strategy::Logical && p.is_some_and(|p| &p.volume == key) {
                continue;
            }
            let target_name = format!("{project}_{key}");
            labels.insert("com.docker.compose.project".into(), project.clone());
            labels.insert("com.docker.compose.volume".into(), key.clone());
            volumes::create(&to_rt, &target_name, &labels)?;
            created.names.push(target_name.clone());
            let tr = volumes::copy(
                from.runtime(),
                name,
                &to_rt,
                &target_name,
                volumes::Fill::Empty,
                &helper,
                MOVE_TIMEOUT,
            )?;
            let diff = fp.first_difference(&tr.target).map(|d| d.to_string());
            let m = VolumeMove {
                volume: key.clone(),
                from: from.record().runtime.to_string(),
                to: to.to_string(),
                bytes: tr.stream_bytes,
                seconds: tr.seconds,
                stream_seconds: tr.stream_seconds,
                data_seconds: tr.data_seconds,
                source_digest: fp.digest(),
                target_digest: tr.target.digest(),
                identical: diff.is_none() && tr.source.digest() == fp.digest(),
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
                    bad.first_difference
                        .as_deref()
                        .unwrap_or("(the stream differed from the stopped volume)")
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
    fn restore(&mut self, stack: &Stack, p: &Persistence, dump: &Dump) -> Result<()> {
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
    fn verify_data(
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

    /// `--keep`: the target comes back up from its stopped containers and stays.
    fn restart_and_keep(&mut self, mut target: Stack) -> Result<()> {
        target.restart_keeping_volumes(self.opts.stack.ready_timeout)?;
        target.keep_on_exit()?;
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
struct Dump {
    snapshot: data::Snapshot,
    file: Option<PathBuf>,
}

/// Labels for the drill's helper containers: the run's, so `harness gc` finds them.
fn helper_labels(record: &crate::runs::RunRecord) -> BTreeMap<String, String> {
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
