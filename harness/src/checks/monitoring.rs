//! Monitoring: a real Prometheus scrapes every service the spec names, and the checks read what it
//! saw through its HTTP API: the target is `up == 1` within a deadline, Prometheus reports no
//! scrape error for it, and the spec's counter grows by at least the number of requests the
//! harness sends the service. Trials `<target>::monitoring::<service>::<check>`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Announce, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::monitoring::config::SCRAPE_INTERVAL_SECS;
use crate::monitoring::{Prometheus, RunningPrometheus, Sample, Target};
use crate::outcome::{Area, Verdict};
use crate::runtime::exec;
use crate::spec::{Monitored, Spec};
use crate::stack::Stack;

/// Check names, per monitored service.
pub const UP: &str = "up";
/// Prometheus reports no error for the service's last scrape.
pub const NO_SCRAPE_ERROR: &str = "no_scrape_error";
/// The spec's counter grows under the harness's requests.
pub const COUNTER_INCREASES: &str = "counter_increases";

/// How long a counter may take to show the requests: a few scrapes.
const COUNTER_WITHIN: Duration = Duration::from_secs(5 * SCRAPE_INTERVAL_SECS + 10);
const POLL: Duration = Duration::from_millis(250);

/// The monitoring checks of every service in the spec's `[monitoring]` section.
pub struct Monitoring {
    /// Planned checks, service by service.
    pub ids: Vec<CheckId>,
}

impl CheckArea for Monitoring {
    fn plan(spec: &Spec, _compose: &ComposeFile) -> Self {
        let ids = spec
            .monitoring
            .iter()
            .flat_map(|m| &m.services)
            .flat_map(|m| {
                [UP, NO_SCRAPE_ERROR, COUNTER_INCREASES]
                    .map(|check| CheckId::of_service(Area::Monitoring, m.service.as_str(), check))
            })
            .collect();
        Self { ids }
    }

    fn announce(&self) -> Announce {
        Announce::WhenSelected("monitoring")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.ids.clone()
    }

    fn run(&self, stack: &Stack, spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        let Some(monitoring) = &spec.monitoring else { return };
        if !self.ids.iter().any(selected) {
            return;
        }
        let t = Instant::now();
        let prometheus = match RunningPrometheus::start(stack, monitoring) {
            Ok(p) => p,
            Err(e) => {
                for id in self.ids.iter().filter(|i| selected(i)) {
                    let service = id.service.clone();
                    rec.push(
                        id,
                        service.as_deref(),
                        Verdict::Fail,
                        e.clone(),
                        t.elapsed().as_secs_f64(),
                    );
                }
                return;
            }
        };
        // Timed from here: building the image and starting Prometheus is not the targets' doing.
        let t = Instant::now();
        let up = wait_up(prometheus.api(), monitoring);
        for m in &monitoring.services {
            let id = CheckId::of_service(Area::Monitoring, m.service.as_str(), UP);
            if selected(&id) {
                let (verdict, message) = up
                    .get(&m.service)
                    .cloned()
                    .unwrap_or((Verdict::Fail, "not reached".into()));
                rec.push(&id, Some(&m.service), verdict, message, t.elapsed().as_secs_f64());
            }
        }
        let targets = prometheus.api().targets();
        for m in &monitoring.services {
            let id = CheckId::of_service(Area::Monitoring, m.service.as_str(), NO_SCRAPE_ERROR);
            if selected(&id) {
                rec.check(&id, Some(&m.service), || {
                    judge_scrape(&m.service, targets.as_ref().map_err(String::clone)?)
                });
            }
        }
        if !exec::is_cancelled() {
            record_counters(&prometheus, monitoring, &up, selected, rec);
        }
    }
}

/// Records `counter_increases` for every selected service: judged together for those Prometheus
/// scrapes, failed with the reason for those it never could.
fn record_counters(
    prometheus: &RunningPrometheus<'_>,
    monitoring: &crate::spec::Monitoring,
    up: &BTreeMap<String, (Verdict, String)>,
    selected: Selected<'_>,
    rec: &mut Recorder,
) {
    let id = |m: &Monitored| CheckId::of_service(Area::Monitoring, m.service.as_str(), COUNTER_INCREASES);
    let chosen: Vec<&Monitored> = monitoring.services.iter().filter(|m| selected(&id(m))).collect();
    let scraped: Vec<&Monitored> = chosen
        .iter()
        .copied()
        .filter(|m| matches!(up.get(&m.service), Some((Verdict::Pass, _))))
        .collect();
    let t = Instant::now();
    let mut judged = counters_increase(prometheus, &scraped);
    for m in chosen {
        let verdict = judged.remove(&m.service).unwrap_or_else(|| {
            let why = up.get(&m.service).map(|(_, why)| why.as_str()).unwrap_or("not checked");
            Err(format!(
                "Prometheus never scraped it successfully, so no counter of it can be seen to move: {why}"
            ))
        });
        let (verdict, message) = match verdict {
            Ok(msg) => (Verdict::Pass, msg),
            Err(msg) => (Verdict::Fail, msg),
        };
        rec.push(&id(m), Some(&m.service), verdict, message, t.elapsed().as_secs_f64());
    }
}

