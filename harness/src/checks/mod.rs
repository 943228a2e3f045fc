//! Checks of what a migration must preserve. Each area plans its checks from the spec and the
//! compose file (pure, so trial names are known before anything runs), executes them against a
//! running stack, and judges observations with pure functions.
//!
//! Every area is a [`CheckArea`]; [`AREAS`] lists them in the order a validation session runs
//! them: read-only checks first, then the ones that stop, restart or kill services.

pub mod dns;
pub mod health;
pub mod monitoring;
pub mod persistence;
pub mod ports;
pub mod posture;

use std::time::Instant;

use crate::compose::file::ComposeFile;
use crate::outcome::{CheckOutcome, Verdict};
use crate::runtime::RuntimeKind;
use crate::spec::Spec;
use crate::stack::Stack;

pub use crate::outcome::{Area, CheckId};

/// Which planned checks a run keeps.
pub type Selected<'a> = &'a dyn Fn(&CheckId) -> bool;

/// One area of checks (or one part of an area that runs at its own point of the session).
pub trait CheckArea: Send + Sync {
    /// Plans the checks from the spec and the compose model. Pure: trial names are known before
    /// anything runs.
    fn plan(spec: &Spec, compose: &ComposeFile) -> Self
    where
        Self: Sized;

    /// How the session announces this area when it starts it.
    fn announce(&self) -> Announce;

    /// The planned checks, in the order they run.
    fn ids(&self) -> Vec<CheckId>;

    /// Runs the checks that `selected` keeps against a running stack, recording one outcome per
    /// check it reaches. Returns early once the run is cancelled; the session marks what was not
    /// reached.
    fn run(&self, stack: &Stack, spec: &Spec, selected: Selected<'_>, rec: &mut Recorder);
}

/// The progress line (`checks: <phase>`) the session shows when it starts an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Always, even when none of its checks is selected.
    Always(&'static str),
    /// Only when some of its checks are selected.
    WhenSelected(&'static str),
    /// Not at all: the area continues the previous one's phase.
    Continue,
}

/// An area's planner, as listed in [`AREAS`].
#[derive(Clone, Copy)]
pub struct Planner(pub fn(&Spec, &ComposeFile) -> Box<dyn CheckArea>);

const fn planner<A: CheckArea + 'static>() -> Planner {
    fn boxed<A: CheckArea + 'static>(spec: &Spec, compose: &ComposeFile) -> Box<dyn CheckArea> {
        Box::new(A::plan(spec, compose))
    }
    Planner(boxed::<A>)
}

/// Every area in execution order. Read-only first (dns, ports, endpoint and engine health,
/// monitoring, posture), then the destructive ones: transitive health stops and starts dependencies,
/// persistence restarts, recreates and kills the database.
pub const AREAS: [Planner; 8] = [
    planner::<dns::Dns>(),
    planner::<ports::Ports>(),
    planner::<health::Endpoints>(),
    planner::<health::EngineHealth>(),
    planner::<monitoring::Monitoring>(),
    planner::<posture::Posture>(),
    planner::<health::TransitiveHealth>(),
    planner::<persistence::PersistenceChecks>(),
];

/// Builds outcomes for one runtime, timing each check.
pub struct Recorder {
    /// The runtime every recorded outcome is for.
    pub runtime: RuntimeKind,
    /// The outcomes recorded so far, in order.
    pub outcomes: Vec<CheckOutcome>,
}

impl Recorder {
    /// An empty recorder for `runtime`.
    pub fn new(runtime: RuntimeKind) -> Self {
        Self {
            runtime,
            outcomes: Vec::new(),
        }
    }

    /// Records the result of `f` for `id`: `Ok(msg)` passes, `Err(msg)` fails.
    pub fn check(&mut self, id: &CheckId, service: Option<&str>, f: impl FnOnce() -> Result<String, String>) {
        let started = Instant::now();
        let (verdict, message) = match f() {
            Ok(m) => (Verdict::Pass, m),
            Err(m) => (Verdict::Fail, m),
        };
        self.push(id, service, verdict, message, started.elapsed().as_secs_f64());
    }

    /// Records an outcome already judged, with the time it took.
    pub fn push(&mut self, id: &CheckId, service: Option<&str>, verdict: Verdict, message: String, seconds: f64) {
        self.outcomes.push(CheckOutcome {
            runtime: self.runtime,
            id: id.clone(),
            verdict,
            message,
            service: service.map(String::from),
            logs: None,
            seconds,
        });
    }
}

/// The stack's containers by service, or every given check failed with the reason (`None`).
pub fn containers_or_fail<'a>(
    stack: &crate::stack::Stack,
    checks: impl IntoIterator<Item = (&'a CheckId, &'a str)>,
    rec: &mut Recorder,
) -> Option<std::collections::BTreeMap<String, crate::runtime::inspect::ContainerInspect>> {
    match stack.containers() {
        Ok(c) => Some(c),
        Err(e) => {
            for (id, service) in checks {
                rec.push(
                    id,
                    Some(service),
                    Verdict::Fail,
                    format!("cannot inspect the stack: {e}"),
                    0.0,
                );
            }
            None
        }
    }
}

/// A path turned into a name part: `/analysis/summary` -> `analysis_summary`.
pub fn slug(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let s = s.trim_matches('_').to_string();
    if s.is_empty() {
        "root".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("/analysis/summary"), "analysis_summary");
        assert_eq!(slug("/"), "root");
    }
}
