//! Several runs' reports as one. Every run writes its [`RunSummary`] as `summary.json` next to its
//! parity report, with the same sanitising and redaction as the other reports. `harness report
//! merge` loads the summaries of per-target runs and writes the JUnit and parity reports of all
//! of them together. A CI matrix that runs one target per job gets the same parity table that one
//! run over every target would give.

use std::path::{Path, PathBuf};

use super::{clean, write_file, Redactor};
use crate::error::{HarnessError, Result};
use crate::outcome::RunSummary;

/// The summary's file name in a report directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// Writes `summary.json` in `dir`: every text that came from outside the harness (messages, logs,
/// observed values, versions) cleaned as the other reporters clean it.
pub fn write_summary(summary: &RunSummary, dir: &Path, redactor: Option<&Redactor>) -> Result<PathBuf> {
    let mut s = summary.clone();
    for o in &mut s.outcomes {
        o.message = clean(&o.message, redactor);
        o.logs = o.logs.as_deref().map(|l| clean(l, redactor));
    }
    for o in &mut s.observations {
        o.value = clean(&o.value, redactor);
    }
    for r in &mut s.runtimes {
        for field in [
            &mut r.engine_version,
            &mut r.compose_tool,
            &mut r.compose_version,
            &mut r.storage_driver,
        ] {
            *field = clean(field, redactor);
        }
        for value in r.extra.values_mut() {
            *value = clean(value, redactor);
        }
    }
    let path = dir.join(SUMMARY_FILE);
    let mut text = serde_json::to_string_pretty(&s).map_err(std::io::Error::other)?;
    text.push('\n');
    write_file(&path, text.as_bytes())?;
    Ok(path)
}

/// Reads the `summary.json` of report directory `dir`.
pub fn load_summary(dir: &Path) -> Result<RunSummary> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        HarnessError::usage(format!("cannot read {}: {e}", path.display())).with_hint(
            "pass report directories written by `harness validate --report DIR` (or `cargo test --test migration`)",
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| HarnessError::usage(format!("{} is not a run summary: {e}", path.display())))
}

/// Whether `o` only says that its target was not asked for in that run.
fn placeholder(o: &crate::outcome::CheckOutcome) -> bool {
    o.verdict == crate::outcome::Verdict::Skip
        && o.id == crate::outcome::CheckId::runtime_available()
        && o.message == crate::session::NOT_SELECTED
}

