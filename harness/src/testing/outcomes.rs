//! The result of checks run on demand, with the assertion a test makes on it.

use std::fmt;
use std::sync::Arc;

use crate::outcome::{CheckOutcome, Verdict};
use crate::report::Redactor;

/// Outcomes of the checks a test ran; secrets of the stack are redacted from what is printed.
#[derive(Clone)]
pub struct Outcomes {
    outcomes: Vec<CheckOutcome>,
    redactor: Arc<Redactor>,
}

impl Outcomes {
    pub(super) fn new(outcomes: Vec<CheckOutcome>, redactor: Arc<Redactor>) -> Self {
        Self { outcomes, redactor }
    }

    /// Every outcome, in the order the checks ran.
    pub fn all(&self) -> &[CheckOutcome] {
        &self.outcomes
    }

    /// The checks that failed or were interrupted.
    pub fn failures(&self) -> Vec<&CheckOutcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.verdict, Verdict::Fail | Verdict::Interrupted))
            .collect()
    }

    /// Whether at least one check ran and none failed (not-enforceable checks are not failures,
    /// and are listed by [`Outcomes`]'s `Display`).
    pub fn passed(&self) -> bool {
        !self.outcomes.is_empty() && self.failures().is_empty()
    }

    /// Panics, listing every failed check with its reason, unless [`Outcomes::passed`]: a
    /// selection that ran no check fails too, so a mistyped filter cannot pass.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            panic!("{self}");
        }
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.outcomes.is_empty() {
            return write!(f, "no check ran (does the spec plan any for this selection?)");
        }
        let failed = self.failures().len();
        writeln!(f, "{} checks, {} failed", self.outcomes.len(), failed)?;
        for o in &self.outcomes {
            let mark = match o.verdict {
                Verdict::Pass => "ok",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
                Verdict::NotEnforceable => "not-enforceable",
                Verdict::Interrupted => "INTERRUPTED",
            };
            writeln!(
                f,
                "  {mark:<15} {}  {}",
                o.trial_name(),
                self.redactor.redact(&o.message)
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Area, CheckId};
    use crate::runtime::RuntimeKind;

    fn outcome(name: &str, verdict: Verdict, message: &str) -> CheckOutcome {
        CheckOutcome {
            runtime: RuntimeKind::Podman,
            id: CheckId::new(Area::Dns, name),
            verdict,
            message: message.into(),
            service: None,
            logs: None,
            seconds: 0.1,
        }
    }

    #[test]
    fn no_check_at_all_is_not_a_pass() {
        let o = Outcomes::new(vec![], Arc::default());
        assert!(!o.passed());
        assert!(std::panic::catch_unwind(|| o.assert_passed()).is_err());
    }

    #[test]
    fn a_failure_is_listed_with_its_reason() {
        let o = Outcomes::new(
            vec![
                outcome("web_cannot_resolve_worker", Verdict::Pass, "fine"),
                outcome(
                    "worker_cannot_resolve_web",
                    Verdict::Fail,
                    "worker resolves web to 10.0.0.2",
                ),
            ],
            Arc::default(),
        );
        assert!(!o.passed());
        assert_eq!(o.failures().len(), 1);
        let text = o.to_string();
        assert!(text.contains("2 checks, 1 failed"), "{text}");
        assert!(
            text.contains("FAIL            podman::dns::worker_cannot_resolve_web  worker resolves web to 10.0.0.2"),
            "{text}"
        );
    }

    #[test]
    fn not_enforceable_is_not_a_failure() {
        let o = Outcomes::new(
            vec![
                outcome("a", Verdict::Pass, ""),
                outcome("b", Verdict::NotEnforceable, "cgroup v1"),
            ],
            Arc::default(),
        );
        assert!(o.passed());
        assert!(o.to_string().contains("not-enforceable"));
    }
}
