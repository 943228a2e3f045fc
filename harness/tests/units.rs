//! `harness units` for real, the bundled stack gone afterwards each time:
//! - `<target>::deploy::systemd_units_verify` (podman-compose targets): with the seccomp profile
//!   by absolute path, one unit per container (`podman generate systemd --new`), secrets
//!   redacted, `systemd-analyze verify` finds nothing; the verifier is shown to catch a broken
//!   unit, so a clean verdict means something;
//! - `<target>::deploy::relative_seccomp_path_breaks_the_units`: with the compose file's relative
//!   default, every unit's profile path is reported (a unit starts in `/`), exit 1;
//! - `<target>::deploy::api_created_containers_get_no_units` (Compose v2 targets): Podman
//!   refuses every container Compose v2 created through the API service, and the report says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use hydra::labels;
use hydra::runtime::{systemd, Runtime, RuntimeKind};
use libtest_mimic::{Arguments, Failed};
use serde::Deserialize;

/// The bundled stack's services.
const SERVICES: usize = 7;

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (kind, availability) in common::runtimes() {
        if kind.is_podman() && !kind.via_podman_api() {
            let name = format!("{}::deploy::systemd_units_verify", kind.ident());
            trials.push(common::trial(name, &availability, move || units_verify(kind)));
            let name = format!("{}::deploy::relative_seccomp_path_breaks_the_units", kind.ident());
            trials.push(common::trial(name, &availability, move || relative_path_found(kind)));
        } else if kind.via_podman_api() {
            let name = format!("{}::deploy::api_created_containers_get_no_units", kind.ident());
            trials.push(common::trial(name, &availability, move || api_containers_refused(kind)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The parts of `harness units --format json` this test reads.
#[derive(Deserialize)]
struct Report {
    units: Vec<(String, PathBuf)>,
    refused: Vec<(String, String)>,
    findings: Vec<String>,
}

/// `harness units` under `kind` with the seccomp profile given as `profile` (None: the compose
/// file's relative default); the report and the exit code (nothing of the run may be left).
fn units(kind: RuntimeKind, dir: &Path, profile: Option<&Path>, tag: &str) -> Result<(Report, Option<i32>), Failed> {
    let run_id = format!("units-{tag}-{}-{}", kind.ident().replace('_', "-"), std::process::id());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(["units", "--runtime", kind.name(), "--format", "json", "--report"])
        .arg(dir)
        .env("HYDRA_RUN_ID", &run_id)
        .env_remove("PHOENIX_SECCOMP_PROFILE");
    if let Some(p) = profile {
        cmd.env("PHOENIX_SECCOMP_PROFILE", p);
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Report = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "no units report ({e}), exit {:?}:\n{stdout}\n{stderr}",
            out.status.code()
        )
    })?;
    let rt = Runtime::resolve(kind)?;
    let left = common::objects_with(&rt, &labels::filter(labels::RUN, &run_id));
    if !left.is_empty() {
        return Err(format!("left after `harness units`: {left:?}").into());
    }
    Ok((report, out.status.code()))
}

/// A copy of the seccomp profile at an absolute path the engine's user can read (a rootless
/// engine cannot read the checkout when it lives under `/root`), as a unit needs it.
fn absolute_profile(scratch: &Path) -> Result<PathBuf, Failed> {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch.join("seccomp");
    std::fs::create_dir_all(&dir)?;
    let profile = dir.join("phoenix.json");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/seccomp/phoenix.json"),
        &profile,
    )?;
    for (path, mode) in [(scratch, 0o755), (dir.as_path(), 0o755), (profile.as_path(), 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(profile)
}

/// With the compose file's relative default, every hardened service's unit names a profile
/// path that only means something from the compose directory: reported, exit 1.
fn relative_path_found(kind: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (report, code) = units(kind, dir.path(), None, "rel")?;
    let relative: Vec<&String> = report
        .findings
        .iter()
        .filter(|f| {
            f.contains("`seccomp=../fixtures/seccomp/phoenix.json` is relative")
                && f.contains("/fixtures/seccomp/phoenix.json: give compose an absolute path")
        })
        .collect();
    if code != Some(1) || report.units.len() != SERVICES || relative.len() != SERVICES {
        return Err(format!(
            "exit {code:?}, {} units, expected a relative-path finding per service: {:?}",
            report.units.len(),
            report.findings
        )
        .into());
    }
    Ok(())
}

/// Compose v2 creates containers through Podman's API service, which records its own command
/// as theirs: Podman refuses `generate systemd --new` for each, and the report says so.
fn api_containers_refused(kind: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let profile_dir = tempfile::tempdir()?;
    let profile = absolute_profile(profile_dir.path())?;
    let (report, code) = units(kind, dir.path(), Some(&profile), "api")?;
    let refused_for_api = report
        .refused
        .iter()
        .filter(|(_, why)| why.contains("create command is too short or invalid") && why.contains("system service"))
        .count();
    if code != Some(1) || !report.units.is_empty() || refused_for_api != SERVICES {
        return Err(format!(
            "exit {code:?}, {} units, refused {:?}",
            report.units.len(),
            report.refused
        )
        .into());
    }
    Ok(())
}

fn units_verify(kind: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let profile_dir = tempfile::tempdir()?;
    let profile = absolute_profile(profile_dir.path())?;
    let (report, code) = units(kind, dir.path(), Some(&profile), "abs")?;
    let out_code = code;
    if out_code != Some(0) {
        return Err(format!(
            "exit {out_code:?}: refused {:?}, findings {:?}",
            report.refused, report.findings
        )
        .into());
    }
    if report.units.len() != SERVICES || !report.refused.is_empty() || !report.findings.is_empty() {
        return Err(format!(
            "{} units for {SERVICES} services, refused {:?}, findings {:?}",
            report.units.len(),
            report.refused,
            report.findings
        )
        .into());
    }
    let expected_dir = dir.path().join("systemd").join(kind.name());
    for (service, path) in &report.units {
        if path.parent() != Some(expected_dir.as_path()) {
            return Err(format!(
                "{service}'s unit is outside {}: {}",
                expected_dir.display(),
                path.display()
            )
            .into());
        }
        let text = std::fs::read_to_string(path)?;
        for needle in ["ExecStart=/usr/bin/podman run", "--replace", "[Install]"] {
            if !text.contains(needle) {
                return Err(format!("{service}'s unit has no `{needle}`:\n{text}").into());
            }
        }
        // A secret in the create command (the database password) is redacted, never written.
        for (i, _) in text.match_indices("POSTGRES_PASSWORD=") {
            let value = &text[i + "POSTGRES_PASSWORD=".len()..];
            if !value.starts_with("<redacted:") {
                return Err(format!("{service}'s unit holds the database password in clear").into());
            }
        }
    }
    proves_a_broken_unit_fails(&report.units[0].1, dir.path())?;
    Ok(())
}

/// The same unit with an invalid service type is reported by the verifier.
fn proves_a_broken_unit_fails(unit: &Path, scratch: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(unit)?;
    if !text.contains("Type=notify") {
        return Err(format!("{} has no `Type=notify` to break", unit.display()).into());
    }
    let broken = scratch.join("container-broken.service");
    std::fs::write(&broken, text.replace("Type=notify", "Type=bogus"))?;
    let findings = systemd::verify_units(&[broken.as_path()])?;
    if !findings.iter().any(|f| f.contains("Failed to parse service type")) {
        return Err(format!("a unit with Type=bogus passed systemd-analyze verify: {findings:?}").into());
    }
    Ok(())
}
