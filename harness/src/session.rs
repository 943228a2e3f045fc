//! One validation run under one runtime: bring the stack up from the spec's compose files, run
//! every selected check in an order that keeps them independent (read-only checks first, then the
//! ones that stop, restart or kill services; see [`checks::AREAS`]), record what the compose tool
//! did, tear down and verify. Shared by `harness validate` and the `migration` test suite.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::checks::{self, Announce, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::outcome::{CheckOutcome, Observation, RuntimeInfo, Verdict};
use crate::runtime::{exec, HealthDriver, Runtime, RuntimeKind};
use crate::spec::Spec;
use crate::stack::{ComposeSet, Event, Stack, StackOptions, UpReport};

/// Every check of a spec for one runtime, in execution order. Pure but for reading compose files.
pub struct Plan {
    /// The spec the checks come from.
    pub spec: Spec,
    /// The spec's compose files merged, as compose resolves them.
    pub compose: ComposeFile,
    /// Each area's planned checks, in [`checks::AREAS`] order.
    pub areas: Vec<Box<dyn CheckArea>>,
}

impl Plan {
    /// Plans every area's checks for `spec`, reading its compose files.
    pub fn new(spec: Spec) -> crate::Result<Self> {
        let compose = ComposeSet::load(&spec.compose)?.merged();
        let areas = checks::AREAS.iter().map(|plan| (plan.0)(&spec, &compose)).collect();
        Ok(Self { spec, compose, areas })
    }

    /// The one redactor of a run of this plan: every secret of its compose files (overlays
    /// included), their env files and build args, and the spec's database password. Build it once
    /// per run and give it to every output (see [`crate::report::secrets_source`]).
    pub fn redactor(&self) -> crate::Result<crate::report::Redactor> {
        crate::report::secrets_source::for_run(&self.spec.compose, Some(&self.spec))
    }

    /// All check ids in execution order: `lifecycle::up_healthy`, every area's checks,
    /// `lifecycle::down_leaves_nothing`.
    pub fn ids(&self) -> Vec<CheckId> {
        let mut ids = vec![CheckId::up_healthy()];
        ids.extend(self.areas.iter().flat_map(|a| a.ids()));
        ids.push(CheckId::down_leaves_nothing());
        ids
    }
}

/// What one runtime's run produced.
#[derive(Debug, Clone, Default)]
pub struct RuntimeRun {
    /// Engine, compose tool and versions, for the reports.
    pub info: RuntimeInfo,
    /// One outcome per selected check.
    pub outcomes: Vec<CheckOutcome>,
    /// What differed in how the tools behaved, for the parity report.
    pub observations: Vec<Observation>,
    /// A kube-play target's played YAML (claims, then workloads), for the report directory.
    pub played_yaml: Option<String>,
}