/// One summary of `parts`. Each target comes from the part that ran it (a run over some targets
/// lists the others as not selected: those rows count only for targets no part ran), and the
/// targets are in the harness's order, as one run over all of them would list them. A target
/// run by two parts is refused: its column would mix two runs.
pub fn merge(parts: Vec<(PathBuf, RunSummary)>) -> Result<RunSummary> {
    use crate::runtime::RuntimeKind;
    let mut owner: Vec<(RuntimeKind, usize)> = Vec::new();
    for (i, (from, part)) in parts.iter().enumerate() {
        for o in part.outcomes.iter().filter(|o| !placeholder(o)) {
            match owner.iter().find(|(k, _)| *k == o.runtime) {
                Some((_, j)) if *j != i => {
                    return Err(HarnessError::usage(format!(
                        "{} is reported by both {} and {}",
                        o.runtime,
                        parts[*j].0.display(),
                        from.display()
                    ))
                    .with_hint("merge one report per target (a CI matrix job each)"))
                }
                Some(_) => {}
                None => owner.push((o.runtime, i)),
            }
        }
    }
    // Targets no part ran keep the first part's placeholder.
    for (i, (_, part)) in parts.iter().enumerate() {
        for o in &part.outcomes {
            if !owner.iter().any(|(k, _)| *k == o.runtime) {
                owner.push((o.runtime, i));
            }
        }
    }
    let from_owner = |kind: RuntimeKind, i: usize| owner.iter().any(|(k, j)| *k == kind && *j == i);
    let mut out = RunSummary::default();
    for (i, (_, part)) in parts.into_iter().enumerate() {
        out.runtimes.extend(
            part.runtimes
                .into_iter()
                .filter(|r| r.runtime.is_some_and(|k| from_owner(k, i))),
        );
        out.outcomes
            .extend(part.outcomes.into_iter().filter(|o| from_owner(o.runtime, i)));
        out.observations
            .extend(part.observations.into_iter().filter(|o| from_owner(o.runtime, i)));
    }
    let rank = |k: Option<RuntimeKind>| k.and_then(|k| RuntimeKind::EVERY.iter().position(|a| *a == k));
    out.runtimes.sort_by_key(|r| rank(r.runtime));
    out.outcomes.sort_by_key(|o| rank(Some(o.runtime)));
    out.observations.sort_by_key(|o| rank(Some(o.runtime)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Area, CheckId, CheckOutcome, Observation, RuntimeInfo, Verdict};
    use crate::runtime::RuntimeKind;

    fn outcome(runtime: RuntimeKind, area: Area, name: &str, verdict: Verdict, message: &str) -> CheckOutcome {
        CheckOutcome {
            runtime,
            id: CheckId::new(area, name),
            verdict,
            message: message.into(),
            service: None,
            logs: None,
            seconds: 0.5,
        }
    }

    fn info(runtime: RuntimeKind) -> RuntimeInfo {
        RuntimeInfo {
            runtime: Some(runtime),
            engine: runtime.engine().name().into(),
            engine_version: "1.0".into(),
            compose_tool: "compose".into(),
            compose_version: "2.26.1".into(),
            rootless: runtime.is_rootless(),
            ..Default::default()
        }
    }

    /// One run over three targets, with a divergence and an observation.
    fn whole() -> RunSummary {
        use RuntimeKind::*;
        let mut s = RunSummary::default();
        for k in [Docker, Podman, PodmanRootless] {
            s.runtimes.push(info(k));
            s.outcomes
                .push(outcome(k, Area::Dns, "nginx_resolves_db", Verdict::Pass, "10.0.0.2"));
            let isolated = if k == Docker { Verdict::Pass } else { Verdict::Fail };
            s.outcomes.push(outcome(
                k,
                Area::Ports,
                "db_5432_unreachable_from_nginx",
                isolated,
                "nginx reaches db | across networks",
            ));
            s.observations.push(Observation {
                runtime: k,
                key: "compose.labels".into(),
                value: format!("{k} labels"),
            });
        }
        s
    }

    fn only(s: &RunSummary, k: RuntimeKind) -> RunSummary {
        RunSummary {
            runtimes: s.runtimes.iter().filter(|r| r.runtime == Some(k)).cloned().collect(),
            outcomes: s.outcomes.iter().filter(|o| o.runtime == k).cloned().collect(),
            observations: s.observations.iter().filter(|o| o.runtime == k).cloned().collect(),
        }
    }

    #[test]
    fn per_target_runs_merged_give_the_one_run_parity_table() {
        let whole = whole();
        let one = tempfile::tempdir().unwrap();
        crate::report::write_all(&whole, &one.path().join("junit.xml"), one.path(), None).unwrap();
        let mut parts = Vec::new();
        let mut dirs = Vec::new();
        for k in [RuntimeKind::Docker, RuntimeKind::Podman, RuntimeKind::PodmanRootless] {
            let d = tempfile::tempdir().unwrap();
            crate::report::write_all(&only(&whole, k), &d.path().join("junit.xml"), d.path(), None).unwrap();
            parts.push((d.path().to_path_buf(), load_summary(d.path()).unwrap()));
            dirs.push(d);
        }
        let merged = merge(parts).unwrap();
        let out = tempfile::tempdir().unwrap();
        crate::report::write_all(&merged, &out.path().join("junit.xml"), out.path(), None).unwrap();
        for file in ["parity.md", "parity.json"] {
            assert_eq!(
                std::fs::read_to_string(out.path().join(file)).unwrap(),
                std::fs::read_to_string(one.path().join(file)).unwrap(),
                "{file}"
            );
        }
        let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
        assert_eq!(junit.matches("<testsuite ").count(), 3, "{junit}");
    }

    #[test]
    fn a_target_in_two_parts_is_refused() {
        let whole = whole();
        let docker = only(&whole, RuntimeKind::Docker);
        let err = merge(vec![("a".into(), docker.clone()), ("b".into(), docker)]).unwrap_err();
        assert!(err.to_string().contains("docker is reported by both a and b"), "{err}");
    }

    #[test]
    fn the_summary_is_redacted_like_the_reports() {
        let mut s = whole();
        s.outcomes[0].message = "password=hunter2-very-secret".into();
        let redactor = Redactor::from_pairs([("POSTGRES_PASSWORD", "hunter2-very-secret")]);
        let d = tempfile::tempdir().unwrap();
        let path = write_summary(&s, d.path(), Some(&redactor)).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("hunter2-very-secret"), "{text}");
    }

    #[test]
    fn a_directory_without_a_summary_is_named() {
        let d = tempfile::tempdir().unwrap();
        let err = load_summary(d.path()).unwrap_err();
        assert!(err.to_string().contains("summary.json"), "{err}");
    }
}
