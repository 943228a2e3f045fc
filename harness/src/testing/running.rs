//! The blocking handle on a stack a user's test started: what its services publish, commands and
//! logs inside them, their inspect data, and the spec's checks on demand.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{off_runtime, Outcomes};
use crate::error::{HarnessError, Result};
use crate::outcome::Area;
use crate::report::Redactor;
use crate::runtime::inspect::ContainerInspect;
use crate::runtime::{exec, Interrupt, RuntimeKind};
use crate::session::{self, Plan};
use crate::stack::{Stack, TeardownReport, UpReport};

/// What a command run inside a service printed, and its exit code (`None` when it was killed).
pub use crate::runtime::exec::Output as ExecOutput;

/// How long [`RunningStack::exec`] lets a command run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`RunningStack::logs`] waits for the engine to print a container's logs.
const LOGS_TIMEOUT: Duration = Duration::from_secs(30);

/// A stack started by [`super::StackBuilder::start`]. Dropping it removes everything the run
/// created (containers, networks, volumes, all labelled with the run), unless it was built with
/// `keep_on_failure` and is dropped during a panic.
pub struct RunningStack {
    stack: Option<Stack>,
    up: UpReport,
    plan: Option<Arc<Plan>>,
    redactor: Arc<Redactor>,
    keep_on_failure: bool,
}

impl RunningStack {
    pub(super) fn new(
        stack: Stack,
        up: UpReport,
        plan: Option<Plan>,
        redactor: Redactor,
        keep_on_failure: bool,
    ) -> Self {
        Self {
            stack: Some(stack),
            up,
            plan: plan.map(Arc::new),
            redactor: Arc::new(redactor),
            keep_on_failure,
        }
    }

    /// The underlying stack, for what this handle does not offer (compose actions, the run record).
    pub fn stack(&self) -> &Stack {
        self.stack
            .as_ref()
            .expect("the stack lives until the handle is dropped")
    }

    /// The target the stack runs under.
    pub fn target(&self) -> RuntimeKind {
        self.stack().record().runtime
    }

    /// What `up` did and measured (compose tool and version, per-service readiness times).
    pub fn up_report(&self) -> &UpReport {
        &self.up
    }

    /// The loopback address published ports bind to.
    pub fn bind_ip(&self) -> IpAddr {
        self.stack().bind_ip()
    }

    /// The host port that `service`'s `container_port` (TCP) is published on, on the bind address.
    pub fn host_port(&self, service: &str, container_port: u16) -> Result<u16> {
        let c = self.container(service)?;
        let published = c.published();
        let tcp = || {
            published
                .iter()
                .filter(|p| p.container_port == container_port && p.protocol == "tcp")
        };
        let bind_ip = self.bind_ip().to_string();
        tcp()
            .find(|p| p.host_ip == bind_ip)
            .or_else(|| tcp().next())
            .map(|p| p.host_port)
            .ok_or_else(|| {
                let list: Vec<String> = published
                    .iter()
                    .map(|p| format!("{}/{} on {}:{}", p.container_port, p.protocol, p.host_ip, p.host_port))
                    .collect();
                HarnessError::usage(format!(
                    "service '{service}' does not publish port {container_port}/tcp (it publishes: {})",
                    if list.is_empty() {
                        "nothing".to_string()
                    } else {
                        list.join(", ")
                    }
                ))
                .with_hint("add the port to the service's `ports:` in the compose file, or ask for one it publishes")
            })
    }

    /// `http://<bind address>:<host port><path>` for `service`'s `container_port`.
    pub fn url(&self, service: &str, container_port: u16, path: &str) -> Result<String> {
        let port = self.host_port(service, container_port)?;
        let slash = if path.starts_with('/') { "" } else { "/" };
        Ok(match self.bind_ip() {
            IpAddr::V4(ip) => format!("http://{ip}:{port}{slash}{path}"),
            IpAddr::V6(ip) => format!("http://[{ip}]:{port}{slash}{path}"),
        })
    }

