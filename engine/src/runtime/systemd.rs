//! systemd units for a stack's containers, the way a Podman host runs them without compose:
//! Podman writes one unit per container (`podman generate systemd --new`: the unit creates the
//! container afresh, from the command Podman recorded when it was created), and
//! `systemd-analyze verify` checks the units offline, with no systemd running. Docker has no
//! generator; Quadlet, its successor, needs Podman 4.4 or newer.

use std::path::Path;
use std::time::Duration;

use super::{exec, CommandSpec, Interrupt, Runtime};
use crate::error::{HarnessError, Result};

/// The unit Podman names after a container.
pub fn unit_file_name(container: &str) -> String {
    format!("container-{container}.service")
}

/// Podman's unit for `container` (by name), which recreates it on start (`--new`). Docker has
/// none: an error says so.
pub fn generate_unit(runtime: &Runtime, container: &str) -> Result<String> {
    if !runtime.kind().is_podman() {
        return Err(HarnessError::usage(format!(
            "{} has no systemd unit generator; units come from Podman (`podman generate systemd`)",
            runtime.kind().engine().name()
        )));
    }
    let spec = runtime
        .engine()
        .args(["generate", "systemd", "--new", "--no-header", "--name", container])
        .cwd("/");
    Ok(exec::run_ok(&spec, TIMEOUT, Interrupt::Allowed)?.stdout)
}

/// What `systemd-analyze verify` said about `files` (absolute paths of unit files): one line per
/// problem, empty when the units are sound. It runs offline (system manager mode, which also
/// parses user units), and reports most problems on stderr while still exiting 0, so every line
/// it prints counts.
pub fn verify_units(files: &[&Path]) -> Result<Vec<String>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let spec = CommandSpec::new("systemd-analyze")
        .arg("verify")
        .args(files.iter().map(|f| f.display().to_string()))
        .cwd("/");
    let out = exec::run(&spec, TIMEOUT, Interrupt::Allowed)?;
    let mut findings = problems(&out.stdout, &out.stderr);
    if !out.success() && findings.is_empty() {
        findings.push(format!("systemd-analyze verify exited {:?}", out.status));
    }
    Ok(findings)
}

/// The lines of `systemd-analyze verify`'s output that report a problem. Pure.
pub fn problems(stdout: &str, stderr: &str) -> Vec<String> {
    stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Deadline for generating one unit or verifying a stack's units.
const TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;

    #[test]
    fn unit_files_are_named_as_podman_names_them() {
        assert_eq!(unit_file_name("hydra-x-db-1"), "container-hydra-x-db-1.service");
    }

    #[test]
    fn docker_has_no_generator() {
        let e = generate_unit(&Runtime::for_tests(RuntimeKind::Docker), "c").unwrap_err();
        assert!(e.to_string().contains("docker has no systemd unit generator"), "{e}");
    }

    #[test]
    fn every_printed_line_is_a_problem() {
        assert!(problems("", "\n").is_empty());
        assert_eq!(
            problems(
                "",
                "/x/container-a.service:14: Failed to parse service type, ignoring: bogus\n"
            ),
            ["/x/container-a.service:14: Failed to parse service type, ignoring: bogus"]
        );
    }
}
