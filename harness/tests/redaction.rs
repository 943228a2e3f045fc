//! Secrets of a run stay out of every output of `harness`: the JUnit file, parity.md,
//! parity.json, stdout and stderr (error messages and the debug trace of command lines included),
//! whether the secret sits in a compose `environment:`, an `env_file:`, the harness's own
//! environment through `${VAR}`, or a build argument, and whether or not the spec knows a
//! database password (the second stack has no `[persistence]`).
//!
//! Trials:
//! - `redaction::build_arg_in_a_failed_build_command_line`: no engine needed; a stand-in `docker`
//!   on PATH fails the one build that carries the secret build argument.
//! - `<runtime>::redaction::secret_env_logged_by_a_crashing_service` and
//!   `<runtime>::redaction::secret_build_arg_of_a_failing_build`: `harness validate` for real on
//!   the second stack plus an overlay from `fixtures/second-stack/overlays/`;
//!   `<runtime>::redaction::up_failure_message_of_a_crashing_service`: the error `harness up`
//!   prints for the first of them. A runtime that is not usable here
//!   is shown as ignored (reason on stderr), or fails when `HYDRA_REQUIRE` names it. Two run at
//!   a time (unless `--test-threads` says otherwise), never two on one engine.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hydra::RuntimeKind;
use libtest_mimic::{Arguments, Failed, Trial};

/// The literal secrets planted by the overlays (see their headers), by name.
const API_TOKEN: &str = "tkn-Qz7vR2mX9pLw4KdT8sYb";
const WORKER_SECRET: &str = "wsec-H4nB8cJ2fT6yM1qZ";
const DEPLOY_TOKEN: &str = "dpl-Vx3Nc8Rt5Wq1Jm7Hf2";

fn main() {
    let mut args = Arguments::from_args();
    // Two at a time, never two on one engine: the failed-build check looks for the build's step
    // containers on the whole engine.
    args.test_threads.get_or_insert(2);
    let mut per_target = Vec::new();
    for (kind, availability) in common::runtimes() {
        let checks: [(&str, Check); 3] = [
            (
                "secret_env_logged_by_a_crashing_service",
                secret_env_logged_by_a_crashing_service,
            ),
            (
                "secret_build_arg_of_a_failing_build",
                secret_build_arg_of_a_failing_build,
            ),
            (
                "up_failure_message_of_a_crashing_service",
                up_failure_message_of_a_crashing_service,
            ),
        ];
        let mut trials = Vec::new();
        for (name, check) in checks {
            let trial_name = format!("{}::redaction::{name}", kind.ident());
            trials.push(common::trial(trial_name, &availability, move || {
                let _engine = common::engine_to_itself(kind);
                check(kind)
            }));
        }
        per_target.push((kind, trials));
    }
    let mut trials = vec![Trial::test(
        "redaction::build_arg_in_a_failed_build_command_line",
        build_arg_in_a_failed_build_command_line,
    )];
    trials.extend(common::engines_in_turn(per_target));
    libtest_mimic::run(&args, trials).exit();
}

type Check = fn(RuntimeKind) -> Result<(), Failed>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn harness() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("harness").expect("binary built");
    cmd.timeout(Duration::from_secs(1500));
    cmd
}

/// What one `harness` run left: its exit code, its two streams and its three report files.
struct Outputs {
    code: Option<i32>,
    texts: Vec<(String, String)>,
}

impl Outputs {
    fn text(&self, what: &str) -> &str {
        self.texts
            .iter()
            .find(|(w, _)| w == what)
            .map(|(_, t)| t.as_str())
            .unwrap_or("")
    }

    /// Every output that contains `value`, by name.
    fn leaking(&self, value: &str) -> Vec<&str> {
        self.texts
            .iter()
            .filter(|(_, t)| t.contains(value))
            .map(|(w, _)| w.as_str())
            .collect()
    }

    /// Fails naming each (secret, output) pair where a secret shows.
    fn assert_none_leaks(&self, secrets: &[(&str, &str)]) -> Result<(), Failed> {
        let leaks: Vec<String> = secrets
            .iter()
            .flat_map(|(name, value)| self.leaking(value).into_iter().map(move |w| format!("{name} in {w}")))
            .collect();
        if leaks.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "secrets leaked: {}\n--- stdout ---\n{}",
                leaks.join(", "),
                self.text("stdout")
            )
            .into())
        }
    }

    /// Fails unless `marker` (a redaction placeholder) shows in one of the outputs: the failure
    /// really carried the secret, so a clean output is redaction, not luck.
    fn assert_shows(&self, marker: &str) -> Result<(), Failed> {
        let xml = marker.replace('<', "&lt;").replace('>', "&gt;");
        if self.texts.iter().any(|(_, t)| t.contains(marker) || t.contains(&xml)) {
            Ok(())
        } else {
            Err(format!(
                "no output shows {marker}: the run did not fail the way the fixture intends\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.text("stdout"),
                self.text("stderr")
            )
            .into())
        }
    }
}

