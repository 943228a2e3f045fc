//! What "ready" means for a stack (every expected service has a running container whose
//! healthcheck passes, or that has none) and the loop that waits for it. On Podman without
//! systemd nothing runs healthchecks, so the loop runs `podman healthcheck run` itself; where the
//! engine runs them (Docker), its health events wake the loop the moment one passes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{HarnessError, Result};
use crate::labels;
use crate::runtime::inspect::{ContainerInspect, HealthStatus};
use crate::runtime::{exec, HealthDriver, ObjectKind, Runtime};

/// Label compose tools put on a service's containers (both v1, v2 and podman-compose).
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// How long a service's container may stay exited before the wait gives up early.
const EXITED_GRACE: Duration = Duration::from_secs(15);
/// While a service is still starting, the harness probes it at least this often even when its
/// healthcheck interval is longer (the role of Docker's `start_interval`), so readiness is seen
/// as soon as it holds. Every loop round (the poll period plus the round's own calls): Compose
/// v2 starts a dependant only once its dependency is healthy, so each probe period of delay is
/// paid once per level of `depends_on`.
const START_PROBE_PERIOD: Duration = POLL_PERIOD;
/// How long the loop waits between looks at the containers (woken early by a health event).
const POLL_PERIOD: Duration = Duration::from_millis(500);
/// Restarts during the wait after which a service counts as crash-looping.
const RESTART_LOOP: u64 = 3;

/// When one service became ready, counted from the start of `up`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReady {
    /// The compose service.
    pub service: String,
    /// Its container's name.
    pub container: String,
    /// Seconds from the start of `up` (or of the wait) until the loop saw it ready.
    pub seconds: f64,
    /// The same moment on the wall clock (Unix milliseconds), to compare with the engine's own
    /// timestamps (the `Start`/`End` of its health log).
    pub unix_ms: u64,
    /// How many health probes the harness ran for it (0 when the engine runs them).
    pub probes: u32,
}

/// Progress of the wait, for the CLI's progress display.
#[derive(Debug, Clone)]
pub struct WaitProgress {
    /// How many services are ready.
    pub ready: usize,
    /// How many services are waited for.
    pub total: usize,
    /// The services not ready yet.
    pub pending: Vec<String>,
    /// How many of the services have a container yet (the compose tool may still be creating
    /// them: the loop runs alongside it).
    pub created: usize,
}

/// One service's state during the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// No container for it yet.
    Missing,
    /// Its container is not running, with its exit code.
    Exited(i64),
    /// Created, restarting, or running while its healthcheck has not passed yet.
    Starting,
    /// Created, and the engine's attempt to start it failed (a compose tool that does not retry,
    /// such as podman-compose, leaves it so and exits 0).
    StartFailed,
    /// Running, and its healthcheck reports unhealthy.
    Unhealthy,
    /// Running and healthy, or running without a healthcheck.
    Ready,
}

/// Classifies a container (pure).
pub fn classify(c: &ContainerInspect) -> ServiceState {
    if !c.state.running {
        return if c.state.status == "created" && !c.state.error.is_empty() {
            ServiceState::StartFailed
        } else if c.state.status == "created" || c.state.status == "restarting" {
            ServiceState::Starting
        } else {
            ServiceState::Exited(c.state.exit_code)
        };
    }
    match c.health_status() {
        HealthStatus::Healthy | HealthStatus::NoHealthcheck => ServiceState::Ready,
        HealthStatus::Unhealthy => ServiceState::Unhealthy,
        HealthStatus::Starting => ServiceState::Starting,
    }
}

/// Waits until every service in `services` is ready, or `timeout` passes (then reports the stuck
/// services with their last health output and log lines).
pub fn wait(
    runtime: &Runtime,
    run_id: &str,
    project: &str,
    services: &[String],
    started: Instant,
    timeout: Duration,
    on_progress: &mut dyn FnMut(&WaitProgress),
) -> Result<Vec<ServiceReady>> {
    wait_while(
        runtime,
        run_id,
        project,
        services,
        started,
        timeout,
        &|| true,
        &|| true,
        on_progress,
    )
}

