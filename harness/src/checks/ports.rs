//! Published and internal ports: each published port is bound by the engine to the bind address
//! only and answers there, another loopback address does not answer; ports meant to stay internal
//! are not published; internal ports accept connections from peers on a shared network and not
//! from services off it (tried by address, so this is network isolation, not just DNS).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::{Announce, Area, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::runtime::inspect::{ContainerInspect, Published};
use crate::spec::Spec;
use crate::stack::Stack;

/// One planned port check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortCheck {
    /// The engine binds `port` of `service` to the bind address only.
    BoundToBindIpOnly {
        /// The check's id.
        id: CheckId,
        /// The service whose port is checked.
        service: String,
        /// The container port.
        port: u16,
    },
    /// A TCP connection to the published port on the bind address succeeds.
    AcceptsOnBindIp {
        /// The check's id.
        id: CheckId,
        /// The service whose port is checked.
        service: String,
        /// The container port.
        port: u16,
    },
    /// The same host port on another loopback address does not answer.
    SilentOnOtherLoopback {
        /// The check's id.
        id: CheckId,
        /// The service whose port is checked.
        service: String,
        /// The container port.
        port: u16,
    },
    /// An internal-only port has no host binding.
    NotPublished {
        /// The check's id.
        id: CheckId,
        /// The service whose port is checked.
        service: String,
        /// The container port.
        port: u16,
    },
    /// `from` can (or cannot) open `service:port` over the container networks.
    Internal {
        /// The check's id.
        id: CheckId,
        /// The service whose port is checked.
        service: String,
        /// The container port.
        port: u16,
        /// The service that tries to connect.
        from: String,
        /// Whether the connection must succeed (the two services share a network).
        expect_open: bool,
    },
}

impl PortCheck {
    /// The check's id.
    pub fn id(&self) -> &CheckId {
        match self {
            PortCheck::BoundToBindIpOnly { id, .. }
            | PortCheck::AcceptsOnBindIp { id, .. }
            | PortCheck::SilentOnOtherLoopback { id, .. }
            | PortCheck::NotPublished { id, .. }
            | PortCheck::Internal { id, .. } => id,
        }
    }

    /// The service whose port is checked.
    pub fn service(&self) -> &str {
        match self {
            PortCheck::BoundToBindIpOnly { service, .. }
            | PortCheck::AcceptsOnBindIp { service, .. }
            | PortCheck::SilentOnOtherLoopback { service, .. }
            | PortCheck::NotPublished { service, .. }
            | PortCheck::Internal { service, .. } => service,
        }
    }
}

/// Plans port checks from the spec and the compose networks. Pure.
pub fn plan(spec: &Spec, compose: &ComposeFile) -> Vec<PortCheck> {
    let mut out = Vec::new();
    for (svc, s) in &spec.services {
        for &port in &s.published {
            let p = |what: &str| CheckId::new(Area::Ports, format!("{svc}_{port}_{what}"));
            out.push(PortCheck::BoundToBindIpOnly {
                id: p("bound_to_bind_ip_only"),
                service: svc.clone(),
                port,
            });
            out.push(PortCheck::AcceptsOnBindIp {
                id: p("accepts_on_bind_ip"),
                service: svc.clone(),
                port,
            });
            out.push(PortCheck::SilentOnOtherLoopback {
                id: p("silent_on_other_loopback"),
                service: svc.clone(),
                port,
            });
        }
        for &port in s.internal.iter().filter(|p| !s.published.contains(p)) {
            out.push(PortCheck::NotPublished {
                id: CheckId::new(Area::Ports, format!("{svc}_{port}_not_published")),
                service: svc.clone(),
                port,
            });
        }
        let Some(target) = compose.services.get(svc) else {
            continue;
        };
        for &port in &s.internal {
            for (from, fs) in &compose.services {
                if from == svc {
                    continue;
                }
                let shared = fs.networks.keys().any(|n| target.networks.contains_key(n));
                let verb = if shared { "reachable_from" } else { "unreachable_from" };
                out.push(PortCheck::Internal {
                    id: CheckId::new(Area::Ports, format!("{svc}_{port}_{verb}_{from}")),
                    service: svc.clone(),
                    port,
                    from: from.clone(),
                    expect_open: shared,
                });
            }
        }
    }
    out
}

