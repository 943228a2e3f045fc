//! Directories the harness may trust while it runs as root: its run records and the cached base
//! filesystem live there, and both steer what root does next. A directory is trusted only when it
//! and every ancestor are owned by root (or by the calling user) and nobody else can write to them
//! (a sticky world-writable ancestor such as `/tmp` is fine: others cannot rename our entries).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// The ownership facts of one path component, as judged by [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The path (the directory itself or one of its ancestors).
    pub path: PathBuf,
    /// Its owner's uid.
    pub uid: u32,
    /// Its mode bits (`st_mode`).
    pub mode: u32,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// Why `components` (the directory and its ancestors) cannot be trusted by `euid`, if they cannot. Pure.
pub fn judge(components: &[Component], euid: u32) -> Option<String> {
    for c in components {
        if !c.is_dir {
            return Some(format!("{} is not a directory", c.path.display()));
        }
        if c.uid != 0 && c.uid != euid {
            return Some(format!(
                "{} is owned by uid {}, not by root{}",
                c.path.display(),
                c.uid,
                if euid == 0 {
                    String::new()
                } else {
                    format!(" or uid {euid}")
                }
            ));
        }
        let sticky = c.mode & 0o1000 != 0;
        if c.mode & 0o022 != 0 && !sticky {
            return Some(format!(
                "{} is writable by {} (mode {:o})",
                c.path.display(),
                if c.mode & 0o002 != 0 { "every user" } else { "its group" },
                c.mode & 0o7777
            ));
        }
    }
    None
}

/// Checks that `dir` exists and can be trusted (see the module doc).
pub fn check(dir: &Path) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| untrusted(dir, format!("cannot resolve it: {e}")))?;
    let mut components = Vec::new();
    for p in real.ancestors() {
        let m = std::fs::metadata(p).map_err(|e| untrusted(dir, format!("cannot stat {}: {e}", p.display())))?;
        components.push(Component {
            path: p.to_path_buf(),
            uid: m.uid(),
            mode: m.mode(),
            is_dir: m.is_dir(),
        });
    }
    match judge(&components, crate::runtime::euid()) {
        None => Ok(()),
        Some(reason) => Err(untrusted(dir, reason)),
    }
}

/// Creates `dir` (and missing parents) with `mode`, never through a link, then [`check`]s it.
pub fn ensure(dir: &Path, mode: u32) -> Result<()> {
    let mut missing = Vec::new();
    for p in dir.ancestors() {
        match std::fs::symlink_metadata(p) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(p.to_path_buf()),
            Err(e) => return Err(untrusted(dir, format!("cannot stat {}: {e}", p.display()))),
        }
    }
    for p in missing.iter().rev() {
        // Non-recursive: fails if someone else created it in between, instead of adopting theirs.
        match std::fs::DirBuilder::new().mode(mode).create(p) {
            Ok(()) => std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(untrusted(dir, format!("cannot create {}: {e}", p.display()))),
        }
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(untrusted(dir, "it is a symbolic link".into()));
    }
    check(dir)
}

/// Creates one directory that must not exist yet (never adopting one planted by someone else).
pub fn create_new(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(dir)
        .map_err(|e| untrusted(dir, format!("cannot create it: {e}")))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn untrusted(dir: &Path, reason: String) -> HarnessError {
    HarnessError::UntrustedPath {
        path: dir.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn c(path: &str, uid: u32, mode: u32) -> Component {
        Component {
            path: path.into(),
            uid,
            mode,
            is_dir: true,
        }
    }

    #[rstest]
    #[case::root_owned(vec![c("/var/lib/hydra", 0, 0o40755), c("/var/lib", 0, 0o40755)], 0, None)]
    #[case::sticky_tmp(vec![c("/tmp/h", 0, 0o40700), c("/tmp", 0, 0o41777)], 0, None)]
    #[case::planted(vec![c("/var/tmp/hydra", 1001, 0o40755), c("/var/tmp", 0, 0o41777)], 0, Some("owned by uid 1001"))]
    #[case::world_writable(vec![c("/srv/h", 0, 0o40777)], 0, Some("writable by every user"))]
    #[case::group_writable(vec![c("/srv/h", 0, 0o40775)], 0, Some("writable by its group"))]
    #[case::own_dir_as_user(vec![c("/home/u/.local/state/hydra", 1000, 0o40700)], 1000, None)]
    #[case::other_users_dir(vec![c("/home/v/x", 1002, 0o40700)], 1000, Some("owned by uid 1002"))]
    fn judges_ownership_and_write_bits(
        #[case] comps: Vec<Component>,
        #[case] euid: u32,
        #[case] expected: Option<&str>,
    ) {
        match (judge(&comps, euid), expected) {
            (None, None) => {}
            (Some(r), Some(e)) => assert!(r.contains(e), "{r}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_file_is_not_a_trusted_directory() {
        let comps = [Component {
            path: "/x".into(),
            uid: 0,
            mode: 0o100644,
            is_dir: false,
        }];
        assert!(judge(&comps, 0).unwrap().contains("not a directory"));
    }

    #[test]
    fn ensure_refuses_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let link = d.path().join("state");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = ensure(&link, 0o755).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        ensure(&d.path().join("a/b"), 0o755).unwrap();
        assert!(d.path().join("a/b").is_dir());
    }
}