/// [`wait`], giving up with [`HarnessError::Interrupted`] as soon as `keep_going` says no (the
/// compose tool that runs alongside failed). A container whose start failed counts as failed only
/// once `tool_done` says the compose tool has returned: until then the tool may start it again
/// (podman-compose retries a dependant whose dependency was not up yet).
#[allow(clippy::too_many_arguments)]
pub fn wait_while(
    runtime: &Runtime,
    run_id: &str,
    project: &str,
    services: &[String],
    started: Instant,
    timeout: Duration,
    keep_going: &dyn Fn() -> bool,
    tool_done: &dyn Fn() -> bool,
    on_progress: &mut dyn FnMut(&WaitProgress),
) -> Result<Vec<ServiceReady>> {
    let driver = runtime.health_driver();
    let run_filter = labels::filter(labels::RUN, run_id);
    // Where the engine announces health, its events say at once what the poll would see late.
    let events = match driver {
        HealthDriver::Engine => runtime.health_events(&run_filter, std::time::SystemTime::now()),
        HealthDriver::Harness => None,
    };
    let mut ready: BTreeMap<String, ServiceReady> = BTreeMap::new();
    let mut probes = Probes::default();
    let mut exited_since: BTreeMap<String, Instant> = BTreeMap::new();
    let wait_start = Instant::now();
    // Each service's container, as last listed.
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    loop {
        if exec::is_cancelled() || !keep_going() {
            return Err(HarnessError::Interrupted);
        }
        let containers = containers_now(runtime, &run_filter, services, &ready, &known, tool_done())?;
        let by_service: BTreeMap<&str, &ContainerInspect> = containers
            .iter()
            .filter_map(|c| Some((c.label(SERVICE_LABEL)?, c)))
            .collect();
        for (svc, c) in &by_service {
            known.insert(svc.to_string(), c.id.clone());
        }
        let mut states: BTreeMap<&str, ServiceState> = BTreeMap::new();
        let mut probed = match driver {
            HealthDriver::Harness => {
                let due: Vec<(&str, &ContainerInspect)> = services
                    .iter()
                    .filter(|svc| !ready.contains_key(*svc))
                    .filter_map(|svc| Some((svc.as_str(), *by_service.get(svc.as_str())?)))
                    .filter(|(svc, c)| probes.due(svc, c, classify(c)))
                    .collect();
                probes.run_all(runtime, &due)?
            }
            HealthDriver::Engine => BTreeMap::new(),
        };
        for svc in services {
            if ready.contains_key(svc) {
                continue;
            }
            let Some(c) = by_service.get(svc.as_str()) else {
                states.insert(svc, ServiceState::Missing);
                continue;
            };
            // A probe's result is known when its call returned, not when the round's last
            // probe did: that moment is the one recorded.
            let (state, known_at) = match probed.remove(svc.as_str()) {
                Some((state, at)) => (state, Some(at)),
                None => (classify(c), None),
            };
            if c.restart_count >= RESTART_LOOP {
                return Err(stuck(
                    runtime,
                    project,
                    &[(svc.as_str(), c, &state)],
                    wait_start.elapsed(),
                    &format!("restarted {} times (crash loop)", c.restart_count),
                ));
            }
            let final_state = match state {
                ServiceState::Exited(_) => true,
                ServiceState::StartFailed => tool_done(),
                _ => false,
            };
            if final_state {
                let since = *exited_since.entry(svc.clone()).or_insert_with(Instant::now);
                if since.elapsed() >= EXITED_GRACE {
                    let what = if state == ServiceState::StartFailed {
                        "was created but never started"
                    } else {
                        "exited and did not restart"
                    };
                    return Err(stuck(
                        runtime,
                        project,
                        &[(svc.as_str(), c, &state)],
                        wait_start.elapsed(),
                        what,
                    ));
                }
            } else {
                exited_since.remove(svc);
            }
            if state == ServiceState::Ready {
                let (at, unix_ms) = known_at.unwrap_or_else(|| (Instant::now(), unix_ms_now()));
                ready.insert(
                    svc.clone(),
                    ServiceReady {
                        service: svc.clone(),
                        container: c.short_name().to_string(),
                        seconds: at.saturating_duration_since(started).as_secs_f64(),
                        unix_ms,
                        probes: probes.count.get(svc).copied().unwrap_or(0),
                    },
                );
            } else {
                states.insert(svc, state);
            }
        }
        let pending: Vec<String> = services.iter().filter(|s| !ready.contains_key(*s)).cloned().collect();
        on_progress(&WaitProgress {
            created: services
                .iter()
                .filter(|s| by_service.contains_key(s.as_str()) || ready.contains_key(*s))
                .count(),
            ready: ready.len(),
            total: services.len(),
            pending: pending.clone(),
        });
        if pending.is_empty() {
            return Ok(services.iter().filter_map(|s| ready.remove(s)).collect());
        }
        if wait_start.elapsed() >= timeout {
            return Err(timed_out(runtime, project, &pending, &by_service, &states, timeout));
        }
        let Some(events) = &events else {
            exec::sleep(POLL_PERIOD)?;
            continue;
        };
        for h in events.next_within(POLL_PERIOD)? {
            let Some(svc) = h.service.filter(|s| pending.contains(s)) else {
                continue;
            };
            ready.entry(svc.clone()).or_insert_with(|| ServiceReady {
                service: svc,
                container: h.name,
                seconds: started.elapsed().as_secs_f64(),
                unix_ms: unix_ms_now(),
                probes: 0,
            });
        }
        if services.iter().all(|s| ready.contains_key(s)) {
            on_progress(&WaitProgress {
                created: services.len(),
                ready: ready.len(),
                total: services.len(),
                pending: Vec::new(),
            });
            return Ok(services.iter().filter_map(|s| ready.remove(s)).collect());
        }
    }
}

