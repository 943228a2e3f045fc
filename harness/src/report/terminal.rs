//! The end-of-run summary the CLI prints: counts per runtime, then every check that did not pass
//! with its message, so the cause is on screen without opening a report file. Returns a string;
//! printing is the CLI's business.
//!
//! The count line deliberately does not read `N passed, N failed`: CI tooling takes that shape
//! for a test runner's closing line.

use std::fmt::Write as _;

use super::parity::Counts;
use super::redact::Redactor;
use super::{clean, describe, runtime_order};
use crate::outcome::{RunSummary, Verdict};

/// Renders the summary (plain text, no colour; messages sanitised and redacted).
pub fn render(summary: &RunSummary, redactor: Option<&Redactor>) -> String {
    let mut out = String::new();
    let order = runtime_order(summary);
    let width = order.iter().map(|r| r.ident().len()).max().unwrap_or(0);
    for rt in &order {
        let mut c = Counts::default();
        summary
            .outcomes
            .iter()
            .filter(|o| o.runtime == *rt)
            .for_each(|o| c.add(o.verdict));
        let _ = writeln!(
            out,
            "{:width$}  pass {:>3}  fail {:>3}  skip {:>3}  not enforceable {:>3}{}",
            rt.ident(),
            c.pass,
            c.fail,
            c.skip,
            c.not_enforceable,
            if c.interrupted > 0 {
                format!("  interrupted {:>3}", c.interrupted)
            } else {
                String::new()
            }
        );
    }
    for (title, verdict) in [
        ("failed", Verdict::Fail),
        ("not enforceable", Verdict::NotEnforceable),
        ("interrupted", Verdict::Interrupted),
    ] {
        let matching: Vec<_> = summary.outcomes.iter().filter(|o| o.verdict == verdict).collect();
        if matching.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for o in matching {
            let msg = clean(&describe(o), redactor);
            let mut lines = msg.lines();
            let _ = writeln!(
                out,
                "  {}  {}",
                clean(&o.trial_name(), redactor),
                lines.next().unwrap_or("")
            );
            for l in lines {
                let _ = writeln!(out, "      {l}");
            }
        }
    }
    if order.is_empty() {
        out.push_str("no checks ran\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, SECRET};
    use super::*;

    #[test]
    fn counts_and_failures_are_listed() {
        let text = render(&fixtures::summary(), Some(&fixtures::redactor()));
        assert!(
            text.contains("podman_rootless  pass   4  fail   1  skip   0  not enforceable   1"),
            "{text}"
        );
        assert!(
            text.contains("failed:\n  podman_rootless::health::db_healthy  db: not healthy after 60s"),
            "{text}"
        );
        assert!(text.contains("not enforceable:\n  podman_rootless::posture::api::memory_limit  api: memory limits"));
        assert!(!text.contains(SECRET));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn an_empty_run_says_so() {
        assert_eq!(render(&RunSummary::default(), None), "no checks ran\n");
    }
}
