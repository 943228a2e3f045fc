//! A helper container the harness runs beside a stack for a check (Prometheus, say): not part of
//! the stack's compose model, so the other checks never see it, but on one of the stack's
//! networks, with the run's labels (the teardown's label sweep and `harness gc` find it if this
//! process dies) and removed when its guard drops.

use std::net::SocketAddr;
use std::time::Duration;

use crate::compose::file::run_labels_of_this_process;
use crate::error::{HarnessError, Result};
use crate::runtime::{exec, Interrupt, ObjectKind, Runtime};

use super::Stack;

/// Deadline for creating and starting the container (the image is already there).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What to run beside the stack.
#[derive(Debug, Clone)]
pub struct SidecarSpec {
    /// What it is for; names the container `hydra-<role>-<run id>`.
    pub role: &'static str,
    /// The image, already built in the stack's engine.
    pub image: String,
    /// One of the stack's networks (its name in the engine).
    pub network: String,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// A container port to publish on the stack's bind address (an ephemeral host port).
    pub publish: Option<u16>,
    /// `--tmpfs` mounts: the root filesystem is read-only.
    pub tmpfs: Vec<String>,
}

/// A running helper container; dropping it removes it.
pub struct Sidecar<'a> {
    runtime: &'a Runtime,
    id: String,
    published: Option<SocketAddr>,
}

impl Stack {
    /// Starts `spec` beside this stack: read-only, every capability dropped, no new privileges.
    pub fn start_sidecar(&self, spec: &SidecarSpec) -> Result<Sidecar<'_>> {
        let runtime = self.runtime();
        let run_id = &self.record().run_id;
        let mut cmd = runtime.engine().args(["run", "-d", "--pull", "never"]);
        cmd = cmd.arg("--name").arg(format!("hydra-{}-{run_id}", spec.role));
        for (k, v) in run_labels_of_this_process(run_id, runtime.kind().name()) {
            cmd = cmd.arg("--label").arg(format!("{k}={v}"));
        }
        cmd = cmd
            .args([
                "--read-only",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
            ])
            .arg("--network")
            .arg(&spec.network);
        for t in &spec.tmpfs {
            cmd = cmd.arg("--tmpfs").arg(t);
        }
        for (k, v) in &spec.env {
            cmd = cmd.arg("-e").arg(format!("{k}={v}"));
        }
        if let Some(port) = spec.publish {
            cmd = cmd.arg("-p").arg(format!("{}::{port}", self.bind_ip()));
        }
        cmd = cmd.arg(&spec.image);
        let out = exec::run(&cmd, START_TIMEOUT, Interrupt::Allowed)?;
        let id = out.stdout.lines().last().unwrap_or("").trim().to_string();
        // An id printed means the container exists, whatever the exit code: the guard owns it.
        let mut sidecar = Sidecar {
            runtime,
            id: id.clone(),
            published: None,
        };
        if !out.success() || id.is_empty() {
            if id.is_empty() {
                sidecar.id = format!("hydra-{}-{run_id}", spec.role);
            }
            return Err(HarnessError::Failed {
                cmd: cmd.display(),
                status: out.status,
                stderr: exec::tail(&out.stderr, 10),
            });
        }
        if let Some(port) = spec.publish {
            let inspect = runtime.inspect_containers(std::slice::from_ref(&id))?;
            let bound = inspect
                .first()
                .into_iter()
                .flat_map(|c| c.published())
                .find(|p| p.container_port == port && p.protocol == "tcp")
                .ok_or_else(|| HarnessError::Failed {
                    cmd: cmd.display(),
                    status: out.status,
                    stderr: format!("the engine published no host port for {port}/tcp"),
                })?;
            sidecar.published = Some(SocketAddr::new(self.bind_ip(), bound.host_port));
        }
        Ok(sidecar)
    }
}

impl Sidecar<'_> {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the published port answers on the host.
    pub fn published(&self) -> Option<SocketAddr> {
        self.published
    }

    /// Runs `argv` inside the container (its exit code is the caller's to judge).
    pub fn exec(&self, argv: &[&str], timeout: Duration) -> Result<exec::Output> {
        let spec = self
            .runtime
            .engine()
            .args(["exec", &self.id])
            .args(argv.iter().copied());
        exec::run(&spec, timeout, Interrupt::Allowed)
    }

    /// The last `lines` of its log, for failure messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        self.runtime.logs_tail(&self.id, lines)
    }
}

impl Drop for Sidecar<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .runtime
            .remove(ObjectKind::Container, std::slice::from_ref(&self.id))
        {
            tracing::warn!("could not remove the helper container {}: {e}", self.id);
        }
    }
}
