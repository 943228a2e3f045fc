//! A drill's journal, kept beside its source run's record (`drill.json`): the phase it reached,
//! the source volumes' digests taken at the stop, and the target and rollback runs it started.
//! A drill that is interrupted, even by kill -9, leaves its source stack (recorded as
//! [`RunStatus::DrillSource`]) and this journal. The next drill finds them once that process is
//! gone: it checks the source volumes against the journal, then removes that drill's stacks.
//! `harness gc` removes them too, without the check.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compose::file::run_labels_of_this_process;
use crate::error::Result;
use crate::runs::{owner_alive, RunFile, RunRecord, RunStatus};
use crate::runtime::{Runtime, RuntimeKind};

/// What an interrupted drill left for the next one to find.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// The drill's source target.
    pub from: RuntimeKind,
    /// The drill's target.
    pub to: RuntimeKind,
    /// The last phase the drill began.
    pub phase: String,
    /// Volume name → digest of the source's volumes at the stop; empty before it.
    #[serde(default)]
    pub source_fingerprints: BTreeMap<String, String>,
    /// The target and rollback runs the drill started.
    #[serde(default)]
    pub other_runs: Vec<(RuntimeKind, String)>,
}

impl Journal {
    /// A journal for a drill from `from` to `to`, at its first phase (`source_up`).
    pub fn new(from: RuntimeKind, to: RuntimeKind) -> Self {
        Self {
            from,
            to,
            phase: "source_up".into(),
            source_fingerprints: BTreeMap::new(),
            other_runs: Vec::new(),
        }
    }

    /// Writes the journal beside `source`'s run record, replacing the previous one.
    pub fn save(&self, source: &RunRecord) -> Result<()> {
        source.write_file(
            RunFile::DrillJournal,
            &serde_json::to_vec_pretty(self).expect("journal serialises"),
        )
    }

    /// The journal kept beside `source`'s run record; `None` when there is none or it does not parse.
    pub fn load(source: &RunRecord) -> Option<Self> {
        serde_json::from_slice(&source.read_file(RunFile::DrillJournal)?).ok()
    }
}

/// How a drill's source run id starts: a drill killed while its source was still coming up
/// left no journal, and the next drill knows its run by this.
pub const SOURCE_RUN_PREFIX: &str = "drill-";

/// A fresh run id for a drill's source.
pub fn source_run_id() -> String {
    format!("{SOURCE_RUN_PREFIX}{}", crate::runs::fresh_run_id())
}

/// One interrupted drill found and dealt with.
#[derive(Debug, Clone, Serialize)]
pub struct Interrupted {
    /// The run id of the drill's source stack.
    pub source_run: String,
    /// The process id of the drill that was interrupted.
    pub owner_pid: u32,
    /// `None` when the drill died before its journal was first written.
    pub journal: Option<Journal>,
    /// Source volumes whose digest is no longer the one taken at the stop (with both digests).
    pub changed: Vec<String>,
    /// Source volumes compared with the journal.
    pub checked: usize,
    /// Whether its stacks were removed (not when a source volume changed: that is evidence).
    pub removed: bool,
}

impl Interrupted {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let (direction, phase) = match &self.journal {
            Some(j) => (format!("{} → {}", j.from, j.to), j.phase.as_str()),
            None => ("direction unknown".to_string(), "source_up"),
        };
        let volumes = if !self.changed.is_empty() {
            format!("source volumes changed since its stop: {}", self.changed.join("; "))
        } else if self.checked > 0 {
            format!("its {} source volume(s) are as they were at its stop", self.checked)
        } else {
            "it stopped before its source was fingerprinted: nothing had moved".to_string()
        };
        format!(
            "drill of pid {} ({direction}, source run {}, interrupted in {phase}): {volumes}; {}",
            self.owner_pid,
            self.source_run,
            if self.removed {
                "its source and target runs were removed"
            } else {
                "its source is left for inspection (`harness down --run` or `harness gc` removes it)"
            }
        )
    }
}

