//! Shared code of the Hydra benchmarks (`cargo bench -p hydra-benches`): which runtimes to
//! measure, the measurements themselves (stack lifecycle, single containers, HTTP and PostgreSQL
//! load), where samples are kept, and the docker / podman / podman-rootless comparison report.
//!
//! Bench targets (`benches/startup.rs`, `benches/throughput.rs`) only sequence these; everything
//! that can be tested without an engine is tested here.

#![warn(missing_docs)]

pub mod config;
pub mod envinfo;
pub mod load;
pub mod measure;
pub mod ops;
pub mod pg;
pub mod report;
pub mod stats;
pub mod store;

use std::path::PathBuf;

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => hydra::workspace::root().join("target"),
    }
}

/// Where samples and the comparison report go: `<target>/hydra/bench`.
pub fn bench_dir() -> PathBuf {
    target_dir().join("hydra/bench")
}
