//! The content hash that names an image: every file of the build context (path, mode, bytes),
//! the Containerfile, the build arguments and the IDs of the base images.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::compose::file::interpolate;
use crate::error::Result;

/// Hex SHA-256 over the build inputs; stable across machines and checkouts (relative paths only).
pub fn content_hash(
    context: &Path,
    dockerfile: &Path,
    args: &BTreeMap<String, String>,
    base_ids: &[String],
) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    let mut entries: Vec<_> = walkdir::WalkDir::new(context)
        .follow_links(false)
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    for entry in entries {
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(context).unwrap_or(entry.path());
        let mode = entry
            .metadata()
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0, mode as u8]);
        let mut f = std::fs::File::open(entry.path())?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        h.update((buf.len() as u64).to_le_bytes());
        h.update(&buf);
    }
    h.update(b"\0dockerfile\0");
    h.update(std::fs::read(dockerfile)?);
    for (k, v) in args {
        h.update(format!("\0arg\0{k}={v}").as_bytes());
    }
    for id in base_ids {
        h.update(format!("\0base\0{id}").as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// The images a Containerfile starts `FROM`, with `ARG` defaults and build args substituted. Pure.
pub fn base_images(containerfile: &str, args: &BTreeMap<String, String>) -> Vec<String> {
    let mut defaults: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in containerfile.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        if instr.eq_ignore_ascii_case("ARG") && stages.is_empty() {
            if let Some(decl) = words.next() {
                let (k, v) = decl.split_once('=').unwrap_or((decl, ""));
                defaults.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        } else if instr.eq_ignore_ascii_case("FROM") {
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            let Some(image) = rest.first() else { continue };
            let lookup = |k: &str| args.get(k).cloned().or_else(|| defaults.get(k).cloned());
            let image = interpolate(image, &lookup);
            if let Some(pos) = rest.iter().position(|w| w.eq_ignore_ascii_case("AS")) {
                if let Some(alias) = rest.get(pos + 1) {
                    stages.push(alias.to_string());
                }
            }
            if !stages.iter().any(|s| s == &image) && image != "scratch" && !out.contains(&image) {
                out.push(image);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bases_through_arg_defaults_and_overrides() {
        let cf = "ARG BASE_IMAGE=localhost/hydra/bookworm-minbase:latest\nFROM ${BASE_IMAGE} AS build\nRUN x\nFROM build\nFROM --platform=linux/amd64 scratch\n";
        assert_eq!(
            base_images(cf, &BTreeMap::new()),
            ["localhost/hydra/bookworm-minbase:latest"]
        );
        let args = BTreeMap::from([("BASE_IMAGE".to_string(), "debian:bookworm-slim".to_string())]);
        assert_eq!(base_images(cf, &args), ["debian:bookworm-slim"]);
    }

    #[test]
    fn hash_changes_with_content_args_and_base_but_not_location() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::write(d.join("Containerfile"), "FROM x\n").unwrap();
            std::fs::create_dir(d.join("src")).unwrap();
            std::fs::write(d.join("src/app.py"), "print(1)\n").unwrap();
        }
        let none = BTreeMap::new();
        let h = |d: &Path, args: &BTreeMap<String, String>, base: &str| {
            content_hash(d, &d.join("Containerfile"), args, &[base.to_string()]).unwrap()
        };
        let ha = h(a.path(), &none, "sha256:1");
        assert_eq!(ha, h(b.path(), &none, "sha256:1"), "same content in another directory");
        assert_ne!(ha, h(a.path(), &none, "sha256:2"), "new base");
        let args = BTreeMap::from([("SERVICE".to_string(), "db".to_string())]);
        assert_ne!(ha, h(a.path(), &args, "sha256:1"), "build arg");
        std::fs::write(b.path().join("src/app.py"), "print(2)\n").unwrap();
        assert_ne!(ha, h(b.path(), &none, "sha256:1"), "file content");
    }
}
