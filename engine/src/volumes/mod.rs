//! Named volumes as a migration must carry them: which state a move carries and which it would
//! lose ([`at_risk`]), and what a volume's file tree holds, seen from inside a container, so that
//! a volume moved between engines can be proven identical ([`fingerprint`]).

pub mod at_risk;
pub mod fingerprint;

pub use at_risk::{plan, AtRisk, Carried, MovePlan};
pub use fingerprint::{Difference, Entry, EntryKind, Fingerprint};
