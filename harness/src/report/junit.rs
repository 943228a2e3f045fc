//! JUnit XML for CI test tabs: one `<testsuite>` per runtime, one `<testcase>` per check. Built
//! with quick-junit (as nextest does), which escapes `<`, `&` and `]]>` in text and attributes;
//! container logs go through [`sanitize`](super::sanitize) and the redactor first, because raw
//! logs carry ANSI escapes and control bytes that XML 1.0 does not allow.
//!
//! # `NotEnforceable`
//!
//! JUnit has pass, failure, error and skipped, nothing for "the host cannot enforce this". A
//! not-enforceable check is written as `<skipped type="not-enforceable" message="not
//! enforceable: ...">` plus a testcase property `hydra.verdict=not-enforceable`:
//!
//! - skipped is the only JUnit state CI treats as neither green nor red: a failure would break
//!   every build on a host that honestly cannot enforce a limit (rootless on cgroup v1), and a
//!   pass would claim the limit holds;
//! - the message prefix shows the difference to a human in any CI UI, and the `type` attribute
//!   and property let tools (`scripts/check-junit.py`) count it apart from ordinary skips.
//!
//! # `Interrupted`
//!
//! A check the run did not finish because it was stopped (SIGINT/SIGTERM, a cancelled CI job) is
//! written as `<error type="interrupted" message="interrupted: ...">`: it neither passed nor
//! failed, and a skip would let a cancelled job look green.
//!
//! Every testcase carries `hydra.verdict` so the verdicts can be told apart without parsing
//! messages; each suite also carries `hydra.not-enforceable` (a count).

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::redact::Redactor;
use super::{clean, describe, runtime_order, sanitize::expand_tabs, verdict_label, write_file};
use crate::error::Result;
use crate::outcome::{CheckOutcome, RunSummary, RuntimeInfo, Verdict};

/// Where the CLI writes the JUnit file by default (relative to the workspace root).
pub const DEFAULT_JUNIT_PATH: &str = "target/hydra/junit/migration.xml";

/// Name of the `<testsuites>` element.
pub const REPORT_NAME: &str = "hydra-migration";

/// Longest `message` attribute; the full text is in the element body.
const MAX_MESSAGE_CHARS: usize = 500;

/// Builds the JUnit report: one suite per runtime (named by [`RuntimeKind::ident`]), in the order
/// of `summary.runtimes` then first appearance.
///
/// [`RuntimeKind::ident`]: crate::runtime::RuntimeKind::ident
pub fn build_report(summary: &RunSummary, redactor: Option<&Redactor>) -> Report {
    let mut report = Report::new(REPORT_NAME);
    for runtime in runtime_order(summary) {
        let mut suite = TestSuite::new(runtime.ident());
        if let Some(info) = summary.runtimes.iter().find(|i| i.runtime == Some(runtime)) {
            suite.add_properties(suite_properties(info, redactor));
        }
        let outcomes: Vec<&CheckOutcome> = summary.outcomes.iter().filter(|o| o.runtime == runtime).collect();
        let not_enforceable = outcomes.iter().filter(|o| o.verdict == Verdict::NotEnforceable).count();
        suite.add_property(Property::new("hydra.not-enforceable", not_enforceable.to_string()));
        let mut total = Duration::ZERO;
        for o in outcomes {
            let case = test_case(o, redactor);
            total += case.time.unwrap_or_default();
            suite.add_test_case(case);
        }
        suite.set_time(total);
        report.add_test_suite(suite);
    }
    report
}

/// Builds the report and writes it to `path` (creating parent directories).
pub fn write_junit(summary: &RunSummary, path: &Path, redactor: Option<&Redactor>) -> Result<()> {
    let xml = build_report(summary, redactor)
        .to_string()
        .map_err(|e| std::io::Error::other(format!("serialising JUnit report for {}: {e}", path.display())))?;
    write_file(path, xml.as_bytes())
}

fn suite_properties(info: &RuntimeInfo, redactor: Option<&Redactor>) -> Vec<Property> {
    let prop = |name: &str, value: &str| Property::new(xml_text(name, redactor), xml_text(value, redactor));
    let mut props = vec![
        prop("engine.version", &info.engine_version),
        prop("compose.tool", &info.compose_tool),
        prop("compose.version", &info.compose_version),
        prop("rootless", if info.rootless { "true" } else { "false" }),
        prop("storage.driver", &info.storage_driver),
    ];
    props.extend(info.extra.iter().map(|(k, v)| prop(&format!("extra.{k}"), v)));
    props
}

