//! A real Prometheus beside the stack under test: its scrape configuration generated from the
//! spec's `[monitoring]` section (`config`), its HTTP API read into typed answers (`api`), and the
//! container that runs it on one of the stack's networks (`server`).

pub mod api;
pub mod config;
pub mod server;

pub use api::{Prometheus, Sample, Target};
pub use server::RunningPrometheus;
