//! What Podman's DNS server (aardvark-dns) was told about a network: the entries in its file for
//! that network, read as the engine's user. When a name that must resolve does not, this tells
//! the two causes apart: the engine never registered the container, or it did and the server did
//! not answer with it (aardvark-dns 1.4 re-creates every listener on each container start or
//! stop, containers/aardvark-dns#389, fixed in 1.11). Docker has no such file.

use std::time::Duration;

use super::dns_leftovers::{dns_dir, valid_network_name};
use super::{exec, Interrupt, Runtime};

/// One container's line in a network's file: `<id> <ipv4,...> <ipv6,...> <name,alias,...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    /// The container's IPv4 addresses on the network.
    pub ipv4: Vec<String>,
    /// The names it answers to: container name, service name, aliases, short id.
    pub names: Vec<String>,
}

/// Parses a network's file (first line: the network's DNS server addresses). Pure.
pub fn parse(text: &str) -> Vec<DnsEntry> {
    let list = |s: &str| -> Vec<String> { s.split(',').filter(|x| !x.is_empty()).map(String::from).collect() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() >= 4).then(|| DnsEntry {
                ipv4: list(fields[1]),
                names: list(fields[3]),
            })
        })
        .collect()
}

/// One sentence on what the engine registered for `name` on `networks`, or `None` where the
/// engine keeps no such file (Docker) or it cannot be read.
pub fn describe_registration(runtime: &Runtime, networks: &[String], name: &str) -> Option<String> {
    let dir = dns_dir(runtime)?;
    let mut parts = Vec::new();
    for network in networks.iter().filter(|n| valid_network_name(n)) {
        let spec = runtime
            .command("cat")
            .arg("--")
            .arg(dir.join(network).display().to_string())
            .cwd("/");
        let Ok(out) = exec::run(&spec, TIMEOUT, Interrupt::Ignored) else {
            continue;
        };
        if !out.success() {
            parts.push(format!("aardvark-dns has no file for network {network}"));
            continue;
        }
        let hits: Vec<String> = parse(&out.stdout)
            .into_iter()
            .filter(|e| e.names.iter().any(|n| n == name))
            .map(|e| e.ipv4.join(","))
            .collect();
        parts.push(if hits.is_empty() {
            format!("aardvark-dns's entries for network {network} have no {name}: the engine did not register it")
        } else {
            format!(
                "aardvark-dns's entries for network {network} list {name} at {}: registered, so the engine's DNS server did not answer with it",
                hits.join(" and ")
            )
        });
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Deadline for reading one file.
const TIMEOUT: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_a_recorded_file() {
        let text = "10.89.1.1\n\
            64bde3d67305ef0c 10.89.1.9  hydra-x-db-1,db,64bde3d67305\n\
            8a9869131c0550 10.89.1.14  hydra-x-analysis-engine-1,analysis-engine,8a9869131c05\n";
        let e = parse(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].ipv4, ["10.89.1.14"]);
        assert_eq!(
            e[1].names,
            ["hydra-x-analysis-engine-1", "analysis-engine", "8a9869131c05"]
        );
    }

    #[test]
    fn a_short_or_empty_line_is_no_entry() {
        assert!(parse("10.89.1.1\n\nabc 10.0.0.1\n").is_empty());
    }

    #[test]
    fn network_names_from_inspect_never_become_other_paths() {
        assert!(valid_network_name("hydra-podman-rootless-v2-1c9d602f_phoenix-data"));
        assert!(!valid_network_name("../aardvark.pid"));
        assert!(!valid_network_name("a/b"));
        assert!(!valid_network_name(""));
    }
}
