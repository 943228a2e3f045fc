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

/// How to fix a file that cannot be read: `flag_hint` ("pass an existing file with --spec"), and
/// when the file is a default under the workspace root, that the root is the source tree this
/// binary was built from (or `HYDRA_ROOT`), which an installed binary may no longer have.
pub fn missing_file_hint(path: &Path, flag_hint: &str) -> String {
    let root = root();
    if path.starts_with(&root) && !root.join("compose").is_dir() {
        format!(
            "{flag_hint}; {} is the default from {}, which holds no Hydra checkout (anymore): set \
             HYDRA_ROOT to a checkout of the repository, or give your own files",
            path.display(),
            if std::env::var_os("HYDRA_ROOT").is_some() {
                "HYDRA_ROOT".to_string()
            } else {
                format!("the source tree this binary was built from ({})", root.display())
            }
        )
    } else {
        flag_hint.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_from_a_tree_that_is_gone_says_how_to_point_at_one() {
        // Not under the root: the plain hint.
        assert_eq!(
            missing_file_hint(Path::new("/x/spec.toml"), "pass --spec"),
            "pass --spec"
        );
        // Under the root of this checkout, which exists: the plain hint too.
        assert_eq!(
            missing_file_hint(&root().join("nope.toml"), "pass --spec"),
            "pass --spec"
        );
    }
}
