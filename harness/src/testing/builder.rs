//! What a user's test starts: compose files, spec, target and limits, checked before anything runs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AsyncStack, RunningStack};
use crate::error::{HarnessError, Result};
use crate::runtime::RuntimeKind;
use crate::session::Plan;
use crate::spec::Spec;
use crate::stack::{Stack, StackOptions, DEFAULT_READY_TIMEOUT};

/// Builds a [`RunningStack`] (or an [`AsyncStack`]) of your own compose files.
///
/// Give compose files, a spec, or both: the spec's own `compose` list is used when no compose
/// file is given, and explicit compose files replace that list (as `--compose` does). Without a
/// spec the stack runs but [`RunningStack::check`] has nothing to check.
///
/// ```no_run
/// use std::time::Duration;
/// use hydra::testing::StackBuilder;
/// use hydra::RuntimeKind;
///
/// # fn example() -> hydra::Result<()> {
/// let stack = StackBuilder::new(RuntimeKind::Docker)
///     .compose_file("deploy/compose.yml")
///     .spec("deploy/spec.toml")
///     .bind_ip("127.0.0.2".parse().unwrap())
///     .ready_timeout(Duration::from_secs(120))
///     .keep_on_failure(true)
///     .start()?;
/// println!("web on port {}", stack.host_port("web", 8000)?);
/// stack.down()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StackBuilder {
    runtime: RuntimeKind,
    compose_files: Vec<PathBuf>,
    spec: Option<PathBuf>,
    bind_ip: IpAddr,
    ready_timeout: Duration,
    keep_on_failure: bool,
}

impl StackBuilder {
    /// A stack for `runtime` (a target: engine plus compose tool), published on 127.0.0.1, ready
    /// within [`DEFAULT_READY_TIMEOUT`], removed when dropped.
    pub fn new(runtime: RuntimeKind) -> Self {
        Self {
            runtime,
            compose_files: Vec::new(),
            spec: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            keep_on_failure: false,
        }
    }

    /// Adds a compose file (in `-f` order; the first one decides the project directory).
    pub fn compose_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.compose_files.push(path.into());
        self
    }

    /// The spec the checks read (`spec.toml`); relative compose paths in it are relative to it.
    pub fn spec(mut self, path: impl Into<PathBuf>) -> Self {
        self.spec = Some(path.into());
        self
    }

    /// The loopback address published ports bind to (127.0.0.0/8 only).
    pub fn bind_ip(mut self, ip: IpAddr) -> Self {
        self.bind_ip = ip;
        self
    }

    /// How long the stack may take to become ready.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Leaves the stack running when the handle is dropped during a panic (a failed assertion),
    /// recorded so that `harness down` removes it once you have looked at it.
    pub fn keep_on_failure(mut self, keep: bool) -> Self {
        self.keep_on_failure = keep;
        self
    }

    /// Starts the stack and waits until every service is ready. Blocking, and safe to call
    /// inside an async runtime too (the work then runs on a thread of its own); async tests
    /// rather use [`StackBuilder::start_async`], which leaves the runtime's thread free.
    pub fn start(self) -> Result<RunningStack> {
        super::off_runtime(|| {
            let (opts, plan) = self.resolve()?;
            // Every secret of the compose files, their env files and the spec; known before the
            // stack starts, and an error if it cannot be learnt (never a silent no-op redactor).
            let redactor = crate::report::secrets_source::for_run(&opts.compose_files, plan.as_ref().map(|p| &p.spec))?;
            let (stack, up) = Stack::up(&opts, &mut |_| {})?;
            Ok(RunningStack::new(stack, up, plan, redactor, self.keep_on_failure))
        })
    }

    /// [`StackBuilder::start`] for async tests: runs on tokio's blocking pool.
    pub async fn start_async(self) -> Result<AsyncStack> {
        let running = super::blocking(move || self.start()).await?;
        Ok(AsyncStack::new(running))
    }

    /// The stack options and, with a spec, the check plan; every path checked first.
    fn resolve(&self) -> Result<(StackOptions, Option<Plan>)> {
        if !self.bind_ip.is_loopback() {
            return Err(
                HarnessError::usage(format!("bind address {} is not a loopback address", self.bind_ip))
                    .with_hint("publish on 127.0.0.0/8, e.g. `.bind_ip(\"127.0.0.2\".parse()?)`"),
            );
        }
        for file in self.compose_files.iter().chain(self.spec.iter()) {
            exists(file)?;
        }
        let plan = match &self.spec {
            Some(spec) => Some(Plan::new(Spec::load(spec, &self.compose_files)?)?),
            None => None,
        };
        let compose_files = match &plan {
            Some(plan) => plan.spec.compose.clone(),
            None => self.compose_files.clone(),
        };
        if compose_files.is_empty() {
            return Err(HarnessError::usage("no compose file to start")
                .with_hint("call `.compose_file(\"compose.yml\")` or `.spec(\"spec.toml\")` on the builder"));
        }
        let mut opts = StackOptions::new(self.runtime);
        opts.compose_files = compose_files;
        opts.bind_ip = self.bind_ip;
        opts.ready_timeout = self.ready_timeout;
        Ok((opts, plan))
    }
}

fn exists(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    Err(HarnessError::usage(format!("{} is not a file (relative to {cwd})", path.display()))
        .with_hint("relative paths are resolved against the test's working directory, which cargo sets to the package's directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        crate::workspace::root()
    }

    #[test]
    fn a_spec_alone_gives_its_own_compose_files() {
        let b = StackBuilder::new(RuntimeKind::Docker).spec(root().join("fixtures/second-stack/spec.toml"));
        let (opts, plan) = b.resolve().unwrap();
        assert_eq!(
            opts.compose_files,
            vec![root().join("fixtures/second-stack/compose.yml")]
        );
        assert!(plan.is_some());
    }

    #[test]
    fn explicit_compose_files_replace_the_specs_list() {
        let compose = root().join("fixtures/second-stack/compose.yml");
        let b = StackBuilder::new(RuntimeKind::Podman)
            .compose_file(&compose)
            .spec(root().join("fixtures/second-stack/spec.toml"));
        let (opts, plan) = b.resolve().unwrap();
        assert_eq!(opts.compose_files, vec![compose.clone()]);
        assert_eq!(plan.unwrap().spec.compose, vec![compose]);
    }

    #[test]
    fn nothing_defaults_to_the_bundled_stack() {
        let e = StackBuilder::new(RuntimeKind::Docker).resolve().err().unwrap();
        assert!(e.to_string().contains("no compose file"), "{e}");
        assert!(e.hint().unwrap().contains(".compose_file("));
    }

    #[test]
    fn a_missing_file_is_named_before_anything_starts() {
        let e = StackBuilder::new(RuntimeKind::Docker)
            .compose_file("/nonexistent/compose.yml")
            .resolve()
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/compose.yml is not a file"), "{e}");
    }

    #[test]
    fn a_non_loopback_bind_address_is_refused() {
        let e = StackBuilder::new(RuntimeKind::Docker)
            .compose_file(root().join("fixtures/second-stack/compose.yml"))
            .bind_ip(IpAddr::from([0, 0, 0, 0]))
            .resolve()
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a loopback address"), "{e}");
    }
}
