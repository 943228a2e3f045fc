//! Health: every health endpoint answers with the expected status and JSON fields on its own
//! published port and through the proxy; the engine reports every service healthy; and health is
//! transitive for real: stopping a dependency turns its dependants unhealthy within a deadline, and
//! starting it again brings them back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{slug, Announce, Area, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::compose::Action;
use crate::outcome::Verdict;
use crate::runtime::exec;
use crate::runtime::inspect::HealthStatus;
use crate::runtime::HealthDriver;
use crate::spec::{HealthProbe, Spec, Transitive};
use crate::stack::Stack;

/// One planned endpoint probe.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointCheck {
    /// The check's id.
    pub id: CheckId,
    /// The service whose endpoint is probed.
    pub service: String,
    /// Service whose published port is used (the service itself, or `via`).
    pub through: String,
    /// The expectation from the spec.
    pub probe: HealthProbe,
}

/// One dependant of a transitive rule: its "fails when stopped" and "recovers" checks.
#[derive(Debug, Clone)]
pub struct TransitivePlan {
    /// The check that the dependant turns unhealthy once the dependency stops.
    pub fails: CheckId,
    /// The check that the dependant recovers once the dependency starts again.
    pub recovers: CheckId,
    /// The dependant service watched.
    pub dependant: String,
    /// The spec rule the checks come from.
    pub rule: Transitive,
}

/// Plans the endpoint probes: each health endpoint of the spec, on its own port or through the
/// proxy (`via`). Pure.
pub fn plan_endpoints(spec: &Spec) -> Vec<EndpointCheck> {
    let mut endpoints = Vec::new();
    for (svc, s) in &spec.services {
        for p in &s.health {
            let through = p.via.clone().unwrap_or_else(|| svc.clone());
            endpoints.push(EndpointCheck {
                id: CheckId::new(Area::Health, format!("{through}_{}", slug(&p.path))),
                service: svc.clone(),
                through,
                probe: p.clone(),
            });
        }
    }
    endpoints
}

/// Plans one "engine reports healthy" check per compose service. Pure.
pub fn plan_engine<'a>(services: impl IntoIterator<Item = &'a String>) -> Vec<EngineCheck> {
    services
        .into_iter()
        .map(|s| EngineCheck {
            id: CheckId::new(Area::Health, format!("engine_reports_{s}_healthy")),
            service: s.clone(),
        })
        .collect()
}

/// Plans the transitive checks: for each rule, each dependant fails when the dependency stops
/// and recovers when it starts again. Pure.
pub fn plan_transitive(spec: &Spec) -> Vec<TransitivePlan> {
    let mut transitive = Vec::new();
    for t in &spec.transitive {
        for d in &t.dependants {
            transitive.push(TransitivePlan {
                fails: CheckId::new(Area::Health, format!("stopping_{}_fails_{d}", t.stop)),
                recovers: CheckId::new(Area::Health, format!("starting_{}_recovers_{d}", t.stop)),
                dependant: d.clone(),
                rule: t.clone(),
            });
        }
    }
    transitive
}

/// One "engine reports healthy" check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCheck {
    /// The check's id.
    pub id: CheckId,
    /// The compose service whose health the engine reports.
    pub service: String,
}

/// Health endpoints probed over HTTP (read-only).
pub struct Endpoints {
    /// The planned probes, in the order they run.
    pub checks: Vec<EndpointCheck>,
}

impl CheckArea for Endpoints {
    fn plan(spec: &Spec, _compose: &ComposeFile) -> Self {
        Self {
            checks: plan_endpoints(spec),
        }
    }

    fn announce(&self) -> Announce {
        Announce::Always("health")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.checks.iter().map(|c| c.id.clone()).collect()
    }

    fn run(&self, stack: &Stack, spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        run_endpoints(stack, spec, &self.checks, selected, rec)
    }
}

/// The engine's own view of every service's health (read-only; part of the health phase).
pub struct EngineHealth {
    /// One check per compose service.
    pub checks: Vec<EngineCheck>,
}

