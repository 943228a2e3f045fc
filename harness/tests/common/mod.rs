//! Shared by the integration tests: which runtimes to use and how to look into an engine.

#![allow(dead_code)]

use hydra::runtime::{ObjectKind, Runtime};

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

#[path = "../../../suites/trial.rs"]
mod trial;

pub use trial::{runtimes, trial};
