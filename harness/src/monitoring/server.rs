//! The Prometheus container: built from the offline base (`containerfiles/prometheus`), run on
//! the stack's network with the generated configuration, its API published on the bind address
//! only, removed when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::api::Prometheus;
use super::config::scrape_config;
use crate::runtime::exec;
use crate::runtime::inspect::ContainerInspect;
use crate::spec::Monitoring;
use crate::stack::{Sidecar, SidecarSpec, Stack};

/// The port Prometheus listens on inside its container.
const PROMETHEUS_PORT: u16 = 9090;
/// How long Prometheus may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Deadline for one round of requests sent to a service.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(60);

/// The compose file that says how the harness builds its Prometheus image.
pub fn image_file() -> PathBuf {
    crate::workspace::root().join("containerfiles/prometheus/image.yml")
}

/// Prometheus running beside a stack; dropping it removes the container.
pub struct RunningPrometheus<'a> {
    sidecar: Sidecar<'a>,
    api: Prometheus,
}

impl<'a> RunningPrometheus<'a> {
    /// Builds the image if it is missing, starts Prometheus on the network every monitored
    /// service shares and waits until it is ready.
    pub fn start(stack: &'a Stack, monitoring: &Monitoring) -> Result<Self, String> {
        let containers = stack
            .containers()
            .map_err(|e| format!("cannot inspect the stack: {e}"))?;
        let services: Vec<&str> = monitoring.services.iter().map(|m| m.service.as_str()).collect();
        let network = shared_network(&containers, &services)?;
        let images = crate::stack::build_images(stack.runtime(), &[image_file()], &mut |_| {})
            .map_err(|e| format!("cannot build the Prometheus image: {e}"))?;
        let image = images
            .images
            .first()
            .map(|i| i.reference.clone())
            .ok_or("the Prometheus image file builds nothing")?;
        let spec = SidecarSpec {
            role: "prometheus",
            image,
            network,
            env: vec![("HYDRA_PROMETHEUS_CONFIG".into(), scrape_config(monitoring))],
            publish: Some(PROMETHEUS_PORT),
            tmpfs: vec!["/tmp:size=64m".into()],
        };
        let sidecar = stack
            .start_sidecar(&spec)
            .map_err(|e| format!("cannot start Prometheus: {e}"))?;
        let addr = sidecar.published().ok_or("Prometheus's port was not published")?;
        let api = Prometheus::at(addr);
        let since = Instant::now();
        loop {
            let last = match api.ready() {
                Ok(true) => break,
                Ok(false) => "not ready".to_string(),
                Err(e) => e,
            };
            if exec::is_cancelled() {
                return Err("interrupted while Prometheus started".into());
            }
            if since.elapsed() >= READY_WITHIN {
                return Err(format!(
                    "Prometheus was not ready within {}s ({last}); its log ends: {}",
                    READY_WITHIN.as_secs(),
                    exec::tail(&sidecar.logs_tail(20), 5)
                ));
            }
            let _ = exec::sleep(Duration::from_millis(250));
        }
        Ok(Self { sidecar, api })
    }

    /// Its HTTP API.
    pub fn api(&self) -> &Prometheus {
        &self.api
    }

    /// Sends, for each `(url, count)`, `count` GETs of `url` from inside the stack's network
    /// (where services that publish no port are reachable too), in one exec. What the requests did
    /// is for the services' counters to tell: the result holds, per URL, the client's last
    /// complaint if any, to explain a counter that did not move.
    pub fn send_requests(&self, batches: &[(String, u32)]) -> Result<Vec<Option<String>>, String> {
        // URLs and counts are arguments, never part of the script. busybox's `wget -T` crashes
        // (1.35), hence `timeout`.
        let script = r#"while [ "$#" -ge 2 ]; do n=$1; u=$2; shift 2; i=0; : > /tmp/traffic.err
while [ "$i" -lt "$n" ]; do busybox timeout 5 busybox wget -q -O /dev/null "$u" 2>>/tmp/traffic.err; i=$((i+1)); done
printf '%s\n' "$(tail -n 1 /tmp/traffic.err)"; done; rm -f /tmp/traffic.err"#;
        let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), script.into(), "sh".into()];
        for (url, count) in batches {
            argv.push(count.to_string());
            argv.push(url.clone());
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self
            .sidecar
            .exec(&argv, TRAFFIC_TIMEOUT)
            .map_err(|e| format!("could not send the requests: {e}"))?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        if !out.success() || lines.len() != batches.len() {
            return Err(format!(
                "could not send the requests: exit {:?}: {}",
                out.status,
                exec::tail(&out.stderr, 3)
            ));
        }
        Ok(lines
            .into_iter()
            .map(|l| (!l.trim().is_empty()).then(|| l.trim().to_string()))
            .collect())
    }

    /// The last lines of Prometheus's log.
    pub fn logs_tail(&self, lines: usize) -> String {
        self.sidecar.logs_tail(lines)
    }
}

/// The network every one of `services` is attached to (the first by name when several are).
pub fn shared_network(containers: &BTreeMap<String, ContainerInspect>, services: &[&str]) -> Result<String, String> {
    let mut shared: Option<BTreeSet<String>> = None;
    let mut seen = Vec::new();
    for s in services {
        let c = containers
            .get(*s)
            .ok_or_else(|| format!("monitored service {s} has no container"))?;
        let nets: BTreeSet<String> = c.networks().into_keys().collect();
        seen.push(format!("{s}: {}", nets.iter().cloned().collect::<Vec<_>>().join(", ")));
        shared = Some(match shared {
            None => nets,
            Some(prev) => prev.intersection(&nets).cloned().collect(),
        });
    }
    shared.and_then(|s| s.into_iter().next()).ok_or_else(|| {
        format!(
            "the monitored services share no network, so one Prometheus cannot reach them all ({})",
            seen.join("; ")
        )
    })
}
