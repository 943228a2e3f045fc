//! Starts and removes containers of the base image through testcontainers' sync API, against
//! whatever `DOCKER_HOST` names, and prints each one's time as JSON (`{"seconds":[...]}`).
//!
//! The container runs `sleep 60` and is force-removed, not `true`: testcontainers inspects the
//! container right after starting it, and Podman 4.3's compat API reports an exited container's
//! state as `stopped`, which bollard 0.19 refuses to deserialize ("unknown variant `stopped`"). The startup bench runs it once per runtime so that each gets its own
//! client and environment. The image must exist locally: testcontainers pulls only on a missing
//! image, and no registry is reachable.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt};

#[derive(Parser)]
#[command(about = "time container start+remove through testcontainers (DOCKER_HOST selects the engine)")]
struct Args {
    /// Containers to start and remove, one after the other.
    #[arg(long, default_value_t = 1)]
    iterations: usize,
    /// `key=value` label put on each container.
    #[arg(long, default_value = "io.hydra.bench=1")]
    label: String,
    /// Image reference (must be present locally).
    #[arg(long, default_value = hydra::images::base::BASE_IMAGE)]
    image: String,
}

fn main() -> anyhow::Result<()> {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    let args = Args::parse();
    let (name, tag) = args.image.rsplit_once(':').context("image needs a tag (NAME:TAG)")?;
    let (key, value) = args.label.split_once('=').context("label must be key=value")?;
    let mut seconds = Vec::with_capacity(args.iterations);
    for i in 0..args.iterations {
        let t = Instant::now();
        let container = GenericImage::new(name, tag)
            .with_cmd(["sleep", "60"])
            .with_label(key, value)
            .start()
            .with_context(|| format!("starting container {} of {}", i + 1, args.iterations))?;
        container.rm().context("removing the container")?;
        seconds.push(t.elapsed().as_secs_f64());
    }
    println!("{}", serde_json::json!({ "seconds": seconds }));
    Ok(())
}
