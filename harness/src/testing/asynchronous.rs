//! The async handle: [`RunningStack`]'s calls on tokio's blocking pool, so that a
//! `#[tokio::test]` keeps its runtime free while the harness waits on engines and services.

use std::sync::Arc;

use super::{blocking, ExecOutput, Outcomes, RunningStack};
use crate::error::Result;
use crate::outcome::Area;
use crate::runtime::inspect::ContainerInspect;
use crate::runtime::RuntimeKind;
use crate::stack::TeardownReport;

/// A stack started by [`super::StackBuilder::start_async`]. Prefer [`AsyncStack::down`] at the
/// end of a test: dropping the handle also removes the stack, but blocks the thread meanwhile.
pub struct AsyncStack {
    inner: Arc<RunningStack>,
}

impl AsyncStack {
    pub(super) fn new(running: RunningStack) -> Self {
        Self {
            inner: Arc::new(running),
        }
    }

    /// The blocking handle, for the calls that do not wait (target, bind address, `up`'s report).
    pub fn handle(&self) -> &RunningStack {
        &self.inner
    }

    /// The target the stack runs under.
    pub fn target(&self) -> RuntimeKind {
        self.inner.target()
    }

    /// See [`RunningStack::host_port`].
    pub async fn host_port(&self, service: &str, container_port: u16) -> Result<u16> {
        let (inner, service) = (self.inner.clone(), service.to_string());
        blocking(move || inner.host_port(&service, container_port)).await
    }

    /// See [`RunningStack::url`].
    pub async fn url(&self, service: &str, container_port: u16, path: &str) -> Result<String> {
        let (inner, service, path) = (self.inner.clone(), service.to_string(), path.to_string());
        blocking(move || inner.url(&service, container_port, &path)).await
    }

    /// See [`RunningStack::exec`].
    pub async fn exec(&self, service: &str, argv: &[&str]) -> Result<ExecOutput> {
        let (inner, service) = (self.inner.clone(), service.to_string());
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        blocking(move || {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            inner.exec(&service, &argv)
        })
        .await
    }

    /// See [`RunningStack::logs`].
    pub async fn logs(&self, service: &str) -> Result<String> {
        let (inner, service) = (self.inner.clone(), service.to_string());
        blocking(move || inner.logs(&service)).await
    }

    /// See [`RunningStack::container`].
    pub async fn container(&self, service: &str) -> Result<ContainerInspect> {
        let (inner, service) = (self.inner.clone(), service.to_string());
        blocking(move || inner.container(&service)).await
    }

    /// See [`RunningStack::check`].
    pub async fn check(&self, area: Area) -> Result<Outcomes> {
        let inner = self.inner.clone();
        blocking(move || inner.check(area)).await
    }

    /// See [`RunningStack::check_all`].
    pub async fn check_all(&self) -> Result<Outcomes> {
        let inner = self.inner.clone();
        blocking(move || inner.check_all()).await
    }

    /// See [`RunningStack::check_matching`].
    pub async fn check_matching(&self, filter: &str) -> Result<Outcomes> {
        let (inner, filter) = (self.inner.clone(), filter.to_string());
        blocking(move || inner.check_matching(&filter)).await
    }

    /// See [`RunningStack::down`]. Waits for calls still running on the blocking pool first.
    pub async fn down(self) -> Result<TeardownReport> {
        let mut inner = self.inner;
        let running = loop {
            match Arc::try_unwrap(inner) {
                Ok(running) => break running,
                Err(shared) => {
                    inner = shared;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        };
        blocking(move || running.down()).await
    }
}