/// The run's containers the wait needs this round. Once the compose tool has returned and every
/// service has a container, that set is final (the harness restarts a service in place, and
/// nothing recreates one): only the pending services' containers are inspected, and the listing
/// that went before each inspection (a Podman process per round) is skipped. Should one of them
/// be gone, the round lists the run's containers again.
fn containers_now(
    runtime: &Runtime,
    run_filter: &str,
    services: &[String],
    ready: &BTreeMap<String, ServiceReady>,
    known: &BTreeMap<String, String>,
    tool_done: bool,
) -> Result<Vec<ContainerInspect>> {
    if tool_done && services.iter().all(|s| known.contains_key(s)) {
        let ids: Vec<String> = services
            .iter()
            .filter(|s| !ready.contains_key(*s))
            .filter_map(|s| known.get(s).cloned())
            .collect();
        let found = runtime.inspect_containers(&ids)?;
        if found.len() == ids.len() {
            return Ok(found);
        }
    }
    let ids = runtime.list_by_label(ObjectKind::Container, run_filter)?;
    runtime.inspect_containers(&ids)
}

/// The wall clock in Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When a probe's result came back: on the monotonic clock and in Unix milliseconds.
type Returned = (Instant, u64);

/// The harness's own healthcheck probes (Podman without systemd): when each service was last
/// probed and how often.
#[derive(Default)]
struct Probes {
    last: BTreeMap<String, Instant>,
    count: BTreeMap<String, u32>,
}

impl Probes {
    /// Whether `svc` is running, not yet healthy, and due for a probe.
    fn due(&self, svc: &str, c: &ContainerInspect, state: ServiceState) -> bool {
        if !matches!(state, ServiceState::Starting | ServiceState::Unhealthy) || !c.state.running {
            return false;
        }
        self.last
            .get(svc)
            .map(|t| t.elapsed() >= c.health_interval().min(START_PROBE_PERIOD))
            .unwrap_or(true)
    }

    /// Runs one `healthcheck run` for each of `due` at the same time (one after another, a round
    /// with three services starting took as long as their three probes); returns each one's state
    /// after its probe, with the moment its result came back (a probe that passed is known then,
    /// not once the round's slowest probe has returned). A container that exits while being
    /// probed makes the engine's probe fail: that is an exited service, not an error of the
    /// harness.
    fn run_all<'a>(
        &mut self,
        runtime: &Runtime,
        due: &[(&'a str, &ContainerInspect)],
    ) -> Result<BTreeMap<&'a str, (ServiceState, Returned)>> {
        for (svc, _) in due {
            self.last.insert(svc.to_string(), Instant::now());
            *self.count.entry(svc.to_string()).or_default() += 1;
        }
        std::thread::scope(|scope| {
            let (results, arrived) = std::sync::mpsc::channel();
            for &(svc, c) in due {
                let results = results.clone();
                scope.spawn(move || {
                    let _ = results.send((svc, c, runtime.run_healthcheck(&c.id)));
                });
            }
            drop(results);
            let mut states = BTreeMap::new();
            // In the order the probes return; a probe thread that panicked sends nothing, and the
            // scope resumes its panic once the others are done.
            for (svc, c, outcome) in arrived {
                let at = (Instant::now(), unix_ms_now());
                let state = match outcome {
                    Ok(true) => ServiceState::Ready,
                    Ok(false) => classify(c),
                    Err(e) => match runtime.inspect_containers(std::slice::from_ref(&c.id))?.first() {
                        Some(now) if !now.state.running => ServiceState::Exited(now.state.exit_code),
                        _ => return Err(e),
                    },
                };
                states.insert(svc, (state, at));
            }
            Ok(states)
        })
    }
}

