//! Network namespaces a cut-off `podman start` left behind (rootful Podman).
//!
//! netavark makes a container's namespace (`/run/netns/netns-…`) and its veth pair, with the host
//! end on the network's bridge, before Podman saves the container as started. A start killed in
//! between (the first Ctrl-C kills the compose tool while it starts services; seen here in the
//! lifecycle SIGINT test on rootful Podman) leaves Podman believing there is nothing to tear
//! down: `rm -f` and `network rm` leave the namespace, its veth and therefore the bridge
//! (`podmanN`), which netavark only deletes once no port is left on it. The bridges of a run's
//! networks are the run's alone, so once its containers are gone every namespace still attached
//! to one of them, with no process inside, is such a leftover. Rootless Podman keeps container
//! namespaces inside the user's own network namespace: nothing of this applies there.

use std::time::Duration;

use serde::Deserialize;

use super::exec::{self, CommandSpec};
use super::inspect::labels_match;
use super::{Interrupt, Runtime};

/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// One network of `podman network ls --format json`: only what is needed here.
#[derive(Debug, Deserialize)]
struct ListedNetwork {
    #[serde(default)]
    network_interface: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// One interface of `ip -j link show`.
#[derive(Debug, Deserialize)]
struct Link {
    /// The peer's namespace, as this namespace numbers it (veth pairs across namespaces).
    #[serde(default)]
    link_netnsid: Option<i64>,
}

/// One entry of `ip -j netns list`.
#[derive(Debug, Deserialize)]
struct Netns {
    name: String,
    #[serde(default)]
    id: Option<i64>,
}

/// Whether `name` is an interface name the kernel allows (at most 15 bytes, no `/`, no spaces)
/// made of the characters netavark uses. Pure.
pub(crate) fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.'])
}

