//! Names Podman's DNS server still serves for networks that are gone.
//!
//! aardvark-dns (Podman 4's DNS server) reads one file per network, named after the network, in the
//! engine's network run directory. A `podman start` killed after the network was set up but before
//! Podman recorded it (Ctrl-C twice, or kill -9 of compose or of the harness) leaves the
//! container's entry in that file, and neither `podman rm -f` nor `podman network rm` removes it:
//! the file outlives its network. aardvark-dns 1.4 answers from every file with the same gateway,
//! so containers on any later network that gets the same subnet resolve the dead names too, to
//! dead or reused addresses (measured here: a new network's `gap-detector` lookup answered with a
//! removed run's address, and a stack's services timed out reaching each other). These files are
//! therefore swept like the harness's labelled objects.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{exec, Interrupt, Runtime};
use crate::error::{HarnessError, Result};

/// aardvark-dns's own file in the directory (not a network).
const PID_FILE: &str = "aardvark.pid";

/// Networks the harness creates are named after its projects (`hydra-<target>-<run id>...`).
const HARNESS_PREFIX: &str = "hydra-";

/// One network's DNS file whose network no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleDnsFile {
    /// The removed network the file is named after.
    pub network: String,
    /// The file, in aardvark-dns's directory.
    pub path: PathBuf,
}

impl StaleDnsFile {
    /// Whether the harness made the network (its files are the harness's to remove).
    pub fn is_harness(&self) -> bool {
        self.network.starts_with(HARNESS_PREFIX)
    }
}

/// What a sweep removed, and what it found but left (networks the harness did not make).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DnsSweep {
    /// Files of the harness's own removed networks, now deleted.
    pub removed: Vec<StaleDnsFile>,
    /// Files of other removed networks, left alone and reported.
    pub foreign: Vec<StaleDnsFile>,
}

/// aardvark-dns's directory for this runtime; `None` for Docker.
pub fn dns_dir(runtime: &Runtime) -> Option<PathBuf> {
    if !runtime.kind().is_podman() {
        return None;
    }
    let base = match runtime.rootless_user() {
        Some(user) => user.runtime_dir.join("containers"),
        None => PathBuf::from("/run/containers"),
    };
    Some(base.join("networks").join("aardvark-dns"))
}

/// The DNS files of networks that no longer exist. Listed as the engine's user (for rootless, the
/// directory is that user's), then compared with the engine's networks listed afterwards: a file
/// listed before its network was found missing is stale, not one being written.
pub fn stale(runtime: &Runtime) -> Result<Vec<StaleDnsFile>> {
    let Some(dir) = dns_dir(runtime) else {
        return Ok(Vec::new());
    };
    let spec = runtime
        .command("ls")
        .arg("-1A")
        .arg("--")
        .arg(dir.display().to_string())
        .cwd("/");
    let out = exec::run(&spec, TIMEOUT, Interrupt::Ignored)?;
    if !out.success() {
        // No container has had a network since boot: aardvark-dns never made its directory.
        if out.stderr.contains("No such file") {
            return Ok(Vec::new());
        }
        return Err(HarnessError::Failed {
            cmd: spec.display(),
            status: out.status,
            stderr: exec::tail(&out.stderr, 5),
        });
    }
    let files: Vec<&str> = network_files(&out.stdout);
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let networks: HashSet<String> = runtime.network_names()?.into_iter().collect();
    Ok(files
        .into_iter()
        .filter(|name| !networks.contains(*name))
        .map(|name| StaleDnsFile {
            network: name.to_string(),
            path: dir.join(name),
        })
        .collect())
}

/// Removes the stale DNS files of the harness's own networks (as the engine's user: root never
/// deletes in the rootless user's directories) and reports the others, which are not its to remove.
pub fn sweep(runtime: &Runtime) -> Result<DnsSweep> {
    let (ours, foreign): (Vec<_>, Vec<_>) = stale(runtime)?.into_iter().partition(StaleDnsFile::is_harness);
    if !ours.is_empty() {
        let spec = runtime
            .command("rm")
            .args(["-f", "--"])
            .args(ours.iter().map(|f| f.path.display().to_string()))
            .cwd("/");
        exec::run_ok(&spec, TIMEOUT, Interrupt::Ignored)?;
        tracing::warn!(
            "removed aardvark-dns entries of removed network(s) {} (a `podman start` was killed mid-way)",
            ours.iter().map(|f| f.network.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(DnsSweep { removed: ours, foreign })
}

/// The names in a directory listing that can be networks' files: Podman's network name rule
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), without aardvark-dns's pid file. Anything else is left alone
/// and never becomes a path.
fn network_files(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter(|name| *name != PID_FILE && valid_network_name(name))
        .collect()
}

/// Podman's network name rule: a name that passes never becomes another path.
pub(super) fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Deadline for listing and removing (a few files, or a `podman network ls`).
const TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;

    #[test]
    fn listing_keeps_only_network_names() {
        let listing = "aardvark.pid\nhydra-podman-t1-net\nexpnet\n../etc\n.hidden\nbad name\n-x\na.b_c-d\n";
        assert_eq!(network_files(listing), ["hydra-podman-t1-net", "expnet", "a.b_c-d"]);
    }

    #[test]
    fn directory_per_engine() {
        assert_eq!(dns_dir(&Runtime::for_tests(RuntimeKind::Docker)), None);
        assert_eq!(
            dns_dir(&Runtime::for_tests(RuntimeKind::Podman)),
            Some(PathBuf::from("/run/containers/networks/aardvark-dns"))
        );
        assert_eq!(
            dns_dir(&Runtime::for_tests(RuntimeKind::PodmanRootlessV2)),
            Some(PathBuf::from("/run/user/1001/containers/networks/aardvark-dns"))
        );
    }

    #[test]
    fn only_the_harness_networks_are_its_own() {
        let f = |n: &str| StaleDnsFile {
            network: n.into(),
            path: PathBuf::from("/x").join(n),
        };
        assert!(f("hydra-podman-td-podman-003bbe-phoenix-data").is_harness());
        assert!(!f("expnet").is_harness());
    }
}