/// The ports area: published and internal ports of every service the spec describes.
pub struct Ports {
    /// The planned checks, in the order they run.
    pub checks: Vec<PortCheck>,
}

impl CheckArea for Ports {
    fn plan(spec: &Spec, compose: &ComposeFile) -> Self {
        Self {
            checks: plan(spec, compose),
        }
    }

    fn announce(&self) -> Announce {
        Announce::Always("ports")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.checks.iter().map(|c| c.id().clone()).collect()
    }

    fn run(&self, stack: &Stack, _spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        run(stack, &self.checks, selected, rec)
    }
}

/// Judges the engine's bindings for one container port (pure).
pub fn judge_bindings(service: &str, port: u16, bind_ip: IpAddr, published: &[Published]) -> Result<String, String> {
    let bindings: Vec<&Published> = published
        .iter()
        .filter(|p| p.container_port == port && p.protocol == "tcp")
        .collect();
    if bindings.is_empty() {
        return Err(format!("{service} port {port} is not published"));
    }
    let wrong: Vec<String> = bindings
        .iter()
        .filter(|b| b.host_ip.parse::<IpAddr>().map(|ip| ip != bind_ip).unwrap_or(true))
        .map(|b| format!("{}:{}", b.host_ip, b.host_port))
        .collect();
    if wrong.is_empty() {
        Ok(format!(
            "{service} port {port} bound to {bind_ip} only ({})",
            bindings
                .iter()
                .map(|b| format!("{}:{}", b.host_ip, b.host_port))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(format!(
            "{service} port {port} is bound to {} besides the bind address {bind_ip}",
            wrong.join(", ")
        ))
    }
}

/// Another loopback address than `bind_ip` (127.0.0.1 <-> 127.0.0.2).
pub fn other_loopback(bind_ip: IpAddr) -> IpAddr {
    match bind_ip {
        IpAddr::V4(v4) if v4.octets()[3] == 1 => IpAddr::from([127, 0, 0, 2]),
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

fn host_port_on(published: &[Published], port: u16, bind_ip: IpAddr) -> Option<u16> {
    published
        .iter()
        .find(|p| p.container_port == port && p.host_ip.parse::<IpAddr>().ok() == Some(bind_ip))
        .map(|p| p.host_port)
}

fn connect(addr: SocketAddr) -> std::io::Result<()> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map(drop)
}

/// Runs the port checks that `selected` keeps.
pub fn run(stack: &Stack, checks: &[PortCheck], selected: Selected<'_>, rec: &mut Recorder) {
    let checks: Vec<&PortCheck> = checks.iter().filter(|c| selected(c.id())).collect();
    if checks.is_empty() {
        return;
    }
    let Some(containers) = super::containers_or_fail(stack, checks.iter().map(|c| (c.id(), c.service())), rec) else {
        return;
    };
    let bind_ip = stack.bind_ip();
    for c in checks {
        rec.check(c.id(), Some(c.service()), || run_one(stack, &containers, bind_ip, c));
    }
}

fn run_one(
    stack: &Stack,
    containers: &BTreeMap<String, ContainerInspect>,
    bind_ip: IpAddr,
    c: &PortCheck,
) -> Result<String, String> {
    let target = containers
        .get(c.service())
        .ok_or_else(|| format!("service {} has no container", c.service()))?;
    let published = target.published();
    match c {
        PortCheck::BoundToBindIpOnly { service, port, .. } => judge_bindings(service, *port, bind_ip, &published),
        PortCheck::AcceptsOnBindIp { service, port, .. } => {
            let host_port = host_port_on(&published, *port, bind_ip)
                .ok_or_else(|| format!("{service} port {port} has no binding on {bind_ip}"))?;
            let addr = SocketAddr::new(bind_ip, host_port);
            connect(addr)
                .map(|_| format!("{service} answers on {addr}"))
                .map_err(|e| format!("{service} port {port}: connection to {addr} failed: {e}"))
        }
        PortCheck::SilentOnOtherLoopback { service, port, .. } => {
            let host_port = host_port_on(&published, *port, bind_ip)
                .ok_or_else(|| format!("{service} port {port} has no binding on {bind_ip}"))?;
            let addr = SocketAddr::new(other_loopback(bind_ip), host_port);
            match connect(addr) {
                Ok(()) => Err(format!(
                    "{service} port {port} also answers on {addr}: it is not bound to {bind_ip} only"
                )),
                Err(e) => Ok(format!("{addr} does not answer ({e})")),
            }
        }
        PortCheck::NotPublished { service, port, .. } => {
            let b: Vec<String> = published
                .iter()
                .filter(|p| p.container_port == *port)
                .map(|p| format!("{}:{}", p.host_ip, p.host_port))
                .collect();
            if b.is_empty() {
                Ok(format!("{service} port {port} has no host binding"))
            } else {
                Err(format!(
                    "{service} port {port} must stay internal but is published on {}",
                    b.join(", ")
                ))
            }
        }
        PortCheck::Internal {
            service,
            port,
            from,
            expect_open,
            ..
        } => {
            let source = containers
                .get(from)
                .ok_or_else(|| format!("service {from} has no container"))?;
            // Connect by address: isolation must hold even when a name would not resolve.
            let shared = super::dns::shared_addresses(source, target);
            let addr = shared
                .iter()
                .next()
                .cloned()
                .or_else(|| target.networks().values().find(|ip| !ip.is_empty()).cloned())
                .ok_or_else(|| format!("{service} has no network address"))?;
            let script = format!("exec 3<>/dev/tcp/{addr}/{port}");
            let out = stack
                .exec(from, &["timeout", "4", "bash", "-c", &script], Duration::from_secs(20))
                .map_err(|e| format!("exec in {from}: {e}"))?;
            match (expect_open, out.success()) {
                (true, true) => Ok(format!("{from} reaches {service} at {addr}:{port}")),
                (true, false) => Err(format!("{from} cannot reach {service} at {addr}:{port} although they share a network (exit {:?}: {})", out.status, out.stderr.trim())),
                (false, false) => Ok(format!("{from} cannot reach {service} at {addr}:{port}")),
                (false, true) => Err(format!("{from} reaches {service} at {addr}:{port} although they share no network: networks are not isolated")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    fn pb(ip: &str, host_port: u16) -> Published {
        Published {
            container_port: 5000,
            protocol: "tcp".into(),
            host_ip: ip.into(),
            host_port,
        }
    }

    #[rstest]
    #[case::loopback_only(vec![pb("127.0.0.1", 40000)], true)]
    #[case::all_interfaces(vec![pb("127.0.0.1", 40000), pb("0.0.0.0", 40001)], false)]
    #[case::ipv6_any(vec![pb("::", 40000)], false)]
    #[case::unpublished(vec![], false)]
    fn judges_bindings(#[case] published: Vec<Published>, #[case] pass: bool) {
        let r = judge_bindings("gap-detector", 5000, IpAddr::from([127, 0, 0, 1]), &published);
        assert_eq!(r.is_ok(), pass, "{r:?}");
        assert!(r.unwrap_or_else(|e| e).contains("gap-detector port 5000"));
    }

    #[test]
    fn other_loopback_differs() {
        assert_eq!(
            other_loopback(IpAddr::from([127, 0, 0, 1])),
            IpAddr::from([127, 0, 0, 2])
        );
        assert_eq!(
            other_loopback(IpAddr::from([127, 0, 0, 5])),
            IpAddr::from([127, 0, 0, 1])
        );
    }

    #[test]
    fn plans_published_internal_and_reachability() {
        let compose = ComposeFile::parse(Path::new("/c.yml"), "services:\n  web: {image: x, networks: [front]}\n  api: {image: x, networks: [front, back]}\n  db: {image: x, networks: [back]}\n").unwrap();
        let known: Vec<String> = compose.services.keys().cloned().collect();
        let spec = Spec::parse(
            Path::new("/s.toml"),
            "[services.db]\ninternal = [5432]\n[services.web]\npublished = [80]\n",
            vec![],
            &known,
        )
        .unwrap();
        let names: Vec<String> = plan(&spec, &compose).iter().map(|c| c.id().name.clone()).collect();
        assert!(names.contains(&"db_5432_not_published".into()));
        assert!(names.contains(&"db_5432_reachable_from_api".into()));
        assert!(names.contains(&"db_5432_unreachable_from_web".into()));
        assert!(names.contains(&"web_80_bound_to_bind_ip_only".into()));
        assert!(names.contains(&"web_80_silent_on_other_loopback".into()));
    }
}
