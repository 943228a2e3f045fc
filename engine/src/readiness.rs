//! What "ready" means for a stack (every expected service has a running container whose
//! healthcheck passes, or that has none) and the loop that waits for it. On Podman without
//! systemd nothing runs healthchecks, so the loop runs `podman healthcheck run` itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{HarnessError, Result};
use crate::labels;
use crate::runtime::inspect::{ContainerInspect, HealthStatus};
use crate::runtime::{exec, EngineKind, HealthDriver, ObjectKind, Runtime};

/// Label compose tools put on a service's containers (both v1, v2 and podman-compose).
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// How long a service's container may stay exited before the wait gives up early.
const EXITED_GRACE: Duration = Duration::from_secs(15);
/// Within its healthcheck's start period, the harness probes a service at least this often even
/// when its interval is longer (the role of Docker's `start_interval`), so readiness is seen as
/// soon as it holds; after the start period, at the interval (see [`Probes::due`]).
const START_PROBE_PERIOD: Duration = Duration::from_millis(500);
/// Time between two looks at the engine when nothing wakes the loop earlier (see [`EventWake`]).
const POLL_PERIOD: Duration = Duration::from_millis(500);
/// The same when the harness runs the probes itself: a pass that probes nothing costs a `ps` and
/// an `inspect`, and a shorter pause lets each due probe run close to [`START_PROBE_PERIOD`].
const DRIVER_POLL_PERIOD: Duration = Duration::from_millis(250);
/// Restarts during the wait after which a service counts as crash-looping.
const RESTART_LOOP: u64 = 3;

/// When one service became ready, counted from the start of `up`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReady {
    pub service: String,
    pub container: String,
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
    pub ready: usize,
    pub total: usize,
    pub pending: Vec<String>,
    /// How many of the services have a container yet (the compose tool may still be creating
    /// them: the loop runs alongside it).
    pub created: usize,
}

/// One service's state during the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    Missing,
    Exited(i64),
    Starting,
    Unhealthy,
    Ready,
}