/// Finds the drills whose process is gone, compares their source volumes with their journals,
/// and removes their stacks (the source only when nothing changed). A drill that cannot be dealt
/// with (its engine is down) is logged and left for `harness gc`.
pub fn clean_interrupted() -> Result<Vec<Interrupted>> {
    // The named pipes of a copy the killed drill was making.
    for dir in crate::volumes::stream_dir::sweep_orphans()? {
        tracing::info!(dir = %dir.display(), "removed a killed copy's stream directory");
    }
    let mut out = Vec::new();
    for record in RunRecord::load_all()? {
        if owner_alive(record.owner_pid, record.owner_start) {
            continue;
        }
        // Killed while its source was still coming up: nothing was written or moved yet.
        if record.status == RunStatus::Starting && record.run_id.starts_with(SOURCE_RUN_PREFIX) {
            match Runtime::resolve(record.runtime).and_then(|rt| crate::gc::sweep_run(&rt, &record.run_id)) {
                Ok(_) => out.push(Interrupted {
                    source_run: record.run_id.clone(),
                    owner_pid: record.owner_pid,
                    journal: None,
                    changed: Vec::new(),
                    checked: 0,
                    removed: true,
                }),
                Err(e) => {
                    tracing::warn!(run = %record.run_id, "a killed drill's starting source could not be removed: {e}")
                }
            }
            continue;
        }
        if record.status != RunStatus::DrillSource {
            continue;
        }
        match clean_one(&record) {
            Ok(found) => out.push(found),
            Err(e) => tracing::warn!(run = %record.run_id, "an interrupted drill's source could not be checked: {e}"),
        }
    }
    Ok(out)
}

fn clean_one(record: &RunRecord) -> Result<Interrupted> {
    let journal = Journal::load(record);
    let rt = Runtime::resolve(record.runtime)?;
    let labels = run_labels_of_this_process(&crate::runs::fresh_run_id(), rt.kind().name());
    let mut changed = Vec::new();
    let mut checked = 0;
    for (volume, digest) in journal.iter().flat_map(|j| &j.source_fingerprints) {
        checked += 1;
        match crate::volumes::transfer::fingerprint(&rt, volume, &labels, Duration::from_secs(600)) {
            Ok(now) if now.digest() == *digest => {}
            Ok(now) => changed.push(format!("{volume} ({digest} at the stop, {} now)", now.digest())),
            Err(e) => changed.push(format!("{volume} (cannot be read: {e})")),
        }
    }
    for (kind, run) in journal.iter().flat_map(|j| &j.other_runs) {
        let other = Runtime::resolve(*kind)?;
        // The copy's helpers on that engine carry the source run's labels, and may hold the
        // other run's volumes.
        crate::gc::sweep_run_elsewhere(&other, &record.run_id)?;
        crate::gc::sweep_run(&other, run)?;
    }
    let removed = changed.is_empty();
    if removed {
        crate::gc::sweep_run(&rt, &record.run_id)?;
    }
    tracing::info!(run = %record.run_id, removed, "interrupted drill found");
    Ok(Interrupted {
        source_run: record.run_id.clone(),
        owner_pid: record.owner_pid,
        journal,
        changed,
        checked,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_says_what_was_found_and_done() {
        let mut i = Interrupted {
            source_run: "r1".into(),
            owner_pid: 42,
            journal: Some(Journal {
                phase: "move".into(),
                ..Journal::new(RuntimeKind::Docker, RuntimeKind::PodmanRootless)
            }),
            changed: vec![],
            checked: 2,
            removed: true,
        };
        let d = i.describe();
        assert!(d.contains("pid 42"), "{d}");
        assert!(d.contains("docker → podman-rootless"), "{d}");
        assert!(d.contains("interrupted in move"), "{d}");
        assert!(d.contains("2 source volume(s) are as they were"), "{d}");
        i.changed = vec!["db (a at the stop, b now)".into()];
        i.removed = false;
        let d = i.describe();
        assert!(d.contains("changed since its stop: db"), "{d}");
        assert!(d.contains("left for inspection"), "{d}");
    }

    #[test]
    fn a_journal_reads_back_as_written() {
        let mut j = Journal::new(RuntimeKind::Podman, RuntimeKind::Docker);
        j.source_fingerprints.insert("v".into(), "d".into());
        j.other_runs.push((RuntimeKind::Docker, "r2".into()));
        let back: Journal = serde_json::from_slice(&serde_json::to_vec(&j).unwrap()).unwrap();
        assert_eq!(back.other_runs, j.other_runs);
        assert_eq!(back.source_fingerprints, j.source_fingerprints);
    }
}
