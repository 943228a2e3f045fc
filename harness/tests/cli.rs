//! The `harness` binary's exit codes and messages for bad input and unusable runtimes. These runs
//! never start a stack: each fails before, which is what they check.

use assert_cmd::Command;
use predicates::prelude::*;

fn harness() -> Command {
    let mut cmd = Command::cargo_bin("harness").expect("binary built");
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}

#[test]
fn unknown_runtime_is_a_usage_error_with_the_choices() {
    harness()
        .args(["doctor", "--runtime", "containerd"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown runtime 'containerd'").and(predicate::str::contains(
                "docker, docker-v1, podman, podman-v2, podman-kube, podman-rootless, podman-rootless-v2, podman-rootless-kube",
            )),
        );
}

#[test]
fn validate_reads_a_comma_separated_runtime_list_and_names_the_bad_entry() {
    harness()
        .args(["validate", "--runtime", "podman-kube,containerd"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown runtime 'containerd'"));
}

#[test]
fn doctor_names_a_missing_engine_and_how_to_fix_it() {
    harness()
        .args(["doctor", "--runtime", "docker"])
        .env("PATH", "/nonexistent")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("`docker` not found on PATH").and(predicate::str::contains("setup-host.sh")));
}

#[test]
fn doctor_names_a_missing_rootless_user() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: only as root does the harness switch to HYDRA_ROOTLESS_USER");
        return;
    }
    harness()
        .args(["doctor", "--runtime", "podman-rootless"])
        .env("HYDRA_ROOTLESS_USER", "no-such-hydra-user")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("user 'no-such-hydra-user' does not exist"));
}

#[test]
fn missing_compose_file_is_a_usage_error_naming_it() {
    let state = tempfile::tempdir().unwrap();
    harness()
        .args(["up", "--runtime", "docker", "--compose", "/nonexistent/stack.yml"])
        .env("HYDRA_STATE_DIR", state.path())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("/nonexistent/stack.yml")
                .and(predicate::str::contains("hint: pass an existing file")),
        );
}

#[test]
fn invalid_compose_file_is_a_usage_error_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, "services:\n  web: {}\n").unwrap();
    harness()
        .args(["images", "--runtime", "docker", "--compose"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("service 'web' has neither image nor build"));
}

#[test]
fn non_loopback_bind_address_is_refused() {
    harness()
        .args(["up", "--runtime", "docker", "--bind-ip", "0.0.0.0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a loopback address"));
}

#[test]
fn down_without_a_kept_stack_says_so() {
    let state = tempfile::tempdir().unwrap();
    harness()
        .args(["down", "--runtime", "podman"])
        .env("HYDRA_STATE_DIR", state.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no stack left running by `harness up` for runtime podman",
        ));
}

#[test]
fn doctor_json_is_one_parseable_array_with_the_same_exit_code() {
    let out = harness()
        .args([
            "doctor",
            "--runtime",
            "docker",
            "--runtime",
            "podman",
            "--format",
            "json",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let reports = v.as_array().expect("an array");
    assert_eq!(reports.len(), 2);
    assert!(v.to_string().contains("not found on PATH"), "{v}");
}

#[test]
fn gc_json_says_which_engines_were_skipped_and_why() {
    let state = tempfile::tempdir().unwrap();
    let out = harness()
        .args(["gc", "--format", "json"])
        .env("PATH", "/nonexistent")
        .env("HYDRA_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let engines = v["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 3, "{v}");
    assert!(engines.iter().all(|e| e["skipped"].is_string()), "{v}");
    assert_eq!(v["stream_dirs_removed"], serde_json::json!([]));
}

#[test]
fn gc_skips_unreachable_runtimes_visibly_and_succeeds() {
    harness()
        .arg("gc")
        .env("PATH", "/nonexistent")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("docker: skipped").and(predicate::str::contains("podman-rootless: skipped")));
}

#[test]
fn validate_fails_with_code_3_when_a_required_runtime_is_missing() {
    let report = tempfile::tempdir().unwrap();
    harness()
        .args(["validate", "--runtime", "docker", "--report"])
        .arg(report.path())
        .arg("--junit")
        .arg(report.path().join("junit.xml"))
        .env("PATH", "/nonexistent")
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "FAIL docker: installed: `docker` not found on PATH",
        ));
    let json = std::fs::read_to_string(report.path().join("parity.json")).unwrap();
    assert!(
        json.contains("runtime_available") && json.contains("not found on PATH"),
        "{json}"
    );
    assert!(std::fs::read_to_string(report.path().join("junit.xml"))
        .unwrap()
        .contains("<failure"));
}

