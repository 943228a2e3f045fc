//! Sweeping what killed runs left behind. Only objects labelled by the harness are considered; a
//! run is swept when its owner process is gone and it was not deliberately kept by `harness up`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::labels;
use crate::runs::{owner_alive, RunRecord, RunStatus};
use crate::runtime::{ObjectKind, Runtime, RuntimeKind};

/// Why a run was kept or swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Its owner process is alive.
    Active,
    /// Left running by a successful `harness up` (swept only with `--all`).
    Kept,
    /// Owner gone: swept.
    Orphaned,
}

/// The labels gc needs from one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// The run the object belongs to (its [`labels::RUN`] label).
    pub run_id: String,
    /// PID of the owning harness process, if labelled.
    pub pid: Option<u32>,
    /// Start time of that process (clock ticks since boot), if labelled.
    pub start: Option<u64>,
}

impl Owner {
    /// Reads the owner from an object's labels (`get` looks one up); `None` without a run label.
    pub fn from_labels(get: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            run_id: get(labels::RUN)?,
            pid: get(labels::OWNER_PID).and_then(|p| p.parse().ok()),
            start: get(labels::OWNER_START).and_then(|s| s.parse().ok()),
        })
    }
}

/// Decides a run's fate (pure but for the liveness probe passed in). `record` is the run's record
/// only when it belongs to the runtime being swept; its owner counts as much as the labels' one.
pub fn verdict(owner: &Owner, record: Option<&RunRecord>, all: bool, alive: &dyn Fn(u32, u64) -> bool) -> Verdict {
    if let (Some(pid), Some(start)) = (owner.pid, owner.start) {
        if alive(pid, start) {
            return Verdict::Active;
        }
    }
    if record.is_some_and(|r| alive(r.owner_pid, r.owner_start)) {
        return Verdict::Active;
    }
    if !all && record.is_some_and(|r| r.status == RunStatus::Kept) {
        return Verdict::Kept;
    }
    Verdict::Orphaned
}

/// One run found in one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct RunFound {
    /// The runtime it was found in.
    pub runtime: String,
    /// The run's id (escaped when malformed).
    pub run_id: String,
    /// Whether it was kept or swept, and why.
    pub verdict: Verdict,
    /// Why objects were left alone although they carry the harness's label (a malformed run id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// `kind name` of each object, removed when the verdict is Orphaned.
    pub objects: Vec<String>,
}

/// Finds every harness-labelled object in `runtime`, groups them by run and removes orphaned runs.
pub fn sweep(runtime: &Runtime, all: bool) -> Result<Vec<RunFound>> {
    sweep_where(runtime, all, &|_| true, None)
}

/// [`sweep`] restricted to run `run_id` (removed only if orphaned), with its record, even when
/// no object of it is left in the engine.
pub fn sweep_run(runtime: &Runtime, run_id: &str) -> Result<Vec<RunFound>> {
    sweep_where(runtime, false, &|r| r == run_id, Some(run_id))
}

/// Removes the objects a dead run `run_id` left on `runtime`, an engine other than its own (the
/// helpers of a drill's copy carry the source run's labels on the target's engine); its run
/// record is left alone, for its own engine's sweep to decide.
pub fn sweep_run_elsewhere(runtime: &Runtime, run_id: &str) -> Result<Vec<RunFound>> {
    sweep_where(runtime, false, &|r| r == run_id, Some(run_id))
}