/// Classifies a container (pure).
pub fn classify(c: &ContainerInspect) -> ServiceState {
    if !c.state.running {
        return if c.state.status == "created" || c.state.status == "restarting" {
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

/// Waits until every service in `services` is ready, or `deadline` passes (then reports the stuck
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
        on_progress,
    )
}

/// [`wait`], giving up with [`HarnessError::Interrupted`] as soon as `keep_going` says no (the
/// compose tool that runs alongside failed).
#[allow(clippy::too_many_arguments)]
pub fn wait_while(
    runtime: &Runtime,
    run_id: &str,
    project: &str,
    services: &[String],
    started: Instant,
    timeout: Duration,
    keep_going: &dyn Fn() -> bool,
    on_progress: &mut dyn FnMut(&WaitProgress),
) -> Result<Vec<ServiceReady>> {
    let driver = runtime.health_driver();
    let run_filter = labels::filter(labels::RUN, run_id);
    let mut ready: BTreeMap<String, ServiceReady> = BTreeMap::new();
    let mut probes = Probes::default();
    let mut exited_since: BTreeMap<String, Instant> = BTreeMap::new();
    let wait_start = Instant::now();
    let wake = EventWake::start(runtime, &run_filter);
    let mut in_flight = InFlight::new();
    loop {
        in_flight.collect();
        if exec::is_cancelled() || !keep_going() {
            return Err(HarnessError::Interrupted);
        }
        let ids = runtime.list_by_label(ObjectKind::Container, &run_filter)?;
        let containers = runtime.inspect_containers(&ids)?;
        let by_service: BTreeMap<&str, &ContainerInspect> = containers
            .iter()
            .filter_map(|c| Some((c.label(SERVICE_LABEL)?, c)))
            .collect();
        // The harness's probes run in threads of their own and report when they return: a probe
        // that hangs (a DNS lookup during an aardvark-dns outage) delays nobody else, and a
        // service is known ready the moment its probe passed, not at the end of a pass.
        if driver == HealthDriver::Harness {
            for svc in services.iter().filter(|svc| !ready.contains_key(*svc)) {
                let Some(c) = by_service.get(svc.as_str()) else {
                    continue;
                };
                let state = classify(c);
                if !in_flight.running.contains(svc) && probes.due(svc, c, &state) {
                    in_flight.start(runtime, svc, c, state);
                }
            }
        }
        let mut states: BTreeMap<&str, ServiceState> = BTreeMap::new();
        for svc in services {
            if ready.contains_key(svc) {
                continue;
            }
            let Some(c) = by_service.get(svc.as_str()) else {
                states.insert(svc, ServiceState::Missing);
                continue;
            };
            let mut state = classify(c);
            let mut known = None;
            if let Some(probed) = in_flight.done.remove(svc.as_str()) {
                // A probe of an earlier container of the service (restarted) says nothing now.
                if probed.container_id == c.id {
                    match probed.state? {
                        ServiceState::Ready => {
                            state = ServiceState::Ready;
                            known = Some((
                                probed.at.saturating_duration_since(started).as_secs_f64(),
                                probed.unix_ms,
                            ));
                        }
                        exited @ ServiceState::Exited(_) => state = exited,
                        _ => {}
                    }
                }
            }
            if c.restart_count >= RESTART_LOOP {
                return Err(stuck(
                    runtime,
                    project,
                    &[(svc.as_str(), c, &state)],
                    wait_start.elapsed(),
                    &format!("restarted {} times (crash loop)", c.restart_count),
                ));
            }
            if let ServiceState::Exited(_) = state {
                let since = *exited_since.entry(svc.clone()).or_insert_with(Instant::now);
                if since.elapsed() >= EXITED_GRACE {
                    return Err(stuck(
                        runtime,
                        project,
                        &[(svc.as_str(), c, &state)],
                        wait_start.elapsed(),
                        "exited and did not restart",
                    ));
                }
            } else {
                exited_since.remove(svc);
            }
            if state == ServiceState::Ready {
                ready.insert(
                    svc.clone(),
                    ServiceReady {
                        service: svc.clone(),
                        container: c.short_name().to_string(),
                        seconds: known.map_or_else(|| started.elapsed().as_secs_f64(), |k| k.0),
                        unix_ms: known.map_or_else(unix_ms_now, |k| k.1),
                        probes: probes.count.get(svc).copied().unwrap_or(0),
                    },
                );
            } else {
                states.insert(svc, state);
            }
        }
        let pending: Vec<String> = services.iter().filter(|s| !ready.contains_key(*s)).cloned().collect();
        on_progress(&WaitProgress {
            created: services.iter().filter(|s| by_service.contains_key(s.as_str())).count(),
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
        match (&wake, driver) {
            (Some(wake), _) => wake.wait(POLL_PERIOD)?,
            (None, HealthDriver::Harness) => in_flight.wait(DRIVER_POLL_PERIOD)?,
            (None, HealthDriver::Engine) => exec::sleep(POLL_PERIOD)?,
        }
    }
}

/// Wakes the readiness loop as soon as the engine reports an event of one of the run's
/// containers (created, started, died, health status changed), so that a service is seen ready
/// within one look at the engine of its healthcheck passing rather than up to a poll period
/// later. Docker pushes health changes as events (it runs the probes); on Podman without systemd
/// the harness runs the probes itself and knows at once, so no stream is needed there. The loop
/// still polls: a stream that fails or ends only costs latency.
struct EventWake {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<()>,
}

impl EventWake {
    fn start(runtime: &Runtime, run_filter: &str) -> Option<Self> {
        if runtime.kind().engine() != EngineKind::Docker {
            return None;
        }
        let spec = runtime.engine().args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            &format!("label={run_filter}"),
            "--format",
            "{{.Status}}",
        ]);
        let mut child = match exec::spawn_stream(&spec) {
            Ok(child) => child,
            Err(e) => {
                tracing::debug!("no event stream, polling only: {e}");
                return None;
            }
        };
        let stdout = child.stdout.take()?;
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                if line.is_err() || tx.send(()).is_err() {
                    break;
                }
            }
        });
        Some(EventWake { child, events })
    }

    /// Sleeps up to `period`, returning early when an event arrived (all pending ones consumed);
    /// [`HarnessError::Interrupted`] as soon as the run is cancelled.
    fn wait(&self, period: Duration) -> Result<()> {
        use std::sync::mpsc::RecvTimeoutError;
        let end = Instant::now() + period;
        loop {
            if exec::is_cancelled() {
                return Err(HarnessError::Interrupted);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.events.recv_timeout(left.min(exec::POLL)) {
                Ok(()) => {
                    while self.events.try_recv().is_ok() {}
                    return Ok(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return exec::sleep(left),
            }
        }
    }
}

impl Drop for EventWake {
    fn drop(&mut self) {
        exec::kill_group_now(self.child.id() as i32);
        let _ = self.child.wait();
    }
}

/// The wall clock in Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A probe's outcome, as the probe thread reported it.
struct Probed {
    container_id: String,
    state: Result<ServiceState>,
    /// When the probe returned, on the monotonic and the wall clock.
    at: Instant,
    unix_ms: u64,
}

/// The harness's probes still running, and those returned but not yet looked at.
struct InFlight {
    tx: std::sync::mpsc::Sender<(String, Probed)>,
    rx: std::sync::mpsc::Receiver<(String, Probed)>,
    running: std::collections::BTreeSet<String>,
    done: BTreeMap<String, Probed>,
}

impl InFlight {
    fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        InFlight {
            tx,
            rx,
            running: Default::default(),
            done: BTreeMap::new(),
        }
    }

    /// Starts one `healthcheck run` of `svc` in a thread of its own. A thread still running when
    /// the wait ends finishes its probe (each has its own deadline) and its report is dropped.
    fn start(&mut self, runtime: &Runtime, svc: &str, c: &ContainerInspect, state: ServiceState) {
        self.running.insert(svc.to_string());
        let (tx, runtime, svc, c) = (self.tx.clone(), runtime.clone(), svc.to_string(), c.clone());
        std::thread::spawn(move || {
            let state = Probes::probe(&runtime, &c, state);
            // Timed here, the moment the probe's answer is in, not when the loop gets to it.
            let probed = Probed {
                container_id: c.id,
                state,
                at: Instant::now(),
                unix_ms: unix_ms_now(),
            };
            let _ = tx.send((svc, probed));
        });
    }

    fn record(&mut self, (svc, probed): (String, Probed)) {
        self.running.remove(&svc);
        self.done.insert(svc, probed);
    }

    /// Takes in the probes that returned since the last look.
    fn collect(&mut self) {
        while let Ok(report) = self.rx.try_recv() {
            self.record(report);
        }
    }

    /// Sleeps up to `period`, returning as soon as a probe returns (its outcome recorded);
    /// [`HarnessError::Interrupted`] as soon as the run is cancelled.
    fn wait(&mut self, period: Duration) -> Result<()> {
        use std::sync::mpsc::RecvTimeoutError;
        let end = Instant::now() + period;
        loop {
            if exec::is_cancelled() {
                return Err(HarnessError::Interrupted);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.rx.recv_timeout(left.min(exec::POLL)) {
                Ok(report) => {
                    self.record(report);
                    return Ok(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return exec::sleep(left),
            }
        }
    }
}

/// The harness's own healthcheck probes (Podman without systemd): when each service was last
/// probed and how often.
#[derive(Default)]
struct Probes {
    last: BTreeMap<String, Instant>,
    count: BTreeMap<String, u32>,
    /// When the loop first saw each container running, per (container, restart count).
    first_running: BTreeMap<(String, u64), Instant>,
}

impl Probes {
    /// Whether `svc` is running, not yet healthy and due a `healthcheck run`; if so, the probe is
    /// counted and timed from now.
    fn due(&mut self, svc: &str, c: &ContainerInspect, state: &ServiceState) -> bool {
        if !matches!(state, ServiceState::Starting | ServiceState::Unhealthy) || !c.state.running {
            return false;
        }
        // Faster than the healthcheck's interval only within its start period, where failures
        // do not count (Docker's `start_interval`). After it, each failed probe counts against
        // `retries`: probed faster than the interval, a service would be declared unhealthy in
        // a fraction of the time the engine's own timer allows, and Compose v2 gives up on it.
        let seen = *self
            .first_running
            .entry((c.id.clone(), c.restart_count))
            .or_insert_with(Instant::now);
        let start_period = c
            .config
            .healthcheck
            .as_ref()
            .and_then(|h| h.start_period)
            .map(Duration::from_nanos)
            .unwrap_or_default();
        // Seen running at most one poll after it started: the window is cut by that much.
        let in_start_period = seen.elapsed() + POLL_PERIOD < start_period;
        let period = if in_start_period {
            c.health_interval().min(START_PROBE_PERIOD)
        } else {
            c.health_interval()
        };
        let due = self.last.get(svc).map(|t| t.elapsed() >= period).unwrap_or(true);
        if due {
            self.last.insert(svc.to_string(), Instant::now());
            *self.count.entry(svc.to_string()).or_default() += 1;
        }
        due
    }

    /// Runs one `healthcheck run` and returns the service's state after it. A container that
    /// exits while being probed makes the engine's probe fail: that is an exited service, not an
    /// error of the harness.
    fn probe(runtime: &Runtime, c: &ContainerInspect, state: ServiceState) -> Result<ServiceState> {
        match runtime.run_healthcheck(&c.id) {
            Ok(true) => Ok(ServiceState::Ready),
            Ok(false) => Ok(state),
            Err(e) => match runtime.inspect_containers(std::slice::from_ref(&c.id))?.first() {
                Some(now) if !now.state.running => Ok(ServiceState::Exited(now.state.exit_code)),
                _ => Err(e),
            },
        }
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

    /// A running, starting container whose healthcheck has `interval_ms` and `start_period_ms`.
    fn probed_container(interval_ms: u64, start_period_ms: u64) -> ContainerInspect {
        let json = format!(
            r#"[{{"Id":"x","Name":"/c","State":{{"Status":"running","Running":true,"Healthcheck":{{"Status":"starting"}}}},"Config":{{"Healthcheck":{{"Test":["CMD-SHELL","true"],"Interval":{},"StartPeriod":{}}}}}}}]"#,
            interval_ms * 1_000_000,
            start_period_ms * 1_000_000
        );
        parse_containers(&json).unwrap().remove(0)
    }

    #[test]
    fn probes_run_fast_only_within_the_start_period() {
        // Within a 20 s start period: every START_PROBE_PERIOD, though the interval is 3 s.
        let c = probed_container(3000, 20_000);
        let mut probes = Probes::default();
        assert!(probes.due("svc", &c, &ServiceState::Starting));
        assert!(!probes.due("svc", &c, &ServiceState::Starting));
        std::thread::sleep(START_PROBE_PERIOD + Duration::from_millis(50));
        assert!(probes.due("svc", &c, &ServiceState::Starting));
        // Without a start period, failures count at once: never faster than the interval.
        let c = probed_container(3000, 0);
        let mut probes = Probes::default();
        assert!(probes.due("svc", &c, &ServiceState::Unhealthy));
        std::thread::sleep(START_PROBE_PERIOD + Duration::from_millis(50));
        assert!(!probes.due("svc", &c, &ServiceState::Unhealthy));
        assert_eq!(probes.count["svc"], 1);
    }

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
}
