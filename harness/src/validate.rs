//! One validation run under one runtime: bring the stack up from the spec's compose files, run
//! every selected check in an order that keeps them independent (read-only checks first, then the
//! ones that stop, restart or kill services), record what the compose tool did, tear down and
//! verify. Shared by `harness validate` and the `migration` test suite.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::checks::{self, CheckId, Recorder};
use crate::compose::file::ComposeFile;
use crate::outcome::{CheckOutcome, Observation, RuntimeInfo, Verdict};
use crate::runtime::{exec, HealthDriver, Runtime, RuntimeKind};
use crate::spec::Spec;
use crate::stack::{ComposeSet, Event, Stack, StackOptions, UpReport};

/// Every check of a spec for one runtime, in execution order. Pure but for reading compose files.
pub struct Plan {
    pub spec: Spec,
    pub compose: ComposeFile,
    pub dns: Vec<checks::dns::DnsCheck>,
    pub ports: Vec<checks::ports::PortCheck>,
    pub endpoints: Vec<checks::health::EndpointCheck>,
    pub engine_health: Vec<CheckId>,
    pub transitive: Vec<checks::health::TransitivePlan>,
    pub persistence: Vec<CheckId>,
    pub posture: Vec<CheckId>,
}

pub fn up_id() -> CheckId {
    CheckId::new("lifecycle", "up_healthy")
}

pub fn down_id() -> CheckId {
    CheckId::new("lifecycle", "down_leaves_nothing")
}

impl Plan {
    pub fn new(spec: Spec) -> crate::Result<Self> {
        let compose = ComposeSet::load(&spec.compose)?.merged();
        let services: Vec<String> = compose.services.keys().cloned().collect();
        let (endpoints, engine_health, transitive) = checks::health::plan(&spec, &services);
        Ok(Self {
            dns: checks::dns::plan(&spec, &compose),
            ports: checks::ports::plan(&spec, &compose),
            persistence: checks::persistence::plan(&spec.persistence),
            posture: services
                .iter()
                .flat_map(|s| {
                    crate::posture::Rule::ALL
                        .iter()
                        .map(move |c| CheckId::new("posture", format!("{s}::{}", c.name())))
                })
                .collect(),
            endpoints,
            engine_health,
            transitive,
            compose,
            spec,
        })
    }

    /// The one redactor of a run of this plan: every secret of its compose files (overlays
    /// included), their env files and build args, and the spec's database password. Build it once
    /// per run and give it to every output (see [`crate::report::secrets_source`]).
    pub fn redactor(&self) -> crate::Result<crate::report::Redactor> {
        crate::report::secrets_source::for_run(&self.spec.compose, Some(&self.spec))
    }

    /// All check ids in execution order.
    pub fn ids(&self) -> Vec<CheckId> {
        let mut ids = vec![up_id()];
        ids.extend(self.dns.iter().map(|c| c.id.clone()));
        ids.extend(self.ports.iter().map(|c| c.id().clone()));
        ids.extend(self.endpoints.iter().map(|c| c.id.clone()));
        ids.extend(self.engine_health.iter().cloned());
        ids.extend(self.posture.iter().cloned());
        for t in &self.transitive {
            ids.push(t.fails.clone());
            ids.push(t.recovers.clone());
        }
        ids.extend(self.persistence.iter().cloned());
        ids.push(down_id());
        ids
    }
}

/// What one runtime's run produced.
#[derive(Debug, Clone, Default)]
pub struct RuntimeRun {
    pub info: RuntimeInfo,
    pub outcomes: Vec<CheckOutcome>,
    pub observations: Vec<Observation>,
}