/// The error for services still not ready at the deadline, naming those without a container.
fn timed_out(
    runtime: &Runtime,
    project: &str,
    pending: &[String],
    by_service: &BTreeMap<&str, &ContainerInspect>,
    states: &BTreeMap<&str, ServiceState>,
    timeout: Duration,
) -> HarnessError {
    let stuck_list: Vec<(&str, &ContainerInspect, &ServiceState)> = pending
        .iter()
        .filter_map(|s| Some((s.as_str(), *by_service.get(s.as_str())?, states.get(s.as_str())?)))
        .collect();
    let missing: Vec<&str> = pending
        .iter()
        .map(String::as_str)
        .filter(|s| !by_service.contains_key(s))
        .collect();
    let mut err = stuck(runtime, project, &stuck_list, timeout, "not healthy");
    if !missing.is_empty() {
        if let HarnessError::Unhealthy { detail, .. } = &mut err {
            detail.push_str(&format!("\n  no container was created for: {}", missing.join(", ")));
        }
    }
    err
}

fn stuck(
    runtime: &Runtime,
    project: &str,
    list: &[(&str, &ContainerInspect, &ServiceState)],
    after: Duration,
    what: &str,
) -> HarnessError {
    let mut detail = String::new();
    for (svc, c, state) in list {
        detail.push_str(&format!(
            "\n  service {svc} ({}) {what}: state {state:?}",
            c.short_name()
        ));
        if !c.state.error.is_empty() {
            detail.push_str(&format!(
                "\n    the engine's last start error: {}",
                c.state.error.trim()
            ));
        }
        if let Some(out) = c.last_health_output().filter(|o| !o.is_empty()) {
            detail.push_str(&format!(
                "\n    last health probe: {}",
                exec::tail(out, 3).replace('\n', "\n      ")
            ));
        }
        let logs = runtime.logs_tail(&c.id, 15);
        if !logs.trim().is_empty() {
            detail.push_str("\n    last log lines:\n");
            detail.push_str(
                &logs
                    .lines()
                    .map(|l| format!("      {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    HarnessError::Unhealthy {
        project: project.to_string(),
        after,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::inspect::parse_containers;
    use rstest::rstest;

    fn container(state: &str, health: Option<&str>) -> ContainerInspect {
        let running = state == "running";
        let health_json = health
            .map(|h| format!(r#","Health":{{"Status":"{h}"}}"#))
            .unwrap_or_default();
        let hc = if health.is_some() {
            r#"{"Test":["CMD","true"],"Interval":2000000000}"#
        } else {
            "null"
        };
        let json = format!(
            r#"[{{"Id":"x","Name":"/c","State":{{"Status":"{state}","Running":{running},"ExitCode":3{health_json}}},"Config":{{"Healthcheck":{hc}}}}}]"#
        );
        parse_containers(&json).unwrap().remove(0)
    }

    #[rstest]
    #[case("running", Some("healthy"), ServiceState::Ready)]
    #[case("running", None, ServiceState::Ready)]
    #[case("running", Some("starting"), ServiceState::Starting)]
    #[case("running", Some(""), ServiceState::Starting)]
    #[case("running", Some("unhealthy"), ServiceState::Unhealthy)]
    #[case("exited", Some("unhealthy"), ServiceState::Exited(3))]
    #[case("created", None, ServiceState::Starting)]
    #[case("restarting", Some("starting"), ServiceState::Starting)]
    fn classifies_containers(#[case] state: &str, #[case] health: Option<&str>, #[case] expected: ServiceState) {
        assert_eq!(classify(&container(state, health)), expected);
    }

    /// What podman-compose 1.6 leaves when `podman start` fails (a broken rootless network
    /// namespace, here): the container stays created with the engine's error, and it exits 0.
    #[test]
    fn a_container_the_engine_could_not_start_is_a_start_failure() {
        let json = r#"[{"Id":"x","Name":"/c","State":{"Status":"created","Running":false,"ExitCode":0,"Error":"failed to mount runtime directory for rootless netns: no such file or directory"},"Config":{"Healthcheck":null}}]"#;
        let c = parse_containers(json).unwrap().remove(0);
        assert_eq!(classify(&c), ServiceState::StartFailed);
        assert!(c.state.error.contains("rootless netns"));
    }
}