impl CheckArea for EngineHealth {
    fn plan(_spec: &Spec, compose: &ComposeFile) -> Self {
        Self {
            checks: plan_engine(compose.services.keys()),
        }
    }

    fn announce(&self) -> Announce {
        Announce::Continue
    }

    fn ids(&self) -> Vec<CheckId> {
        self.checks.iter().map(|c| c.id.clone()).collect()
    }

    fn run(&self, stack: &Stack, _spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        run_engine(stack, &self.checks, selected, rec)
    }
}

/// Transitive health: stops dependencies and starts them again (destructive).
pub struct TransitiveHealth {
    /// One plan per dependant of each rule.
    pub plans: Vec<TransitivePlan>,
}

impl CheckArea for TransitiveHealth {
    fn plan(spec: &Spec, _compose: &ComposeFile) -> Self {
        Self {
            plans: plan_transitive(spec),
        }
    }

    fn announce(&self) -> Announce {
        Announce::Always("transitive health")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.plans
            .iter()
            .flat_map(|t| [t.fails.clone(), t.recovers.clone()])
            .collect()
    }

    fn run(&self, stack: &Stack, spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        run_transitive(stack, spec, &self.plans, selected, rec)
    }
}

/// Judges an HTTP answer against a probe (pure).
pub fn judge_response(
    service: &str,
    url: &str,
    probe: &HealthProbe,
    status: u16,
    body: &str,
) -> Result<String, String> {
    if status != probe.status {
        return Err(format!(
            "{service}: GET {url} answered {status}, expected {} (body: {})",
            probe.status,
            truncate(body, 200)
        ));
    }
    if probe.fields.is_empty() {
        return Ok(format!("GET {url} answered {status}"));
    }
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        format!(
            "{service}: GET {url} answered {status} but not JSON ({e}): {}",
            truncate(body, 200)
        )
    })?;
    for (k, v) in &probe.fields {
        match json.get(k) {
            Some(serde_json::Value::String(s)) if s == v => {}
            Some(other) => return Err(format!("{service}: GET {url}: field {k} is {other}, expected \"{v}\"")),
            None => return Err(format!("{service}: GET {url}: field {k} is missing, expected \"{v}\"")),
        }
    }
    Ok(format!(
        "GET {url} answered {status} with {}",
        probe
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn truncate(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        format!("{t}...")
    } else {
        t
    }
}

/// The blocking client every check's HTTP request goes through: a 5 s deadline, no proxy (the
/// targets are loopback addresses).
pub(crate) fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("http client")
}

/// The host address of `service`'s published `port` (or its first published port).
fn published_addr(stack: &Stack, service: &str, port: Option<u16>, spec: &Spec) -> Result<SocketAddr, String> {
    let containers = stack
        .containers()
        .map_err(|e| format!("cannot inspect the stack: {e}"))?;
    let c = containers
        .get(service)
        .ok_or_else(|| format!("service {service} has no container"))?;
    let port = port
        .or_else(|| spec.services.get(service).and_then(|s| s.published.first().copied()))
        .ok_or_else(|| format!("{service} publishes no port to probe"))?;
    let bind = stack.bind_ip();
    c.published()
        .into_iter()
        .find(|p| p.container_port == port && p.host_ip.parse().ok() == Some(bind))
        .map(|p| SocketAddr::new(bind, p.host_port))
        .ok_or_else(|| format!("{service} port {port} is not published on {bind}"))
}

