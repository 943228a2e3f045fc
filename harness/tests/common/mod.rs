//! Shared by the integration tests: which runtimes to use and how to look into an engine.

#![allow(dead_code)]

use hydra::runtime::{self, ObjectKind, Runtime, RuntimeKind};

/// Whether a runtime is used, skipped (with why) or required-but-broken (with why).
pub enum Availability {
    Use,
    Skip(String),
    Broken(String),
}

/// `HYDRA_RUNTIMES` (default: all) filtered by doctor; `HYDRA_REQUIRE` turns a skip into a failure.
pub fn runtimes() -> Vec<(RuntimeKind, Availability)> {
    let wanted = std::env::var("HYDRA_RUNTIMES").ok().map(|v| runtime::parse_list(&v).expect("HYDRA_RUNTIMES")).filter(|l| !l.is_empty()).unwrap_or_else(|| RuntimeKind::ALL.to_vec());
    let required = std::env::var("HYDRA_REQUIRE").ok().map(|v| runtime::parse_list(&v).expect("HYDRA_REQUIRE")).unwrap_or_default();
    RuntimeKind::ALL
        .into_iter()
        .map(|kind| {
            if !wanted.contains(&kind) {
                if required.contains(&kind) {
                    return (kind, Availability::Broken("required by HYDRA_REQUIRE but not in HYDRA_RUNTIMES".into()));
                }
                return (kind, Availability::Skip("not in HYDRA_RUNTIMES".into()));
            }
            let report = hydra::doctor::diagnose(kind);
            match report.reason() {
                None => (kind, Availability::Use),
                Some(reason) if required.contains(&kind) => (kind, Availability::Broken(reason)),
                Some(reason) => (kind, Availability::Skip(reason)),
            }
        })
        .collect()
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
