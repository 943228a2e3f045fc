//! Reporters: turn a finished run ([`RunSummary`]) into the files CI and people read. They see
//! outcomes, never engines, and do no I/O beyond writing their files (and, for
//! [`secrets_source`], reading the run's compose and env files).
//!
//! - [`junit`]: JUnit XML, one testsuite per runtime (CI test tabs).
//! - [`parity`]: `parity.md` / `parity.json`, check × runtime with divergences first.
//! - [`terminal`]: a short summary for the CLI.
//! - [`merge`]: `summary.json`, and several runs' summaries as one (`harness report merge`).
//! - [`sanitize`] and [`redact`]: what every reporter applies to text it did not write itself;
//!   [`secrets_source`]: which values a run redacts.

pub mod junit;
pub mod merge;
pub mod parity;
pub mod redact;
pub mod sanitize;
pub mod secrets_source;
pub mod terminal;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::outcome::{CheckOutcome, RunSummary, Verdict};
use crate::runtime::RuntimeKind;

pub use junit::{write_junit, DEFAULT_JUNIT_PATH};
pub use parity::{write_parity, ParityReport, DEFAULT_REPORT_DIR};
pub use redact::Redactor;

/// The files [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenReports {
    /// The JUnit XML file.
    pub junit: PathBuf,
    /// The parity report for people (`parity.md`).
    pub parity_md: PathBuf,
    /// The parity report for tools (`parity.json`).
    pub parity_json: PathBuf,
    /// The run itself, for `harness report merge`.
    pub summary_json: PathBuf,
}

impl WrittenReports {
    /// All written paths, JUnit first.
    pub fn paths(&self) -> [&Path; 4] {
        [&self.junit, &self.parity_md, &self.parity_json, &self.summary_json]
    }
}

/// Writes the JUnit file at `junit_path` and `parity.md` / `parity.json` / `summary.json` in
/// `report_dir` (creating parent directories), redacting secrets with `redactor` when given.
pub fn write_all(
    summary: &RunSummary,
    junit_path: &Path,
    report_dir: &Path,
    redactor: Option<&Redactor>,
) -> Result<WrittenReports> {
    write_junit(summary, junit_path, redactor)?;
    let (parity_md, parity_json) = write_parity(summary, report_dir, redactor)?;
    let summary_json = merge::write_summary(summary, report_dir, redactor)?;
    Ok(WrittenReports {
        junit: junit_path.to_path_buf(),
        parity_md,
        parity_json,
        summary_json,
    })
}

/// Writes a kube-play target's played YAML to `DIR/kube/<target>.played.yaml` (redacted, though
/// it holds no value of an env file: those are secret references).
pub fn write_played_yaml(
    report_dir: &Path,
    kind: RuntimeKind,
    yaml: &str,
    redactor: Option<&Redactor>,
) -> Result<PathBuf> {
    let path = report_dir.join("kube").join(format!("{}.played.yaml", kind.name()));
    write_file(&path, redact::redact_opt(redactor, yaml).as_bytes())?;
    Ok(path)
}

/// Sanitises then redacts text that came from outside the harness (messages, logs, facts).
/// Sanitising first means a secret split by an escape sequence or NUL is still found.
pub(crate) fn clean(text: &str, redactor: Option<&Redactor>) -> String {
    let sanitized = sanitize::sanitize(text);
    redact::redact_opt(redactor, &sanitized).into_owned()
}

/// Short lowercase label of a verdict, as used in tables: `pass`, `fail`, `skip`,
/// `not-enforceable`, `interrupted`.
pub fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Skip => "skip",
        Verdict::NotEnforceable => "not-enforceable",
        Verdict::Interrupted => "interrupted",
    }
}

/// Runtimes in report order: those described in `summary.runtimes`, then any other that has an
/// outcome or observation, each once, in order of first appearance.
pub(crate) fn runtime_order(summary: &RunSummary) -> Vec<RuntimeKind> {
    let mut order = Vec::new();
    let seen = summary
        .runtimes
        .iter()
        .filter_map(|r| r.runtime)
        .chain(summary.outcomes.iter().map(|o| o.runtime))
        .chain(summary.observations.iter().map(|o| o.runtime));
    for r in seen {
        if !order.contains(&r) {
            order.push(r);
        }
    }
    order
}

