//! Label keys the harness puts on every container, network and volume it creates.

/// Marks an object as created by the harness (`true`).
pub const MANAGED: &str = "io.hydra.managed";
/// The run that created it.
pub const RUN: &str = "io.hydra.run";
/// The runtime it was created under.
pub const RUNTIME: &str = "io.hydra.runtime";
/// PID of the harness process that owns the run.
pub const OWNER_PID: &str = "io.hydra.owner-pid";
/// Start time (clock ticks since boot) of that process, so a reused PID is not mistaken for it.
pub const OWNER_START: &str = "io.hydra.owner-start";

/// `key=value` filter form.
pub fn filter(key: &str, value: &str) -> String {
    format!("{key}={value}")
}
