//! Removing a run's objects: compose `down`, then only what carries the run's label (and its
//! containers' anonymous volumes nothing else uses), never by force; then verifying nothing is left.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::project_of;
use crate::compose::{self, Action, Provider};
use crate::error::{HarnessError, Result};
use crate::labels;
use crate::runs::RunRecord;
use crate::runtime::api_service::ApiService;
use crate::runtime::{
    dns_leftovers, exec, lost_containers, orphan_netns, short_id, storage_only, Interrupt, ObjectKind, Runtime,
};

/// What `down` found and removed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TeardownReport {
    /// Exit code of the compose tool's `down`; `None` when it was skipped, could not run or was
    /// killed. Not trusted: the label sweep decides.
    pub compose_down_status: Option<i32>,
    /// Objects the compose tool's `down` left behind that the harness removed itself.
    pub removed_after_compose: Vec<String>,
    /// Seconds the teardown took.
    pub seconds: f64,
}

/// Removes a run's objects: compose `down`, then whatever it left that carries the run's label,
/// and the anonymous volumes the run's containers had (which podman-compose `down -v` leaks) when
/// no other container uses them. Volumes that are not the run's own (`external: true`, or created
/// by someone else) are never removed, and nothing is removed by force: a volume another
/// container still uses stays, and is reported as left behind.
///
/// `api` is the run's Podman API service (Compose v2 on Podman), possibly still starting: it is
/// waited for only right before the compose tool needs it.
pub fn teardown(
    runtime: &Runtime,
    provider: &Provider,
    record: &RunRecord,
    api: Option<&ApiService>,
) -> Result<TeardownReport> {
    let started = Instant::now();
    let mut report = TeardownReport::default();
    let run_filter = labels::filter(labels::RUN, &record.run_id);
    let project_filter = labels::filter("com.docker.compose.project", &record.project);
    // The run's containers as the engine lists them now: one whose record Podman drops while its
    // processes run (see `lost_containers`) is found from these IDs afterwards.
    let mut container_ids: HashSet<String> = HashSet::new();
    // Only Podman marks anonymous volumes (Docker's compose tools remove them with their
    // containers): elsewhere there is nothing to look up. Which of the volumes the run's
    // containers mount are anonymous is asked after `down`, alongside the listings: the ones
    // that matter are those `down` left.
    let mounted: Vec<String> = if runtime.kind().is_podman() {
        let ids = runtime.list_by_label(ObjectKind::Container, &run_filter)?;
        container_ids.extend(ids.iter().cloned());
        runtime
            .inspect_containers(&ids)?
            .iter()
            .flat_map(|c| c.volume_names())
            .collect()
    } else {
        Vec::new()
    };

    // A start the harness cut off can leave a container's network namespace on one of the run's
    // bridges (see `orphan_netns`): which bridges is read now, while the run's networks exist.
    let bridges = if exec::cut_off_any() || exec::signal_count() > 0 {
        orphan_netns::bridges_of(runtime, Some(&run_filter)).unwrap_or_else(|e| {
            tracing::warn!("could not read the bridges of the run's networks: {e}");
            Vec::new()
        })
    } else {
        Vec::new()
    };

    let down = compose::command(
        runtime,
        provider.tool,
        &project_of(record),
        &Action::Down { timeout_secs: 10 },
    );
    // A second signal skips the compose tool (or kills it mid-way): the label sweep below removes
    // everything on its own, only faster.
    let api_down = api.and_then(|a| a.wait_answering().err());
    if exec::is_aborted() {
        tracing::warn!("second interrupt: skipping compose down, removing the run's objects by label");
    } else if let Some(e) = api_down {
        tracing::warn!("skipping compose down, removing the run's objects by label: {e}");
    } else {
        match exec::run(&down, DOWN_TIMEOUT, Interrupt::UntilAborted) {
            Ok(out) => report.compose_down_status = out.status,
            Err(e) => tracing::warn!("compose down failed: {e}"),
        }
    }
    // One round of listings both sweeps and verifies: what carries the run's label is removed
    // (and listed again afterwards); what carries only the project's label is reported.
    let filters = [run_filter.as_str(), project_filter.as_str()];
    let queries: Vec<(ObjectKind, &str)> = ObjectKind::ALL
        .into_iter()
        .flat_map(|kind| filters.map(|f| (kind, f)))
        .collect();
    // What a killed `podman start` of this run (or an earlier one) left in Podman's DNS server,
    // swept while the listings run; again below if the harness removes networks itself.
    let (listed, anonymous, mut dns) = std::thread::scope(|scope| {
        let dns = scope.spawn(|| dns_leftovers::sweep(runtime));
        let anonymous = scope.spawn(|| runtime.anonymous_volumes(&mounted));
        let listed = list_at_once(runtime, &filters);
        (
            listed,
            anonymous.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            dns.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let mut listed = listed?;
    let anonymous = anonymous?;
    for ((kind, _), ids) in queries.iter().zip(&listed) {
        if *kind == ObjectKind::Container {
            container_ids.extend(ids.iter().cloned());
        }
    }
    let mut removed_any = false;
    for (kind, by_run) in ObjectKind::ALL.into_iter().zip(listed.iter().step_by(2)) {
        let mut left = by_run.clone();
        if kind == ObjectKind::Volume {
            for v in &anonymous {
                if !left.contains(v) && runtime.exists(ObjectKind::Volume, v) && runtime.volume_users(v)?.is_empty() {
                    left.push(v.clone());
                }
            }
        }
        if !left.is_empty() {
            report
                .removed_after_compose
                .extend(left.iter().map(|id| format!("{} {}", kind.name(), short_id(id))));
            runtime.remove(kind, &left)?;
            removed_any = true;
        }
    }
    // A create the harness cut off (an interrupt, or a deadline) can leave a container Podman has
    // storage for but no record, hence no label: found by the project's name. Without a cut-off
    // there is none to find, and the listing is skipped (Docker has no such state: none is listed).
    if exec::cut_off_any() || exec::signal_count() > 0 {
        for name in storage_only::sweep_project(runtime, &record.project)? {
            report
                .removed_after_compose
                .push(format!("storage-only container {name}"));
        }
        // Nor does one Podman dropped while its create was under way show in any listing.
        match lost_containers::created_for_run(runtime, &record.run_id) {
            Ok(created) => container_ids.extend(created),
            Err(e) => tracing::warn!("could not read the containers run {} created: {e}", record.run_id),
        }
    }
    for lost in lost_containers::end_lost(runtime, &container_ids) {
        report.removed_after_compose.push(format!(
            "processes of container {} (Podman had dropped it while they ran)",
            lost.monitor.container()
        ));
    }
    // The run's networks are gone by now: what is still on their bridges is a cut-off start's.
    let netns_swept = orphan_netns::sweep(runtime, &bridges);
    if let Ok(removed) = &netns_swept {
        report.removed_after_compose.extend(removed.iter().cloned());
    }
    // Verify: nothing of the run may remain (objects with its project label included, which the
    // harness reports but does not remove unless they carry the run's label).
    if removed_any {
        listed = list_at_once(runtime, &filters)?;
        // The first sweep's removals stay reported; the second one decides whether any is left.
        if let Ok(first) = &dns {
            report.removed_after_compose.extend(dns_removed(first));
        }
        dns = dns_leftovers::sweep(runtime);
    }
    let mut remaining = Vec::new();
    for ((kind, _), ids) in queries.iter().zip(listed) {
        for id in ids {
            remaining.push(format!("{} {}", kind.name(), short_id(&id)));
        }
    }
    for v in &anonymous {
        if runtime.exists(ObjectKind::Volume, v) {
            remaining.push(format!("volume {} (anonymous, still in use)", short_id(v)));
        }
    }
    if let Err(e) = netns_swept {
        remaining.push(format!(
            "network namespaces on the run's bridges (could not sweep them: {e})"
        ));
    }
    remaining.sort();
    remaining.dedup();
    match dns {
        Ok(sweep) => report.removed_after_compose.extend(dns_removed(&sweep)),
        Err(e) => remaining.push(format!("dns entries of removed networks (could not sweep them: {e})")),
    }
    if !remaining.is_empty() {
        return Err(HarnessError::Leftovers {
            project: record.project.clone(),
            left: remaining.join(", "),
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// How the report names the DNS entries a sweep removed.
fn dns_removed(sweep: &dns_leftovers::DnsSweep) -> impl Iterator<Item = String> + '_ {
    sweep
        .removed
        .iter()
        .map(|f| format!("dns entries of network {}", f.network))
}

/// For each kind of [`ObjectKind::ALL`] in turn, what carries each of `filters`: the lists in
/// the order of `queries` in [`teardown`]. The kinds are listed at the same time (independent
/// reads: one after another they added up to half a second on Podman), each kind's filters by
/// one `list_by_labels` (one Podman process for all of them).
fn list_at_once(runtime: &Runtime, filters: &[&str]) -> Result<Vec<Vec<String>>> {
    let per_kind: Vec<Vec<Vec<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ObjectKind::ALL
            .into_iter()
            .map(|kind| scope.spawn(move || runtime.list_by_labels(kind, filters)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<_>>()
    })?;
    Ok(per_kind.into_iter().flatten().collect())
}

/// Deadline for `compose down`.
const DOWN_TIMEOUT: Duration = Duration::from_secs(240);
