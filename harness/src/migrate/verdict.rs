//! GO or NO-GO, from what the drill saw (pure): state a move would lose, data that did not arrive
//! whole, checks that fail on the target (unless the spec accepts them, with a reason), and a
//! rollback that did not bring everything back.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::outcome::{Area, CheckOutcome, Verdict};

/// The drill's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// The move kept everything the drill checks.
    Go,
    /// At least one reason against the move.
    NoGo,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Go => "GO",
            Decision::NoGo => "NO-GO",
        })
    }
}

/// A target failure the spec accepts, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// The check's name without the target (`ports::db_unreachable_from_nginx`).
    pub check: String,
    /// Why the spec accepts the failure.
    pub reason: String,
    /// The failed check's message.
    pub message: String,
}

/// The verdict and every reason for it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillVerdict {
    /// GO or NO-GO.
    pub decision: Decision,
    /// Every reason for NO-GO; empty for GO.
    pub reasons: Vec<String>,
    /// Target failures the spec accepts, which do not count against GO.
    pub accepted: Vec<Accepted>,
}

/// The known remedy, in the stack's terms, for a check that fails on `o.runtime`: reachability
/// across networks that share no service (`ports::<svc>_<port>_unreachable_from_<from>`) on an
/// engine that isolates networks only when asked. `networks` are the stack's networks.
pub fn remedy(o: &CheckOutcome, networks: &[String]) -> Option<String> {
    if o.id.area != Area::Ports || !o.id.name.contains("_unreachable_from_") {
        return None;
    }
    let (key, value) = o.runtime.network_isolation_option()?;
    Some(format!(
        "set `driver_opts: {{{key}: \"{value}\"}}` on the stack's networks ({}): {} routes between networks created without it; Docker ignores the option and keeps them apart anyway",
        networks.join(", "),
        o.runtime
    ))
}

/// Target checks that failed: each either accepted by the spec (by check name, without the
/// target) or a reason for NO-GO, with its [`remedy`] when there is one. When the same check
/// also failed on the source, the reason says so: the stack is broken on both, not by the move.
pub fn judge_checks(
    target: &[CheckOutcome],
    source: &[CheckOutcome],
    accept: &BTreeMap<String, String>,
    networks: &[String],
) -> (Vec<String>, Vec<Accepted>) {
    let mut reasons = Vec::new();
    let mut accepted = Vec::new();
    for o in target.iter().filter(|o| o.verdict == Verdict::Fail) {
        let name = o.id.to_string();
        if let Some(reason) = accept.get(&name) {
            accepted.push(Accepted {
                check: name,
                reason: reason.clone(),
                message: o.message.clone(),
            });
            continue;
        }
        let also_on_source = source.iter().any(|s| s.id == o.id && s.verdict == Verdict::Fail);
        reasons.push(format!(
            "{} fails on {}{}: {}{}",
            name,
            o.runtime,
            if also_on_source { " (and on the source)" } else { "" },
            o.message,
            remedy(o, networks)
                .map(|r| format!(" (remedy: {r})"))
                .unwrap_or_default()
        ));
    }
    (reasons, accepted)
}

/// The decision: NO-GO when there is any reason.
pub fn decide(reasons: Vec<String>, accepted: Vec<Accepted>) -> DrillVerdict {
    DrillVerdict {
        decision: if reasons.is_empty() {
            Decision::Go
        } else {
            Decision::NoGo
        },
        reasons,
        accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Area, CheckId};
    use crate::runtime::RuntimeKind;

    fn outcome(runtime: RuntimeKind, name: &str, verdict: Verdict) -> CheckOutcome {
        CheckOutcome {
            runtime,
            id: CheckId::new(Area::Ports, name),
            verdict,
            message: format!("{name} said so"),
            service: None,
            logs: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn passing_targets_go() {
        let t = [outcome(RuntimeKind::Podman, "a", Verdict::Pass)];
        let (reasons, accepted) = judge_checks(&t, &[], &BTreeMap::new(), &[]);
        let v = decide(reasons, accepted);
        assert_eq!(v.decision, Decision::Go);
        assert!(v.reasons.is_empty());
    }

    #[test]
    fn a_failure_is_no_go_unless_accepted_with_its_reason() {
        let t = [
            outcome(RuntimeKind::Podman, "db_unreachable_from_nginx", Verdict::Fail),
            outcome(RuntimeKind::Podman, "broken_everywhere", Verdict::Fail),
            outcome(RuntimeKind::Podman, "not_enforceable", Verdict::NotEnforceable),
        ];
        let s = [outcome(RuntimeKind::Docker, "broken_everywhere", Verdict::Fail)];
        let accept = BTreeMap::from([(
            "ports::db_unreachable_from_nginx".to_string(),
            "set driver_opts isolate".to_string(),
        )]);
        let (reasons, accepted) = judge_checks(&t, &s, &accept, &[]);
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].reason, "set driver_opts isolate");
        assert_eq!(
            reasons,
            ["ports::broken_everywhere fails on podman (and on the source): broken_everywhere said so"]
        );
        assert_eq!(decide(reasons, accepted).decision, Decision::NoGo);
    }

    #[test]
    fn reaching_across_networks_on_podman_names_the_isolate_option() {
        let nets = ["phoenix-net".to_string(), "phoenix-data".to_string()];
        let t = [
            outcome(
                RuntimeKind::PodmanRootless,
                "db_5432_unreachable_from_nginx",
                Verdict::Fail,
            ),
            outcome(
                RuntimeKind::PodmanRootless,
                "db_5432_reachable_from_gap-detector",
                Verdict::Fail,
            ),
        ];
        let (reasons, _) = judge_checks(&t, &[], &BTreeMap::new(), &nets);
        assert!(
            reasons[0].contains(
                r#"(remedy: set `driver_opts: {isolate: "true"}` on the stack's networks (phoenix-net, phoenix-data)"#
            ),
            "{}",
            reasons[0]
        );
        assert!(!reasons[1].contains("remedy"), "{}", reasons[1]);
        // Docker keeps networks apart by default: nothing to name.
        assert_eq!(
            remedy(
                &outcome(RuntimeKind::Docker, "db_5432_unreachable_from_nginx", Verdict::Fail),
                &nets
            ),
            None
        );
    }
}
