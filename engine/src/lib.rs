//! Hydra's engine layer: reaches docker, rootful podman and rootless podman, drives the compose
//! tools people deploy with, builds images offline, and owns a stack's lifecycle (up, readiness,
//! teardown that leaves nothing, run records, gc). It knows nothing of specs, checks, posture or
//! reports: the `hydra` crate builds those on top of it.
//!
//! Layers, bottom up: `error`, `labels`, `envfile`, `workspace`; `runtime` (the only process
//! spawner, every engine quirk); `compose` (tools and the compose model); `images`; `readiness`;
//! `trusted_dir`, `runs` (run records), `staging`; `stack` (the RAII handle); `gc`, `doctor`.

#![warn(missing_docs)]

pub mod compose;
pub mod doctor;
pub mod envfile;
pub mod error;
pub mod gc;
pub mod images;
pub mod kube;
pub mod labels;
pub mod readiness;
pub mod runs;
pub mod runtime;
pub mod secrets;
pub mod stack;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod trusted_dir;
pub mod volumes;
pub mod workspace;

pub use error::{HarnessError, Result};
pub use runtime::RuntimeKind;
pub use stack::{Stack, StackOptions};