/// Ends the Podman commands of runs that are wanted and orphaned (see [`stray_commands`]),
/// before anything of those runs is listed; returns each such run's owner and what was ended.
///
/// [`stray_commands`]: crate::runtime::stray_commands
fn end_stray_commands(
    runtime: &Runtime,
    all: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, (Owner, Vec<String>)> {
    use crate::runtime::stray_commands;
    let mut by_run: BTreeMap<String, (Owner, Vec<stray_commands::StrayCommand>)> = BTreeMap::new();
    for command in stray_commands::list(runtime) {
        let run_id = command.run_id().to_string();
        // Never a path or a report line from a malformed id: such a run is not ours.
        if !crate::runs::valid_run_id(&run_id) || !wanted(&run_id) {
            continue;
        }
        let Some(owner) = Owner::from_labels(&|k| command.labels.get(k).cloned()) else {
            continue;
        };
        by_run
            .entry(run_id)
            .or_insert_with(|| (owner, Vec::new()))
            .1
            .push(command);
    }
    let mut ended = BTreeMap::new();
    for (run_id, (owner, commands)) in by_run {
        let record = RunRecord::load(&run_id).filter(|r| r.runtime.engine() == runtime.kind().engine());
        if verdict(&owner, record.as_ref(), all, &owner_alive) != Verdict::Orphaned {
            continue;
        }
        let killed = stray_commands::end(&commands);
        tracing::warn!(run = %run_id, ?killed, "ended podman commands a killed run had left running");
        let names = commands
            .iter()
            .filter(|c| killed.contains(&c.pid))
            .map(|c| c.describe())
            .collect();
        ended.insert(run_id, (owner, names));
    }
    ended
}

/// `named`: a run swept even when nothing of it is listed: what only the engine's event log and
/// storage still hold of it (a container dropped during its create, a storage-only one) is
/// found from its id.
fn sweep_where(
    runtime: &Runtime,
    all: bool,
    wanted: &dyn Fn(&str) -> bool,
    named: Option<&str>,
) -> Result<Vec<RunFound>> {
    // Podman commands a dead run left running end first: one still creating a container while
    // the run is removed would leave its processes running with no record.
    let stray = end_stray_commands(runtime, all, wanted);
    let managed = labels::filter(labels::MANAGED, "true");
    let mut runs: BTreeMap<String, (Owner, Vec<(ObjectKind, String)>)> = BTreeMap::new();
    for kind in ObjectKind::ALL {
        let ids = runtime.list_by_label(kind, &managed)?;
        let owners: Vec<(String, Owner)> = match kind {
            ObjectKind::Container => runtime
                .inspect_containers(&ids)?
                .into_iter()
                .filter_map(|c| Some((c.id.clone(), Owner::from_labels(&|k| c.label(k).map(String::from))?)))
                .collect(),
            _ => runtime
                .inspect_labelled(kind, &ids)?
                .into_iter()
                .filter_map(|o| Some((o.name.clone(), Owner::from_labels(&|k| o.label(k).map(String::from))?)))
                .collect(),
        };
        for (id, owner) in owners {
            let entry = runs
                .entry(owner.run_id.clone())
                .or_insert_with(|| (owner.clone(), Vec::new()));
            if entry.0.pid.is_none() {
                entry.0 = owner;
            }
            entry.1.push((kind, id));
        }
    }
    // A run known only by its commands is swept all the same (what they made before they ended).
    for (run_id, (owner, _)) in &stray {
        runs.entry(run_id.clone())
            .or_insert_with(|| (owner.clone(), Vec::new()));
    }
    if let Some(run_id) = named.filter(|r| crate::runs::valid_run_id(r)) {
        let owner = Owner {
            run_id: run_id.to_string(),
            ..Owner::default()
        };
        runs.entry(run_id.to_string()).or_insert_with(|| (owner, Vec::new()));
    }
    let mut found = Vec::new();
    // Listed once, when the first orphaned run is swept.
    let mut storage_only: Option<Vec<crate::runtime::storage_only::StorageOnly>> = None;
    for (run_id, (owner, objects)) in runs.into_iter().filter(|(r, _)| wanted(r)) {
        let mut names: Vec<String> = objects
            .iter()
            .map(|(k, id)| format!("{} {}", k.name(), crate::runtime::short_id(id)))
            .collect();
        if let Some((_, ended)) = stray.get(&run_id) {
            names.extend(ended.iter().cloned());
        }
        if !crate::runs::valid_run_id(&run_id) {
            // Not a run of ours, whatever its labels say: anyone who can create objects in this
            // engine can set them. Nothing of it is removed, and it is never made into a path.
            found.push(RunFound {
                runtime: runtime.kind().to_string(),
                run_id: run_id.escape_debug().to_string(),
                verdict: Verdict::Active,
                ignored: Some("malformed run id in its labels".into()),
                objects: names,
            });
            continue;
        }
        // Targets that share an engine share its objects: a record of any of them is this run's.
        let record = RunRecord::load(&run_id).filter(|r| r.runtime.engine() == runtime.kind().engine());
        let v = verdict(&owner, record.as_ref(), all, &owner_alive);
        if v == Verdict::Orphaned {
            for kind in ObjectKind::ALL {
                let ids: Vec<String> = objects
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, id)| id.clone())
                    .collect();
                runtime.remove(kind, &ids)?;
            }
            let mut containers: std::collections::HashSet<String> = objects
                .iter()
                .filter(|(k, _)| *k == ObjectKind::Container)
                .map(|(_, id)| id.clone())
                .collect();
            // Containers Podman dropped while their create was under way are in its event log only.
            match crate::runtime::lost_containers::created_for_run(runtime, &run_id) {
                Ok(created) => containers.extend(created),
                Err(e) => tracing::warn!(run = %run_id, "could not read the containers the run created: {e}"),
            }
            for lost in crate::runtime::lost_containers::end_lost(runtime, &containers) {
                names.push(format!(
                    "processes of container {} Podman had dropped",
                    lost.monitor.container()
                ));
            }
            // A create cut off by the kill leaves a container with a name but no label.
            let projects: Vec<String> = match &record {
                Some(r) => vec![r.project.clone()],
                None => RuntimeKind::ALL
                    .into_iter()
                    .filter(|k| k.engine() == runtime.kind().engine())
                    .map(|k| crate::stack::project_name(k, &run_id))
                    .collect(),
            };
            let storage = match &storage_only {
                Some(listed) => listed,
                None => storage_only.insert(crate::runtime::storage_only::list(runtime)?),
            };
            let ours: Vec<_> = storage
                .iter()
                .filter(|c| projects.iter().any(|p| c.of_project(p)))
                .cloned()
                .collect();
            crate::runtime::storage_only::remove(runtime, &ours)?;
            names.extend(ours.iter().map(|c| format!("storage-only container {}", c.name)));
            if let Some(r) = record {
                // The API service a killed Compose v2 run had started for itself.
                crate::runtime::api_service::stop_recorded(&r.dir());
                crate::runtime::api_service::remove_rootless_leftovers(runtime, &run_id);
                r.remove();
            }
        }
        found.push(RunFound {
            runtime: runtime.kind().to_string(),
            run_id,
            verdict: v,
            ignored: None,
            objects: names,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::ComposeTool;
    use crate::runtime::RuntimeKind;

    fn record(status: RunStatus) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            project: "hydra-docker-r".into(),
            runtime: RuntimeKind::Docker,
            tool: ComposeTool::DockerComposeV1,
            compose_files: vec![],
            workdir: "/".into(),
            env: vec![],
            services: vec![],
            ports: Default::default(),
            bind_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            owner_pid: 1,
            owner_start: 1,
            status,
            created_unix: 0,
            kube: None,
        }
    }

    #[test]
    fn verdicts() {
        let owner = Owner {
            run_id: "r".into(),
            pid: Some(10),
            start: Some(5),
        };
        let alive = |_: u32, _: u64| true;
        let dead = |_: u32, _: u64| false;
        assert_eq!(verdict(&owner, None, false, &alive), Verdict::Active);
        assert_eq!(
            verdict(&owner, None, true, &alive),
            Verdict::Active,
            "--all never sweeps a live run"
        );
        assert_eq!(verdict(&owner, None, false, &dead), Verdict::Orphaned);
        assert_eq!(
            verdict(&owner, Some(&record(RunStatus::Starting)), false, &dead),
            Verdict::Orphaned
        );
        assert_eq!(
            verdict(&owner, Some(&record(RunStatus::Kept)), false, &dead),
            Verdict::Kept
        );
        // A drill's source outlives its drill, not the drill's death.
        assert_eq!(
            verdict(&owner, Some(&record(RunStatus::DrillSource)), false, &dead),
            Verdict::Orphaned
        );
        assert_eq!(
            verdict(&owner, Some(&record(RunStatus::DrillSource)), false, &alive),
            Verdict::Active
        );
        assert_eq!(
            verdict(&owner, Some(&record(RunStatus::Kept)), true, &dead),
            Verdict::Orphaned
        );
        let unknown = Owner {
            run_id: "r".into(),
            pid: None,
            start: None,
        };
        assert_eq!(verdict(&unknown, None, false, &alive), Verdict::Orphaned);
        // Labels that name a dead owner do not outvote a record whose owner is alive.
        let live_record = |pid: u32, _: u64| pid == 1;
        assert_eq!(
            verdict(&owner, Some(&record(RunStatus::Starting)), true, &live_record),
            Verdict::Active
        );
    }

    #[test]
    fn owner_needs_a_run_label() {
        assert_eq!(Owner::from_labels(&|_| None), None);
        let o = Owner::from_labels(&|k| match k {
            labels::RUN => Some("abc".into()),
            labels::OWNER_PID => Some("12".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            o,
            Owner {
                run_id: "abc".into(),
                pid: Some(12),
                start: None
            }
        );
    }
}
