//! Checks of what a migration must preserve. Each area plans its checks from the spec and the
//! compose file (pure, so trial names are known before anything runs), executes them against a
//! running stack, and judges observations with pure functions.

pub mod dns;
pub mod health;
pub mod persistence;
pub mod ports;

use std::time::Instant;

use crate::outcome::{CheckOutcome, Verdict};
use crate::runtime::RuntimeKind;

/// A planned check: its area and name, e.g. (`dns`, `nginx_cannot_resolve_db`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckId {
    pub area: &'static str,
    pub name: String,
}

impl CheckId {
    pub fn new(area: &'static str, name: impl Into<String>) -> Self {
        Self {
            area,
            name: name.into(),
        }
    }

    /// `<runtime>::<area>::<name>`.
    pub fn trial_name(&self, runtime: RuntimeKind) -> String {
        format!("{}::{}::{}", runtime.ident(), self.area, self.name)
    }
}

/// Builds outcomes for one runtime, timing each check.
pub struct Recorder {
    pub runtime: RuntimeKind,
    pub outcomes: Vec<CheckOutcome>,
}

impl Recorder {
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

    pub fn push(&mut self, id: &CheckId, service: Option<&str>, verdict: Verdict, message: String, seconds: f64) {
        self.outcomes.push(CheckOutcome {
            runtime: self.runtime,
            area: id.area.to_string(),
            name: id.name.clone(),
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
    fn slugs_and_trial_names() {
        assert_eq!(slug("/analysis/summary"), "analysis_summary");
        assert_eq!(slug("/"), "root");
        assert_eq!(
            CheckId::new("dns", "nginx_cannot_resolve_db").trial_name(RuntimeKind::PodmanRootless),
            "podman_rootless::dns::nginx_cannot_resolve_db"
        );
    }
}