/// `harness validate` on the second stack plus `overlay` under `kind`, reports in a temporary
/// directory, with the debug trace of every command line on stderr.
fn validate_with(kind: RuntimeKind, overlay: &str, env: &[(&str, &str)]) -> Result<Outputs, Failed> {
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("junit.xml");
    let second = root().join("fixtures/second-stack");
    let mut cmd = harness();
    cmd.args(["validate", "--runtime", kind.name(), "--timeout", "120", "--spec"])
        .arg(second.join("spec.toml"))
        .arg("--compose")
        .arg(second.join("compose.yml"))
        .arg("--compose")
        .arg(root().join("fixtures/second-stack/overlays").join(overlay))
        .arg("--junit")
        .arg(&junit)
        .arg("--report")
        .arg(dir.path())
        .env("RUST_LOG", "hydra=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| format!("(not written: {e})"));
    Ok(Outputs {
        code: out.status.code(),
        texts: vec![
            ("stdout".into(), String::from_utf8_lossy(&out.stdout).into_owned()),
            ("stderr".into(), String::from_utf8_lossy(&out.stderr).into_owned()),
            ("JUnit".into(), read(&junit)),
            ("parity.md".into(), read(&dir.path().join("parity.md"))),
            ("parity.json".into(), read(&dir.path().join("parity.json"))),
        ],
    })
}

fn expect_failed_run(out: &Outputs) -> Result<(), Failed> {
    if out.code != Some(hydra::error::exit::FAILED) {
        return Err(format!(
            "exit {:?}, expected {} (the stack must fail)\n--- stderr ---\n{}",
            out.code,
            hydra::error::exit::FAILED,
            out.text("stderr")
        )
        .into());
    }
    for file in ["JUnit", "parity.md", "parity.json"] {
        if out.text(file).starts_with("(not written") {
            return Err(format!("{file} {}", out.text(file)).into());
        }
    }
    if !out.text("parity.json").contains("up_healthy") {
        return Err(format!("parity.json has no lifecycle::up_healthy:\n{}", out.text("parity.json")).into());
    }
    Ok(())
}

/// The reproduction: worker holds secrets from `environment:`, `env_file:` and the
/// harness's environment, prints them and exits; the failure message carries its logs.
fn secret_env_logged_by_a_crashing_service(kind: RuntimeKind) -> Result<(), Failed> {
    let session = format!("sess-{}", uuid::Uuid::new_v4().simple());
    let out = validate_with(
        kind,
        "secret-env-logged-then-crash.yml",
        &[("HYDRA_PROBE_SESSION_VALUE", &session)],
    )?;
    expect_failed_run(&out)?;
    out.assert_none_leaks(&[
        ("API_TOKEN", API_TOKEN),
        ("WORKER_SECRET", WORKER_SECRET),
        ("SESSION_PASSWORD", &session),
    ])?;
    out.assert_shows("<redacted:API_TOKEN>")?;
    out.assert_shows("<redacted:WORKER_SECRET>")?;
    out.assert_shows("<redacted:SESSION_PASSWORD>")
}

/// `harness up` of the crashing worker: the error the CLI prints carries the worker's logs.
fn up_failure_message_of_a_crashing_service(kind: RuntimeKind) -> Result<(), Failed> {
    let session = format!("sess-{}", uuid::Uuid::new_v4().simple());
    let second = root().join("fixtures/second-stack");
    let out = harness()
        .args(["up", "--runtime", kind.name(), "--timeout", "120", "--compose"])
        .arg(second.join("compose.yml"))
        .arg("--compose")
        .arg(root().join("fixtures/second-stack/overlays/secret-env-logged-then-crash.yml"))
        .env("HYDRA_PROBE_SESSION_VALUE", &session)
        .env("RUST_LOG", "hydra=debug")
        .output()?;
    let out = Outputs {
        code: out.status.code(),
        texts: vec![
            ("stdout".into(), String::from_utf8_lossy(&out.stdout).into_owned()),
            ("stderr".into(), String::from_utf8_lossy(&out.stderr).into_owned()),
        ],
    };
    if out.code != Some(hydra::error::exit::FAILED) {
        return Err(format!(
            "exit {:?}, expected 1\n--- stderr ---\n{}",
            out.code,
            out.text("stderr")
        )
        .into());
    }
    out.assert_none_leaks(&[
        ("API_TOKEN", API_TOKEN),
        ("WORKER_SECRET", WORKER_SECRET),
        ("SESSION_PASSWORD", &session),
    ])?;
    out.assert_shows("<redacted:API_TOKEN>")?;
    out.assert_shows("<redacted:WORKER_SECRET>")?;
    out.assert_shows("<redacted:SESSION_PASSWORD>")
}

/// A build that fails with a secret build argument: its command line is in the failure message.
/// The failed step's container must not outlive the build either (it holds the build argument).
fn secret_build_arg_of_a_failing_build(kind: RuntimeKind) -> Result<(), Failed> {
    let out = validate_with(kind, "secret-build-arg-build-fails.yml", &[]);
    let left = remove_failed_step_containers(kind)?;
    let out = out?;
    expect_failed_run(&out)?;
    out.assert_none_leaks(&[("DEPLOY_TOKEN", DEPLOY_TOKEN)])?;
    out.assert_shows("<redacted:DEPLOY_TOKEN>")?;
    if !left.is_empty() {
        return Err(format!("the failed build left its step container(s) behind: {left:?}").into());
    }
    Ok(())
}

/// Containers of the fixture's failing build step (the engine names none of them after us, so
/// they are found by their command), removed; returns what was there.
fn remove_failed_step_containers(kind: RuntimeKind) -> Result<Vec<String>, Failed> {
    use hydra::runtime::{exec, Interrupt, Runtime};
    let rt = Runtime::resolve(kind)?;
    let list = rt
        .engine()
        .args(["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"]);
    let out = exec::run_ok(&list, Duration::from_secs(60), Interrupt::Ignored)?;
    let ids: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| l.contains("deploying with DEPLOY_TOKEN"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    if !ids.is_empty() {
        let rm = rt.engine().args(["rm", "-f"]).args(ids.iter().cloned());
        exec::run_ok(&rm, Duration::from_secs(60), Interrupt::Ignored)?;
    }
    Ok(ids)
}

/// Without any engine: `harness images` with a stand-in `docker` that builds every image but
/// fails the one whose command line carries `DEPLOY_TOKEN`, echoing its arguments as a real
/// builder's error would. The error message and the debug trace must not show the value.
fn build_arg_in_a_failed_build_command_line() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let fake = bin.join("docker");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         case \"$1\" in\n\
         build) case \"$*\" in *DEPLOY_TOKEN*) echo \"build failed: $*\" >&2; exit 1;; esac; exit 0;;\n\
         image) echo sha256:0000; exit 0;;\n\
         *) exit 0;;\n\
         esac\n",
    )?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let out = harness()
        .args(["images", "--runtime", "docker", "--compose"])
        .arg(root().join("fixtures/second-stack/compose.yml"))
        .arg("--compose")
        .arg(root().join("fixtures/second-stack/overlays/secret-build-arg-build-fails.yml"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("RUST_LOG", "hydra=debug")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() != Some(hydra::error::exit::FAILED) || !stderr.contains("--build-arg") {
        return Err(format!(
            "expected the build to fail with its command line (exit {:?})\n--- stderr ---\n{stderr}",
            out.status.code()
        )
        .into());
    }
    if stderr.contains(DEPLOY_TOKEN) || stdout.contains(DEPLOY_TOKEN) {
        return Err(format!("DEPLOY_TOKEN leaked\n--- stderr ---\n{stderr}").into());
    }
    if !stderr.contains("error: `docker build") || !stderr.contains("--build-arg DEPLOY_TOKEN=<redacted:DEPLOY_TOKEN>")
    {
        return Err(format!("the error does not show the redacted command line\n--- stderr ---\n{stderr}").into());
    }
    // Once in the debug trace of the command line, at least once in the error.
    if !stderr.contains("DEBUG") || stderr.matches("DEPLOY_TOKEN=<redacted:DEPLOY_TOKEN>").count() < 2 {
        return Err(format!("no redacted debug trace of the build command line\n--- stderr ---\n{stderr}").into());
    }
    Ok(())
}
