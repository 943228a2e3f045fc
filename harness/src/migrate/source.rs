//! The drill's first phases, on the source: earlier drills that died, what a move would carry,
//! the source up and kept past this process, what it uses probed on the target, rows written,
//! the spec checked, and its containers' own filesystems looked at.

use std::time::Instant;

use super::move_data::helper_labels;
use super::{data, journal, needs, state, Drill};
use crate::checks::persistence::Db;
use crate::error::{HarnessError, Result};
use crate::outcome::Verdict;
use crate::runtime::Runtime;
use crate::session;
use crate::spec::Persistence;
use crate::stack::{Event, Stack};
use crate::volumes;

impl Drill<'_> {
    /// Phase 0: drills whose process died are checked against their journals and removed.
    pub(super) fn clean_interrupted_drills(&mut self) -> Result<()> {
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
        Ok(())
    }

    /// Phase 1: what a move would carry and lose, from the compose model alone. False (after a
    /// NO-GO) when state would be lost: nothing starts then.
    pub(super) fn plan_move(&mut self) -> bool {
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
            return false;
        }
        let carried: Vec<String> = self.report.plan.carried.iter().map(|c| c.volume.clone()).collect();
        self.phase(
            "plan",
            t,
            Verdict::Pass,
            format!("named volumes to move: {}", carried.join(", ")),
        );
        true
    }

    /// Phases 2-3: the source up (kept past this process, with its journal), what it uses
    /// probed on the target, rows written, the spec checked, and its containers' own
    /// filesystems looked at before and after the checks. `None` (source down, NO-GO recorded)
    /// when the drill cannot go on.
    pub(super) fn source_up(
        &mut self,
        p: Option<&Persistence>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<Stack>> {
        let from = self.opts.from;
        let t = Instant::now();
        on_event(&Event::Phase(format!("source: {from} up")));
        // A run id the next drill recognises if this one dies while the source comes up.
        let run_id = journal::source_run_id();
        let (mut source, up) = Stack::up(&self.stack_options(from, Some(run_id)), on_event)?;
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
        if !self.target_gives_what_the_source_uses(&source, Instant::now())? {
            source.down()?;
            return Ok(None);
        }
        let t = Instant::now();
        if let Some(p) = p {
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
        // State written outside the named volumes (the container's own filesystem): looked for
        // once the stack has started, and again after the checks, before the stop.
        if !self.container_fs(&source, Instant::now(), true)? {
            source.down()?;
            return Ok(None);
        }
        let t = Instant::now();
        self.report.source_checks = session::run_checks(&source, self.plan, on_event);
        self.cancelled()?;
        self.phase_for_checks("source_checks", t, from, &self.report.source_checks.clone(), false);
        if !self.container_fs(&source, Instant::now(), false)? {
            source.down()?;
            return Ok(None);
        }
        self.cancelled()?;
        Ok(Some(source))
    }

    /// Whether the target engine gives every capability, device and network mode the source's
    /// containers use (else a NO-GO naming service and need).
    pub(super) fn target_gives_what_the_source_uses(&mut self, source: &Stack, t: Instant) -> Result<bool> {
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
    pub(super) fn container_fs(&mut self, stack: &Stack, t: Instant, record_pass: bool) -> Result<bool> {
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
}
