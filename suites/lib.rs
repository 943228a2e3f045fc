//! Test suites over the Hydra harness. The suites live in test targets (`migration`); this
//! library is empty on purpose.