/// Runs the selected checks of `plan` under `kind`. Never panics on stack trouble: a stack that
/// does not come up fails `lifecycle::up_healthy` and every other selected check says why it did
/// not run.
pub fn run(
    kind: RuntimeKind,
    plan: &Plan,
    opts: &StackOptions,
    selected: &dyn Fn(&CheckId) -> bool,
    on_event: &mut dyn FnMut(&Event),
) -> RuntimeRun {
    let mut rec = Recorder::new(kind);
    let mut run = RuntimeRun {
        info: RuntimeInfo {
            runtime: Some(kind),
            rootless: kind == RuntimeKind::PodmanRootless,
            ..Default::default()
        },
        ..Default::default()
    };
    if let Ok(rt) = Runtime::resolve(kind) {
        run.info.engine_version = rt.version().unwrap_or_default();
        let (driver, cgroups) = rt.storage_and_cgroups();
        run.info.storage_driver = driver;
        run.info.extra.insert("cgroup_version".into(), cgroups);
        run.info.extra.insert(
            "healthchecks_run_by".into(),
            match rt.health_driver() {
                HealthDriver::Engine => "engine".into(),
                HealthDriver::Harness => "harness (no systemd)".into(),
            },
        );
    }
    let mut opts = opts.clone();
    opts.compose_files = plan.spec.compose.clone();
    let started = Instant::now();
    let (stack, up) = match Stack::up(&opts, on_event) {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("stack did not come up under {kind}: {e}");
            // Stopped by a signal, the checks did not fail: they did not get to run.
            let verdict = if exec::is_cancelled() {
                Verdict::Interrupted
            } else {
                Verdict::Fail
            };
            rec.push(&up_id(), None, verdict, msg.clone(), started.elapsed().as_secs_f64());
            let first = msg.lines().next().unwrap_or_default().to_string();
            for id in plan.ids().into_iter().filter(|i| *i != up_id() && selected(i)) {
                rec.push(&id, None, verdict, format!("not run: {first}"), 0.0);
            }
            run.outcomes = rec.outcomes;
            return run;
        }
    };
    run.info.compose_tool = up.compose.tool.to_string();
    run.info.compose_version = up.compose.version.clone();
    rec.push(
        &up_id(),
        None,
        Verdict::Pass,
        format!(
            "{} services healthy {:.1}s after start",
            up.services.len(),
            up.total_seconds
        ),
        up.total_seconds,
    );
    run.observations.extend(observe_up(kind, &up, &stack));

    // Each phase runs only while the run is not cancelled; a signal ends the checks within a
    // second and goes on to teardown.
    let mut phase = Phase::default();
    if phase.next(&mut rec) {
        on_event(&Event::Phase("checks: dns".into()));
        checks::dns::run(&stack, &plan.dns, selected, &mut rec);
    }
    if phase.next(&mut rec) {
        on_event(&Event::Phase("checks: ports".into()));
        checks::ports::run(&stack, &plan.ports, selected, &mut rec);
    }
    if phase.next(&mut rec) {
        on_event(&Event::Phase("checks: health".into()));
        checks::health::run_endpoints(&stack, &plan.spec, &plan.endpoints, selected, &mut rec);
    }
    if phase.next(&mut rec) {
        checks::health::run_engine(&stack, &plan.engine_health, selected, &mut rec);
    }
    if phase.next(&mut rec) && plan.posture.iter().any(selected) {
        on_event(&Event::Phase("checks: posture".into()));
        let t = Instant::now();
        match crate::posture::evaluate(&stack, &plan.spec.posture_config()) {
            Ok(outcomes) => rec.outcomes.extend(
                outcomes
                    .into_iter()
                    .filter(|o| selected(&CheckId::new("posture", o.name.clone()))),
            ),
            Err(e) => {
                for id in plan.posture.iter().filter(|i| selected(i)) {
                    rec.push(
                        id,
                        None,
                        Verdict::Fail,
                        format!("posture evaluation failed: {e}"),
                        t.elapsed().as_secs_f64(),
                    );
                }
            }
        }
    }
    if phase.next(&mut rec) {
        on_event(&Event::Phase("checks: transitive health".into()));
        checks::health::run_transitive(&stack, &plan.spec, &plan.transitive, selected, &mut rec);
    }
    if phase.next(&mut rec) {
        on_event(&Event::Phase("checks: persistence".into()));
        checks::persistence::run(&stack, &plan.spec.persistence, selected, &mut rec);
    }
    if phase.next(&mut rec) {
        attach_logs(&stack, &mut rec.outcomes);
    }
    on_event(&Event::Phase(
        if exec::is_cancelled() {
            "interrupted: teardown"
        } else {
            "teardown"
        }
        .into(),
    ));
    let t = Instant::now();
    match stack.down() {
        Ok(td) => {
            let left = if td.removed_after_compose.is_empty() {
                "nothing".to_string()
            } else {
                td.removed_after_compose.join(", ")
            };
            run.observations.push(obs(kind, "compose_down_left_behind", &left));
            rec.push(
                &down_id(),
                None,
                Verdict::Pass,
                format!(
                    "nothing of the run is left (compose down exit {:?}; removed after it: {left})",
                    td.compose_down_status
                ),
                t.elapsed().as_secs_f64(),
            );
        }
        Err(e) => rec.push(
            &down_id(),
            None,
            Verdict::Fail,
            e.to_string(),
            t.elapsed().as_secs_f64(),
        ),
    }
    let produced: BTreeSet<(String, String)> = rec.outcomes.iter().map(|o| (o.area.clone(), o.name.clone())).collect();
    for id in plan
        .ids()
        .into_iter()
        .filter(|i| selected(i) && !produced.contains(&(i.area.to_string(), i.name.clone())))
    {
        if exec::is_cancelled() {
            rec.push(&id, None, Verdict::Interrupted, INTERRUPTED_BEFORE.into(), 0.0);
        } else {
            rec.push(
                &id,
                None,
                Verdict::Fail,
                "not run: the harness produced no result for this check".into(),
                0.0,
            );
        }
    }
    run.outcomes = rec.outcomes;
    run
}

