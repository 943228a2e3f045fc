//! Startup group, per runtime: cold start of the bundled stack until healthy (and the teardown
//! that follows it), restart of a running stack (engine stop + start, harness readiness wait),
//! and a single container of the base image running `true`, through the engine CLI and through
//! testcontainers over the engine's API socket. See `benches/README.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hydra::runtime::Runtime;
use hydra::RuntimeKind;
use hydra_benches::config::{self, Counts};
use hydra_benches::measure::{record_failure, Iteration, Measurement, Runner};
use hydra_benches::ops;
use hydra_benches::store::Metric;

const GROUP: &str = "startup";

fn main() {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let selection = config::select_runtimes()?;
    let runner = Runner::from_env();
    let counts = config::counts(runner.quick());
    let tc_bin = PathBuf::from(env!("CARGO_BIN_EXE_hydra-tc"));
    let label = ops::bench_label_value();
    runner.run_group(GROUP, &selection, |runner, kind| {
        per_runtime(runner, kind, &counts, &tc_bin, &label)
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Measures one runtime; returns the scopes that failed (each already recorded).
fn per_runtime(
    runner: &mut Runner,
    kind: RuntimeKind,
    counts: &Counts,
    tc_bin: &Path,
    label: &str,
) -> anyhow::Result<Vec<String>> {
    ops::prepare_images(kind)?;
    let runtime = Runtime::resolve(kind)?;
    let mut failed = stack_measurements(runner, kind, counts);
    failed.extend(container_measurements(runner, &runtime, counts, tc_bin, label));
    ops::remove_bench_containers(&runtime, label)?;
    Ok(failed)
}

/// Records a failed measurement `id` and adds its scope to `failed`.
fn check(runner: &Runner, kind: RuntimeKind, failed: &mut Vec<String>, id: &str, r: anyhow::Result<()>) {
    if let Err(e) = r {
        let scope = format!("{GROUP}/{id}");
        record_failure(runner.bench_dir(), kind, &scope, &e);
        failed.push(scope);
    }
}

/// Cold start with teardown, and restart of a running stack; returns the scopes that failed.
fn stack_measurements(runner: &mut Runner, kind: RuntimeKind, counts: &Counts) -> Vec<String> {
    let mut failed = Vec::new();
    let cold = [
        Metric::lower(GROUP, "cold_start", "s", "`Stack::up` from no containers (images present) until every service is healthy by the harness readiness loop"),
        Metric::lower(GROUP, "teardown", "s", "`Stack::down` of a freshly started stack: compose down, label sweep, verification that nothing is left"),
    ];
    let r = runner.run(
        &Measurement {
            group: GROUP,
            id: "cold_start",
            runtime: kind,
            metrics: &cold,
            samples: counts.cold_starts,
            elements: None,
        },
        || {
            let (stack, up) = ops::up(kind)?;
            let down = ops::down(stack)?;
            Ok(Iteration {
                elapsed: up,
                values: vec![secs(up), secs(down)],
            })
        },
    );
    check(runner, kind, &mut failed, "cold_start", r);

    let restart = [Metric::lower(GROUP, "restart", "s", "engine `stop -t 10` then `start` of every container of a running stack, until all healthy again (harness readiness wait)")];
    let r = ops::up(kind).and_then(|(stack, _)| {
        let result = runner.run(
            &Measurement {
                group: GROUP,
                id: "restart",
                runtime: kind,
                metrics: &restart,
                samples: counts.restarts,
                elements: None,
            },
            || {
                let t = ops::restart(&stack)?;
                Ok(Iteration {
                    elapsed: t,
                    values: vec![secs(t)],
                })
            },
        );
        ops::down(stack)?;
        result
    });
    check(runner, kind, &mut failed, "restart", r);
    failed
}

/// A single container through the CLI (attached and detached) and through testcontainers over
/// the API socket; returns the scopes that failed.
fn container_measurements(
    runner: &mut Runner,
    runtime: &Runtime,
    counts: &Counts,
    tc_bin: &Path,
    label: &str,
) -> Vec<String> {
    let kind = runtime.kind();
    let mut failed = Vec::new();
    let cli = [Metric::lower(GROUP, "container_cli", "s", "`<engine> run --rm` of the base image running `true` (create, start, wait, remove) through the engine CLI (rootless: via runuser)")];
    let r = runner.run(
        &Measurement {
            group: GROUP,
            id: "container_cli",
            runtime: kind,
            metrics: &cli,
            samples: counts.containers,
            elements: None,
        },
        || {
            let t = ops::container_cli(runtime, label)?;
            Ok(Iteration {
                elapsed: t,
                values: vec![secs(t)],
            })
        },
    );
    check(runner, kind, &mut failed, "container_cli", r);

    let cli_d = [Metric::lower(
        GROUP,
        "container_cli_detached",
        "s",
        "`<engine> run -d` of the base image running `sleep 60`, then `rm -f -v`: the CLI twin of container_api",
    )];
    let r = runner.run(
        &Measurement {
            group: GROUP,
            id: "container_cli_detached",
            runtime: kind,
            metrics: &cli_d,
            samples: counts.containers,
            elements: None,
        },
        || {
            let t = ops::container_cli_detached(runtime, label)?;
            Ok(Iteration {
                elapsed: t,
                values: vec![secs(t)],
            })
        },
    );
    check(runner, kind, &mut failed, "container_cli_detached", r);

    // testcontainers runs in its own process per runtime (DOCKER_HOST differs).
    let api = [Metric::lower(
        GROUP,
        "container_api",
        "s",
        "testcontainers (sync API, bollard) `start()` + `rm()` of the base image running `sleep 60` over the engine's Docker-compatible API socket (not `true`: see hydra-tc)",
    )];
    // Each iteration asks hydra-tc for two containers and keeps the second: the first carries the
    // client's connection set-up. Timing happens inside hydra-tc, so the process spawn is not
    // measured, and criterion may ask for as many iterations as it likes.
    let r = runner.run(
        &Measurement {
            group: GROUP,
            id: "container_api",
            runtime: kind,
            metrics: &api,
            samples: counts.containers,
            elements: None,
        },
        || {
            let times = ops::container_api(tc_bin, runtime, 2, label)?;
            let t = *times.last().context("hydra-tc returned no timing")?;
            Ok(Iteration {
                elapsed: t,
                values: vec![secs(t)],
            })
        },
    );
    check(runner, kind, &mut failed, "container_api", r);
    failed
}