/// One GET, abandoned as soon as the run is cancelled (the request itself ends within the
/// client's timeout in the background).
fn get(client: &reqwest::blocking::Client, url: &str) -> Result<(u16, String), String> {
    let (client, target) = (client.clone(), url.to_string());
    exec::interruptible(move || {
        let resp = client.get(&target).send().map_err(|e| format!("GET {target}: {e}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().unwrap_or_default()))
    })
    .map_err(|e| format!("GET {url}: {e}"))?
}

/// Runs the endpoint probes that `selected` keeps. A just-started stack may need a moment for a
/// proxy's first lookup, so each probe is retried for a few seconds before it fails.
pub fn run_endpoints(stack: &Stack, spec: &Spec, checks: &[EndpointCheck], selected: Selected<'_>, rec: &mut Recorder) {
    let client = http_client();
    for c in checks.iter().filter(|c| selected(&c.id)) {
        if exec::is_cancelled() {
            return;
        }
        rec.check(&c.id, Some(&c.service), || {
            let port = if c.probe.via.is_some() { None } else { c.probe.port };
            let addr = published_addr(stack, &c.through, port, spec)?;
            let url = format!("http://{addr}{}", c.probe.path);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let result = get(&client, &url)
                    .and_then(|(status, body)| judge_response(&c.service, &url, &c.probe, status, &body));
                if result.is_ok() || Instant::now() >= deadline {
                    return result;
                }
                exec::sleep(Duration::from_millis(500)).map_err(|e| format!("{}: {url}: {e}", c.service))?;
            }
        });
    }
}

/// Whether the engine reports `service` healthy now (running a probe first where the harness
/// drives healthchecks).
fn engine_healthy(stack: &Stack, service: &str) -> Result<bool, String> {
    let containers = stack.containers().map_err(|e| e.to_string())?;
    let c = containers
        .get(service)
        .ok_or_else(|| format!("service {service} has no container"))?;
    if !c.state.running {
        return Ok(false);
    }
    if stack.runtime().health_driver() == HealthDriver::Harness && c.has_healthcheck() {
        return stack.runtime().run_healthcheck(&c.id).map_err(|e| e.to_string());
    }
    Ok(matches!(
        c.health_status(),
        HealthStatus::Healthy | HealthStatus::NoHealthcheck
    ))
}

/// The engine's own verdict on a service's health, as a systemd timer running its probes would
/// leave it: where the harness runs the probes, one is run and the engine's status read after
/// it, so one failed probe (a DNS lookup during an aardvark-dns outage) counts as the engine
/// counts it, against `retries`, exactly as Docker's status does.
fn engine_verdict(stack: &Stack, service: &str) -> Result<Result<String, String>, String> {
    if engine_healthy(stack, service)? {
        return Ok(Ok(format!("engine reports {service} healthy")));
    }
    if stack.runtime().health_driver() != HealthDriver::Harness {
        return Ok(Err(format!("engine does not report {service} healthy")));
    }
    let containers = stack.containers().map_err(|e| e.to_string())?;
    let c = containers
        .get(service)
        .ok_or_else(|| format!("service {service} has no container"))?;
    let failing = c.state.health.as_ref().map(|h| h.failing_streak).unwrap_or_default();
    Ok(match c.health_status() {
        HealthStatus::Healthy if c.state.running => Ok(format!(
            "engine reports {service} healthy (its latest probe failed: failing streak {failing}, below the healthcheck's retries)"
        )),
        status => Err(format!(
            "engine does not report {service} healthy ({status:?} after a failed probe, failing streak {failing})"
        )),
    })
}

/// Runs the engine-health checks.
pub fn run_engine(stack: &Stack, checks: &[EngineCheck], selected: Selected<'_>, rec: &mut Recorder) {
    for EngineCheck { id, service } in checks.iter().filter(|c| selected(&c.id)) {
        if exec::is_cancelled() {
            return;
        }
        rec.check(id, Some(service), || engine_verdict(stack, service)?);
    }
}

/// A dependant's health as its own endpoint reports it (published) or as its healthcheck does.
fn dependant_healthy(
    stack: &Stack,
    spec: &Spec,
    client: &reqwest::blocking::Client,
    service: &str,
) -> Result<bool, String> {
    let own = spec
        .services
        .get(service)
        .and_then(|s| s.health.iter().find(|h| h.via.is_none()).cloned());
    if let Some(probe) = own {
        if let Ok(addr) = published_addr(stack, service, probe.port, spec) {
            let (status, _) = get(client, &format!("http://{addr}{}", probe.path))?;
            return Ok(status == probe.status);
        }
    }
    engine_healthy(stack, service)
}

/// Stops each transitive dependency, watches dependants fail, starts it and watches them recover.
pub fn run_transitive(
    stack: &Stack,
    spec: &Spec,
    plans: &[TransitivePlan],
    selected: Selected<'_>,
    rec: &mut Recorder,
) {
    let client = http_client();
    let healthy = |d: &str| dependant_healthy(stack, spec, &client, d);
    for (t, items) in by_dependency(plans, selected) {
        // Checks not reached are marked interrupted by the caller.
        if exec::is_cancelled() {
            return;
        }
        let stopped_at = Instant::now();
        if !stop_dependency(stack, t, &items, rec) {
            continue;
        }
        let turned_unhealthy = watch(&items, stopped_at, Stage::Stopped.within(t), |d| match healthy(d) {
            // A probe cut short by a signal says nothing about the dependant.
            Err(_) if exec::is_cancelled() => false,
            Ok(false) | Err(_) => true,
            Ok(true) => false,
        });
        let interrupted = Stage::Stopped.record(t, &items, &turned_unhealthy, stopped_at, rec);
        // Teardown removes the stopped service; starting it again would only delay it.
        if interrupted {
            return;
        }
        let started_at = Instant::now();
        let _ = stack.compose_run(&Action::Start {
            service: t.stop.clone(),
        });
        let recovered = watch(&items, started_at, Stage::Restarted.within(t), |d| {
            healthy(d).unwrap_or(false)
        });
        let _ = Stage::Restarted.record(t, &items, &recovered, started_at, rec);
    }
}

/// The selected transitive checks grouped by the dependency they stop, in plan order.
fn by_dependency<'a>(
    plans: &'a [TransitivePlan],
    selected: Selected<'_>,
) -> Vec<(&'a Transitive, Vec<&'a TransitivePlan>)> {
    let mut by_stop: Vec<(&Transitive, Vec<&TransitivePlan>)> = Vec::new();
    for p in plans.iter().filter(|p| selected(&p.fails) || selected(&p.recovers)) {
        match by_stop.iter_mut().find(|(t, _)| t.stop == p.rule.stop) {
            Some((_, v)) => v.push(p),
            None => by_stop.push((&p.rule, vec![p])),
        }
    }
    by_stop
}