/// `<service>: <message>` (or just one of them), the way failures are named everywhere.
pub(crate) fn describe(o: &CheckOutcome) -> String {
    let msg = o.message.trim();
    match o.service.as_deref() {
        Some(svc) if msg.is_empty() => format!("{svc}: {}", verdict_label(o.verdict)),
        Some(svc) if !names_service(msg, svc) => format!("{svc}: {msg}"),
        _ if msg.is_empty() => verdict_label(o.verdict).to_string(),
        _ => msg.to_string(),
    }
}

/// Whether `msg` already starts with the service name as a word (`db never ...`, not `dbus`).
fn names_service(msg: &str, svc: &str) -> bool {
    msg.strip_prefix(svc)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '-'))
}

/// Writes `bytes` to `path` through a temporary file and a rename, creating parent directories,
/// so that a reader never sees a half-written report. Errors name the path.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let ctx =
        |what: &str, p: &Path, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ctx("creating directory", parent, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| ctx("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ctx("writing", path, e)
    })?;
    Ok(())
}

/// Hand-built summaries shared by the reporters' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    /// The targets the report fixtures cover: one per engine.
    pub const TARGETS: [super::RuntimeKind; 3] = [
        super::RuntimeKind::Docker,
        super::RuntimeKind::Podman,
        super::RuntimeKind::PodmanRootless,
    ];

    use std::collections::BTreeMap;

    use crate::outcome::{Area, CheckId, CheckOutcome, Observation, RunSummary, RuntimeInfo, Verdict};
    use crate::runtime::RuntimeKind;

    /// The password every fixture leaks somewhere, and the redactor that knows it.
    pub const SECRET: &str = "s3cr3t-phoenix-pw";

    pub fn redactor() -> super::Redactor {
        super::Redactor::from_pairs([("POSTGRES_PASSWORD", SECRET)])
    }

    /// An outcome of `<area>::<name>`, or of `<area>::<service>::<check>` for a posture name
    /// `<service>::<check>`.
    pub fn outcome(runtime: RuntimeKind, area: Area, name: &str, verdict: Verdict) -> CheckOutcome {
        let id = match name.split_once("::") {
            Some((service, check)) => CheckId::of_service(area, service, check),
            None => CheckId::new(area, name),
        };
        CheckOutcome {
            runtime,
            id,
            verdict,
            message: String::new(),
            service: None,
            logs: None,
            seconds: 0.25,
        }
    }

    pub fn info(runtime: RuntimeKind) -> RuntimeInfo {
        let engine = if runtime.is_podman() { "4.3.1" } else { "20.10.24" };
        let tool = crate::compose::tool_for(runtime);
        let tool_version = match tool {
            crate::compose::ComposeTool::DockerComposeV2 => "2.26.1-4",
            crate::compose::ComposeTool::DockerComposeV1 => "1.29.2",
            crate::compose::ComposeTool::PodmanCompose => "1.6.0",
            crate::compose::ComposeTool::PodmanKubePlay => "4.3.1",
        };
        let rootless = runtime.is_rootless();
        RuntimeInfo {
            runtime: Some(runtime),
            engine: runtime.engine().name().into(),
            engine_version: engine.into(),
            compose_tool: tool.to_string(),
            compose_version: tool_version.into(),
            rootless,
            storage_driver: "overlay".into(),
            extra: BTreeMap::from([
                ("cgroup_version".to_string(), "1".to_string()),
                ("db_url".to_string(), format!("postgres://phoenix:{SECRET}@db/phoenix")),
            ]),
        }
    }

    /// Three runtimes, areas dns/ports/health/persistence/posture, one divergence per kind of
    /// verdict, a failure with nasty logs, and a secret in a message, a log and a property.
    pub fn summary() -> RunSummary {
        use RuntimeKind::*;
        use Verdict::*;
        let mut outcomes = Vec::new();
        for rt in TARGETS {
            outcomes.push(outcome(rt, Area::Dns, "nginx_resolves_api", Pass));
            outcomes.push(outcome(rt, Area::Ports, "only_nginx_published", Pass));
            outcomes.push(outcome(rt, Area::Persistence, "db_survives_restart", Pass));
            let mut health = outcome(rt, Area::Health, "db_healthy", Pass);
            if rt == PodmanRootless {
                health.verdict = Fail;
                health.service = Some("db".into());
                health.message = format!("not healthy after 60s: password authentication failed ({SECRET})");
                health.logs = Some(format!(
                    "\x1b[31mERROR\x1b[0m:  FATAL: password {SECRET} rejected ]]> <tag> & \0nul\r\n\tindented\n"
                ));
                health.seconds = 61.5;
            }
            outcomes.push(health);
            let mut mem = outcome(rt, Area::Posture, "api::memory_limit", Pass);
            mem.service = Some("api".into());
            if rt == PodmanRootless {
                mem.verdict = NotEnforceable;
                mem.message = "memory limits need cgroup v2 for rootless".into();
            }
            outcomes.push(mem);
            let mut seccomp = outcome(rt, Area::Posture, "api::seccomp", Pass);
            if rt == Podman {
                seccomp.verdict = Skip;
                seccomp.message = "seccomp profile not accepted by this runtime".into();
            }
            outcomes.push(seccomp);
        }
        let observations = vec![
            Observation {
                runtime: Docker,
                key: "depends_on.service_healthy".into(),
                value: "honoured".into(),
            },
            Observation {
                runtime: Podman,
                key: "depends_on.service_healthy".into(),
                value: "ignored".into(),
            },
            Observation {
                runtime: PodmanRootless,
                key: "depends_on.service_healthy".into(),
                value: "ignored".into(),
            },
            Observation {
                runtime: Docker,
                key: "healthcheck.driver".into(),
                value: "engine".into(),
            },
            Observation {
                runtime: Podman,
                key: "healthcheck.driver".into(),
                value: "harness".into(),
            },
        ];
        RunSummary {
            runtimes: TARGETS.iter().map(|&r| info(r)).collect(),
            outcomes,
            observations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_writes_four_files_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit/migration.xml");
        let written = write_all(
            &fixtures::summary(),
            &junit,
            &dir.path().join("hydra"),
            Some(&fixtures::redactor()),
        )
        .unwrap();
        assert_eq!(written.junit, junit);
        for p in written.paths() {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(!text.contains(fixtures::SECRET), "{} leaks the secret", p.display());
            assert!(
                text.contains("<redacted:POSTGRES_PASSWORD>") || text.contains("&lt;redacted:POSTGRES_PASSWORD&gt;"),
                "{} does not show the redaction",
                p.display()
            );
        }
        // Without a redactor the secret does appear: the test above proves something.
        let leaky = dir.path().join("leaky.xml");
        write_junit(&fixtures::summary(), &leaky, None).unwrap();
        assert!(std::fs::read_to_string(&leaky).unwrap().contains(fixtures::SECRET));
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = write_all(&RunSummary::default(), &file.join("a.xml"), dir.path(), None).unwrap_err();
        assert!(err.to_string().contains(&*file.display().to_string()), "{err}");
    }

    #[test]
    fn describe_names_service_and_cause() {
        let mut o = fixtures::outcome(RuntimeKind::Docker, crate::outcome::Area::Health, "db", Verdict::Fail);
        assert_eq!(describe(&o), "fail");
        o.service = Some("db".into());
        assert_eq!(describe(&o), "db: fail");
        o.message = "not healthy".into();
        assert_eq!(describe(&o), "db: not healthy");
        o.message = "db never became healthy".into();
        assert_eq!(describe(&o), "db never became healthy");
        o.message = "dbus is missing".into();
        assert_eq!(describe(&o), "db: dbus is missing");
    }
}
