//! Repairs Podman 4.3's rootless network namespace when it lost the runtime directory Podman
//! mounts into it (a Podman process killed while it set the namespace up): every container start
//! would fail, and podman-compose would exit 0 with the stack stuck in `created`. The check runs
//! as the rootless user, under Podman's own lock (see `rootless_netns.py`, which
//! `scripts/setup-host.sh` runs too).

use std::time::Duration;

use super::{exec, Interrupt, Runtime};
use crate::error::{HarnessError, Result};

/// The script, run as `python3 -c SCRIPT RUNTIME_DIR` inside the user's namespace.
pub const SCRIPT: &str = include_str!("rootless_netns.py");

/// Removes a broken rootless network namespace of `runtime` (a no-op for other engines); returns
/// what it removed, if anything.
pub fn repair_stale(runtime: &Runtime) -> Result<Option<String>> {
    let Some(user) = runtime.rootless_user() else {
        return Ok(None);
    };
    let spec = runtime
        .engine()
        .args(["unshare", "python3", "-c", SCRIPT])
        .arg(user.runtime_dir.display().to_string());
    let out = exec::run(&spec, Duration::from_secs(60), Interrupt::Allowed)?;
    if !out.success() {
        return Err(HarnessError::Failed {
            cmd: "podman unshare python3 -c <rootless network namespace check>".into(),
            status: out.status,
            stderr: exec::tail(&out.stderr, 5),
        });
    }
    let said = out.stdout.trim();
    if said.is_empty() {
        Ok(None)
    } else {
        tracing::warn!("{said}; Podman makes a new one");
        Ok(Some(said.to_string()))
    }
}
