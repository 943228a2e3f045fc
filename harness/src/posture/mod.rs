//! Security posture of a running stack: typed, engine-normalised facts from inspect JSON
//! (`facts`), CIS-derived policy with per-service allowances (`config`, `rules`), behavioural
//! probes run inside each container and compared with the configuration (`probe`), and the
//! rootless proof (container uid 0 maps to an unprivileged host uid).
//!
//! [`evaluate`] is the one entry point that touches the stack; everything else is pure.

pub mod config;
pub mod facts;
pub mod probe;
pub mod rules;

#[cfg(test)]
mod golden;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use config::{Allowance, PostureConfig, Rule, ServicePosture};
pub use facts::{parse_facts, redact_env, ContainerFacts};
pub use probe::ProbeReport;
pub use rules::Context;

use crate::error::{HarnessError, Result};
use crate::outcome::CheckOutcome;
use crate::stack::Stack;

/// Deadline for the probe script in one container.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The bundled stack's posture configuration (`posture/bundled.yml`).
pub const BUNDLED_YAML: &str = include_str!("bundled.yml");

impl PostureConfig {
    /// The posture configuration of the bundled Phoenix Hydra stack.
    pub fn bundled() -> Self {
        Self::from_yaml(BUNDLED_YAML).expect("bundled posture configuration is valid")
    }
}

/// The posture checks of a stack with these services: every rule for every service, named
/// `posture::<service>::<rule>` as [`evaluate`] reports them. Pure.
pub fn plan<'a>(services: impl IntoIterator<Item = &'a String>) -> Vec<crate::outcome::CheckId> {
    use crate::outcome::{Area, CheckId as Id};
    services
        .into_iter()
        .flat_map(|s| {
            Rule::ALL
                .iter()
                .map(move |r| Id::of_service(Area::Posture, s.as_str(), r.name()))
        })
        .collect()
}

/// Whether `id` is a resource-limit rule, which a rootless engine on cgroup v1 cannot enforce.
pub fn is_limit(id: &crate::outcome::CheckId) -> bool {
    id.area == crate::outcome::Area::Posture && Rule::ALL.iter().any(|r| r.is_limit() && r.name() == id.name)
}

/// Everything one evaluation saw, for callers that want more than outcomes.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// One outcome per rule and service.
    pub outcomes: Vec<CheckOutcome>,
    /// By compose service.
    pub facts: BTreeMap<String, ContainerFacts>,
    /// By compose service; absent when the probe could not run.
    pub probes: BTreeMap<String, ProbeReport>,
}

/// Evaluates every posture check for every service of `stack`: ids as [`plan`] makes them.
pub fn evaluate(stack: &Stack, config: &PostureConfig) -> Result<Vec<CheckOutcome>> {
    Ok(evaluate_detailed(stack, config)?.outcomes)
}

/// [`evaluate`], also returning the facts and probe reports it used.
pub fn evaluate_detailed(stack: &Stack, config: &PostureConfig) -> Result<Evaluation> {
    config.validate()?;
    let workdir = stack.record().workdir.clone();
    let project_seccomp = match &config.seccomp_profile {
        None => None,
        Some(p) => {
            let path = workdir.join(p);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                HarnessError::usage(format!(
                    "cannot read the posture seccomp profile {}: {e}",
                    path.display()
                ))
            })?;
            Some(serde_json::from_str(&text).map_err(|e| {
                HarnessError::usage(format!(
                    "the posture seccomp profile {} is not JSON: {e}",
                    path.display()
                ))
            })?)
        }
    };
    let ctx = Context {
        runtime: stack.runtime().kind(),
        bind_ip: stack.bind_ip(),
        rootless: stack.runtime().rootless_user().is_some(),
        cgroup_v2: stack.runtime().cgroup_version() == crate::runtime::CgroupVersion::V2,
        project_seccomp,
    };
    let ids: Vec<String> = stack.containers()?.into_values().map(|c| c.id).collect();
    if ids.is_empty() {
        return Err(HarnessError::usage(format!(
            "stack {} has no container to evaluate",
            stack.record().project
        )));
    }
    let mut args = vec!["container", "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let json = stack.runtime().query(&args)?;

    let mut evaluation = Evaluation {
        outcomes: Vec::new(),
        facts: BTreeMap::new(),
        probes: BTreeMap::new(),
    };
    let mut all: Vec<ContainerFacts> = parse_facts(&json)?;
    all.sort_by(|a, b| a.service.cmp(&b.service));
    for mut f in all {
        let Some(service) = f.service.clone() else {
            continue;
        };
        let started = Instant::now();
        // A played stack's profiles are file names under its seccomp profile root.
        match stack.record().kube.as_ref().and_then(|k| k.seccomp_root.as_deref()) {
            Some(root) => f.resolve_seccomp(root),
            None => f.resolve_seccomp(&workdir),
        }
        if let Some(remedy) = stack.seccomp_remedy().filter(|r| r.services.contains(&service)) {
            f.apply_engine_wide_seccomp(&remedy.profile);
        }
        let mut outcomes = rules::check_config(&ctx, config, &service, &f);
        match stack.exec(&service, &["sh", "-c", probe::SCRIPT], PROBE_TIMEOUT) {
            Ok(out) if out.success() => match probe::parse_report(&out.stdout) {
                Ok(report) => {
                    let host = host_view(f.host_pid);
                    outcomes.extend(probe::check_kernel(&ctx, &service, &f, &report, &host));
                    evaluation.probes.insert(service.clone(), report);
                }
                Err(e) => outcomes.extend(probe::probe_failed(&ctx, &service, &e.to_string())),
            },
            Ok(out) => outcomes.extend(probe::probe_failed(
                &ctx,
                &service,
                &format!("exit {:?}: {}", out.status, crate::runtime::exec::tail(&out.stderr, 5)),
            )),
            Err(e) => outcomes.extend(probe::probe_failed(&ctx, &service, &e.to_string())),
        }
        let seconds = started.elapsed().as_secs_f64();
        for o in &mut outcomes {
            o.seconds = seconds;
        }
        evaluation.outcomes.extend(outcomes);
        evaluation.facts.insert(service, f);
    }
    Ok(evaluation)
}

/// The host's view of a container's first process (readable when the harness runs as root, or
/// as the rootless user that owns it).
fn host_view(pid: u32) -> probe::HostView {
    if pid == 0 {
        return probe::HostView {
            uid: None,
            note: "the engine reports no host PID".into(),
        };
    }
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(text) => probe::HostView {
            uid: probe::status_uid(&text),
            note: format!("/proc/{pid}/status"),
        },
        Err(e) => probe::HostView {
            uid: None,
            note: format!("/proc/{pid}/status: {e}"),
        },
    }
}
