//! The drill's reports: `migration.md` for people, `migration.json` (the [`DrillReport`]) for
//! tools, and JUnit with one trial per phase, `migrate::<from>-to-<to>::<phase>`, so a CI test tab
//! shows which phase of which direction failed.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Decision, DrillReport};
use crate::error::Result;
use crate::outcome::Verdict;
use crate::report::redact::Redactor;
use crate::report::{clean, verdict_label, write_file};

/// Name of the `<testsuites>` element of the drill's JUnit file.
pub const REPORT_NAME: &str = "hydra-migrate";

/// `migration.md`: the verdict first, then phases, moves and data.
pub fn markdown(r: &DrillReport) -> String {
    let mut md = String::new();
    let verdict = r.verdict.as_ref();
    let decision = verdict
        .map(|v| v.decision.to_string())
        .unwrap_or_else(|| "no verdict (the drill stopped)".into());
    let _ = writeln!(
        md,
        "# Migration drill: {} → {} ({} strategy)\n",
        r.from, r.to, r.strategy
    );
    let _ = writeln!(md, "**Verdict: {decision}**\n");
    if let Some(v) = verdict {
        for reason in &v.reasons {
            let _ = writeln!(md, "- {}", one_line(reason));
        }
        if !v.accepted.is_empty() {
            let _ = writeln!(md, "\nAccepted by the spec:\n");
            for a in &v.accepted {
                let _ = writeln!(
                    md,
                    "- `{}`: {} (observed: {})",
                    a.check,
                    one_line(&a.reason),
                    one_line(&a.message)
                );
            }
        }
    }
    let _ = writeln!(md, "\n| figure | value |\n|---|---|");
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "n/a".into());
    let _ = writeln!(
        md,
        "| downtime ({} stopped → {} serving) | {} |",
        r.from,
        r.to,
        secs(r.downtime_seconds)
    );
    let _ = writeln!(md, "| rollback downtime | {} |", secs(r.rollback_downtime_seconds));
    let _ = writeln!(md, "| bytes moved (tar streams, both ways) | {} |", r.bytes_moved);
    let _ = writeln!(md, "| drill | {:.1} s |", r.seconds);
    let _ = writeln!(
        md,
        "\n## Phases\n\n| phase | result | seconds | detail |\n|---|---|---|---|"
    );
    for p in &r.phases {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {} |",
            p.name,
            verdict_label(p.verdict),
            p.seconds,
            one_line(&p.message).replace('|', "\\|")
        );
    }
    if !r.moves.is_empty() {
        let _ = writeln!(md, "\n## Volumes moved\n\nSeconds: the whole copy (owner check, helpers' start, copy, read-back); the helpers' start (containers started, held at their gates; all but the first volume's overlap the copies before); the copy (helpers let go until both exited); the bytes moving (first to last byte). The rate is the copy's.\n\n| volume | from → to | bytes | whole s | start s | copy s | moving s | MB/s copy | identical | source digest |\n|---|---|---|---|---|---|---|---|---|---|");
        for m in &r.moves {
            let rate = if m.copy_seconds > 0.0 {
                m.bytes as f64 / 1e6 / m.copy_seconds
            } else {
                0.0
            };
            let _ = writeln!(
                md,
                "| {} | {} → {} | {} | {:.2} | {:.2} | {:.2} | {:.3} | {:.0} | {} | `{}` |",
                m.volume,
                m.from,
                m.to,
                m.bytes,
                m.seconds,
                m.start_seconds,
                m.copy_seconds,
                m.data_seconds,
                rate,
                if m.identical {
                    "yes".to_string()
                } else {
                    format!("no: {}", m.first_difference.as_deref().unwrap_or("?"))
                },
                &m.source_digest[..m.source_digest.len().min(16)]
            );
        }
    }
    if let Some(data) = &r.source_data {
        let _ = writeln!(
            md,
            "\n## Database at the switch\n\n| table | rows | digest |\n|---|---|---|"
        );
        for (table, s) in data {
            let _ = writeln!(
                md,
                "| {table} | {} | `{}` |",
                s.rows,
                &s.digest[..s.digest.len().min(12)]
            );
        }
    }
    md
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The drill's JUnit report: one suite per direction, one case per phase, and a `verdict` case
/// that fails on NO-GO.
pub fn junit(r: &DrillReport, redactor: Option<&Redactor>) -> Report {
    let mut report = Report::new(REPORT_NAME);
    let direction = r.direction();
    let mut suite = TestSuite::new(format!("migrate::{direction}"));
    suite.add_property(Property::new("hydra.strategy", r.strategy.to_string()));
    for p in &r.phases {
        suite.add_test_case(case(&direction, p.name, p.verdict, &p.message, p.seconds, redactor));
    }
    let (verdict, message) = match &r.verdict {
        Some(v) if v.decision == Decision::Go => (Verdict::Pass, "GO".to_string()),
        Some(v) => (Verdict::Fail, format!("NO-GO: {}", v.reasons.join("; "))),
        None => (Verdict::Interrupted, "the drill stopped before a verdict".to_string()),
    };
    suite.add_test_case(case(&direction, "verdict", verdict, &message, 0.0, redactor));
    report.add_test_suite(suite);
    report
}