#[test]
fn validate_json_summarises_targets_failures_reports_and_exit_code() {
    let report = tempfile::tempdir().unwrap();
    let out = harness()
        .args(["validate", "--runtime", "docker", "--format", "json", "--report"])
        .arg(report.path())
        .arg("--junit")
        .arg(report.path().join("junit.xml"))
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(v["targets"][0]["runtime"], "docker", "{v}");
    assert_eq!(v["targets"][0]["failed"], 1, "{v}");
    assert_eq!(v["failures"][0]["trial"], "docker::lifecycle::runtime_available", "{v}");
    assert!(
        v["reports"]["junit"].as_str().is_some_and(|p| p.ends_with("junit.xml")),
        "{v}"
    );
}

/// `validate` with every engine missing: only the runtime_available trial per target, which
/// still makes a JUnit file, a parity report and a summary.
fn validate_without_engines(dir: &std::path::Path, runtimes: &[&str]) {
    let mut cmd = harness();
    cmd.arg("validate");
    for r in runtimes {
        cmd.args(["--runtime", r, "--require", r]);
    }
    cmd.arg("--report")
        .arg(dir)
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .env("PATH", "/nonexistent")
        .assert()
        .code(3);
}

#[test]
fn report_merge_of_per_target_runs_gives_the_one_run_parity_table() {
    let (one, a, b, merged) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    validate_without_engines(one.path(), &["docker", "podman"]);
    validate_without_engines(a.path(), &["docker"]);
    validate_without_engines(b.path(), &["podman"]);
    harness()
        .args(["report", "merge"])
        .arg(a.path())
        .arg(b.path())
        .arg("--report")
        .arg(merged.path())
        .arg("--junit")
        .arg(merged.path().join("junit.xml"))
        .assert()
        // As the one run says: no target could be used.
        .code(3)
        .stdout(predicate::str::contains("merged 2 report(s)"));
    assert_eq!(
        std::fs::read_to_string(merged.path().join("parity.md")).unwrap(),
        std::fs::read_to_string(one.path().join("parity.md")).unwrap()
    );
    let junit = std::fs::read_to_string(merged.path().join("junit.xml")).unwrap();
    // One suite per target, as in the one run (the targets neither part ran are skipped).
    assert_eq!(junit.matches("<testsuite ").count(), 6, "{junit}");
    assert!(junit.contains("failures=\"2\""), "{junit}");
    // The same target twice is refused, naming both reports.
    harness()
        .args(["report", "merge"])
        .arg(a.path())
        .arg(a.path())
        .arg("--report")
        .arg(merged.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("docker is reported by both"));
}

#[test]
fn validate_rejects_a_bad_spec_with_code_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, "[services.web]\npublished = [80]\n").unwrap();
    harness()
        .args(["validate", "--spec"])
        .arg(&spec)
        .arg("--compose")
        .arg(hydra::workspace::bundled_compose_file())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "line 1: service 'web' is not a service of the compose file",
        ));
}

#[test]
fn an_installed_binary_without_its_source_tree_says_how_to_point_at_a_stack() {
    let state = tempfile::tempdir().unwrap();
    let gone = tempfile::tempdir().unwrap();
    harness()
        .args(["validate", "--runtime", "docker"])
        .env("HYDRA_ROOT", gone.path())
        .env("HYDRA_STATE_DIR", state.path())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("fixtures/phoenix.spec.toml").and(predicate::str::contains(
                "set HYDRA_ROOT to a checkout of the repository",
            )),
        );
}
