//! Hydra harness: the policy layer over [`hydra_engine`]. It states what a migration must preserve
//! (the `spec`), checks it on a running stack (`checks`, `posture`), runs one validation
//! (`session`), and reports (`outcome`, `report`). The `harness` binary is a thin CLI over both
//! crates.
//!
//! To test a stack of your own from Rust tests, start with [`testing`]: a builder with explicit
//! paths, blocking and async handles, and one test case per target. [`logging::init`] shows the
//! harness's log (`RUST_LOG=hydra=debug` prints every engine and compose command).
//!
//! The engine's modules are re-exported under their own names (`hydra::runtime`, `hydra::stack`,
//! ...), so users of this crate need one dependency.

#![warn(missing_docs)]

pub use hydra_engine::{
    compose, doctor, envfile, error, gc, images, labels, readiness, runs, runtime, secrets, stack, trusted_dir,
    volumes, workspace,
};

pub mod checks;
pub mod deploy;
pub mod kube;
pub mod logging;
pub mod migrate;
pub mod monitoring;
pub mod outcome;
pub mod posture;
pub mod report;
pub mod spec;
#[cfg(test)]
use hydra_engine::test_support;
pub mod session;
pub mod testing;

pub use error::{HarnessError, Result};
pub use runtime::RuntimeKind;
pub use stack::{Stack, StackOptions};