/// Message of a check the run never reached because it was stopped.
pub const INTERRUPTED_BEFORE: &str = "not run: the run was interrupted (SIGINT/SIGTERM) before this check";

/// Every selected check of `plan` under `kind`, marked interrupted: for a runtime the run did not
/// reach because it was stopped.
pub fn interrupted_outcomes(kind: RuntimeKind, plan: &Plan, selected: &dyn Fn(&CheckId) -> bool) -> Vec<CheckOutcome> {
    let mut rec = Recorder::new(kind);
    for id in plan.ids().into_iter().filter(|i| *i == up_id() || selected(i)) {
        rec.push(&id, None, Verdict::Interrupted, INTERRUPTED_BEFORE.into(), 0.0);
    }
    rec.outcomes
}

/// Runs the check phases while the run is not cancelled. A phase during which a signal arrived
/// may have recorded failures caused by the interruption itself (a probe cut short, a killed
/// tool): those become [`Verdict::Interrupted`], keeping their message.
#[derive(Default)]
struct Phase {
    first_outcome: usize,
}

impl Phase {
    /// Closes the previous phase and says whether to start the next one.
    fn next(&mut self, rec: &mut Recorder) -> bool {
        let cancelled = exec::is_cancelled();
        if cancelled {
            mark_interrupted(&mut rec.outcomes[self.first_outcome..]);
        }
        self.first_outcome = rec.outcomes.len();
        !cancelled
    }
}

/// Failures recorded once the run was cancelled become interrupted.
fn mark_interrupted(outcomes: &mut [CheckOutcome]) {
    for o in outcomes.iter_mut().filter(|o| o.verdict == Verdict::Fail) {
        o.verdict = Verdict::Interrupted;
        o.message = format!("interrupted: {}", o.message);
    }
}

fn obs(runtime: RuntimeKind, key: &str, value: &str) -> Observation {
    Observation {
        runtime,
        key: key.into(),
        value: value.into(),
    }
}

