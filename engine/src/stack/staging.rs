//! A private copy of a stack's files for the rootless user, when that user cannot read the
//! originals (a project cloned under `/root`, say). Only what the compose files reference is
//! copied: the compose files, build contexts, env files, seccomp profiles, relative bind-mount
//! sources, `extends`/`configs`/`secrets` files and the project `.env`. Root packs them into an
//! archive without following links and the user unpacks it into a directory it owns (mode 0700),
//! so root never writes into a place the user controls, and no other local user can read the copy.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;
use sha2::Digest;

use crate::compose::file::interpolate;
use crate::error::{HarnessError, Result};
use crate::runtime::{exec, Interrupt, RootlessUser, Runtime};

/// Paths (relative to each compose file's directory, as written) that one compose file refers to
/// and that a compose tool or build reads from the project tree. Absolute paths are not
/// included: they name host paths, not project files. Pure.
pub fn references(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    // Unparsable text yields nothing here: loading the compose files reports it with its cause.
    let Ok(root) = crate::compose::file::load_yaml(Path::new("compose file"), text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |s: &str| {
        let s = interpolate(s, lookup);
        if !s.is_empty() && !s.starts_with('/') {
            out.push(s);
        }
    };
    let services = root.get("services").and_then(Value::as_mapping);
    for def in services.into_iter().flat_map(|m| m.values()) {
        match def.get("build") {
            Some(Value::String(ctx)) => push(ctx),
            Some(Value::Mapping(b)) => {
                let ctx = b.get("context").and_then(Value::as_str).unwrap_or(".");
                push(ctx);
                if let Some(df) = b.get("dockerfile").and_then(Value::as_str) {
                    push(&format!("{}/{df}", ctx.trim_end_matches('/')));
                }
            }
            _ => {}
        }
        match def.get("env_file") {
            Some(Value::String(f)) => push(f),
            Some(Value::Sequence(list)) => {
                for item in list {
                    match item {
                        Value::String(f) => push(f),
                        Value::Mapping(m) => {
                            if let Some(f) = m.get("path").and_then(Value::as_str) {
                                push(f)
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        for opt in def
            .get("security_opt")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(p) = opt
                .as_str()
                .and_then(|o| o.strip_prefix("seccomp=").or_else(|| o.strip_prefix("seccomp:")))
            {
                if p != "unconfined" {
                    push(p);
                }
            }
        }
        for vol in def.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
            match vol {
                Value::String(v) => {
                    let source = v.split(':').next().unwrap_or_default();
                    if v.contains(':') && (source.starts_with('.') || source.starts_with('~')) {
                        push(source);
                    }
                }
                Value::Mapping(m) if m.get("type").and_then(Value::as_str) == Some("bind") => {
                    if let Some(s) = m.get("source").and_then(Value::as_str) {
                        push(s);
                    }
                }
                _ => {}
            }
        }
        if let Some(f) = def.get("extends").and_then(|e| e.get("file")).and_then(Value::as_str) {
            push(f);
        }
    }
    for section in ["configs", "secrets"] {
        for def in root
            .get(section)
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.values())
        {
            if let Some(f) = def.get("file").and_then(Value::as_str) {
                push(f);
            }
        }
    }
    out
}

/// The project root staging may copy from: the nearest ancestor of the first compose file that
/// holds `.git` or `Cargo.toml` and contains every compose file, else the first file's directory.
pub fn project_root(files: &[PathBuf]) -> PathBuf {
    let first = files[0].parent().unwrap_or(Path::new("/"));
    for dir in first.ancestors() {
        if files.iter().all(|f| f.starts_with(dir)) && (dir.join(".git").exists() || dir.join("Cargo.toml").exists()) {
            return dir.to_path_buf();
        }
    }
    first.to_path_buf()
}

/// Every existing path the compose `files` (canonical) need, canonical and inside `root`; a
/// reference that resolves outside it (through `..` or a link) is refused, naming it.
pub fn needed_paths(files: &[PathBuf], root: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<PathBuf>> {
    let mut out: BTreeSet<PathBuf> = files.iter().cloned().collect();
    let mut dirs: Vec<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    dirs.dedup();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| compose_err(f, format!("cannot read it: {e}")))?;
        let dir = f.parent().unwrap_or(Path::new("/"));
        for r in references(&text, lookup) {
            let joined = dir.join(&r);
            let Ok(real) = std::fs::canonicalize(&joined) else {
                continue; // missing: the compose tool reports it in its own words
            };
            if !real.starts_with(root) {
                return Err(compose_err(f, format!("'{r}' resolves to {}, outside the project {}: the rootless user cannot read the project, and the harness does not copy files from elsewhere for it", real.display(), root.display())).with_hint("keep build contexts and referenced files inside the project, or make them readable by the rootless user".to_string()));
            }
            out.insert(real);
        }
    }
    for d in dirs {
        let env = d.join(".env");
        if env.is_file() {
            out.insert(std::fs::canonicalize(&env)?);
        }
    }
    Ok(out.into_iter().collect())
}

/// Packs `paths` (files or whole directories, inside `root`) into a tar archive with paths
/// relative to `root`. Nothing is followed: links are stored as links, and a file replaced by a
/// link while packing is refused.
pub fn pack(root: &Path, paths: &[PathBuf]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut seen = BTreeSet::new();
    for p in paths {
        if !p.starts_with(root) && p.is_file() {
            // A compose file given from elsewhere (an overlay): its relative paths resolve
            // against the project directory anyway, so it can live anywhere in the stage.
            append_file(&mut builder, p, &outside_name(p))?;
            continue;
        }
        // Parent directories first, with their own modes.
        let rel = p.strip_prefix(root).map_err(|_| outside(p, root))?;
        let mut acc = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            acc.push(c);
            if seen.insert(acc.clone()) {
                append_dir(&mut builder, &root.join(&acc), &acc)?;
            }
        }
        for entry in walkdir::WalkDir::new(p).follow_links(false) {
            let entry = entry.map_err(|e| std::io::Error::other(e.to_string()))?;
            let rel = entry
                .path()
                .strip_prefix(root)
                .map_err(|_| outside(entry.path(), root))?
                .to_path_buf();
            if rel.as_os_str().is_empty()
                || rel.components().any(|c| matches!(c, Component::ParentDir))
                || !seen.insert(rel.clone())
            {
                continue;
            }
            let ft = entry.file_type();
            if ft.is_dir() {
                append_dir(&mut builder, entry.path(), &rel)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                builder.append_link(&mut h, &rel, &target)?;
            } else if ft.is_file() {
                append_file(&mut builder, entry.path(), &rel)?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &Path, rel: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(changed(path));
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(meta.mode() & 0o777 | 0o700);
    h.set_mtime(meta.mtime().max(0) as u64);
    builder.append_data(&mut h, rel, std::io::empty())?;
    Ok(())
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &Path, rel: &Path) -> Result<()> {
    // O_NOFOLLOW and the type check on the opened file: a link swapped in after the walk is refused.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|_| changed(path))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(changed(path));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data)?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    // Modes are kept (they reach images through COPY); the 0700 stage directory keeps others out.
    h.set_mode(meta.mode() & 0o777);
    h.set_mtime(meta.mtime().max(0) as u64);
    builder.append_data(&mut h, rel, data.as_slice())?;
    Ok(())
}

/// Creates `stage` (which must not exist) for `user`, mode 0700, and has the user unpack
/// `archive` into it.
pub fn unpack_as(user: &RootlessUser, stage: &Path, archive: Vec<u8>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::trusted_dir::create_new(stage, 0o700)?;
    std::os::unix::fs::chown(stage, Some(user.uid), Some(user.gid))?;
    std::fs::set_permissions(stage, std::fs::Permissions::from_mode(0o700))?;
    let mut spec = user
        .wrap("tar")
        .args(["-x", "-p", "--no-same-owner", "-f", "-", "-C"])
        .arg(stage.display().to_string());
    spec.stdin = Some(archive);
    exec::run_ok(&spec, Duration::from_secs(120), Interrupt::Allowed)?;
    Ok(())
}

fn compose_err(path: &Path, reason: String) -> HarnessError {
    HarnessError::compose(path, reason)
}

fn outside(path: &Path, root: &Path) -> HarnessError {
    HarnessError::Staging(format!("{} is outside the project {}", path.display(), root.display()))
}

fn changed(path: &Path) -> HarnessError {
    HarnessError::Staging(format!(
        "{} changed while it was being staged (it is now a link or another kind of file); do not modify the project while the harness copies it",
        path.display()
    ))
}

/// Returns compose file paths the runtime's user can read: the originals, or (for a rootless user
/// that cannot read them) a private copy of what they reference, owned by that user.
pub(super) fn stage_if_needed(runtime: &Runtime, files: &[PathBuf], run_dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            std::fs::canonicalize(f).map_err(|e| {
                HarnessError::compose(f, format!("cannot read it: {e}")).with_hint(crate::workspace::missing_file_hint(
                    f,
                    "pass an existing file with --compose",
                ))
            })
        })
        .collect::<Result<_>>()?;
    let Some(user) = runtime.rootless_user() else {
        return Ok(files);
    };
    let root = project_root(&files);
    let lookup = |name: &str| std::env::var(name).ok();
    let needed = needed_paths(&files, &root, &lookup)?;
    if user.can_read_all(&needed) {
        return Ok(files);
    }
    let stage = run_dir.join("stage");
    tracing::info!(user = %user.name, root = %root.display(), files = needed.len(), "staging a private copy for the rootless user");
    unpack_as(user, &stage, pack(&root, &needed)?)?;
    Ok(files
        .iter()
        .map(|f| match f.strip_prefix(&root) {
            Ok(rel) => stage.join(rel),
            Err(_) => stage.join(outside_name(f)),
        })
        .collect())
}

/// Where a compose file from outside the project goes in the stage.
fn outside_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digest = hex::encode(&sha2::Sha256::digest(path.display().to_string().as_bytes())[..4]);
    PathBuf::from(".hydra-overlays").join(format!("{digest}-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_bundled_stack_references_what_it_builds_and_reads() {
        let text = std::fs::read_to_string(crate::workspace::bundled_compose_file()).unwrap();
        let refs = references(&text, &none);
        for want in [
            "../containerfiles/db",
            "../containerfiles/db/Containerfile",
            "../containerfiles/python",
            "../containerfiles/nginx",
            "phoenix.env",
            "../fixtures/seccomp/phoenix.json",
            "../fixtures/db/schema.sql",
        ] {
            assert!(refs.iter().any(|r| r == want), "{want} missing from {refs:?}");
        }
        assert!(!refs.iter().any(|r| r.starts_with('/')), "{refs:?}");
    }

    #[test]
    fn references_cover_every_form() {
        let text = r#"
services:
  a:
    build: ./ctx
    env_file: [one.env, {path: two.env}]
    volumes: ["./data:/data", "named:/x", "/abs:/y", {type: bind, source: ./cfg, target: /cfg}]
    extends: {file: base.yml, service: b}
configs:
  c: {file: ./c.conf}
secrets:
  s: {file: "${SECRET_FILE:-s.txt}"}
"#;
        let refs = references(text, &none);
        for want in [
            "./ctx", "one.env", "two.env", "./data", "./cfg", "base.yml", "./c.conf", "s.txt",
        ] {
            assert!(refs.iter().any(|r| r == want), "{want} missing from {refs:?}");
        }
        assert!(!refs.iter().any(|r| r == "named" || r == "/abs"), "{refs:?}");
    }

    #[test]
    fn only_referenced_files_are_staged_and_escapes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("ctx")).unwrap();
        std::fs::write(root.join("ctx/app.py"), "x").unwrap();
        std::fs::write(root.join("app.env"), "TOKEN=1").unwrap();
        std::fs::write(root.join("unrelated-secret.txt"), "do not copy").unwrap();
        let compose = root.join("compose.yml");
        std::fs::write(&compose, "services:\n  a: {build: ./ctx, env_file: app.env}\n").unwrap();
        let paths = needed_paths(std::slice::from_ref(&compose), &root, &none).unwrap();
        let archive = pack(&root, &paths).unwrap();
        let names: Vec<String> = tar::Archive::new(archive.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"compose.yml".to_string()), "{names:?}");
        assert!(names.contains(&"ctx/app.py".to_string()), "{names:?}");
        assert!(names.contains(&"app.env".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("unrelated")), "{names:?}");

        std::fs::write(
            &compose,
            "services:\n  a: {image: x, env_file: ../../../../etc/passwd}\n",
        )
        .unwrap();
        let err = needed_paths(std::slice::from_ref(&compose), &root, &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the project"), "{err}");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link.env")).unwrap();
        std::fs::write(&compose, "services:\n  a: {image: x, env_file: link.env}\n").unwrap();
        let err = needed_paths(std::slice::from_ref(&compose), &root, &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the project"), "{err}");
    }

    #[test]
    fn a_file_swapped_for_a_link_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("swapped.env")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let err = append_file(&mut b, &root.join("swapped.env"), Path::new("swapped.env"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("changed while it was being staged"), "{err}");
    }
}