/// Per service: (verdict, message) of `up == 1`, waited for up to the spec's deadline.
fn wait_up(api: &Prometheus, monitoring: &crate::spec::Monitoring) -> BTreeMap<String, (Verdict, String)> {
    let since = Instant::now();
    let within = Duration::from_secs(monitoring.up_within_secs);
    // When each service was first seen up.
    let mut first_up: BTreeMap<String, f64> = BTreeMap::new();
    loop {
        // An answer that fails (Prometheus busy starting) counts as nothing up yet.
        let values = api.query("up").map(|s| up_values(&s)).unwrap_or_default();
        for (job, v) in &values {
            if *v == 1.0 {
                first_up
                    .entry(job.clone())
                    .or_insert_with(|| since.elapsed().as_secs_f64());
            }
        }
        let all_up = monitoring.services.iter().all(|m| first_up.contains_key(&m.service));
        if all_up || since.elapsed() >= within || exec::is_cancelled() {
            let targets = api.targets().unwrap_or_default();
            return monitoring
                .services
                .iter()
                .map(|m| {
                    let verdict = match first_up.get(&m.service) {
                        Some(at) => Ok(format!("{}: up == 1 after {at:.1}s", m.service)),
                        None => judge_up(&m.service, values.get(&m.service).copied(), &targets, within),
                    };
                    let verdict = match verdict {
                        Ok(msg) => (Verdict::Pass, msg),
                        Err(msg) => (Verdict::Fail, msg),
                    };
                    (m.service.clone(), verdict)
                })
                .collect();
        }
        let _ = exec::sleep(POLL);
    }
}

/// `up` per job, from an answer to the query `up`.
pub fn up_values(samples: &[Sample]) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter_map(|s| Some((s.metric.get("job")?.clone(), s.number()?)))
        .collect()
}

/// Why `service`'s target did not reach `up == 1` within the deadline, in Prometheus's words.
pub fn judge_up(service: &str, up: Option<f64>, targets: &[Target], within: Duration) -> Result<String, String> {
    if up == Some(1.0) {
        return Ok(format!("{service}: up == 1"));
    }
    let why = targets
        .iter()
        .find(|t| t.job() == service)
        .map(|t| format!("target {} is {}: {}", t.scrape_url, t.health, or_none(&t.last_error)))
        .unwrap_or_else(|| "Prometheus has no target for it".into());
    let seen = up
        .map(|v| format!("up == {v}"))
        .unwrap_or_else(|| "no `up` sample".into());
    Err(format!("{service}: {seen} after {}s; {why}", within.as_secs()))
}

/// Whether Prometheus's last scrape of `service` went without error.
pub fn judge_scrape(service: &str, targets: &[Target]) -> Result<String, String> {
    let t = targets
        .iter()
        .find(|t| t.job() == service)
        .ok_or_else(|| format!("{service}: Prometheus has no scrape target for it"))?;
    if t.last_error.is_empty() && t.health == "up" {
        Ok(format!("{service}: {} scraped without error", t.scrape_url))
    } else {
        Err(format!(
            "{service}: Prometheus reports a scrape error for {} (health {}): {}",
            t.scrape_url,
            t.health,
            or_none(&t.last_error)
        ))
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "no error recorded"
    } else {
        s
    }
}

/// The spec's counter summed over `service`'s target (0 while it has no series yet).
fn counter_value(api: &Prometheus, m: &Monitored) -> Result<f64, String> {
    let samples = api.query(&format!("sum by (job) ({})", m.counter))?;
    Ok(samples
        .iter()
        .find(|s| s.metric.get("job").map(String::as_str) == Some(m.service.as_str()))
        .and_then(Sample::number)
        .unwrap_or(0.0))
}

