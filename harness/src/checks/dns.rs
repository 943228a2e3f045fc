//! Inter-service DNS from inside every container: expected peers resolve, by service name and by
//! each alias, to an address the peer holds on a network they share; services that share no
//! network do not resolve each other.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Announce, Area, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::runtime::inspect::ContainerInspect;
use crate::spec::Spec;
use crate::stack::Stack;

/// What one DNS check expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// `dns::<from>_resolves_<to>` or `dns::<from>_cannot_resolve_<to>`.
    pub id: CheckId,
    /// The service the lookup runs in.
    pub from: String,
    /// The service looked up.
    pub to: String,
    /// Names to look up (service name and its aliases on shared networks).
    pub names: Vec<String>,
    /// Whether the names must resolve (a shared network) or must not (isolation).
    pub expect_resolves: bool,
}

/// Plans DNS checks: the spec's explicit pairs first (they win), then, with `all_pairs`, every
/// ordered pair judged by whether the compose file puts them on a common network. Pure.
pub fn plan(spec: &Spec, compose: &ComposeFile) -> Vec<DnsCheck> {
    let mut expectations: BTreeMap<(String, String), bool> = BTreeMap::new();
    if spec.dns.all_pairs {
        for (a, sa) in &compose.services {
            for (b, sb) in &compose.services {
                if a != b {
                    let shared = sa.networks.keys().any(|n| sb.networks.contains_key(n));
                    expectations.insert((a.clone(), b.clone()), shared);
                }
            }
        }
    }
    for (a, b) in &spec.dns.resolve {
        expectations.insert((a.clone(), b.clone()), true);
    }
    for (a, b) in &spec.dns.isolated {
        expectations.insert((a.clone(), b.clone()), false);
    }
    expectations
        .into_iter()
        .map(|((from, to), expect_resolves)| {
            let mut names = vec![to.clone()];
            if let Some(target) = compose.services.get(&to) {
                for aliases in target.networks.values() {
                    names.extend(
                        aliases
                            .iter()
                            .filter(|a| !names.contains(a))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                }
            }
            let verb = if expect_resolves { "resolves" } else { "cannot_resolve" };
            DnsCheck {
                id: CheckId::new(Area::Dns, format!("{from}_{verb}_{to}")),
                from,
                to,
                names,
                expect_resolves,
            }
        })
        .collect()
}

/// The DNS area: every planned lookup pair.
pub struct Dns {
    /// Every planned lookup pair.
    pub checks: Vec<DnsCheck>,
}

impl CheckArea for Dns {
    fn plan(spec: &Spec, compose: &ComposeFile) -> Self {
        Self {
            checks: plan(spec, compose),
        }
    }

    fn announce(&self) -> Announce {
        Announce::Always("dns")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.checks.iter().map(|c| c.id.clone()).collect()
    }

    fn run(&self, stack: &Stack, _spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        run(stack, &self.checks, selected, rec)
    }
}

/// The addresses in `getent hosts` output (`10.89.0.5  db.dns.podman db`). Pure.
pub fn parse_getent(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// How long a name that must resolve may answer "not found" before the check fails.
/// aardvark-dns 1.4 (Podman 4) re-creates all its listeners on every container start and stop, and
/// on a network whose only aardvark address that is, lookups then fall through to the host's
/// server, which says NXDOMAIN, for up to about 50 s (compose/README.md); 90 s leaves room on a
/// loaded host. A pass after such a wait says so, with the first answer; a failure says what the
/// engine registered for the name.
pub const RESOLVE_GRACE: Duration = Duration::from_secs(90);

/// Whether a lookup's failure may be a passing outage worth asking again (pure): only "not
/// found" (getent exit 2) for a name that must resolve. A wrong address, or a name that resolves
/// although it must not, is never asked again.
pub fn may_retry(check: &DnsCheck, status: Option<i32>) -> bool {
    check.expect_resolves && status == Some(2)
}

/// Judges one lookup (pure): `status` is getent's exit code (0 found, 2 not found).
pub fn judge(
    check: &DnsCheck,
    name: &str,
    status: Option<i32>,
    addresses: &[String],
    peer_addresses: &BTreeSet<String>,
) -> Result<String, String> {
    let (from, to) = (&check.from, &check.to);
    match (check.expect_resolves, status, addresses.is_empty()) {
        (true, Some(0), false) => {
            if addresses.iter().any(|a| peer_addresses.contains(a)) {
                Ok(format!(
                    "{from} resolves {name} to {}, an address {to} holds on a shared network",
                    addresses.join(", ")
                ))
            } else {
                Err(format!(
                    "{from} resolves {name} to {} but {to} holds {} on networks it shares with {from}",
                    addresses.join(", "),
                    fmt_set(peer_addresses)
                ))
            }
        }
        (true, _, _) => Err(format!(
            "{from} cannot resolve {name} (getent exit {status:?}) although it must reach {to}"
        )),
        (false, Some(0), false) => Err(format!(
            "{from} resolves {name} to {} although it must be isolated from {to}",
            addresses.join(", ")
        )),
        (false, Some(2), _) | (false, Some(0), true) => Ok(format!("{from} cannot resolve {name}")),
        (false, other, _) => Err(format!(
            "lookup of {name} in {from} failed unexpectedly (getent exit {other:?})"
        )),
    }
}

fn fmt_set(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "no address".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Addresses `to` holds on networks it shares with `from`, from the engine's view.
pub fn shared_addresses(from: &ContainerInspect, to: &ContainerInspect) -> BTreeSet<String> {
    let from_nets = from.networks();
    to.networks()
        .into_iter()
        .filter(|(n, ip)| from_nets.contains_key(n) && !ip.is_empty())
        .map(|(_, ip)| ip)
        .collect()
}

/// Runs the planned checks that `selected` keeps, a few containers at a time.
pub fn run(stack: &Stack, checks: &[DnsCheck], selected: Selected<'_>, rec: &mut Recorder) {
    let checks: Vec<&DnsCheck> = checks.iter().filter(|c| selected(&c.id)).collect();
    if checks.is_empty() {
        return;
    }
    let Some(containers) = super::containers_or_fail(stack, checks.iter().map(|c| (&c.id, c.from.as_str())), rec)
    else {
        return;
    };
    let results: Vec<(CheckId, String, Result<String, String>, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = checks
            .chunks(checks.len().div_ceil(4))
            .map(|chunk| {
                let containers = &containers;
                scope.spawn(move || chunk.iter().map(|c| run_one(stack, containers, c)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("dns worker"))
            .collect()
    });
    for (id, from, result, secs) in results {
        let (verdict, message) = match result {
            Ok(m) => (crate::outcome::Verdict::Pass, m),
            Err(m) => (crate::outcome::Verdict::Fail, m),
        };
        rec.push(&id, Some(&from), verdict, message, secs);
    }
}

/// Why a name that must resolve did not: what the engine registered for it on the networks the
/// two services share, and which servers the asking container uses. Empty when nothing is known.
fn diagnose_not_found(
    stack: &Stack,
    c: &DnsCheck,
    name: &str,
    from: &ContainerInspect,
    to: &ContainerInspect,
) -> String {
    let mut parts = Vec::new();
    if let Some(registered) =
        crate::runtime::dns_server::describe_registration(stack.runtime(), &shared_networks(from, to), name)
    {
        parts.push(registered);
    }
    if let Ok(out) = stack.exec(&c.from, &["cat", "/etc/resolv.conf"], Duration::from_secs(15)) {
        let servers: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver "))
            .map(str::trim)
            .collect();
        if !servers.is_empty() {
            parts.push(format!("{} asks {}", c.from, servers.join(", ")));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// Names of the networks both containers are attached to.
fn shared_networks(from: &ContainerInspect, to: &ContainerInspect) -> Vec<String> {
    let from_nets = from.networks();
    to.networks()
        .into_keys()
        .filter(|n| from_nets.contains_key(n))
        .collect()
}

fn run_one(
    stack: &Stack,
    containers: &BTreeMap<String, ContainerInspect>,
    c: &DnsCheck,
) -> (CheckId, String, Result<String, String>, f64) {
    let started = std::time::Instant::now();
    let result = (|| {
        let from = containers
            .get(&c.from)
            .ok_or_else(|| format!("service {} has no container", c.from))?;
        let to = containers
            .get(&c.to)
            .ok_or_else(|| format!("service {} has no container", c.to))?;
        let peer = shared_addresses(from, to);
        let mut messages = Vec::new();
        for name in &c.names {
            let first = std::time::Instant::now();
            let mut failed: Option<String> = None;
            let mut lookups = 0;
            let message = loop {
                lookups += 1;
                let in_grace = first.elapsed() < RESOLVE_GRACE && !crate::runtime::exec::is_cancelled();
                let out = match stack.exec(&c.from, &["getent", "hosts", name], Duration::from_secs(15)) {
                    Ok(out) => out,
                    // The engine failed to run the lookup (a loaded host, a slow exec): no DNS
                    // answer yet, so asked again within the grace like a passing outage.
                    Err(e) if in_grace => {
                        failed.get_or_insert(format!("exec getent in {}: {e}", c.from));
                        let _ = crate::runtime::exec::sleep(Duration::from_secs(1));
                        continue;
                    }
                    Err(e) => break Err(format!("exec getent in {}: {e}", c.from)),
                };
                match judge(c, name, out.status, &parse_getent(&out.stdout), &peer) {
                    Ok(m) => {
                        break Ok(match &failed {
                            None => m,
                            Some(f) => format!(
                                "{m}, after {:.1}s and {lookups} lookups (first: {f})",
                                first.elapsed().as_secs_f64()
                            ),
                        })
                    }
                    Err(e) if may_retry(c, out.status) && in_grace => {
                        failed.get_or_insert(e);
                        let _ = crate::runtime::exec::sleep(Duration::from_secs(1));
                    }
                    Err(e) => {
                        let mut e = match failed {
                            None => e,
                            Some(_) => format!(
                                "{e}, still after {:.1}s and {lookups} lookups",
                                first.elapsed().as_secs_f64()
                            ),
                        };
                        if may_retry(c, out.status) {
                            e.push_str(&diagnose_not_found(stack, c, name, from, to));
                        }
                        break Err(e);
                    }
                }
            }?;
            messages.push(message);
        }
        Ok(messages.join("; "))
    })();
    (c.id.clone(), c.from.clone(), result, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    fn setup(spec_text: &str) -> (Spec, ComposeFile) {
        let compose = ComposeFile::parse(
            Path::new("/c.yml"),
            "services:\n  nginx: {image: x, networks: [front]}\n  api: {image: x, networks: [front, back]}\n  db: {image: x, networks: {back: {aliases: [postgres]}}}\n",
        )
        .unwrap();
        let known: Vec<String> = compose.services.keys().cloned().collect();
        (
            Spec::parse(Path::new("/s.toml"), spec_text, vec![], &known).unwrap(),
            compose,
        )
    }

    #[test]
    fn plans_all_pairs_from_networks_and_aliases() {
        let (spec, compose) = setup("");
        let checks = plan(&spec, &compose);
        assert_eq!(checks.len(), 6);
        let nginx_db = checks.iter().find(|c| c.id.name == "nginx_cannot_resolve_db").unwrap();
        assert!(!nginx_db.expect_resolves);
        assert_eq!(nginx_db.names, ["db", "postgres"]);
        assert!(checks.iter().any(|c| c.id.name == "api_resolves_db"));
    }

    #[test]
    fn explicit_expectations_override_the_network_view() {
        // An overlay that moves nginx onto `back` changes the networks, not the spec's intent.
        let (spec, compose) = setup("[dns]\nisolated = [[\"api\", \"db\"]]\nall_pairs = false\n");
        let checks = plan(&spec, &compose);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].id.name, "api_cannot_resolve_db");
    }

    fn check(expect: bool) -> DnsCheck {
        DnsCheck {
            id: CheckId::new(Area::Dns, "x"),
            from: "nginx".into(),
            to: "db".into(),
            names: vec!["db".into()],
            expect_resolves: expect,
        }
    }

    #[rstest]
    #[case::resolves_to_peer(true, Some(0), "10.0.0.5 db\n", true)]
    #[case::resolves_elsewhere(true, Some(0), "10.9.9.9 db\n", false)]
    #[case::missing(true, Some(2), "", false)]
    #[case::isolated_ok(false, Some(2), "", true)]
    #[case::isolation_broken(false, Some(0), "10.0.0.5 db\n", false)]
    #[case::getent_broken(false, Some(126), "", false)]
    fn judges_lookups(#[case] expect: bool, #[case] status: Option<i32>, #[case] out: &str, #[case] pass: bool) {
        let peer: BTreeSet<String> = ["10.0.0.5".to_string()].into();
        let r = judge(&check(expect), "db", status, &parse_getent(out), &peer);
        assert_eq!(r.is_ok(), pass, "{r:?}");
        let msg = r.unwrap_or_else(|e| e);
        assert!(msg.contains("nginx") && msg.contains("db"), "{msg}");
    }

    #[test]
    fn only_a_missing_name_that_must_resolve_is_asked_again() {
        assert!(may_retry(&check(true), Some(2)));
        assert!(!may_retry(&check(true), Some(0)), "a wrong address is final");
        assert!(!may_retry(&check(true), Some(126)));
        assert!(!may_retry(&check(false), Some(2)), "isolation holding is final");
        assert!(!may_retry(&check(false), Some(0)), "isolation broken is final");
    }

    #[test]
    fn podman_getent_output() {
        assert_eq!(
            parse_getent("10.89.1.4      gap-detector.dns.podman gap-detector\n"),
            ["10.89.1.4"]
        );
    }
}
