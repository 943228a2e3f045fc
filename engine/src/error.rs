//! Typed errors of the library and the exit code each maps to.

use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of the `harness` CLI; documented in the README.
pub mod exit {
    pub const OK: i32 = 0;
    /// A check failed, or the stack did not become healthy.
    pub const FAILED: i32 = 1;
    /// Bad command line, compose file or spec.
    pub const USAGE: i32 = 2;
    /// A required runtime is missing or unusable.
    pub const RUNTIME_UNUSABLE: i32 = 3;
    /// Teardown could not remove everything the run created.
    pub const LEFTOVERS: i32 = 4;
    /// Interrupted by SIGINT/SIGTERM (after teardown).
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("could not start `{cmd}`")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` did not finish within {after:?}{}", stderr_hint(stderr))]
    Timeout {
        cmd: String,
        after: Duration,
        stderr: String,
    },
    #[error("`{cmd}` failed (exit {}){}", status.map(|s| s.to_string()).unwrap_or_else(|| "signal".into()), stderr_hint(stderr))]
    Failed {
        cmd: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("runtime {runtime} is not usable: {reason}")]
    RuntimeUnusable {
        runtime: String,
        reason: String,
        hint: String,
    },
    #[error("invalid compose file {path}: {reason}")]
    Compose {
        path: PathBuf,
        reason: String,
        hint: Option<String>,
    },
    #[error("could not parse {what} output: {reason}")]
    Parse { what: String, reason: String },
    #[error("stack {project} did not become healthy within {after:?}: {detail}")]
    Unhealthy {
        project: String,
        after: Duration,
        detail: String,
    },
    #[error("teardown of {project} left objects behind: {left}")]
    Leftovers { project: String, left: String },
    #[error("refusing to use {path}: {reason}")]
    UntrustedPath { path: PathBuf, reason: String },
    /// What this host lacks for a run (not the caller's input): a mirror, root for debootstrap.
    #[error("{reason}")]
    Host { reason: String, hint: String },
    /// The rootless user's private copy of the project could not be made.
    #[error("staging for the rootless user: {0}")]
    Staging(String),
    /// A service of the run has no container (it was removed, or never created).
    #[error("service '{service}' has no container in {project}")]
    NoContainer { service: String, project: String },
    /// Bad command line, compose file, spec or environment variable.
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn stderr_hint(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(":\n{}", indent(s))
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

impl HarnessError {
    /// A usage error (exit 2) without a hint.
    pub fn usage(message: impl Into<String>) -> Self {
        HarnessError::Usage {
            message: message.into(),
            hint: None,
        }
    }

    /// A compose file error (exit 2) without a hint.
    pub fn compose(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        HarnessError::Compose {
            path: path.into(),
            reason: reason.into(),
            hint: None,
        }
    }

    /// The same error with a hint on how to fix it (usage and compose errors carry one).
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let HarnessError::Usage { hint, .. } | HarnessError::Compose { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    /// How to fix it, when the harness knows.
    pub fn hint(&self) -> Option<&str> {
        match self {
            HarnessError::Usage { hint, .. } | HarnessError::Compose { hint, .. } => hint.as_deref(),
            HarnessError::RuntimeUnusable { hint, .. } | HarnessError::Host { hint, .. } => Some(hint),
            HarnessError::UntrustedPath { .. } => Some(
                "root acts on what is stored there; remove it, or point HYDRA_STATE_DIR / HYDRA_BASE_CACHE at a directory that only root can write",
            ),
            HarnessError::Leftovers { .. } => Some("run `harness gc` to sweep what is left"),
            _ => None,
        }
    }

    /// The CLI exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            HarnessError::Interrupted => exit::INTERRUPTED,
            HarnessError::RuntimeUnusable { .. } | HarnessError::Host { .. } => exit::RUNTIME_UNUSABLE,
            HarnessError::Compose { .. } | HarnessError::Usage { .. } | HarnessError::UntrustedPath { .. } => {
                exit::USAGE
            }
            HarnessError::Leftovers { .. } => exit::LEFTOVERS,
            _ => exit::FAILED,
        }
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