/// Reads every service's counter, sends all the requests at once, and waits until every counter
/// shows them or the deadline passes; one verdict per service.
fn counters_increase(
    prometheus: &RunningPrometheus<'_>,
    services: &[&Monitored],
) -> BTreeMap<String, Result<String, String>> {
    let api = prometheus.api();
    let mut verdicts = BTreeMap::new();
    let mut before = BTreeMap::new();
    for m in services {
        match counter_value(api, m) {
            Ok(v) => {
                before.insert(m.service.clone(), v);
            }
            Err(e) => {
                verdicts.insert(m.service.clone(), Err(format!("{}: {e}", m.service)));
            }
        }
    }
    let pending: Vec<&Monitored> = services
        .iter()
        .copied()
        .filter(|m| before.contains_key(&m.service))
        .collect();
    if pending.is_empty() {
        return verdicts;
    }
    let url = |m: &Monitored| format!("http://{}:{}{}", m.service, m.port, m.traffic);
    let batches: Vec<(String, u32)> = pending.iter().map(|m| (url(m), m.requests)).collect();
    let complaints = match prometheus.send_requests(&batches) {
        Ok(c) => c,
        Err(e) => {
            for m in &pending {
                verdicts.insert(m.service.clone(), Err(format!("{}: {e}", m.service)));
            }
            return verdicts;
        }
    };
    let since = Instant::now();
    let mut after: BTreeMap<String, Result<f64, String>> = BTreeMap::new();
    loop {
        for m in &pending {
            let done = matches!(after.get(&m.service), Some(Ok(v)) if judge_counter(before[&m.service], *v, m.requests).is_ok());
            if !done {
                after.insert(m.service.clone(), counter_value(api, m));
            }
        }
        let all_done = pending.iter().all(|m| {
            matches!(after.get(&m.service), Some(Ok(v)) if judge_counter(before[&m.service], *v, m.requests).is_ok())
        });
        if all_done || since.elapsed() >= COUNTER_WITHIN || exec::is_cancelled() {
            break;
        }
        let _ = exec::sleep(POLL);
    }
    for (m, complaint) in pending.iter().zip(complaints) {
        let svc = &m.service;
        let verdict = match after.remove(svc).unwrap_or_else(|| Err("not read".into())) {
            Err(e) => Err(format!("{svc}: {e}")),
            Ok(v) => judge_counter(before[svc], v, m.requests)
                .map(|grew| {
                    format!(
                        "{svc}: `{}` {grew} after {} GETs of {}",
                        m.counter, m.requests, m.traffic
                    )
                })
                .map_err(|short| {
                    let client = complaint
                        .map(|c| format!("; the last request ended: {c}"))
                        .unwrap_or_default();
                    format!(
                        "{svc}: `{}` {short} within {}s of {} GETs of {}, as Prometheus saw it{client}",
                        m.counter,
                        COUNTER_WITHIN.as_secs(),
                        m.requests,
                        url(m)
                    )
                }),
        };
        verdicts.insert(svc.clone(), verdict);
    }
    verdicts
}

/// A counter that went from `before` to `after` across `requests` requests: it must have grown
/// by at least that many.
pub fn judge_counter(before: f64, after: f64, requests: u32) -> Result<String, String> {
    let grew = after - before;
    if grew >= f64::from(requests) {
        Ok(format!("grew from {before} to {after}"))
    } else {
        Err(format!("went from {before} to {after} (expected at least +{requests})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::api::{parse_targets, parse_vector};
    use rstest::rstest;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(crate::workspace::root().join("fixtures/prometheus").join(name)).unwrap()
    }

    #[rstest]
    #[case(0.0, 5.0, 5, true)]
    #[case(3.0, 9.0, 5, true)]
    #[case(3.0, 7.0, 5, false)]
    #[case(0.0, 0.0, 1, false)]
    // A reset (the service restarted) is not growth.
    #[case(10.0, 5.0, 5, false)]
    fn counters(#[case] before: f64, #[case] after: f64, #[case] n: u32, #[case] pass: bool) {
        assert_eq!(judge_counter(before, after, n).is_ok(), pass);
    }

    #[test]
    fn a_healthy_scrape_passes_and_a_broken_one_names_prometheus_s_error() {
        let targets = parse_targets(200, &fixture("targets-one-broken.json")).unwrap();
        assert!(judge_scrape("gap-detector", &targets).is_err());
        let err = judge_scrape("gap-detector", &targets).unwrap_err();
        assert!(
            err.contains("gap-detector") && err.contains("expected label value, got"),
            "{err}"
        );
        assert!(judge_scrape("model-service", &targets).is_ok());
        assert!(judge_scrape("nosuch", &targets)
            .unwrap_err()
            .contains("no scrape target"));
    }

    #[test]
    fn up_is_read_per_job_and_a_down_target_says_why() {
        let samples = parse_vector(200, &fixture("query-up-one-broken.json")).unwrap();
        let up = up_values(&samples);
        assert_eq!(up.get("model-service"), Some(&1.0));
        assert_eq!(up.get("gap-detector"), Some(&0.0));
        let targets = parse_targets(200, &fixture("targets-one-broken.json")).unwrap();
        let within = Duration::from_secs(60);
        assert!(judge_up("model-service", Some(1.0), &targets, within).is_ok());
        let err = judge_up("gap-detector", Some(0.0), &targets, within).unwrap_err();
        assert!(err.contains("up == 0") && err.contains("expected label value"), "{err}");
        assert!(judge_up("nosuch", None, &targets, within)
            .unwrap_err()
            .contains("no `up` sample"));
    }

    #[test]
    fn an_api_error_is_reported_with_prometheus_s_words() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:9: parse error: unexpected end of input"}"#;
        let err = parse_vector(400, body).unwrap_err();
        assert!(err.contains("bad_data") && err.contains("parse error"), "{err}");
        assert!(parse_vector(502, "<html>")
            .unwrap_err()
            .contains("not a Prometheus API answer"));
    }
}
