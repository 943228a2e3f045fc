//! Written the way a user of Hydra writes tests: `tests/second_stack.rs` brings the repository's
//! second stack (`fixtures/second-stack`: a web server and a worker on networks kept apart) up
//! under each target from `#[tokio::test]` functions with one rstest case per target, reaches it
//! over loopback, looks inside it, and runs the spec's checks on demand.
//!
//! The library crate is empty on purpose: everything worth reading is in `tests/`.