    /// Runs `argv` inside `service`'s container (no TTY), for at most [`EXEC_TIMEOUT`]; a non-zero
    /// exit is returned in [`ExecOutput::status`], not as an error.
    pub fn exec(&self, service: &str, argv: &[&str]) -> Result<ExecOutput> {
        self.exec_with_timeout(service, argv, EXEC_TIMEOUT)
    }

    /// [`RunningStack::exec`] with a deadline of your own.
    pub fn exec_with_timeout(&self, service: &str, argv: &[&str], timeout: Duration) -> Result<ExecOutput> {
        off_runtime(|| self.stack().exec(service, argv, timeout))
    }

    /// Everything `service`'s container has logged so far (stdout, then stderr), as the engine
    /// keeps it.
    pub fn logs(&self, service: &str) -> Result<String> {
        let c = self.container(service)?;
        let spec = self.stack().runtime().engine().args(["logs", &c.id]);
        let out = off_runtime(|| exec::run(&spec, LOGS_TIMEOUT, Interrupt::Allowed))?;
        if !out.success() {
            return Err(HarnessError::Failed {
                cmd: spec.display(),
                status: out.status,
                stderr: exec::tail(&out.stderr, 5),
            });
        }
        Ok(format!("{}{}", out.stdout, out.stderr))
    }

    /// `service`'s container as the engine inspects it now (typed; both engines' JSON).
    pub fn container(&self, service: &str) -> Result<ContainerInspect> {
        let mut containers = off_runtime(|| self.stack().containers())?;
        containers.remove(service).ok_or_else(|| HarnessError::NoContainer {
            service: service.to_string(),
            project: self.stack().record().project.clone(),
        })
    }

    /// Runs the spec's checks of one area (DNS, ports, health, persistence, posture) now.
    pub fn check(&self, area: Area) -> Result<Outcomes> {
        self.check_where(&|id| id.area == area)
    }

    /// Runs every check of the spec now (the persistence area restarts the stack on the way).
    pub fn check_all(&self) -> Result<Outcomes> {
        self.check_where(&|_| true)
    }

    /// Runs the spec's checks whose trial name (`<target>::<area>::<check>`) contains `filter`.
    pub fn check_matching(&self, filter: &str) -> Result<Outcomes> {
        let target = self.target();
        self.check_where(&|id| id.trial_name(target).contains(filter))
    }

    fn check_where(&self, selected: &(dyn Fn(&crate::outcome::CheckId) -> bool + Sync)) -> Result<Outcomes> {
        let plan = self.plan.as_ref().ok_or_else(|| {
            HarnessError::usage("this stack has no spec, so there are no checks to run")
                .with_hint("give the builder a spec with `.spec(\"spec.toml\")`")
        })?;
        let outcomes =
            off_runtime(|| session::run_selected_checks(self.stack(), plan, &|id| selected(id), &mut |_| {}));
        Ok(Outcomes::new(outcomes, self.redactor.clone()))
    }

    /// Removes everything the run created and verifies that nothing with its labels is left.
    pub fn down(mut self) -> Result<TeardownReport> {
        let stack = self.stack.take().expect("the stack lives until the handle is dropped");
        off_runtime(|| stack.down())
    }
}

impl Drop for RunningStack {
    fn drop(&mut self) {
        let Some(stack) = self.stack.take() else { return };
        if self.keep_on_failure && std::thread::panicking() {
            let (target, project) = (stack.record().runtime, stack.record().project.clone());
            match off_runtime(|| stack.keep()) {
                Ok(record) => eprintln!(
                    "hydra: kept {project} for inspection (the test failed); remove it with `harness down --runtime {target} --run {}`",
                    record.run_id
                ),
                Err(e) => eprintln!("hydra: could not keep {project} for inspection: {e}"),
            }
            return;
        }
        // The stack's own drop tears it down (blocking): off the async runtime's thread.
        off_runtime(move || drop(stack));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_handle_can_move_to_the_blocking_pool() {
        assert_send_sync::<RunningStack>();
    }
}
