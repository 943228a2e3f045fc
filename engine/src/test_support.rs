//! Helpers for unit tests: recorded engine and compose outputs under `fixtures/`.

/// The text of `fixtures/<dir>/<name>`, panicking with the path when it cannot be read.
pub fn fixture(dir: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(dir)
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A recorded `docker inspect` / `podman inspect` output from `fixtures/inspect/`.
pub fn inspect_fixture(name: &str) -> String {
    fixture("inspect", name)
}