/// Runs the selected checks of `plan` under `kind`. Never panics on stack trouble: a stack that
/// does not come up fails `lifecycle::up_healthy` and every other selected check says why it did
/// not run.
pub fn run(
    kind: RuntimeKind,
    plan: &Plan,
    opts: &StackOptions,
    selected: Selected<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> RuntimeRun {
    let mut rec = Recorder::new(kind);
    let mut run = RuntimeRun {
        info: runtime_info(kind),
        ..Default::default()
    };
    let mut opts = opts.clone();
    opts.compose_files = plan.spec.compose.clone();
    let started = Instant::now();
    let (stack, up) = match Stack::up(&opts, on_event) {
        Ok(x) => x,
        Err(e) => {
            not_up(
                kind,
                plan,
                selected,
                &mut rec,
                &e.to_string(),
                started.elapsed().as_secs_f64(),
            );
            run.outcomes = rec.outcomes;
            return run;
        }
    };
    run.info.compose_tool = up.compose.tool.to_string();
    run.info.compose_version = up.compose.version.clone();
    rec.push(
        &CheckId::up_healthy(),
        None,
        Verdict::Pass,
        format!(
            "{} services healthy {:.1}s after start{}",
            up.services.len(),
            up.total_seconds,
            if up.compose_gave_up.is_empty() {
                String::new()
            } else {
                format!(
                    " (the compose tool aborted `up` {} time(s) on a briefly unhealthy service and was run again: {})",
                    up.compose_gave_up.len(),
                    up.compose_gave_up.join("; ")
                )
            }
        ),
        up.total_seconds,
    );
    run.observations.extend(observe_up(kind, &up, &stack));
    run.played_yaml = stack.record().kube.as_ref().map(|k| {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        k.claims.as_deref().map(read).unwrap_or_default() + &read(&k.workloads)
    });
    run_areas(&stack, plan, selected, &mut rec, on_event);
    run.observations.extend(teardown(kind, stack, &mut rec, on_event));
    account_for_every_check(plan, selected, &mut rec);
    run.outcomes = rec.outcomes;
    run
}

/// What `kind` is, for report properties (left mostly empty when it cannot be resolved).
fn runtime_info(kind: RuntimeKind) -> RuntimeInfo {
    let mut info = RuntimeInfo {
        runtime: Some(kind),
        engine: kind.engine().name().into(),
        rootless: kind.is_rootless(),
        ..Default::default()
    };
    if let Ok(rt) = Runtime::resolve(kind) {
        info.engine_version = rt.version().unwrap_or_default();
        let (driver, cgroups) = rt.storage_and_cgroups();
        info.storage_driver = driver;
        info.extra.insert("cgroup_version".into(), cgroups);
        info.extra.insert(
            "healthchecks_run_by".into(),
            match rt.health_driver() {
                HealthDriver::Engine => "engine".into(),
                HealthDriver::Harness => "harness (no systemd)".into(),
            },
        );
    }
    info
}

/// The stack did not come up: `lifecycle::up_healthy` fails (or is interrupted, when a signal
/// stopped it) and every other selected check says why it did not run.
fn not_up(kind: RuntimeKind, plan: &Plan, selected: Selected<'_>, rec: &mut Recorder, error: &str, seconds: f64) {
    let msg = format!("stack did not come up under {kind}: {error}");
    // Stopped by a signal, the checks did not fail: they did not get to run.
    let verdict = if exec::is_cancelled() {
        Verdict::Interrupted
    } else {
        Verdict::Fail
    };
    let up = CheckId::up_healthy();
    rec.push(&up, None, verdict, msg, seconds);
    // The cause once, in up_healthy: the other trials point to it instead of repeating the
    // compose command line and the engine's error ~150 times in the terminal and in JUnit.
    let pointer = not_run_pointer(kind);
    for id in plan.ids().into_iter().filter(|i| *i != up && selected(i)) {
        rec.push(&id, None, verdict, pointer.clone(), 0.0);
    }
}

/// What a check says when its stack did not come up. Pure.
fn not_run_pointer(kind: RuntimeKind) -> String {
    format!(
        "not run: the stack did not come up under {kind} (the cause: {})",
        CheckId::up_healthy().trial_name(kind)
    )
}

/// Runs every area in order while the run is not cancelled (a signal ends the checks within a
/// second and goes on to teardown), then attaches logs to failures.
fn run_areas(stack: &Stack, plan: &Plan, selected: Selected<'_>, rec: &mut Recorder, on_event: &mut dyn FnMut(&Event)) {
    let mut phase = Phase::default();
    for area in &plan.areas {
        if !phase.next(rec) {
            return;
        }
        let label = match area.announce() {
            Announce::Always(label) => Some(label),
            Announce::WhenSelected(label) if area.ids().iter().any(selected) => Some(label),
            Announce::WhenSelected(_) | Announce::Continue => None,
        };
        if let Some(label) = label {
            on_event(&Event::Phase(format!("checks: {label}")));
        }
        area.run(stack, &plan.spec, selected, rec);
    }
    if let Some(played) = &stack.record().kube {
        crate::kube::divergent::apply(&played.divergences, &mut rec.outcomes);
    }
    if phase.next(rec) {
        attach_logs(stack, &mut rec.outcomes);
    }
}

/// Runs every check of `plan` against a stack that is already up (the migration drill's source,
/// target and rollback): outcomes as `validate` would record them, without up and down.
pub fn run_checks(stack: &Stack, plan: &Plan, on_event: &mut dyn FnMut(&Event)) -> Vec<CheckOutcome> {
    run_selected_checks(stack, plan, &|_: &CheckId| true, on_event)
}

/// [`run_checks`], only the checks `selected` keeps (one area, one check): what a user's test
/// runs on demand against its stack.
pub fn run_selected_checks(
    stack: &Stack,
    plan: &Plan,
    selected: Selected<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Vec<CheckOutcome> {
    let mut rec = Recorder::new(stack.record().runtime);
    run_areas(stack, plan, selected, &mut rec, on_event);
    if exec::is_cancelled() {
        mark_interrupted(&mut rec.outcomes);
    }
    rec.outcomes
}

/// Tears the stack down and records `lifecycle::down_leaves_nothing`; returns what compose left
/// behind, as an observation.
fn teardown(kind: RuntimeKind, stack: Stack, rec: &mut Recorder, on_event: &mut dyn FnMut(&Event)) -> Vec<Observation> {
    on_event(&Event::Phase(
        if exec::is_cancelled() {
            "interrupted: teardown"
        } else {
            "teardown"
        }
        .into(),
    ));
    let t = Instant::now();
    let down = CheckId::down_leaves_nothing();
    match stack.down() {
        Ok(td) => {
            let left = if td.removed_after_compose.is_empty() {
                "nothing".to_string()
            } else {
                td.removed_after_compose.join(", ")
            };
            rec.push(
                &down,
                None,
                Verdict::Pass,
                format!(
                    "nothing of the run is left (compose down exit {:?}; removed after it: {left})",
                    td.compose_down_status
                ),
                t.elapsed().as_secs_f64(),
            );
            vec![
                obs(kind, "compose_down_left_behind", &left),
                obs(kind, "compose_down_exit", &format!("{:?}", td.compose_down_status)),
            ]
        }
        Err(e) => {
            rec.push(&down, None, Verdict::Fail, e.to_string(), t.elapsed().as_secs_f64());
            Vec::new()
        }
    }
}

/// Every selected check without an outcome gets one: interrupted when the run was stopped,
/// otherwise a failure (the harness owes a result for every check it planned).
fn account_for_every_check(plan: &Plan, selected: Selected<'_>, rec: &mut Recorder) {
    let produced: BTreeSet<CheckId> = rec.outcomes.iter().map(|o| o.id.clone()).collect();
    for id in plan.ids().into_iter().filter(|i| selected(i) && !produced.contains(i)) {
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
}

/// Message of a check the run never reached because it was stopped.
pub const INTERRUPTED_BEFORE: &str = "not run: the run was interrupted (SIGINT/SIGTERM) before this check";

/// Every selected check of `plan` under `kind`, marked interrupted: for a runtime the run did not
/// reach because it was stopped.
pub fn interrupted_outcomes(kind: RuntimeKind, plan: &Plan, selected: Selected<'_>) -> Vec<CheckOutcome> {
    let mut rec = Recorder::new(kind);
    for id in plan
        .ids()
        .into_iter()
        .filter(|i| *i == CheckId::up_healthy() || selected(i))
    {
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
    // A played target: each way the played YAML differs from the compose files, with its reason.
    for d in &up.kube_divergences {
        out.push(obs(
            kind,
            &format!("kube_{}", d.kind),
            &format!("{}: {}", d.what, d.reason),
        ));
    }
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
    out.push(obs(
        kind,
        "compose_up_aborted_on_unhealthy",
        &if up.compose_gave_up.is_empty() {
            "no".to_string()
        } else {
            format!(
                "{} time(s), run again: {}",
                up.compose_gave_up.len(),
                up.compose_gave_up.join("; ")
            )
        },
    ));
    out.push(obs(
        kind,
        "harness_saw_all_ready_seconds",
        &format!("{:.1}", up.harness_ready_seconds),
    ));
    out.push(obs(
        kind,
        "seccomp_remedy",
        &match &up.seccomp_remedy {
            None => "none needed".to_string(),
            Some(r) => format!(
                "profile set engine-wide (seccomp_profile in the run's containers.conf) and left out of {} services' security_opt, because the engine refused it as Compose v2 sends it: {}",
                r.services.len(),
                r.refusal
            ),
        },
    ));
    // Whether the tool's exit code can be trusted when it cannot do what it was asked.
    let unknown = crate::compose::Action::Stop {
        service: "hydra-no-such-service".into(),
    };
    out.push(obs(
        kind,
        "exit_code_stop_unknown_service",
        &match stack.compose_run(&unknown) {
            Ok(o) => format!(
                "{:?}: {}",
                o.status,
                o.stderr
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("(nothing on stderr)")
            ),
            Err(e) => format!("did not run: {e}"),
        },
    ));
    if let Ok(containers) = stack.containers() {
        out.extend(observe_containers(kind, stack, &containers));
        out.extend(observe_v2_views(kind, stack, &containers));
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

/// Compose v2's own views, compared with the engine's and the harness's: `ps --format json`
/// against the engine's containers, `config` (the resolved model) against the services the
/// harness read from the files.
fn observe_v2_views(
    kind: RuntimeKind,
    stack: &Stack,
    containers: &std::collections::BTreeMap<String, crate::runtime::inspect::ContainerInspect>,
) -> Vec<Observation> {
    use crate::compose::{ps, v2_on_podman::ResolvedModel, Action, ComposeTool};
    if stack.tool() != ComposeTool::DockerComposeV2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let engine: BTreeSet<String> = containers
        .iter()
        .filter(|(_, c)| c.state.running)
        .map(|(s, _)| s.clone())
        .collect();
    let claimed = stack
        .compose_run(&Action::Ps)
        .map_err(|e| e.to_string())
        .and_then(|o| ps::parse_v2(&o.stdout).map_err(|e| e.to_string()));
    out.push(obs(
        kind,
        "compose_ps_json_vs_engine",
        &match claimed {
            Err(e) => format!("ps failed: {e}"),
            Ok(entries) => {
                let running: BTreeSet<String> = entries
                    .iter()
                    .filter(|e| e.state == "running")
                    .map(|e| e.service.clone())
                    .collect();
                if running == engine {
                    format!("agree ({} running)", running.len())
                } else {
                    format!("differ: compose says running {:?}, engine {:?}", running, engine)
                }
            }
        },
    ));
    let model = stack
        .compose_run(&Action::Config)
        .map_err(|e| e.to_string())
        .and_then(|o| ResolvedModel::parse(&o.stdout).map_err(|e| e.to_string()));
    let ours: BTreeSet<String> = stack.record().services.iter().cloned().collect();
    out.push(obs(
        kind,
        "compose_config_vs_harness_model",
        &match model {
            Err(e) => format!("config failed: {e}"),
            Ok(m) => {
                let theirs: BTreeSet<String> = m.services.keys().cloned().collect();
                if theirs == ours {
                    format!("same {} services", ours.len())
                } else {
                    format!("differ: config {:?}, harness {:?}", theirs, ours)
                }
            }
        },
    ));
    out
}

/// What the engine keeps of what the compose tool sent: seccomp option form, the tool's labels,
/// the networks' driver options.
fn observe_containers(
    kind: RuntimeKind,
    stack: &Stack,
    containers: &std::collections::BTreeMap<String, crate::runtime::inspect::ContainerInspect>,
) -> Vec<Observation> {
    let mut forms = BTreeSet::new();
    let mut label_keys = BTreeSet::new();
    for c in containers.values() {
        let opts = c
            .host_config
            .as_ref()
            .and_then(|h| h.security_opt.clone())
            .unwrap_or_default();
        let seccomp = opts
            .iter()
            .filter_map(|o| o.strip_prefix("seccomp=").or_else(|| o.strip_prefix("seccomp:")))
            .next_back();
        forms.insert(match seccomp {
            None => "none (engine default)".to_string(),
            Some(v) if v.trim_start().starts_with('{') => "inline profile JSON".to_string(),
            Some("unconfined") => "unconfined".to_string(),
            Some(v) => format!("path {v}"),
        });
        for k in c.config.labels.iter().flat_map(|l| l.keys()) {
            if k.starts_with("com.docker.compose.") || k.starts_with("io.podman.compose") {
                label_keys.insert(k.clone());
            }
        }
    }
    let mut out = vec![
        obs(
            kind,
            "seccomp_in_security_opt",
            &forms.into_iter().collect::<Vec<_>>().join("; "),
        ),
        obs(
            kind,
            "compose_labels",
            &label_keys.into_iter().collect::<Vec<_>>().join(", "),
        ),
    ];
    let project = &stack.record().project;
    let nets: BTreeSet<String> = containers
        .values()
        .flat_map(|c| c.networks().keys().cloned().collect::<Vec<_>>())
        .collect();
    let nets: Vec<String> = nets.into_iter().collect();
    if let Ok(inspected) = stack
        .runtime()
        .inspect_labelled(crate::runtime::ObjectKind::Network, &nets)
    {
        let described: Vec<String> = inspected
            .iter()
            .map(|n| {
                let opts: Vec<String> = n.options.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{}: {}",
                    n.name.replace(project.as_str(), "<project>"),
                    if opts.is_empty() {
                        "no options".to_string()
                    } else {
                        opts.join(" ")
                    }
                )
            })
            .collect();
        out.push(obs(kind, "network_driver_options", &described.join("; ")));
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
    /// Usable: its checks run.
    Use,
    /// Not usable and not required: shown as skipped with the reason.
    Skip(String),
    /// Required but not usable: a failure with the reason.
    Broken(String),
}

/// Why a target that was not asked for is skipped: a run over some targets still lists the
/// others, and a merge of per-target runs knows such a row for a placeholder.
pub const NOT_SELECTED: &str = "not selected (HYDRA_RUNTIMES / --runtime)";

/// Runtimes for a run: `wanted` (else `HYDRA_RUNTIMES`, else all) diagnosed by doctor;
/// `required` (else `HYDRA_REQUIRE`) turns a skip into a failure.
pub fn availability(
    wanted: &[RuntimeKind],
    required: &[RuntimeKind],
) -> crate::Result<Vec<(RuntimeKind, Availability)>> {
    let scope = Scope::from_env(wanted, required)?;
    // The kube-play targets take part only when named: a run over the compose targets does not
    // list them as skipped.
    Ok(RuntimeKind::EVERY
        .into_iter()
        .filter(|kind| !kind.is_kube() || scope.wanted.contains(kind) || scope.required.contains(kind))
        .map(|kind| (kind, scope.decide(kind)))
        .collect())
}

/// One target's [`Availability`] under `HYDRA_RUNTIMES` and `HYDRA_REQUIRE`, diagnosing only that
/// target: what a test parametrised by target asks before it starts a stack.
pub fn availability_of(kind: RuntimeKind) -> crate::Result<Availability> {
    Ok(Scope::from_env(&[], &[])?.decide(kind))
}

/// The targets a run was asked for and those it must have.
struct Scope {
    wanted: Vec<RuntimeKind>,
    required: Vec<RuntimeKind>,
}

impl Scope {
    fn from_env(wanted: &[RuntimeKind], required: &[RuntimeKind]) -> crate::Result<Self> {
        let env = |var: &str| -> crate::Result<Vec<RuntimeKind>> {
            match std::env::var(var) {
                Ok(v) => crate::runtime::parse_list(&v).map_err(|e| crate::HarnessError::usage(format!("{var}: {e}"))),
                Err(_) => Ok(Vec::new()),
            }
        };
        Ok(Self {
            wanted: if wanted.is_empty() {
                env("HYDRA_RUNTIMES")?
            } else {
                wanted.to_vec()
            },
            required: if required.is_empty() {
                env("HYDRA_REQUIRE")?
            } else {
                required.to_vec()
            },
        })
    }

    fn decide(&self, kind: RuntimeKind) -> Availability {
        let explicit = !self.wanted.is_empty();
        let required = self.required.contains(&kind);
        if explicit && !self.wanted.contains(&kind) {
            return if required {
                Availability::Broken("required but not selected (HYDRA_RUNTIMES / --runtime)".into())
            } else {
                Availability::Skip(NOT_SELECTED.into())
            };
        }
        match crate::doctor::diagnose(kind).reason() {
            None => Availability::Use,
            Some(r) if required || explicit => Availability::Broken(r),
            Some(r) => Availability::Skip(r),
        }
    }
}

/// Checks that this host cannot enforce under `kind`, known before running (resource limits for
/// a rootless engine on cgroup v1), with the reason. The run still reports them as
/// not-enforceable; a test runner shows them as ignored rather than passed or failed.
pub fn not_enforceable_here(kind: RuntimeKind, plan: &Plan) -> Vec<(CheckId, String)> {
    if !kind.is_rootless() {
        return Vec::new();
    }
    let Ok(rt) = Runtime::resolve(kind) else {
        return Vec::new();
    };
    if rt.cgroup_version() != crate::runtime::CgroupVersion::V1 {
        return Vec::new();
    }
    plan.ids()
        .into_iter()
        .filter(crate::posture::is_limit)
        .map(|id| {
            (
                id,
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
    use crate::outcome::Area;

    #[test]
    fn checks_of_a_stack_that_did_not_come_up_point_to_the_cause_instead_of_repeating_it() {
        let p = not_run_pointer(RuntimeKind::PodmanRootlessV2);
        assert_eq!(
            p,
            "not run: the stack did not come up under podman-rootless-v2 (the cause: podman_rootless_v2::lifecycle::up_healthy)"
        );
        assert!(!p.contains('`'), "no command line in it: {p}");
    }

    #[test]
    fn the_bundled_plan_has_every_area_and_unique_names() {
        let spec = Spec::load(&crate::spec::bundled_spec_file(), &[]).unwrap();
        let plan = Plan::new(spec).unwrap();
        let ids = plan.ids();
        for area in Area::ALL {
            assert!(ids.iter().any(|i| i.area == area), "no {area} checks");
        }
        let names: BTreeSet<String> = ids.iter().map(|i| i.trial_name(RuntimeKind::Docker)).collect();
        assert_eq!(names.len(), ids.len(), "duplicate check names");
        assert!(names.contains("docker::dns::nginx_cannot_resolve_db"));
        assert_eq!(ids.first(), Some(&CheckId::up_healthy()));
        assert_eq!(ids.last(), Some(&CheckId::down_leaves_nothing()));
    }

    #[test]
    fn areas_run_read_only_first_then_destructive() {
        let spec = Spec::load(&crate::spec::bundled_spec_file(), &[]).unwrap();
        let plan = Plan::new(spec).unwrap();
        let order: Vec<(Announce, Option<Area>)> = plan
            .areas
            .iter()
            .map(|a| (a.announce(), a.ids().first().map(|i| i.area)))
            .collect();
        assert_eq!(
            order,
            [
                (Announce::Always("dns"), Some(Area::Dns)),
                (Announce::Always("ports"), Some(Area::Ports)),
                (Announce::Always("health"), Some(Area::Health)),
                (Announce::Continue, Some(Area::Health)),
                (Announce::WhenSelected("monitoring"), Some(Area::Monitoring)),
                (Announce::WhenSelected("posture"), Some(Area::Posture)),
                (Announce::Always("transitive health"), Some(Area::Health)),
                (Announce::Always("persistence"), Some(Area::Persistence)),
            ]
        );
    }

    #[test]
    fn failures_of_the_interrupted_phase_become_interrupted_and_earlier_ones_stay() {
        let mut rec = Recorder::new(RuntimeKind::Docker);
        rec.push(
            &CheckId::new(Area::Dns, "a"),
            None,
            Verdict::Fail,
            "real failure".into(),
            0.1,
        );
        let mut phase = Phase::default();
        assert!(phase.next(&mut rec));
        rec.push(&CheckId::new(Area::Health, "b"), None, Verdict::Pass, "ok".into(), 0.1);
        rec.push(
            &CheckId::new(Area::Health, "c"),
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
        let outcomes = interrupted_outcomes(RuntimeKind::Podman, &plan, &|id| id.area == Area::Persistence);
        assert!(outcomes.iter().all(|o| o.verdict == Verdict::Interrupted));
        assert_eq!(outcomes[0].id, CheckId::up_healthy());
        let persistence = plan.ids().into_iter().filter(|i| i.area == Area::Persistence).count();
        assert!(persistence > 0);
        assert_eq!(outcomes.len(), 1 + persistence);
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
