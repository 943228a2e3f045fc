//! Which results of a played (kube-play) target are what a divergence from compose predicts: a
//! check that fails there because compose's meaning does not carry over (one network for every
//! pod, no pids limit, nothing restarts a dead container) is reported as that divergence, with
//! its reason and the failure it observed, never as a pass; every other failure stays a failure.

use crate::checks::{Area, CheckId};
use crate::kube::KubeDivergence;
use crate::outcome::{CheckOutcome, Verdict};

/// The divergence kind a failing check's meaning depends on under a played target, if any.
pub fn kind_for(id: &CheckId) -> Option<&'static str> {
    match id.area {
        // Isolation between compose networks: every pod is on the run's one network.
        Area::Dns if id.name.contains("_cannot_resolve_") => Some("networks"),
        Area::Ports if id.name.contains("_unreachable_from_") => Some("networks"),
        Area::Posture if id.name == "pids_limit" => Some("pids_limit"),
        // The played pods restart nothing (the remedy for podman kube play 4.3.1).
        Area::Posture if id.name == "restart_policy" => Some("pod_exit"),
        // A killed database comes back only through a restart.
        Area::Persistence if id.name == "kill_9_keeps_acknowledged_rows" => Some("pod_exit"),
        _ => None,
    }
}

/// Turns the failures a divergence explains into skips that name it: verdict `Skip`, message
/// `diverges from compose (<kind>): <what>: <reason>; observed: <failure>`. Passes stay passes.
pub fn apply(divergences: &[KubeDivergence], outcomes: &mut [CheckOutcome]) {
    for o in outcomes.iter_mut().filter(|o| o.verdict == Verdict::Fail) {
        let Some(d) = kind_for(&o.id).and_then(|k| divergences.iter().find(|d| d.kind == k)) else {
            continue;
        };
        o.verdict = Verdict::Skip;
        o.message = format!(
            "diverges from compose ({}): {}: {}; observed: {}",
            d.kind, d.what, d.reason, o.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;

    fn outcome(id: CheckId, verdict: Verdict) -> CheckOutcome {
        CheckOutcome {
            runtime: RuntimeKind::PodmanKube,
            id,
            verdict,
            message: "nginx resolves db".into(),
            service: None,
            logs: None,
            seconds: 0.1,
        }
    }

    fn networks() -> KubeDivergence {
        KubeDivergence {
            kind: "networks".into(),
            what: "compose networks: phoenix-data, phoenix-net".into(),
            reason: "one network".into(),
        }
    }

    #[test]
    fn only_failures_a_present_divergence_explains_become_skips() {
        let mut outcomes = vec![
            outcome(CheckId::new(Area::Dns, "nginx_cannot_resolve_db"), Verdict::Fail),
            outcome(CheckId::new(Area::Dns, "nginx_resolves_gap-detector"), Verdict::Fail),
            outcome(
                CheckId::new(Area::Ports, "db_5432_unreachable_from_nginx"),
                Verdict::Pass,
            ),
            outcome(CheckId::of_service(Area::Posture, "db", "pids_limit"), Verdict::Fail),
        ];
        apply(&[networks()], &mut outcomes);
        let verdicts: Vec<Verdict> = outcomes.iter().map(|o| o.verdict).collect();
        // No pids_limit divergence was given: that failure stays.
        assert_eq!(verdicts, [Verdict::Skip, Verdict::Fail, Verdict::Pass, Verdict::Fail]);
        assert!(outcomes[0]
            .message
            .starts_with("diverges from compose (networks): compose networks"));
        assert!(outcomes[0].message.ends_with("observed: nginx resolves db"));
    }

    #[test]
    fn no_divergence_no_change() {
        let mut outcomes = vec![outcome(
            CheckId::new(Area::Dns, "nginx_cannot_resolve_db"),
            Verdict::Fail,
        )];
        apply(&[], &mut outcomes);
        assert_eq!(outcomes[0].verdict, Verdict::Fail);
    }
}