fn test_case(o: &CheckOutcome, redactor: Option<&Redactor>) -> TestCase {
    let full = xml_text(&describe(o), redactor);
    let status = match o.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(attribute(&full))
                .set_type(format!("{}-check-failed", o.id.area));
            s.set_description(full.clone());
            s
        }
        Verdict::Skip => skipped(&full, "skip", ""),
        Verdict::NotEnforceable => skipped(&full, "not-enforceable", "not enforceable: "),
        Verdict::Interrupted => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(format!("interrupted: {}", attribute(&full)))
                .set_type("interrupted");
            s.set_description(full.clone());
            s
        }
    };
    let mut case = TestCase::new(xml_text(&o.id.to_string(), redactor), status);
    case.set_classname(format!("{}::{}", o.runtime.ident(), o.id.area));
    case.set_time(seconds(o.seconds));
    case.add_property(Property::new("hydra.verdict", verdict_label(o.verdict)));
    if let Some(svc) = &o.service {
        case.add_property(Property::new("hydra.service", xml_text(svc, redactor)));
    }
    if let Some(logs) = o.logs.as_deref().filter(|l| !l.trim().is_empty()) {
        case.set_system_out(xml_text(logs, redactor));
    }
    case
}

fn skipped(full: &str, ty: &str, prefix: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(format!("{prefix}{}", attribute(full))).set_type(ty);
    if full.contains('\n') || full.chars().count() > MAX_MESSAGE_CHARS {
        s.set_description(full.to_string());
    }
    s
}

/// Text for the XML: sanitised, redacted, tabs expanded (quick-junit would drop them).
fn xml_text(text: &str, redactor: Option<&Redactor>) -> String {
    expand_tabs(&clean(text, redactor)).into_owned()
}

/// A one-line, bounded form for `message` attributes (parsers fold newlines in attributes).
fn attribute(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.chars().count() > MAX_MESSAGE_CHARS {
        let cut: String = line.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}…")
    } else if text.trim() != line {
        format!("{line} …")
    } else {
        line.to_string()
    }
}