/// Whether `name` is a namespace name as netavark makes them (`netns-` and a UUID). Pure.
pub(crate) fn valid_netns_name(name: &str) -> bool {
    name.strip_prefix("netns-")
        .is_some_and(|rest| rest.len() == 36 && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
}

/// The bridges of the networks in a `podman network ls --format json` listing, of all of them or
/// of those that match `filter` (a label filter). Pure.
pub(crate) fn bridges_in(listing: &str, filter: Option<&str>) -> Vec<String> {
    let networks: Vec<ListedNetwork> = serde_json::from_str(listing).unwrap_or_default();
    networks
        .into_iter()
        .filter(|n| filter.is_none_or(|f| labels_match(n.labels.as_ref(), f)))
        .filter_map(|n| n.network_interface)
        .filter(|i| valid_interface(i))
        .collect()
}

/// The namespaces (by name) at the other end of the veths in `links` (the ports of one bridge),
/// given `ip -j netns list`. Pure.
pub(crate) fn attached(links_json: &str, netns_json: &str) -> Vec<String> {
    let links: Vec<Link> = serde_json::from_str(links_json).unwrap_or_default();
    let netns: Vec<Netns> = serde_json::from_str(netns_json).unwrap_or_default();
    let mut names: Vec<String> = links
        .iter()
        .filter_map(|l| l.link_netnsid)
        .filter_map(|id| netns.iter().find(|n| n.id == Some(id)))
        .map(|n| n.name.clone())
        .filter(|n| valid_netns_name(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether this runtime's container namespaces are host namespaces under `/run/netns`.
fn applies(runtime: &Runtime) -> bool {
    runtime.kind().is_podman() && runtime.rootless_user().is_none()
}

/// The bridges of the networks carrying `filter` (the run's label; `None`: of every network), to
/// sweep after those networks are gone; none where [`applies`] does not hold.
pub fn bridges_of(runtime: &Runtime, filter: Option<&str>) -> crate::error::Result<Vec<String>> {
    if !applies(runtime) {
        return Ok(Vec::new());
    }
    Ok(bridges_in(
        &runtime.query(&["network", "ls", "--format", "json"])?,
        filter,
    ))
}

fn ip(args: &[&str]) -> crate::error::Result<String> {
    let spec = CommandSpec::new("ip").args(args.iter().copied());
    Ok(exec::run_ok(&spec, IP_TIMEOUT, Interrupt::Ignored)?.stdout)
}

/// Removes the namespaces left attached to `bridges` (the run's, whose containers are gone) that
/// have no process inside, then each bridge no Podman network uses any more and no port is left
/// on. Returns what it removed, for the teardown report.
pub fn sweep(runtime: &Runtime, bridges: &[String]) -> crate::error::Result<Vec<String>> {
    let mut removed = Vec::new();
    if !applies(runtime) || bridges.is_empty() {
        return Ok(removed);
    }
    let exists = |bridge: &str| std::path::Path::new("/sys/class/net").join(bridge).exists();
    // A bridge some network has (again: netavark reuses the names of removed ones) is not the
    // run's any more, and a namespace on it may be a start under way.
    let in_use = bridges_of(runtime, None)?;
    for bridge in bridges
        .iter()
        .filter(|b| valid_interface(b) && exists(b) && !in_use.contains(b))
    {
        let ports = ip(&["-j", "link", "show", "master", bridge])?;
        let namespaces = attached(&ports, &ip(&["-j", "netns", "list"])?);
        for ns in namespaces {
            if !ip(&["netns", "pids", &ns])?.trim().is_empty() {
                tracing::warn!(netns = %ns, bridge = %bridge, "a namespace on a removed run's bridge still has processes: left alone");
                continue;
            }
            ip(&["netns", "delete", &ns])?;
            tracing::warn!(netns = %ns, bridge = %bridge, "removed a network namespace a cut-off start left");
            removed.push(format!("network namespace {ns}"));
        }
        let in_use = bridges_of(runtime, None)?.iter().any(|b| b == bridge);
        let ports_left = !serde_json::from_str::<Vec<Link>>(&ip(&["-j", "link", "show", "master", bridge])?)
            .unwrap_or_default()
            .is_empty();
        if !in_use && !ports_left && exists(bridge) {
            ip(&["link", "delete", bridge, "type", "bridge"])?;
            removed.push(format!("bridge {bridge}"));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_interface("podman3"));
        assert!(!valid_interface("podman3-bridge-too-long"));
        assert!(!valid_interface("../x"));
        assert!(!valid_interface("-x"));
        assert!(!valid_interface(""));
        assert!(valid_netns_name("netns-675c0a77-1ed2-fae3-b774-e3c84f384905"));
        assert!(!valid_netns_name("netns-../../etc"));
        assert!(!valid_netns_name("rootless-netns-18ced419982d55991666"));
    }

    #[test]
    fn the_runs_bridges_from_the_listing() {
        // Recorded from a running stack (`podman network ls --format json`).
        let listing = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/runtime/network-ls-podman.json"
        ))
        .unwrap();
        let all = bridges_in(&listing, None);
        assert!(all.contains(&"podman1".to_string()), "{all:?}");
        let run = bridges_in(&listing, Some("io.hydra.run=8834f0b7"));
        assert!(!run.is_empty() && run.iter().all(|b| all.contains(b)), "{run:?}");
        assert!(bridges_in(&listing, Some("io.hydra.run=other")).is_empty());
        assert!(bridges_in("not json", None).is_empty());
    }

    #[test]
    fn namespaces_at_the_far_end_of_a_bridges_ports() {
        // Recorded on this host: the orphan the lifecycle SIGINT test left on rootful Podman
        // (`ip -j link show master podman1`, `ip -j netns list`).
        let fixture = |name: &str| {
            std::fs::read_to_string(format!("{}/../fixtures/runtime/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let links = fixture("ip-link-master-orphan.json");
        let netns = fixture("ip-netns-list-orphan.json");
        let (links, netns) = (links.as_str(), netns.as_str());
        assert_eq!(
            attached(links, netns),
            vec!["netns-675c0a77-1ed2-fae3-b774-e3c84f384905".to_string()]
        );
        assert!(attached(links, "[]").is_empty());
        assert!(attached("[]", netns).is_empty());
    }
}
