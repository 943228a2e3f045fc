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
mod move_data;
pub mod needs;
pub mod report;
mod source;
mod state;
mod target;
pub mod verdict;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{HarnessError, Result};
use crate::outcome::{CheckOutcome, Verdict};
use crate::runtime::{exec, RuntimeKind};
use crate::session::Plan;
use crate::spec::Strategy;
use crate::stack::{Event, Stack, StackOptions};
use crate::volumes::{Fingerprint, MovePlan};

pub use verdict::{Decision, DrillVerdict};

/// Rows the drill writes on the target after the switch (the rollback must bring them back).
const AFTER_SWITCH_ROWS: u32 = 100;
/// Deadline for one volume copy or one dump/restore.
pub(crate) const MOVE_TIMEOUT: Duration = Duration::from_secs(900);

/// What a drill is asked to do.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The source target, where the stack starts.
    pub from: RuntimeKind,
    /// The target the stack moves to.
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
    /// The phase's name (`quiesce`, `move`, ...), the last part of its trial name.
    pub name: &'static str,
    /// How the phase ended.
    pub verdict: Verdict,
    /// What the phase did or found, in words.
    pub message: String,
    /// Time the phase took, in seconds.
    pub seconds: f64,
}

/// One volume's move (either direction).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeMove {
    /// The volume's key in the compose file.
    pub volume: String,
    /// The target the volume was copied from.
    pub from: String,
    /// The target the volume was copied to.
    pub to: String,
    /// Bytes of the tar stream.
    pub bytes: u64,
    /// The whole copy (checks, stream, read-back), in seconds.
    pub seconds: f64,
    /// The stream with its helper containers, in seconds.
    pub stream_seconds: f64,
    /// The helpers' start until both waited at their gates, in seconds (overlapped with the
    /// other volumes' copies, all but the first).
    pub start_seconds: f64,
    /// The copy proper: helpers let through their gates until both exited, in seconds.
    pub copy_seconds: f64,
    /// The bytes moving (first to last byte), in seconds.
    pub data_seconds: f64,
    /// Digest of the source tree, as fingerprinted at the stop.
    pub source_digest: String,
    /// Digest of the target tree, read back after the copy.
    pub target_digest: String,
    /// Whether the target tree is the same as the source's.
    pub identical: bool,
    /// The first differing path, when not identical.
    pub first_difference: Option<String>,
}

/// Everything a drill did, measured and decided; `migration.json` is this.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The source target.
    pub from: RuntimeKind,
    /// The target the stack moved to.
    pub to: RuntimeKind,
    /// How the database volume moved.
    pub strategy: Strategy,
    /// The phases run, in order.
    pub phases: Vec<Phase>,
    /// Which volumes the drill carries over, and the mounts whose contents a move would lose.
    pub plan: MovePlan,
    /// What each service's container used on the source (capabilities, devices, host network).
    pub needs: BTreeMap<String, std::collections::BTreeSet<needs::Need>>,
    /// Earlier drills found interrupted at the start, and what was done with them.
    pub interrupted_drills: Vec<journal::Interrupted>,
    /// Every volume copy, in both directions.
    pub moves: Vec<VolumeMove>,
    /// Seconds from the source's writers stopping to the target serving (healthy, data in place).
    pub downtime_seconds: Option<f64>,
    /// The same for the rollback.
    pub rollback_downtime_seconds: Option<f64>,
    /// Bytes of every tar stream, in both directions.
    pub bytes_moved: u64,
    /// The source's run id: the run is kept, with its data, when the drill stops early.
    pub source_run: Option<String>,
    /// The source's compose project name (kept with its run).
    pub source_project: Option<String>,
    /// Each source volume's fingerprint digest at the stop (name to digest): what an interrupted
    /// drill must leave unchanged.
    pub source_fingerprints: BTreeMap<String, String>,
    /// The source database's tables, read once its writers stopped (only with a persistence probe).
    pub source_data: Option<data::Snapshot>,
    /// The spec's checks run on the target.
    pub target_checks: Vec<CheckOutcome>,
    /// The spec's checks run on the source before the move.
    pub source_checks: Vec<CheckOutcome>,
    /// The spec's checks run on the rollback project.
    pub rollback_checks: Vec<CheckOutcome>,
    /// GO or NO-GO with its reasons; `None` when the drill stopped before a verdict.
    pub verdict: Option<DrillVerdict>,
    /// The whole drill's duration, in seconds.
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

    /// The drill, phase by phase. A phase that finds a NO-GO takes down what is up and ends the
    /// drill with [`Drill::finish`]; an error ends it with the source kept (see [`journal`]).
    fn run(&mut self, on_event: &mut dyn FnMut(&Event)) -> Result<()> {
        let (from, to) = (self.opts.from, self.opts.to);
        if from.engine() == to.engine() {
            return Err(HarnessError::usage(format!(
                "{from} and {to} share one engine: a migration moves between engines"
            ))
            .with_hint("pick --from and --to among docker, podman and podman-rootless (or their -v1/-v2 variants)"));
        }
        let persistence = self.plan.spec.persistence.clone();
        let p = persistence.as_ref();

        // 0-1. Earlier drills that died; what a move would carry and lose.
        self.clean_interrupted_drills()?;
        if !self.plan_move() {
            return self.finish();
        }
        // 2-3. The source up, probed, seeded and checked.
        let Some(mut source) = self.source_up(p, on_event)? else {
            return self.finish();
        };
        // 4. Quiesce: writers stop, the data is read, then everything stops.
        let switch_started = Instant::now();
        let (dump, source_volumes) = self.stop_source(&mut source, p)?;
        // 5. Move to the target, bring it up, verify data and checks.
        let Some(target) =
            self.switch_to_target(&source, &source_volumes, dump.as_ref(), p, switch_started, on_event)?
        else {
            return self.abandon(source);
        };
        let accepted = self.verify_target(&target, dump.as_ref(), p, on_event)?;
        // 6. Serve on the target, then roll back into a new project on the source's engine.
        self.serve(&target, p)?;
        let Some((rollback, back_dump)) = self.roll_back(&source, &target, p, on_event)? else {
            target.down()?;
            return self.abandon(source);
        };
        self.verify_rollback(&rollback, back_dump.as_ref(), p, on_event)?;

        // 7. Clean up (the target may stay) and decide.
        rollback.down()?;
        if self.opts.keep {
            self.restart_and_keep(target)?;
        } else {
            target.down()?;
        }
        source.down()?;
        let mut v = verdict::decide(std::mem::take(&mut self.reasons), accepted);
        if v.decision == Decision::Go && !v.accepted.is_empty() {
            tracing::info!("GO with {} accepted difference(s)", v.accepted.len());
        }
        v.reasons.dedup();
        self.report.verdict = Some(v);
        Ok(())
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
}
