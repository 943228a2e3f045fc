//! Named volumes as a migration must carry them: which state a move carries and which it would
//! lose ([`at_risk`]), what a volume's file tree holds, seen from inside a container
//! ([`fingerprint`]), and copying a volume between engines with proof ([`transfer`]).

pub mod at_risk;
pub mod fingerprint;
pub mod stream_dir;
pub mod transfer;

pub use at_risk::{plan, AtRisk, Carried, MovePlan};
pub use fingerprint::{Difference, Entry, EntryKind, Fingerprint};
pub use transfer::{copy, create, Fill, Transfer};
