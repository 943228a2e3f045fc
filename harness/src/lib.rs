//! Hydra harness: brings a compose stack up under docker, podman and rootless podman with the
//! compose tools people deploy with, waits for it to be healthy, and tears it down leaving nothing.
//!
//! Layout: `runtime` (engines and their quirks, the only process spawner), `compose` (tools and
//! compose files), `images` (offline base and hashed builds), `readiness`, `stack` (RAII lifecycle),
//! `state` (run records), `gc`, `doctor`. The `harness` binary is a thin CLI over these.

pub mod checks;
pub mod compose;
pub mod doctor;
pub mod error;
pub mod gc;
pub mod images;
pub mod labels;
pub mod outcome;
pub mod posture;
pub mod readiness;
pub mod report;
pub mod runtime;
pub mod secrets;
pub mod spec;
pub mod stack;
pub mod staging;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod trusted_dir;
pub mod validate;

pub use error::{HarnessError, Result};
pub use runtime::RuntimeKind;
pub use stack::{Stack, StackOptions};