/// A duration from seconds; negative, NaN or absurd values become zero.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, outcome, SECRET};
    use super::*;
    use crate::outcome::Area;
    use crate::runtime::RuntimeKind;
    use quick_xml::events::Event;
    use rstest::rstest;

    /// Parses `xml` with quick-xml, failing on any well-formedness error, and returns the
    /// unescaped text of every `<system-out>`.
    fn parse_system_outs(xml: &str) -> Vec<String> {
        let mut reader = quick_xml::Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        let (mut outs, mut depth_in_out, mut current) = (Vec::new(), false, String::new());
        loop {
            match reader
                .read_event()
                .unwrap_or_else(|e| panic!("not well-formed at {}: {e}", reader.buffer_position()))
            {
                Event::Start(e) if e.name().as_ref() == b"system-out" => depth_in_out = true,
                Event::End(e) if e.name().as_ref() == b"system-out" => {
                    depth_in_out = false;
                    outs.push(std::mem::take(&mut current));
                }
                Event::Text(t) if depth_in_out => current.push_str(&t.xml10_content().unwrap()),
                Event::GeneralRef(r) if depth_in_out => {
                    let name = r.decode().unwrap();
                    let ch = match &*name {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unexpected entity {other}"),
                    };
                    current.push_str(ch);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        outs
    }

    #[test]
    fn nasty_logs_survive_cleaned_and_the_xml_is_well_formed() {
        let mut o = outcome(RuntimeKind::Docker, Area::Health, "db_healthy", Verdict::Fail);
        o.service = Some("db".into());
        o.message = "not healthy after 60s".into();
        o.logs =
            Some("\x1b[31mERROR\x1b[0m: end of CDATA ]]> here\0 and <b>&amp;\x07\r\n\tnext\x1b]0;title\x07\n".into());
        let summary = RunSummary {
            outcomes: vec![o],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/migration.xml");
        write_junit(&summary, &path, None).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(
            !xml.contains('\x1b') && !xml.contains('\0') && !xml.contains('\x07'),
            "{xml:?}"
        );
        assert_eq!(
            parse_system_outs(&xml),
            ["ERROR: end of CDATA ]]> here and <b>&amp;\n        next\n"],
        );
        // quick-junit's own reader agrees, and sees the failure.
        let back = Report::deserialize_from_str(&xml).unwrap();
        let case = &back.test_suites[0].test_cases[0];
        assert!(
            matches!(&case.status, TestCaseStatus::NonSuccess { message: Some(m), .. } if m.as_str() == "db: not healthy after 60s")
        );
    }

    #[test]
    fn suites_cases_and_properties_follow_the_summary() {
        let report = build_report(&fixtures::summary(), None);
        let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["docker", "podman", "podman_rootless"]);
        let rootless = &report.test_suites[2];
        assert_eq!((rootless.tests, rootless.failures, rootless.skipped), (6, 1, 1));
        let props: Vec<(&str, &str)> = rootless
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        for expected in [
            ("engine.version", "4.3.1"),
            ("compose.tool", "podman-compose"),
            ("compose.version", "1.6.0"),
            ("rootless", "true"),
            ("storage.driver", "overlay"),
            ("extra.cgroup_version", "1"),
            ("hydra.not-enforceable", "1"),
        ] {
            assert!(props.contains(&expected), "{expected:?} missing from {props:?}");
        }
        let health = rootless
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "health::db_healthy")
            .unwrap();
        assert_eq!(health.classname.as_deref(), Some("podman_rootless::health"));
        assert_eq!(health.time, Some(Duration::from_millis(61_500)));
    }

    #[rstest]
    #[case::pass(Verdict::Pass, "", None, None)]
    #[case::fail(
        Verdict::Fail,
        "connection refused",
        Some("failure"),
        Some("api: connection refused")
    )]
    #[case::skip(Verdict::Skip, "runtime absent", Some("skip"), Some("runtime absent"))]
    #[case::not_enforceable(
        Verdict::NotEnforceable,
        "cgroup v1",
        Some("not-enforceable"),
        Some("not enforceable: cgroup v1")
    )]
    #[case::interrupted(
        Verdict::Interrupted,
        "not run: the run was interrupted",
        Some("interrupted"),
        Some("interrupted: not run: the run was interrupted")
    )]
    fn verdicts_map_to_junit_states(
        #[case] verdict: Verdict,
        #[case] message: &str,
        #[case] kind: Option<&str>,
        #[case] expected_message: Option<&str>,
    ) {
        let mut o = outcome(RuntimeKind::Podman, Area::Ports, "x", verdict);
        if verdict == Verdict::Fail {
            o.service = Some("api".into());
        }
        o.message = message.into();
        let case = test_case(&o, None);
        let (got_kind, got_message) = match &case.status {
            TestCaseStatus::Success { .. } => (None, None),
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                message,
                ty,
                ..
            } => (ty.as_deref(), message.as_deref()),
            TestCaseStatus::NonSuccess { message, .. } => (Some("failure"), message.as_deref()),
            TestCaseStatus::Skipped { message, ty, .. } => (ty.as_deref(), message.as_deref()),
        };
        assert_eq!((got_kind, got_message), (kind, expected_message));
        let verdict_prop = case
            .properties
            .iter()
            .find(|p| p.name.as_str() == "hydra.verdict")
            .unwrap();
        assert_eq!(verdict_prop.value.as_str(), verdict_label(verdict));
    }

    #[rstest]
    #[case(0.25, Duration::from_millis(250))]
    #[case(-1.0, Duration::ZERO)]
    #[case(f64::NAN, Duration::ZERO)]
    #[case(f64::INFINITY, Duration::ZERO)]
    fn odd_times_do_not_panic(#[case] s: f64, #[case] expected: Duration) {
        assert_eq!(seconds(s), expected);
    }

    #[test]
    fn long_multiline_messages_become_one_bounded_attribute() {
        let long = format!("first line\n{}", "x".repeat(2000));
        assert_eq!(attribute(&long), "first line …");
        let wide = "y".repeat(2000);
        assert_eq!(attribute(&wide).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn secrets_never_reach_the_xml() {
        let xml = build_report(&fixtures::summary(), Some(&fixtures::redactor()))
            .to_string()
            .unwrap();
        assert!(!xml.contains(SECRET));
        assert!(xml.contains("&lt;redacted:POSTGRES_PASSWORD&gt;"));
    }

    /// Writes the fixture run to `target/hydra/junit/sample.xml` (under the workspace) so that
    /// `scripts/check-junit.py` can be run on what the reporter really produces.
    #[test]
    fn writes_the_sample_for_external_consumers() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hydra/junit/sample.xml");
        write_junit(&fixtures::summary(), &path, Some(&fixtures::redactor())).unwrap();
        assert!(Report::deserialize(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).is_ok());
    }
}