/// Stops `t.stop` and says whether the engine shows it stopped (the tool's exit code is not
/// trusted). When it is not, both checks of every dependant fail with the reason, unless the run
/// was cancelled meanwhile.
fn stop_dependency(stack: &Stack, t: &Transitive, items: &[&TransitivePlan], rec: &mut Recorder) -> bool {
    let stop = stack.compose_run(&Action::Stop {
        service: t.stop.clone(),
    });
    let really_stopped = stack
        .containers()
        .ok()
        .and_then(|c| c.get(&t.stop).map(|c| !c.state.running))
        .unwrap_or(false);
    if really_stopped || exec::is_cancelled() {
        return really_stopped;
    }
    for p in items {
        let d = &p.dependant;
        let why = format!(
            "could not stop {} (compose stop: {:?}); {d} not tested",
            t.stop,
            stop.as_ref().map(|o| o.status)
        );
        rec.push(&p.fails, Some(d), Verdict::Fail, why.clone(), 0.0);
        rec.push(&p.recovers, Some(d), Verdict::Fail, why, 0.0);
    }
    false
}

/// Polls every dependant every `poll` until `seen` holds for it, `within` has passed since
/// `since`, or the run is cancelled; returns each dependant seen with the seconds it took.
fn watch(
    items: &[&TransitivePlan],
    since: Instant,
    (within, poll): (Duration, Duration),
    mut seen: impl FnMut(&str) -> bool,
) -> Vec<(String, f64)> {
    let mut pending: Vec<&String> = items.iter().map(|i| &i.dependant).collect();
    let mut out = Vec::new();
    while !pending.is_empty() && since.elapsed() < within && !exec::is_cancelled() {
        pending.retain(|d| {
            if seen(d) {
                out.push((d.to_string(), since.elapsed().as_secs_f64()));
                false
            } else {
                true
            }
        });
        let _ = exec::sleep(poll);
    }
    out
}

