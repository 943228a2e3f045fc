//! Containers Podman's storage holds without a container record ("storage-only").
//!
//! A `podman create` cut off after it made the container's storage but before Podman saved its
//! record (kill -9 of the harness while a compose tool or Podman's API service creates a
//! service's container; seen here after `gc_sweeps_killed_run_only` on podman-v2) leaves a
//! container that only `podman ps -a --external` shows, with status `Storage`. It carries no
//! label, only the name the compose tool gave it (`<project>-<service>-<n>`, or `_` for
//! podman-compose), so the label sweep never sees it: it is found by the run's project name.
//! Docker has no such state.

use super::{exec, Interrupt, Runtime};
use crate::error::Result;

/// Names of the harness's projects start with this (`hydra-<target>-<run id>`).
const HARNESS_PREFIX: &str = "hydra-";

/// One container that exists in Podman's storage only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOnly {
    /// Its full ID.
    pub id: String,
    /// Its name.
    pub name: String,
}

impl StorageOnly {
    /// Whether it was created for `project`: the compose tools name containers
    /// `<project>-<service>-<n>` (Compose v2) or `<project>_<service>_<n>` (podman-compose's
    /// older scheme).
    pub fn of_project(&self, project: &str) -> bool {
        self.name
            .strip_prefix(project)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('_'))
    }
}

/// The storage-only containers in a `podman ps -a --external --format json` listing. Only full
/// hexadecimal IDs are kept (the ID is passed on to `podman rm`), and only names that follow
/// Podman's naming rule (the name ends up in reports; the rootless user's listing is theirs).
pub fn parse(json: &str) -> Result<Vec<StorageOnly>> {
    Ok(super::inspect::parse_listed(json)?
        .into_iter()
        .filter(|c| c.state.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("storage")))
        .filter_map(|c| {
            let id = c.id.filter(|i| super::is_full_id(i))?;
            let name = c.names.into_iter().next()?;
            super::dns_leftovers::valid_network_name(&name).then_some(StorageOnly { id, name })
        })
        .collect())
}

/// The storage-only containers named like the harness's projects (`hydra-…`); none on Docker.
pub fn list(runtime: &Runtime) -> Result<Vec<StorageOnly>> {
    if !runtime.kind().is_podman() {
        return Ok(Vec::new());
    }
    let filter = format!("name=^{HARNESS_PREFIX}");
    parse(&runtime.query(&["ps", "-a", "--external", "--filter", &filter, "--format", "json"])?)
}

/// Removes storage-only containers by ID (`podman rm -f` deletes the storage of a container it
/// has no record of).
pub fn remove(runtime: &Runtime, containers: &[StorageOnly]) -> Result<()> {
    if containers.is_empty() {
        return Ok(());
    }
    let spec = runtime
        .engine()
        .args(["rm", "-f", "--"])
        .args(containers.iter().map(|c| c.id.clone()));
    exec::run_ok(&spec, REMOVE_TIMEOUT, Interrupt::Ignored)?;
    tracing::warn!(
        "removed storage-only container(s) {} (a `podman create` was cut off mid-way)",
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Removes the storage-only containers of `project`; returns their names.
pub fn sweep_project(runtime: &Runtime, project: &str) -> Result<Vec<String>> {
    let ours: Vec<StorageOnly> = list(runtime)?.into_iter().filter(|c| c.of_project(project)).collect();
    remove(runtime, &ours)?;
    Ok(ours.into_iter().map(|c| c.name).collect())
}

/// Deadline for removing a few containers' storage.
const REMOVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/runtime")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn recorded_listing_keeps_only_the_storage_only_container() {
        // A running service's container and a build's working container cut off by kill -9.
        let found = parse(&fixture("ps-all-external-podman.json")).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].id.starts_with("abd82069e7a1"));
        assert_eq!(found[0].name, "hydra-podman-tz-podman-abc123-db-working-container");
        assert!(found[0].of_project("hydra-podman-tz-podman-abc123"));
    }

    #[test]
    fn empty_listing_is_none() {
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("[]").unwrap(), []);
    }

    #[test]
    fn short_or_foreign_ids_and_odd_names_are_dropped() {
        let id = "a".repeat(64);
        let json = format!(
            r#"[{{"Id":"../x","Names":["hydra-a-b-db-1"],"State":"storage"}},
                {{"Id":"abc","Names":["hydra-a-b-db-1"],"State":"storage"}},
                {{"Id":"{id}","Names":["hydra-a-b-db-1\u001b[31m"],"State":"storage"}},
                {{"Id":"{id}","Names":[],"State":"storage"}}]"#
        );
        assert_eq!(parse(&json).unwrap(), []);
    }

    #[test]
    fn project_match_needs_a_separator() {
        let c = |name: &str| StorageOnly {
            id: "a".repeat(64),
            name: name.into(),
        };
        assert!(c("hydra-podman-v2-tk-podman-v2-002865-analysis-engine-1")
            .of_project("hydra-podman-v2-tk-podman-v2-002865"));
        assert!(c("hydra-podman-r1_db_1").of_project("hydra-podman-r1"));
        assert!(!c("hydra-podman-r10-db-1").of_project("hydra-podman-r1"));
        assert!(!c("hydra-podman-r1").of_project("hydra-podman-r1"));
    }
}
