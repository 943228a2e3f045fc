//! Where the project's own files are: the workspace root (`HYDRA_ROOT`, else the directory holding
//! this crate's workspace) and the bundled Phoenix Hydra stack under it. Paths only, no I/O.

use std::path::{Path, PathBuf};

/// The workspace root: `HYDRA_ROOT`, else the directory holding this crate's workspace.
pub fn root() -> PathBuf {
    if let Some(root) = std::env::var_os("HYDRA_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The bundled Phoenix Hydra compose file.
pub fn bundled_compose_file() -> PathBuf {
    root().join("compose/phoenix.yml")
}
