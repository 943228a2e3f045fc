//! The generated YAML against the Kubernetes schemas, with `kubernetes-validate` (PyPI; it bundles
//! the schemas of each Kubernetes version it supports and works offline). `--strict` rejects
//! fields the schema does not know, so a misspelt field fails instead of being dropped by the API
//! server (or by `podman kube play`, which ignores unknown fields silently).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::{HarnessError, Result};
use crate::runtime::exec::{self, CommandSpec, Interrupt};

/// The `kubernetes-validate` release setup installs (`scripts/setup-host.sh`).
pub const VALIDATOR_VERSION: &str = "1.37.0";
/// The Kubernetes version whose schemas the YAML is checked against: what `podman kube play` 4.3
/// reads is a subset of it, and clusters of that age and newer accept it.
pub const KUBERNETES_VERSION: &str = "1.29.0";
/// Where setup installs the validator.
pub const VENV_VALIDATOR: &str = "/opt/hydra/kube-validate-venv/bin/kubernetes-validate";
/// Names the validator to use instead of the venv's or the one on `PATH`.
pub const VALIDATOR_ENV: &str = "HYDRA_KUBE_VALIDATE";

const TIMEOUT: Duration = Duration::from_secs(120);

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The document does not match its schema (or the file could not be read).
    Error,
    /// The document was not checked (no schema for its kind): not proven valid either.
    Warning,
}

/// One problem the validator reported, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaFinding {
    /// Error or warning.
    pub level: Level,
    /// `kind/name` of the document, when the validator names it.
    pub resource: Option<String>,
    /// The validator's message.
    pub message: String,
}

/// What the validator said about one file.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaReport {
    /// The validator that ran.
    pub validator: PathBuf,
    /// The schema version.
    pub kubernetes_version: String,
    /// The file checked.
    pub file: PathBuf,
    /// Problems (empty: every document matches its schema).
    pub findings: Vec<SchemaFinding>,
}

impl SchemaReport {
    /// Every document was checked and matches its schema.
    pub fn valid(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The validator: `HYDRA_KUBE_VALIDATE`, else setup's venv, else `kubernetes-validate` on `PATH`;
/// `None` when the chosen one is not there.
pub fn validator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(VALIDATOR_ENV) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let venv = PathBuf::from(VENV_VALIDATOR);
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file())
}

/// Checks `file` (strict, against [`KUBERNETES_VERSION`]). A missing validator is a host error
/// (exit 3) naming how to install it.
pub fn validate(file: &Path) -> Result<SchemaReport> {
    if let Some(named) = std::env::var_os(VALIDATOR_ENV).filter(|p| !Path::new(p).is_file()) {
        return Err(HarnessError::Host {
            reason: format!(
                "{VALIDATOR_ENV} names {}, which does not exist",
                Path::new(&named).display()
            ),
            hint: format!(
                "point {VALIDATOR_ENV} at kubernetes-validate, or unset it to use /opt/hydra/kube-validate-venv"
            ),
        });
    }
    let bin = validator().ok_or_else(|| HarnessError::Host {
        reason: "kubernetes-validate is not installed: the generated YAML cannot be checked against the Kubernetes schemas".to_string(),
        hint: format!("run scripts/setup-host.sh (installs kubernetes-validate {VALIDATOR_VERSION} in /opt/hydra/kube-validate-venv), or set {VALIDATOR_ENV} to the program"),
    })?;
    if !bin.is_file() {
        return Err(HarnessError::Host {
            reason: format!("{VALIDATOR_ENV} names {}, which does not exist", bin.display()),
            hint: format!(
                "point {VALIDATOR_ENV} at kubernetes-validate, or unset it to use /opt/hydra/kube-validate-venv"
            ),
        });
    }
    let spec = CommandSpec::new(bin.display().to_string())
        .args(["--strict", "--quiet", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(file.display().to_string());
    let out = exec::run(&spec, TIMEOUT, Interrupt::Allowed)?;
    let mut findings = findings(&out.stdout, &out.stderr);
    if !out.success() && findings.is_empty() {
        findings.push(SchemaFinding {
            level: Level::Error,
            resource: None,
            message: format!("kubernetes-validate exited {:?} without a message", out.status),
        });
    }
    Ok(SchemaReport {
        validator: bin,
        kubernetes_version: KUBERNETES_VERSION.to_string(),
        file: file.to_path_buf(),
        findings,
    })
}

/// The problems in `kubernetes-validate --quiet` output: `ERROR <file> did not validate for
/// resource <kind>/<name> against version <v>: <message>`, `WARN <file> <message>`, and any
/// other line (an unreadable YAML file, `FATAL ...`) as an error. `INFO` lines are not problems.
/// Pure.
pub fn findings(stdout: &str, stderr: &str) -> Vec<SchemaFinding> {
    let mut out: Vec<SchemaFinding> = Vec::new();
    // Whether the last finding is a free-form message that the next lines continue (a YAML
    // parser's error spans several lines).
    let mut continues = false;
    for line in stdout.lines().chain(stderr.lines()).filter(|l| !l.trim().is_empty()) {
        let (level, rest) = if let Some(r) = line.strip_prefix("ERROR ") {
            (Level::Error, r)
        } else if let Some(r) = line.strip_prefix("WARN ") {
            (Level::Warning, r)
        } else if line.starts_with("INFO ") {
            continues = false;
            continue;
        } else {
            if let (true, Some(last)) = (continues, out.last_mut()) {
                last.message.push('\n');
                last.message.push_str(line.trim_end());
                continue;
            }
            continues = true;
            out.push(SchemaFinding {
                level: Level::Error,
                resource: None,
                message: line.trim().to_string(),
            });
            continue;
        };
        continues = false;
        let resource = rest
            .split_once(" for resource ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .map(String::from);
        out.push(SchemaFinding {
            level,
            resource,
            message: line.trim().to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_warnings_are_read_with_their_resource() {
        let stdout = "ERROR /r/k.yaml did not validate for resource pod/db against version 1.29: spec.containers.0: Additional properties are not allowed ('bogus' was unexpected)\n\
                      INFO /r/k.yaml passed for resource service/db against version 1.29\n\
                      WARN /r/k.yaml Couldn't find schema for kind Foo with api version v1 for kubernetes version 1.29\n";
        let f = findings(stdout, "");
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].level, Level::Error);
        assert_eq!(f[0].resource.as_deref(), Some("pod/db"));
        assert!(f[0].message.contains("'bogus' was unexpected"));
        assert_eq!(f[1].level, Level::Warning);
        assert_eq!(f[1].resource, None);
    }

    #[test]
    fn an_unreadable_file_is_one_error_with_the_parser_message() {
        let stderr = "Couldn't parse YAML from file k.yaml: while parsing a flow node\nexpected the node content, but found '<stream end>'\n  in \"<unicode string>\", line 2, column 1:\n    \n    ^";
        let f = findings("", stderr);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].level, Level::Error);
        assert!(f[0].message.starts_with("Couldn't parse YAML") && f[0].message.contains("line 2, column 1"));
        let fatal = findings(
            "FATAL kubernetes-validate 1.37.0 does not support kubernetes version 1.99.0\n",
            "",
        );
        assert_eq!((fatal.len(), fatal[0].level), (1, Level::Error));
    }

    #[test]
    fn quiet_success_has_no_findings() {
        assert!(findings("", "").is_empty());
        assert!(findings("INFO k.yaml passed for resource pod/x against version 1.29\n", "").is_empty());
    }
}
