//! The CI templates users copy (`ci/github/hydra.yml`, `ci/gitlab/hydra.gitlab-ci.yml`) against
//! the official schemas, as `check-jsonschema` carries them (`vendor.github-workflows`,
//! `vendor.gitlab-ci`). A copy with a planted mistake must fail the same check, so that a check
//! that passes everything is caught. Without `check-jsonschema` the tests are a visible skip, and
//! a failure under CI (`CI` set), where setup installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// `check-jsonschema`: `HYDRA_CHECK_JSONSCHEMA`, else setup's tools venv, else PATH.
fn checker() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HYDRA_CHECK_JSONSCHEMA") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from("/opt/hydra/junit-venv/bin/check-jsonschema");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("check-jsonschema")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("check-jsonschema"))
}

/// Runs the check; `None` when the checker is missing (a skip, or a panic under CI).
fn check(schema: &str, file: &Path) -> Option<(bool, String)> {
    let Some(bin) = checker() else {
        if std::env::var_os("CI").is_some() {
            panic!("check-jsonschema is missing (scripts/setup-host.sh installs it in /opt/hydra/junit-venv)");
        }
        eprintln!("SKIP: check-jsonschema not installed (run scripts/setup-host.sh)");
        return None;
    };
    let out = Command::new(&bin)
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

/// The template passes; with `from` replaced by `to` it fails.
fn template_holds(schema: &str, rel: &str, from: &str, to: &str) {
    let file = root().join(rel);
    let Some((ok, text)) = check(schema, &file) else { return };
    assert!(ok, "{rel} fails {schema}:\n{text}");
    let good = std::fs::read_to_string(&file).unwrap();
    assert!(good.contains(from), "{rel} no longer contains {from:?}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join(file.file_name().unwrap());
    std::fs::write(&bad, good.replacen(from, to, 1)).unwrap();
    let (ok, text) = check(schema, &bad).expect("checker found above");
    assert!(!ok, "a broken copy of {rel} passed {schema}:\n{text}");
}

#[test]
fn the_github_workflow_passes_the_github_workflow_schema() {
    template_holds(
        "vendor.github-workflows",
        "ci/github/hydra.yml",
        "runs-on: ubuntu-latest",
        "runs-on: [1, 2]",
    );
}

#[test]
fn the_gitlab_job_passes_the_gitlab_ci_schema() {
    template_holds(
        "vendor.gitlab-ci",
        "ci/gitlab/hydra.gitlab-ci.yml",
        "when: always\n  needs:",
        "when: sometimes\n  needs:",
    );
}

/// Both templates publish their reports whatever the outcome, and merge the matrix's reports.
#[test]
fn the_templates_publish_on_failure_and_merge_the_matrix() {
    let gh = std::fs::read_to_string(root().join("ci/github/hydra.yml")).unwrap();
    assert!(
        gh.matches("if: always()").count() >= 5,
        "GitHub steps that must run on failure"
    );
    assert!(gh.contains("harness\" report merge"));
    assert!(gh.contains("GITHUB_STEP_SUMMARY"));
    let gl = std::fs::read_to_string(root().join("ci/gitlab/hydra.gitlab-ci.yml")).unwrap();
    assert!(gl.matches("when: always").count() >= 3);
    assert!(gl.contains("junit: target/hydra/merged/junit.xml"));
    assert!(gl.contains("harness report merge"));
}
