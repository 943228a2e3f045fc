//! Named volumes as a migration must carry them: what their file trees hold, seen from inside a
//! container, so that a volume moved between engines can be proven identical.

pub mod fingerprint;

pub use fingerprint::{Difference, Entry, EntryKind, Fingerprint};
