//! The stack as a Podman host runs it without compose: one systemd unit per container, written to
//! the report directory and verified offline, so a team sees before it leaves compose whether its
//! stack turns into sound units. The units recreate each container from the command that created
//! it (`podman generate systemd --new`); secrets of the stack in those commands are redacted.
//! Besides `systemd-analyze verify`, host paths that compose resolved against the project
//! directory but a unit would resolve against `/` are reported.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::report::Redactor;
use crate::runtime::{systemd, RuntimeKind};
use crate::stack::Stack;

/// What became of a stack's containers as systemd units.
#[derive(Debug, Clone, Serialize)]
pub struct UnitsReport {
    /// The target the stack ran under.
    pub target: RuntimeKind,
    /// Where the units were written.
    pub dir: PathBuf,
    /// One unit file per service, by service name.
    pub units: Vec<(String, PathBuf)>,
    /// Services the engine would not write a unit for, with its answer.
    pub refused: Vec<(String, String)>,
    /// What `systemd-analyze verify` reported about the written units (empty: sound).
    pub findings: Vec<String>,
}

impl UnitsReport {
    /// Every service has a unit and the verifier found nothing.
    pub fn sound(&self) -> bool {
        !self.units.is_empty() && self.refused.is_empty() && self.findings.is_empty()
    }
}

/// Writes a unit for every container of `stack` into `dir` (redacted), then verifies them.
pub fn systemd_units(stack: &Stack, dir: &Path, redactor: &Redactor) -> Result<UnitsReport> {
    let mut report = UnitsReport {
        target: stack.record().runtime,
        dir: dir.to_path_buf(),
        units: Vec::new(),
        refused: Vec::new(),
        findings: Vec::new(),
    };
    // Found while writing: the units are not read back.
    let mut relative = Vec::new();
    for (service, container) in stack.containers()? {
        let name = container.short_name().to_string();
        match systemd::generate_unit(stack.runtime(), &name) {
            Ok(text) => {
                let path = dir.join(systemd::unit_file_name(&name));
                crate::report::write_file(&path, redactor.redact(&text).as_bytes())?;
                relative.extend(relative_paths(&text).into_iter().map(|p| {
                    format!(
                        "{service}: `{p}` is relative to the compose project, but systemd starts the unit in /, \
                         where it names {}: give compose an absolute path",
                        from_root(p.split_once('=').map_or(p.as_str(), |(_, v)| v))
                    )
                }));
                report.units.push((service, path));
            }
            Err(e) => report
                .refused
                .push((service, redactor.redact(&e.to_string()).into_owned())),
        }
    }
    let files: Vec<&Path> = report.units.iter().map(|(_, p)| p.as_path()).collect();
    report.findings = systemd::verify_units(&files)?;
    report.findings.extend(relative);
    Ok(report)
}

/// Where a relative path lands when resolved against `/` (`..` stops at the root). Pure.
fn from_root(relative: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Host paths in a unit's `podman run` that are relative (`seccomp=../x.json`, `-v ./data:/d`,
/// `--env-file x.env`): compose resolved them against the project directory, a unit resolves them
/// against its working directory, `/`. `systemd-analyze verify` does not look inside commands.
/// Pure.
pub fn relative_paths(unit: &str) -> Vec<String> {
    let words: Vec<&str> = unit
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter(|w| !w.is_empty())
        .collect();
    let relative = |p: &str| p.starts_with("./") || p.starts_with("../");
    let mut found = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or_default();
        let candidate = match *w {
            "--security-opt" if next.starts_with("seccomp=") => Some(next.to_string()),
            "-v" | "--volume" => next.split(':').next().filter(|src| relative(src)).map(String::from),
            "--env-file" => Some(next.to_string()),
            _ => None,
        };
        if let Some(c) = candidate {
            let path = c.split_once('=').map_or(c.as_str(), |(_, v)| v);
            if (relative(path) || (!path.starts_with('/') && path.contains('/'))) && !found.contains(&c) {
                found.push(c);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_host_paths_in_a_unit_are_found() {
        let unit = "ExecStart=/usr/bin/podman run \\\n\t--security-opt seccomp=../fixtures/seccomp/phoenix.json \\\n\
                    \t--security-opt no-new-privileges:true \\\n\t-v ./data:/data \\\n\t-v pgdata:/var/lib/pg \\\n\
                    \t-v /abs/schema.sql:/s.sql:ro \\\n\t--env-file ../x.env img\n";
        assert_eq!(
            relative_paths(unit),
            ["seccomp=../fixtures/seccomp/phoenix.json", "./data", "../x.env"]
        );
    }

    #[test]
    fn a_relative_path_is_shown_where_a_unit_finds_it() {
        assert_eq!(
            from_root("../fixtures/seccomp/phoenix.json"),
            "/fixtures/seccomp/phoenix.json"
        );
        assert_eq!(from_root("./data"), "/data");
    }

    #[test]
    fn absolute_paths_and_named_volumes_are_fine() {
        let unit = "ExecStart=/usr/bin/podman run --security-opt seccomp=/srv/p.json -v data:/d -v /x:/y img\n";
        assert!(relative_paths(unit).is_empty());
    }
}