/// What the compose tool did on `up`, read from the engine rather than from the tool.
fn observe_up(kind: RuntimeKind, up: &UpReport, stack: &Stack) -> Vec<Observation> {
    let mut out = vec![obs(
        kind,
        "compose_tool",
        &format!("{} {}", up.compose.tool, up.compose.version),
    )];
    let healthy: Vec<&String> = up
        .at_compose_return
        .iter()
        .filter(|(_, s)| s.ends_with("/healthy"))
        .map(|(k, _)| k)
        .collect();
    out.push(obs(
        kind,
        "healthy_when_compose_up_returned",
        &format!(
            "{}/{}{}",
            healthy.len(),
            up.at_compose_return.len(),
            if healthy.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    healthy.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        ),
    ));
    let ignored = up
        .compose_up_stderr
        .lines()
        .any(|l| l.contains("Ignored") && l.contains("condition"));
    out.push(obs(
        kind,
        "depends_on_service_healthy",
        if ignored {
            "ignored (tool warned: condition check not supported)"
        } else if healthy.is_empty() {
            "not observed"
        } else {
            "honoured (dependencies healthy before dependants started)"
        },
    ));
    out.push(obs(
        kind,
        "compose_up_seconds",
        &format!("{:.1}", up.compose_up_seconds),
    ));
    out.push(obs(kind, "seconds_to_all_healthy", &format!("{:.1}", up.total_seconds)));
    if let Ok(containers) = stack.containers() {
        let project = &stack.record().project;
        if let Some((svc, c)) = containers.iter().next() {
            out.push(obs(
                kind,
                "container_name_pattern",
                &c.short_name()
                    .replace(project.as_str(), "<project>")
                    .replace(svc.as_str(), "<service>"),
            ));
            let nets: Vec<String> = c
                .networks()
                .keys()
                .map(|n| n.replace(project.as_str(), "<project>"))
                .collect();
            out.push(obs(kind, "network_names", &nets.join(", ")));
        }
    }
    out
}

/// Adds the recent logs of each failing check's service (reporters sanitise and redact them).
fn attach_logs(stack: &Stack, outcomes: &mut [CheckOutcome]) {
    let Ok(containers) = stack.containers() else { return };
    for o in outcomes.iter_mut().filter(|o| o.verdict == Verdict::Fail) {
        if let Some(c) = o.service.as_ref().and_then(|s| containers.get(s)) {
            o.logs = Some(stack.runtime().logs_tail(&c.id, 30));
        }
    }
}

/// Whether a runtime takes part in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Use,
    /// Not usable and not required: shown as skipped with the reason.
    Skip(String),
    /// Required but not usable: a failure with the reason.
    Broken(String),
}

/// Runtimes for a run: `wanted` (else `HYDRA_RUNTIMES`, else all) diagnosed by doctor;
/// `required` (else `HYDRA_REQUIRE`) turns a skip into a failure.
pub fn availability(
    wanted: &[RuntimeKind],
    required: &[RuntimeKind],
) -> crate::Result<Vec<(RuntimeKind, Availability)>> {
    let env = |var: &str| -> crate::Result<Vec<RuntimeKind>> {
        match std::env::var(var) {
            Ok(v) => crate::runtime::parse_list(&v).map_err(|e| crate::HarnessError::usage(format!("{var}: {e}"))),
            Err(_) => Ok(Vec::new()),
        }
    };
    let wanted = if wanted.is_empty() {
        env("HYDRA_RUNTIMES")?
    } else {
        wanted.to_vec()
    };
    let required = if required.is_empty() {
        env("HYDRA_REQUIRE")?
    } else {
        required.to_vec()
    };
    let explicit = !wanted.is_empty();
    Ok(RuntimeKind::ALL
        .into_iter()
        .map(|kind| {
            let in_scope = !explicit || wanted.contains(&kind);
            if !in_scope {
                return if required.contains(&kind) {
                    (
                        kind,
                        Availability::Broken("required but not selected (HYDRA_RUNTIMES / --runtime)".into()),
                    )
                } else {
                    (
                        kind,
                        Availability::Skip("not selected (HYDRA_RUNTIMES / --runtime)".into()),
                    )
                };
            }
            let report = crate::doctor::diagnose(kind);
            match report.reason() {
                None => (kind, Availability::Use),
                Some(r) if required.contains(&kind) || explicit => (kind, Availability::Broken(r)),
                Some(r) => (kind, Availability::Skip(r)),
            }
        })
        .collect())
}

/// Checks that this host cannot enforce under `kind`, known before running (resource limits for
/// a rootless engine on cgroup v1), with the reason. The run still reports them as
/// not-enforceable; a test runner shows them as ignored rather than passed or failed.
pub fn not_enforceable_here(kind: RuntimeKind, plan: &Plan) -> Vec<(CheckId, String)> {
    if kind != RuntimeKind::PodmanRootless {
        return Vec::new();
    }
    let Ok(rt) = Runtime::resolve(kind) else {
        return Vec::new();
    };
    let (_, cgroups) = rt.storage_and_cgroups();
    if cgroups != "1" && cgroups != "v1" {
        return Vec::new();
    }
    let limits: Vec<&str> = crate::posture::Rule::ALL
        .iter()
        .filter(|c| c.is_limit())
        .map(|c| c.name())
        .collect();
    plan.posture
        .iter()
        .filter(|id| id.name.rsplit("::").next().is_some_and(|c| limits.contains(&c)))
        .map(|id| {
            (
                id.clone(),
                "not enforceable here: a rootless engine on cgroup v1 ignores resource limits".to_string(),
            )
        })
        .collect()
}

