//! Typed errors of the library and the exit code each maps to.

use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of the `harness` CLI; documented in the README.
pub mod exit {
    /// Everything passed.
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

/// Every error of the library; each maps to an exit code of the CLI ([`HarnessError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program could not be started.
    #[error("could not start `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// A command did not finish in time and was killed.
    #[error("`{cmd}` did not finish within {after:?}{}", stderr_hint(stderr))]
    Timeout {
        /// The command line.
        cmd: String,
        /// The time it was given.
        after: Duration,
        /// What it had printed on stderr by then.
        stderr: String,
    },
    /// A command exited unsuccessfully where success was required.
    #[error("`{cmd}` failed (exit {}){}", status.map(|s| s.to_string()).unwrap_or_else(|| "signal".into()), stderr_hint(stderr))]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status; `None` when a signal ended it.
        status: Option<i32>,
        /// The end of its stderr (or what went wrong, when it exited 0).
        stderr: String,
    },
    /// Stopped by SIGINT/SIGTERM, or cancelled by the harness itself.
    #[error("interrupted")]
    Interrupted,
    /// A runtime (engine, compose tool or rootless user) cannot be used here.
    #[error("runtime {runtime} is not usable: {reason}")]
    RuntimeUnusable {
        /// The runtime's name.
        runtime: String,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        hint: String,
    },
    /// A compose file is unreadable, invalid, or uses what the harness cannot model.
    #[error("invalid compose file {path}: {reason}")]
    Compose {
        /// The compose file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// How to fix it, when known.
        hint: Option<String>,
    },
    /// A tool's output was not in the expected form.
    #[error("could not parse {what} output: {reason}")]
    Parse {
        /// The command whose output it was.
        what: String,
        /// What the parser objected to.
        reason: String,
    },
    /// The stack did not become ready: the deadline passed, or a service failed first.
    #[error("stack {project} did not become healthy within {after:?}: {detail}")]
    Unhealthy {
        /// The compose project.
        project: String,
        /// How long it was waited for.
        after: Duration,
        /// Which services were not ready and why.
        detail: String,
    },
    /// Teardown finished but objects with the run's labels remain.
    #[error("teardown of {project} left objects behind: {left}")]
    Leftovers {
        /// The compose project.
        project: String,
        /// The objects left, comma separated.
        left: String,
    },
    /// A path root would act on is writable by others or otherwise not trustworthy.
    #[error("refusing to use {path}: {reason}")]
    UntrustedPath {
        /// The refused path.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// What this host lacks for a run (not the caller's input): a mirror, root for debootstrap.
    #[error("{reason}")]
    Host {
        /// What is missing.
        reason: String,
        /// How to provide it.
        hint: String,
    },
    /// The rootless user's private copy of the project could not be made.
    #[error("staging for the rootless user: {0}")]
    Staging(String),
    /// A service of the run has no container (it was removed, or never created).
    #[error("service '{service}' has no container in {project}")]
    NoContainer {
        /// The compose service.
        service: String,
        /// The compose project.
        project: String,
    },
    /// Bad command line, compose file, spec or environment variable.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// How to fix it, when known.
        hint: Option<String>,
    },
    /// An I/O error with no more specific variant.
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

/// The library's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
