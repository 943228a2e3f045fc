//! Throughput group, per runtime, with the stack started once: HTTP requests per second and
//! latency percentiles through nginx (`/health`, and `/analysis/summary`, proxied to
//! analysis-engine which queries db) and directly on analysis-engine's published port
//! (`/summary`), with the harness's load generator; PostgreSQL transactions per second over the
//! published port with several tokio-postgres clients. See `benches/README.md`.

use std::time::Duration;

use anyhow::{bail, Context};
use hydra::{RuntimeKind, Stack};
use hydra_benches::config::{self, Counts};
use hydra_benches::load::{self, Limit, LoadSpec, Target};
use hydra_benches::measure::{record_failure, Iteration, Measurement, Runner};
use hydra_benches::store::Metric;
use hydra_benches::{ops, pg};

const GROUP: &str = "throughput";
/// Length of the calibration run that precedes each measurement (also its warm-up).
const CALIBRATION: Duration = Duration::from_secs(1);
/// Highest share of failed requests a measurement accepts.
const MAX_ERROR_RATIO: f64 = 0.01;

/// An HTTP endpoint of the stack: (name, port variable, path).
const ENDPOINTS: [(&str, &str, &str); 3] = [
    ("nginx_health", "PHOENIX_NGINX_PORT", "/health"),
    ("nginx_summary", "PHOENIX_NGINX_PORT", "/analysis/summary"),
    ("direct_summary", "PHOENIX_ANALYSIS_ENGINE_PORT", "/summary"),
];

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
    runner.run_group(GROUP, &selection, |runner, kind| per_runtime(runner, kind, &counts))
}

/// Measures one runtime on one stack; returns the scopes that failed (each already recorded).
fn per_runtime(runner: &mut Runner, kind: RuntimeKind, counts: &Counts) -> anyhow::Result<Vec<String>> {
    ops::prepare_images(kind)?;
    let (stack, _) = ops::up(kind)?;
    let mut failed = Vec::new();
    for (name, var, path) in ENDPOINTS {
        if let Err(e) = measure_http(runner, kind, counts, &stack, name, var, path) {
            record_failure(runner.bench_dir(), kind, &format!("{GROUP}/{name}"), &e);
            failed.push(format!("{GROUP}/{name}"));
        }
    }
    if let Err(e) = measure_pg(runner, kind, counts, &stack) {
        record_failure(runner.bench_dir(), kind, &format!("{GROUP}/pg_tps"), &e);
        failed.push(format!("{GROUP}/pg_tps"));
    }
    ops::down(stack)?;
    Ok(failed)
}

fn measure_http(
    runner: &mut Runner,
    kind: RuntimeKind,
    counts: &Counts,
    stack: &Stack,
    name: &str,
    var: &str,
    path: &str,
) -> anyhow::Result<()> {
    let connections = config::http_connections();
    {
        let port = *stack
            .ports()
            .get(var)
            .with_context(|| format!("the stack publishes no {var}"))?;
        let target = Target::new(stack.bind_ip(), port, path)?;
        let spec = |limit| LoadSpec {
            target: target.clone(),
            connections,
            limit,
            threads: None,
        };
        let calib = load::run(&spec(Limit::Duration(CALIBRATION)))?;
        eprintln!("bench: {kind} {name} calibration: {}", calib.summary());
        if calib.requests == 0 {
            bail!("{name}: no response from {} in {CALIBRATION:?}", target.url());
        }
        // Full mode: a fixed request count per sample, sized to last about `load_run`.
        let limit = if runner.quick() {
            Limit::Duration(counts.load_run)
        } else {
            Limit::Requests(((calib.rps * counts.load_run.as_secs_f64()) as u64).max(50))
        };
        let elements = match limit {
            Limit::Requests(n) => Some(n),
            Limit::Duration(_) => None,
        };
        let what = format!("GET {path} on {var} ({connections} keep-alive connections, closed loop)");
        let metrics = [
            Metric::higher(GROUP, &format!("{name}_rps"), "req/s", &what),
            Metric::lower(
                GROUP,
                &format!("{name}_p50"),
                "ms",
                &format!("median latency of {what}"),
            ),
            Metric::lower(
                GROUP,
                &format!("{name}_p90"),
                "ms",
                &format!("90th percentile latency of {what}"),
            ),
            Metric::lower(
                GROUP,
                &format!("{name}_p99"),
                "ms",
                &format!("99th percentile latency of {what}"),
            ),
        ];
        runner.run(
            &Measurement {
                group: GROUP,
                id: name,
                runtime: kind,
                metrics: &metrics,
                samples: counts.load_runs,
                elements,
            },
            || {
                let r = load::run(&spec(limit))?;
                eprintln!("bench: {kind} {name}: {}", r.summary());
                if r.requests == 0 || r.errors() as f64 > MAX_ERROR_RATIO * r.requests as f64 {
                    bail!("{name}: too many errors: {}", r.summary());
                }
                let ms = |us: u64| us as f64 / 1000.0;
                Ok(Iteration {
                    elapsed: Duration::from_secs_f64(r.elapsed_secs),
                    values: vec![r.rps, ms(r.latency.p50_us), ms(r.latency.p90_us), ms(r.latency.p99_us)],
                })
            },
        )?;
    }
    Ok(())
}

fn measure_pg(runner: &mut Runner, kind: RuntimeKind, counts: &Counts, stack: &Stack) -> anyhow::Result<()> {
    let clients = config::pg_clients();
    let target = pg::PgTarget::for_stack(stack)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(pg::setup(&target, clients))?;
    let calib = rt.block_on(pg::run(&target, clients, Limit::Duration(CALIBRATION)))?;
    eprintln!(
        "bench: {kind} pg calibration: {:.0} tps ({} errors)",
        calib.tps, calib.errors
    );
    let limit = if runner.quick() {
        Limit::Duration(counts.load_run)
    } else {
        Limit::Requests(((calib.tps * counts.load_run.as_secs_f64()) as u64).max(50))
    };
    let elements = match limit {
        Limit::Requests(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let metrics = [Metric::higher(
        GROUP,
        "pg_tps",
        "tps",
        &format!("PostgreSQL over PHOENIX_DB_PORT: {clients} tokio-postgres clients, each `BEGIN; UPDATE own row; SELECT; COMMIT` in a loop"),
    )];
    runner.run(
        &Measurement {
            group: GROUP,
            id: "pg_tps",
            runtime: kind,
            metrics: &metrics,
            samples: counts.load_runs,
            elements,
        },
        || {
            let r = rt.block_on(pg::run(&target, clients, limit))?;
            eprintln!(
                "bench: {kind} pg: {} transactions in {:.2}s = {:.0} tps, {} errors",
                r.transactions, r.elapsed_secs, r.tps, r.errors
            );
            if r.transactions == 0 || r.errors as f64 > MAX_ERROR_RATIO * r.transactions as f64 {
                bail!("pg: too many errors ({} of {})", r.errors, r.transactions + r.errors);
            }
            Ok(Iteration {
                elapsed: Duration::from_secs_f64(r.elapsed_secs),
                values: vec![r.tps],
            })
        },
    )
}