/// Trial selection like libtest's: substring filters (or exact names), minus `--skip` substrings.
pub fn selection(filters: &[String], skips: &[String], exact: bool) -> impl Fn(&str) -> bool + Clone {
    let filters = filters.to_vec();
    let skips = skips.to_vec();
    move |name: &str| {
        let keep = filters.is_empty()
            || filters
                .iter()
                .any(|f| if exact { name == f } else { name.contains(f.as_str()) });
        keep && !skips
            .iter()
            .any(|s| if exact { name == s } else { name.contains(s.as_str()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_plan_has_every_area_and_unique_names() {
        let spec = Spec::load(&crate::spec::bundled_spec_file(), &[]).unwrap();
        let plan = Plan::new(spec).unwrap();
        let ids = plan.ids();
        for area in ["lifecycle", "dns", "ports", "health", "persistence", "posture"] {
            assert!(ids.iter().any(|i| i.area == area), "no {area} checks");
        }
        let names: BTreeSet<String> = ids.iter().map(|i| i.trial_name(RuntimeKind::Docker)).collect();
        assert_eq!(names.len(), ids.len(), "duplicate check names");
        assert!(names.contains("docker::dns::nginx_cannot_resolve_db"));
        assert_eq!(ids.first(), Some(&up_id()));
        assert_eq!(ids.last(), Some(&down_id()));
    }

    #[test]
    fn failures_of_the_interrupted_phase_become_interrupted_and_earlier_ones_stay() {
        let mut rec = Recorder::new(RuntimeKind::Docker);
        rec.push(
            &CheckId::new("dns", "a"),
            None,
            Verdict::Fail,
            "real failure".into(),
            0.1,
        );
        let mut phase = Phase::default();
        assert!(phase.next(&mut rec));
        rec.push(&CheckId::new("health", "b"), None, Verdict::Pass, "ok".into(), 0.1);
        rec.push(
            &CheckId::new("health", "c"),
            None,
            Verdict::Fail,
            "GET: interrupted".into(),
            0.1,
        );
        // A signal arrived during the phase (simulated without touching the process's signals).
        mark_interrupted(&mut rec.outcomes[phase.first_outcome..]);
        let verdicts: Vec<(Verdict, &str)> = rec.outcomes.iter().map(|o| (o.verdict, o.message.as_str())).collect();
        assert_eq!(
            verdicts,
            [
                (Verdict::Fail, "real failure"),
                (Verdict::Pass, "ok"),
                (Verdict::Interrupted, "interrupted: GET: interrupted")
            ]
        );
    }

    #[test]
    fn a_runtime_not_reached_has_every_selected_check_interrupted() {
        let spec = Spec::load(&crate::spec::bundled_spec_file(), &[]).unwrap();
        let plan = Plan::new(spec).unwrap();
        let outcomes = interrupted_outcomes(RuntimeKind::Podman, &plan, &|id| id.area == "persistence");
        assert!(outcomes.iter().all(|o| o.verdict == Verdict::Interrupted));
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names[0], "up_healthy");
        assert_eq!(outcomes.len(), 1 + plan.persistence.len());
    }

    #[test]
    fn selection_follows_libtest() {
        let sel = selection(&["podman::dns".into()], &[], false);
        assert!(sel("podman::dns::nginx_cannot_resolve_db"));
        assert!(!sel("podman_rootless::dns::x"));
        assert!(!sel("docker::dns::x"));
        let skip = selection(&[], &["persistence".into()], false);
        assert!(skip("docker::dns::x") && !skip("docker::persistence::x"));
        let exact = selection(&["docker::dns::a".into()], &[], true);
        assert!(exact("docker::dns::a") && !exact("docker::dns::ab"));
    }
}
