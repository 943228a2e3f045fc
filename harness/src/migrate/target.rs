//! The switch and the way back: the target up from the moved volumes and verified, rows
//! written on it, then the rollback into a new run on the source's engine, verified with the
//! rows of both sides.

use std::time::Instant;

use super::move_data::Dump;
use super::{data, verdict, Drill, Volumes, AFTER_SWITCH_ROWS};
use crate::checks::persistence::Db;
use crate::error::{HarnessError, Result};
use crate::outcome::Verdict;
use crate::runtime::RuntimeKind;
use crate::session;
use crate::spec::Persistence;
use crate::stack::{Event, Stack, UpReport};

impl Drill<'_> {
    /// Phase 5: the volumes moved to a new target run, the target up (and the dump restored for
    /// the logical strategy); downtime is measured from `switch_started`. `None` after a NO-GO,
    /// with the target down.
    pub(super) fn switch_to_target(
        &mut self,
        source: &Stack,
        source_volumes: &Volumes,
        dump: Option<&Dump>,
        p: Option<&Persistence>,
        switch_started: Instant,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<Stack>> {
        let to = self.opts.to;
        let target_run = crate::runs::fresh_run_id();
        self.journal.phase = "move".into();
        self.journal.other_runs.push((to, target_run.clone()));
        self.journal.save(source.record())?;
        on_event(&Event::Phase(format!("moving volumes to {to}")));
        if !self.move_volumes(source, source_volumes, to, &target_run, p)? {
            return Ok(None);
        }
        let t = Instant::now();
        on_event(&Event::Phase(format!("target: {to} up")));
        let Some((target, up)) = self.up_with_data("target_up", "come up", to, target_run, dump, p, t, on_event)?
        else {
            return Ok(None);
        };
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
        Ok(Some(target))
    }

    /// The stack up under `runtime` as run `run_id` from the volumes just moved, with `dump`
    /// restored (logical strategy). `None` after a NO-GO recorded under `phase`, nothing left up.
    #[allow(clippy::too_many_arguments)]
    fn up_with_data(
        &mut self,
        phase: &'static str,
        verb: &str,
        runtime: RuntimeKind,
        run_id: String,
        dump: Option<&Dump>,
        p: Option<&Persistence>,
        t: Instant,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<(Stack, UpReport)>> {
        let (stack, up) = match Stack::up(&self.stack_options(runtime, Some(run_id)), on_event) {
            Ok(x) => x,
            Err(e) => {
                self.no_go(phase, t, format!("the stack did not {verb} under {runtime}: {e}"));
                return Ok(None);
            }
        };
        if let (Some(dump), Some(p)) = (dump, p) {
            if let Err(e) = self.restore(&stack, p, dump) {
                self.no_go(
                    phase,
                    t,
                    format!("restoring the database dump under {runtime} failed: {e}"),
                );
                stack.down()?;
                return Ok(None);
            }
        }
        Ok(Some((stack, up)))
    }

    /// The target holds the source's data and passes the spec; failures the spec does not
    /// accept become NO-GO reasons. Returns the accepted ones.
    pub(super) fn verify_target(
        &mut self,
        target: &Stack,
        dump: Option<&Dump>,
        p: Option<&Persistence>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Vec<verdict::Accepted>> {
        let to = self.opts.to;
        self.verify_data(
            target,
            p,
            dump.map(|d| &d.snapshot),
            "target_data",
            Instant::now(),
            &[("before-switch", p.map_or(0, |p| p.rows))],
        )?;
        let t = Instant::now();
        self.report.target_checks = session::run_checks(target, self.plan, on_event);
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
        Ok(accepted)
    }

    /// Rows written on the target after the switch: the rollback must bring them back.
    pub(super) fn serve(&mut self, target: &Stack, p: Option<&Persistence>) -> Result<()> {
        let t = Instant::now();
        match p {
            Some(p) => {
                let db = Db::open(target, p).map_err(HarnessError::usage)?;
                data::write_rows(&db, "after-switch", AFTER_SWITCH_ROWS).map_err(HarnessError::usage)?;
                self.phase(
                    "serve",
                    t,
                    Verdict::Pass,
                    format!("{AFTER_SWITCH_ROWS} rows written on {} after the switch", self.opts.to),
                );
            }
            None => self.phase("serve", t, Verdict::Skip, "no database to write to"),
        }
        Ok(())
    }

    /// Phase 6: the target quiesced, its volumes moved back into a new run on the source's
    /// engine, which comes up (with the target's dump restored for the logical strategy). The
    /// rollback stack and the target's data at its stop; `None` after a NO-GO, with the
    /// rollback down (the target is the caller's).
    pub(super) fn roll_back(
        &mut self,
        source: &Stack,
        target: &Stack,
        p: Option<&Persistence>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<(Stack, Option<Dump>)>> {
        let (from, to) = (self.opts.from, self.opts.to);
        let t = Instant::now();
        let back_started = Instant::now();
        let back_dump = self.quiesce(target, p, to, "target")?;
        let target_volumes = self.fingerprint_volumes(target)?;
        let rollback_run = crate::runs::fresh_run_id();
        self.journal.phase = "rollback".into();
        self.journal.other_runs.push((from, rollback_run.clone()));
        self.journal.save(source.record())?;
        on_event(&Event::Phase(format!("moving volumes back to {from}")));
        if !self.move_volumes(target, &target_volumes, from, &rollback_run, p)? {
            self.phase("rollback", t, Verdict::Fail, "the volumes did not move back");
            return Ok(None);
        }
        let Some((rollback, _)) = self.up_with_data(
            "rollback",
            "come back up",
            from,
            rollback_run,
            back_dump.as_ref(),
            p,
            t,
            on_event,
        )?
        else {
            return Ok(None);
        };
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
        Ok(Some((rollback, back_dump)))
    }

    /// The rollback holds the rows of both sides and passes the spec.
    pub(super) fn verify_rollback(
        &mut self,
        rollback: &Stack,
        back_dump: Option<&Dump>,
        p: Option<&Persistence>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<()> {
        let from = self.opts.from;
        let expect = p
            .map(|p| vec![("before-switch", p.rows), ("after-switch", AFTER_SWITCH_ROWS)])
            .unwrap_or_default();
        self.verify_data(
            rollback,
            p,
            back_dump.map(|d| &d.snapshot),
            "rollback_data",
            Instant::now(),
            &expect,
        )?;
        let t = Instant::now();
        self.report.rollback_checks = session::run_checks(rollback, self.plan, on_event);
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
        Ok(())
    }

    /// `--keep`: the target comes back up from its stopped containers and stays.
    pub(super) fn restart_and_keep(&mut self, mut target: Stack) -> Result<()> {
        target.restart_keeping_volumes(self.opts.stack.ready_timeout)?;
        target.keep_on_exit()?;
        Ok(())
    }
}
