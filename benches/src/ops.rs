//! The timed operations of the startup group, through the harness's public API: cold start
//! (`Stack::up` until healthy), teardown (`Stack::down`), restart of a running stack (engine stop
//! and start of the run's containers, then the harness readiness wait), and a single container of
//! the base image running `true`, through the engine CLI and through testcontainers over the
//! engine's Docker-compatible API socket.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hydra::images::base::BASE_IMAGE;
use hydra::runtime::{exec, Interrupt, ObjectKind, Runtime};
use hydra::stack::{ComposeSet, Stack, StackOptions};
use hydra::RuntimeKind;
use serde::{Deserialize, Serialize};

/// Label put on every container the benches create outside a stack (`io.hydra.bench=<pid>`).
pub const BENCH_LABEL: &str = "io.hydra.bench";

/// Deadline for one single-container operation.
const CONTAINER_TIMEOUT: Duration = Duration::from_secs(120);

/// `io.hydra.bench=<this process id>`.
pub fn bench_label_value() -> String {
    std::process::id().to_string()
}

/// Builds or checks the stack's images for `kind` (untimed), so that cold starts never build.
pub fn prepare_images(kind: RuntimeKind) -> anyhow::Result<()> {
    let runtime = Runtime::resolve(kind)?;
    let set = ComposeSet::load(&[hydra::workspace::bundled_compose_file()])?;
    hydra::images::prepare(&runtime, &set.merged(), &mut |msg| eprintln!("bench: {kind}: {msg}"))
        .with_context(|| format!("preparing images for {kind}"))?;
    Ok(())
}

/// Brings the bundled stack up until healthy.
pub fn up(kind: RuntimeKind) -> anyhow::Result<(Stack, Duration)> {
    let t = Instant::now();
    let (stack, _report) =
        Stack::up(&StackOptions::new(kind), &mut |_| {}).with_context(|| format!("{kind}: stack up"))?;
    Ok((stack, t.elapsed()))
}

/// Tears a stack down (verified) and returns how long it took.
pub fn down(stack: Stack) -> anyhow::Result<Duration> {
    let t = Instant::now();
    stack.down().context("stack down")?;
    Ok(t.elapsed())
}

/// Stops and starts every container of a running stack with the engine, then waits with the
/// harness's readiness loop until every service is healthy again.
pub fn restart(stack: &Stack) -> anyhow::Result<Duration> {
    let rt = stack.runtime();
    let ids: Vec<String> = stack.containers()?.into_values().map(|c| c.id).collect();
    if ids.is_empty() {
        bail!("the stack has no containers to restart");
    }
    let t = Instant::now();
    exec::run_ok(
        &rt.engine().args(["stop", "-t", "10"]).args(ids.iter().cloned()),
        CONTAINER_TIMEOUT,
        Interrupt::Allowed,
    )?;
    exec::run_ok(
        &rt.engine().arg("start").args(ids.iter().cloned()),
        CONTAINER_TIMEOUT,
        Interrupt::Allowed,
    )?;
    let rec = stack.record();
    hydra::readiness::wait(
        rt,
        &rec.run_id,
        &rec.project,
        &rec.services,
        t,
        hydra::stack::DEFAULT_READY_TIMEOUT,
        &mut |_| {},
    )?;
    Ok(t.elapsed())
}

/// `<engine> run --rm --label io.hydra.bench=... BASE true`: create, start, wait, remove.
pub fn container_cli(runtime: &Runtime, label_value: &str) -> anyhow::Result<Duration> {
    let label = format!("{BENCH_LABEL}={label_value}");
    let spec = runtime
        .engine()
        .args(["run", "--rm", "--label", &label, BASE_IMAGE, "true"]);
    let t = Instant::now();
    exec::run_ok(&spec, CONTAINER_TIMEOUT, Interrupt::Allowed)?;
    Ok(t.elapsed())
}

/// `<engine> run -d --label ... BASE sleep 60` then `rm -f -v`: the CLI twin of what
/// testcontainers does in [`container_api`] (start a container, force-remove it).
pub fn container_cli_detached(runtime: &Runtime, label_value: &str) -> anyhow::Result<Duration> {
    let label = format!("{BENCH_LABEL}={label_value}");
    let t = Instant::now();
    let out = exec::run_ok(
        &runtime
            .engine()
            .args(["run", "-d", "--label", &label, BASE_IMAGE, "sleep", "60"]),
        CONTAINER_TIMEOUT,
        Interrupt::Allowed,
    )?;
    let id = out.stdout.trim().lines().last().unwrap_or_default().to_string();
    exec::run_ok(&runtime.remove_now(&[id]), CONTAINER_TIMEOUT, Interrupt::Allowed)?;
    Ok(t.elapsed())
}

/// What `hydra-tc` prints: one duration per container started and removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TcTimes {
    /// Seconds per container, in the order they ran.
    pub seconds: Vec<f64>,
}

/// Starts and removes `n` containers through testcontainers (the `hydra-tc` binary, run with
/// `DOCKER_HOST` pointing at the runtime's API socket) and returns each one's time.
pub fn container_api(tc_bin: &Path, runtime: &Runtime, n: usize, label_value: &str) -> anyhow::Result<Vec<Duration>> {
    let host = runtime.api_socket();
    let socket = host.trim_start_matches("unix://");
    if !Path::new(socket).exists() {
        bail!("API socket {socket} does not exist (scripts/setup-host.sh starts the Podman API services)");
    }
    let spec = exec::CommandSpec::new(tc_bin.display().to_string())
        .args([
            "--iterations",
            &n.to_string(),
            "--label",
            &format!("{BENCH_LABEL}={label_value}"),
        ])
        .env("DOCKER_HOST", &host)
        .env("TESTCONTAINERS_RYUK_DISABLED", "true");
    let out = exec::run(&spec, CONTAINER_TIMEOUT * n.max(1) as u32, Interrupt::Allowed)?;
    if !out.success() {
        bail!(
            "{} failed ({:?}): {}",
            spec.display(),
            out.status,
            exec::tail(&out.stderr, 10)
        );
    }
    let times: TcTimes =
        serde_json::from_str(out.stdout.trim()).with_context(|| format!("parsing hydra-tc output {:?}", out.stdout))?;
    Ok(times.seconds.into_iter().map(Duration::from_secs_f64).collect())
}

/// Removes every container carrying `io.hydra.bench=<label_value>` (what a failed iteration left).
pub fn remove_bench_containers(runtime: &Runtime, label_value: &str) -> anyhow::Result<usize> {
    let ids = runtime.list_by_label(ObjectKind::Container, &format!("{BENCH_LABEL}={label_value}"))?;
    runtime.remove(ObjectKind::Container, &ids)?;
    Ok(ids.len())
}