fn case(
    direction: &str,
    phase: &str,
    verdict: Verdict,
    message: &str,
    seconds: f64,
    redactor: Option<&Redactor>,
) -> TestCase {
    let text = clean(message, redactor);
    let short: String = text.chars().take(500).collect();
    let status = match verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(short)
                .set_type("migrate-phase-failed")
                .set_description(text);
            s
        }
        Verdict::Interrupted => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(short).set_type("interrupted").set_description(text);
            s
        }
        Verdict::Skip | Verdict::NotEnforceable => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(short);
            s
        }
    };
    let mut c = TestCase::new(format!("{direction}::{phase}"), status);
    c.set_classname(format!("migrate::{direction}"));
    c.set_time(Duration::from_secs_f64(seconds.max(0.0)));
    c.add_property(Property::new("hydra.verdict", verdict_label(verdict)));
    c
}

/// Writes `migration.md` and `migration.json` into `dir`, and the JUnit file to `junit`.
pub fn write(r: &DrillReport, dir: &Path, junit_path: &Path, redactor: Option<&Redactor>) -> Result<()> {
    write_file(&dir.join("migration.md"), clean(&markdown(r), redactor).as_bytes())?;
    let json = serde_json::to_string_pretty(r).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_file(&dir.join("migration.json"), clean(&json, redactor).as_bytes())?;
    let xml = junit(r, redactor)
        .to_string()
        .map_err(|e| std::io::Error::other(format!("serialising JUnit report for {}: {e}", junit_path.display())))?;
    write_file(junit_path, xml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::verdict::{decide, DrillVerdict};
    use crate::migrate::Phase;
    use crate::runtime::RuntimeKind;
    use crate::spec::Strategy;

    fn drill(verdict: Option<DrillVerdict>) -> DrillReport {
        DrillReport {
            from: RuntimeKind::Docker,
            to: RuntimeKind::PodmanRootless,
            strategy: Strategy::Raw,
            phases: vec![
                Phase {
                    name: "plan",
                    verdict: Verdict::Pass,
                    message: "named volumes to move: db_data".into(),
                    seconds: 0.0,
                },
                Phase {
                    name: "move",
                    verdict: Verdict::Fail,
                    message: "volume db_data did not arrive | identical\n\u{1b}[31mfirst difference at PG_VERSION"
                        .into(),
                    seconds: 1.5,
                },
            ],
            plan: Default::default(),
            needs: Default::default(),
            interrupted_drills: Vec::new(),
            moves: Vec::new(),
            downtime_seconds: Some(12.34),
            rollback_downtime_seconds: None,
            bytes_moved: 1024,
            source_run: None,
            source_project: None,
            source_fingerprints: Default::default(),
            source_data: None,
            target_checks: Vec::new(),
            source_checks: Vec::new(),
            rollback_checks: Vec::new(),
            verdict,
            seconds: 60.0,
        }
    }

    #[test]
    fn junit_has_a_trial_per_phase_and_a_verdict_that_fails_on_no_go() {
        let r = drill(Some(decide(vec!["volume db_data differs".into()], Vec::new())));
        let xml = junit(&r, None).to_string().unwrap();
        assert!(
            xml.contains("testsuite name=\"migrate::docker-to-podman_rootless\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"docker-to-podman_rootless::plan\""));
        assert!(xml.contains("name=\"docker-to-podman_rootless::move\""));
        assert!(xml.contains("name=\"docker-to-podman_rootless::verdict\""));
        assert_eq!(xml.matches("<failure").count(), 2, "{xml}");
        assert!(!xml.contains('\u{1b}'), "ANSI escapes must not reach the XML");
    }

    #[test]
    fn a_drill_without_a_verdict_is_an_error_not_a_pass() {
        let xml = junit(&drill(None), None).to_string().unwrap();
        assert!(xml.contains("type=\"interrupted\""), "{xml}");
    }

    #[test]
    fn markdown_leads_with_the_verdict_and_keeps_tables_intact() {
        let md = markdown(&drill(Some(decide(Vec::new(), Vec::new()))));
        assert!(md.contains("**Verdict: GO**"), "{md}");
        assert!(md.contains("| downtime (docker stopped → podman-rootless serving) | 12.3 s |"));
        let move_row = md.lines().find(|l| l.starts_with("| move |")).unwrap();
        assert!(move_row.contains("arrive \\| identical"), "{move_row}");
    }
}
