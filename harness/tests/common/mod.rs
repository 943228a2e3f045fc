//! Shared by the integration tests: which runtimes to use and how to look into an engine.

#![allow(dead_code, unused_imports)]

use hydra::runtime::{ObjectKind, Runtime};

/// Every object (`kind id`) in the runtime carrying `label`.
pub fn objects_with(rt: &Runtime, label: &str) -> Vec<String> {
    // Read through the CLI whatever the harness reads through: a witness of its own.
    let rt = &rt.cli_only();
    let mut out = Vec::new();
    for kind in ObjectKind::ALL {
        for id in rt.list_by_label(kind, label).expect("list by label") {
            out.push(format!("{} {id}", kind.name()));
        }
    }
    out
}

/// DNS files Podman's DNS server keeps for removed networks of `project` (`dns <network>`): what
/// a killed `podman start` leaves, and teardown and gc must remove.
pub fn stale_dns_of(rt: &Runtime, project: &str) -> Vec<String> {
    hydra::runtime::dns_leftovers::stale(rt)
        .expect("list aardvark-dns files")
        .into_iter()
        .filter(|f| f.network.starts_with(project))
        .map(|f| format!("dns {}", f.network))
        .collect()
}

/// Container monitors (conmon) still running for containers of `project` (`process <name>`):
/// what a `podman start` killed mid-way leaves once Podman dropped the container.
pub fn monitors_of(rt: &Runtime, project: &str) -> Vec<String> {
    hydra::runtime::lost_containers::monitors(rt)
        .into_iter()
        .filter(|m| {
            m.name
                .strip_prefix(project)
                .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('_'))
        })
        .map(|m| format!("process {} (conmon pid {})", m.name, m.pid))
        .collect()
}

/// Containers of `project` that Podman has storage for but no record (`storage-only <name>`):
/// what a create cut off mid-way leaves, unlabelled, and teardown and gc must remove.
pub fn storage_only_of(rt: &Runtime, project: &str) -> Vec<String> {
    hydra::runtime::storage_only::list(rt)
        .expect("list storage-only containers")
        .into_iter()
        .filter(|c| c.of_project(project))
        .map(|c| format!("storage-only {}", c.name))
        .collect()
}

/// Runs `harness gc --runtime <kind>` and returns its stdout; an error unless it exited 0.
pub fn run_gc(kind: hydra::RuntimeKind) -> Result<String, libtest_mimic::Failed> {
    let gc = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["gc", "--runtime", kind.name()])
        .output()?;
    let stdout = String::from_utf8_lossy(&gc.stdout).into_owned();
    if gc.status.code() != Some(0) {
        return Err(format!(
            "gc exited {:?}: {}{stdout}",
            gc.status.code(),
            String::from_utf8_lossy(&gc.stderr)
        )
        .into());
    }
    Ok(stdout)
}

/// Both engines usable: use; one required and unusable: broken; else skipped.
pub fn pair_availability(
    available: &std::collections::BTreeMap<hydra::RuntimeKind, hydra::session::Availability>,
    from: hydra::RuntimeKind,
    to: hydra::RuntimeKind,
) -> hydra::session::Availability {
    use hydra::session::Availability;
    let of = |k: hydra::RuntimeKind| {
        available
            .get(&k)
            .cloned()
            .unwrap_or_else(|| Availability::Skip(format!("{k} is not among HYDRA_RUNTIMES")))
    };
    match (of(from), of(to)) {
        (Availability::Use, Availability::Use) => Availability::Use,
        (Availability::Broken(r), _) | (_, Availability::Broken(r)) => Availability::Broken(r),
        (Availability::Skip(r), _) | (_, Availability::Skip(r)) => Availability::Skip(r),
    }
}

#[path = "../../../suites/trial.rs"]
mod trial;

pub use trial::{engine_to_itself, engines_in_turn, runtimes, trial};