/// The two halves of a transitive rule: after the dependency stopped (dependants must turn
/// unhealthy) and after it started again (they must recover).
#[derive(Debug, Clone, Copy)]
enum Stage {
    Stopped,
    Restarted,
}

impl Stage {
    /// The deadline and the polling interval.
    fn within(self, t: &Transitive) -> (Duration, Duration) {
        match self {
            Stage::Stopped => (Duration::from_secs(t.within_secs), Duration::from_millis(300)),
            Stage::Restarted => (Duration::from_secs(t.recover_within_secs), Duration::from_millis(500)),
        }
    }

    /// Records each dependant's check of this stage: passed when it was `seen`, interrupted
    /// when the run was stopped first (returns whether it was), failed otherwise.
    fn record(
        self,
        t: &Transitive,
        items: &[&TransitivePlan],
        seen: &[(String, f64)],
        since: Instant,
        rec: &mut Recorder,
    ) -> bool {
        let interrupted = exec::is_cancelled();
        let stop = &t.stop;
        let within = self.within(t).0.as_secs();
        for p in items {
            let d = &p.dependant;
            let elapsed = since.elapsed().as_secs_f64();
            let (verdict, message, secs) = match (self, seen.iter().find(|(s, _)| s == d)) {
                (Stage::Stopped, Some((_, secs))) => (
                    Verdict::Pass,
                    format!("{d} turned unhealthy {secs:.1}s after {stop} stopped"),
                    *secs,
                ),
                (Stage::Restarted, Some((_, secs))) => (
                    Verdict::Pass,
                    format!("{d} healthy again {secs:.1}s after {stop} started"),
                    *secs,
                ),
                (Stage::Stopped, None) if interrupted => (
                    Verdict::Interrupted,
                    format!("interrupted {elapsed:.1}s after {stop} stopped, before {d} turned unhealthy"),
                    elapsed,
                ),
                (Stage::Restarted, None) if interrupted => (
                    Verdict::Interrupted,
                    format!("interrupted {elapsed:.1}s after {stop} started again, before {d} recovered"),
                    elapsed,
                ),
                (Stage::Stopped, None) => (
                    Verdict::Fail,
                    format!("{d} still reports healthy {within}s after {stop} stopped: its health is not transitive"),
                    within as f64,
                ),
                (Stage::Restarted, None) => (
                    Verdict::Fail,
                    format!("{d} not healthy {within}s after {stop} started again"),
                    within as f64,
                ),
            };
            let id = match self {
                Stage::Stopped => &p.fails,
                Stage::Restarted => &p.recovers,
            };
            rec.push(id, Some(d), verdict, message, secs);
        }
        interrupted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::BTreeMap;

    fn probe(status: u16, fields: &[(&str, &str)]) -> HealthProbe {
        HealthProbe {
            path: "/health".into(),
            port: None,
            via: None,
            status,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[rstest]
    #[case::ok(200, r#"{"status":"ok","service":"gap"}"#, true)]
    #[case::status_500(500, r#"{"status":"ok","service":"gap"}"#, false)]
    #[case::wrong_field(200, r#"{"status":"fail","service":"gap"}"#, false)]
    #[case::missing_field(200, r#"{"service":"gap"}"#, false)]
    #[case::not_json(200, "<html>", false)]
    fn judges_responses(#[case] status: u16, #[case] body: &str, #[case] pass: bool) {
        let r = judge_response(
            "gap",
            "http://127.0.0.1:1/health",
            &probe(200, &[("status", "ok"), ("service", "gap")]),
            status,
            body,
        );
        assert_eq!(r.is_ok(), pass, "{r:?}");
        if let Err(m) = r {
            assert!(m.starts_with("gap: GET http://127.0.0.1:1/health"), "{m}");
        }
    }

    #[test]
    fn status_only_probes_ignore_the_body() {
        assert!(judge_response("n", "u", &probe(200, &[]), 200, "not json").is_ok());
    }
}
