//! Shared by the integration tests: which runtimes to use and how to look into an engine.

#![allow(dead_code)]

use hydra::runtime::{ObjectKind, Runtime, RuntimeKind};

pub use hydra::validate::Availability;

/// `HYDRA_RUNTIMES` (default: all) diagnosed by doctor; `HYDRA_REQUIRE` turns a skip into a failure.
pub fn runtimes() -> Vec<(RuntimeKind, Availability)> {
    hydra::validate::availability(&[], &[]).expect("HYDRA_RUNTIMES / HYDRA_REQUIRE")
}

/// Every object (`kind id`) in the runtime carrying `label`.
pub fn objects_with(rt: &Runtime, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ObjectKind::ALL {
        for id in rt.list_by_label(kind, label).expect("list by label") {
            out.push(format!("{} {id}", kind.name()));
        }
    }
    out
}
