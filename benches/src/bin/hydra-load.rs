//! The harness's load generator on the command line, for comparing it with wrk
//! (`scripts/bench-wrk-ratio.sh`): `hydra-load URL --connections N --duration S [--json]`.

use std::time::Duration;

use clap::Parser;
use hydra_benches::load::{self, Limit, LoadSpec, Target};

#[derive(Parser)]
#[command(about = "HTTP load on a loopback URL: keep-alive connections, closed loop, fixed duration or request count")]
struct Args {
    /// Target, e.g. http://127.0.0.1:18080/health (loopback only).
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(short, long, default_value_t = 16)]
    connections: usize,
    /// Run length in seconds (ignored with --requests).
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests instead of a duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Worker threads (default: one per core).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    let args = Args::parse();
    let limit = match args.requests {
        Some(n) => Limit::Requests(n),
        None => Limit::Duration(Duration::from_secs_f64(args.duration)),
    };
    let spec = LoadSpec {
        target: Target::parse(&args.url)?,
        connections: args.connections,
        limit,
        threads: args.threads,
    };
    let report = load::run(&spec)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}
