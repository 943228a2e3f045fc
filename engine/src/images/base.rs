//! The bootstrapped base image: no registry is reachable, so a minimal Debian is made with
//! debootstrap from the host's own apt mirror and imported into each engine's storage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::runtime::{exec, CommandSpec, Interrupt, Runtime};

/// The base image every bundled Containerfile starts from by default (`ARG BASE_IMAGE`).
pub const BASE_IMAGE: &str = "localhost/hydra/bookworm-minbase:latest";
/// The Debian suite the stack's package names belong to.
pub const SUITE: &str = "bookworm";

/// Where the root filesystem tarball is cached between runs: `HYDRA_BASE_CACHE`, else a
/// root-owned directory (readable by the rootless user, writable by root only).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HYDRA_BASE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/hydra/base"))
}

/// The digest file written beside the tarball when it is made; the tarball is used only when
/// it still matches.
fn digest_path(tarball: &Path) -> PathBuf {
    tarball.with_extension("tar.sha256")
}

/// SHA-256 of a file, hex.
fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Whether the cached tarball in a trusted directory still has the digest recorded when it was
/// made. A tarball without its digest, or with another one, is not used.
pub fn verify_tarball(tarball: &Path) -> Result<()> {
    crate::trusted_dir::check(tarball.parent().unwrap_or(Path::new("/")))?;
    let meta = std::fs::symlink_metadata(tarball)?;
    if !meta.is_file() {
        return Err(corrupt(tarball, "it is not a regular file"));
    }
    let recorded =
        std::fs::read_to_string(digest_path(tarball)).map_err(|_| corrupt(tarball, "its digest file is missing"))?;
    let actual = file_sha256(tarball)?;
    if recorded.split_whitespace().next() != Some(actual.as_str()) {
        return Err(corrupt(
            tarball,
            "its content does not match the digest recorded when it was made",
        ));
    }
    Ok(())
}

fn corrupt(tarball: &Path, why: &str) -> HarnessError {
    HarnessError::UntrustedPath {
        path: tarball.to_path_buf(),
        reason: format!("the cached base filesystem cannot be trusted: {why}"),
    }
}

/// Finds a mirror URI serving `suite` in apt sources text, one-line (`deb URI suite ...`) or
/// deb822 (`URIs:` / `Suites:` stanzas). Pure.
pub fn mirror_from_sources(text: &str, suite: &str) -> Option<String> {
    // One-line format.
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("deb ") {
            // An option block `[arch=amd64 signed-by=...]` may contain spaces.
            let rest = if rest.trim_start().starts_with('[') {
                rest.split_once(']').map(|(_, r)| r).unwrap_or("")
            } else {
                rest
            };
            let mut words = rest.split_whitespace();
            if let (Some(uri), Some(s)) = (words.next(), words.next()) {
                if s == suite {
                    return Some(uri.trim_end_matches('/').to_string());
                }
            }
        }
    }
    // deb822 format: stanzas separated by blank lines.
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        let enabled = field("Enabled").map(|e| e != "no").unwrap_or(true);
        if enabled && types.split_whitespace().any(|t| t == "deb") && suites.split_whitespace().any(|s| s == suite) {
            if let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next().map(String::from)) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// The mirror to bootstrap from: `HYDRA_DEBIAN_MIRROR`, else the host's apt sources.
pub fn host_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("HYDRA_DEBIAN_MIRROR") {
        return Ok(m);
    }
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if matches!(p.extension().and_then(|e| e.to_str()), Some("list" | "sources")) {
                text.push_str("\n\n");
                text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    mirror_from_sources(&text, SUITE).ok_or_else(|| HarnessError::Host {
        reason: format!("no apt source for Debian {SUITE} found in /etc/apt/sources.list(.d)"),
        hint: "set HYDRA_DEBIAN_MIRROR to a Debian mirror URL, or build with --build-arg BASE_IMAGE=<a registry image>"
            .into(),
    })
}

/// The cached root filesystem tarball, created with debootstrap when missing.
pub fn ensure_rootfs_tarball() -> Result<PathBuf> {
    ensure_rootfs_tarball_in(&cache_dir())
}

fn ensure_rootfs_tarball_in(dir: &Path) -> Result<PathBuf> {
    let dir = dir.to_path_buf();
    let tarball = dir.join(format!("{SUITE}-minbase.tar"));
    if std::fs::symlink_metadata(&tarball).is_ok() {
        verify_tarball(&tarball)?;
        return Ok(tarball);
    }
    if crate::runtime::euid() != 0 {
        return Err(HarnessError::Host {
            reason: format!("the base image {BASE_IMAGE} is missing and creating it needs root (debootstrap)"),
            hint: "run `sudo scripts/setup-host.sh` once, or `sudo harness images`".into(),
        });
    }
    let mirror = host_mirror()?;
    crate::trusted_dir::ensure(&dir, 0o755)?;
    let rootfs = dir.join(format!("{SUITE}-rootfs.tmp"));
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)?;
    }
    tracing::info!(%mirror, "bootstrapping {SUITE} minbase (about 30 s)");
    let spec = CommandSpec::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(rootfs.display().to_string())
        .arg(&mirror);
    exec::run_ok(&spec, Duration::from_secs(900), Interrupt::Allowed)?;
    let partial = dir.join(format!("{SUITE}-minbase.tar.partial"));
    let tar = CommandSpec::new("tar")
        .arg("-C")
        .arg(rootfs.display().to_string())
        .args(["-cf"])
        .arg(partial.display().to_string())
        .arg(".");
    exec::run_ok(&tar, Duration::from_secs(300), Interrupt::Allowed)?;
    std::fs::remove_dir_all(&rootfs)?;
    set_mode(&partial, 0o644)?;
    std::fs::write(
        digest_path(&tarball),
        format!("{}  {SUITE}-minbase.tar\n", file_sha256(&partial)?),
    )?;
    std::fs::rename(&partial, &tarball)?;
    Ok(tarball)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Makes sure the base image exists in `runtime`'s storage; returns true when it had to import it.
pub fn ensure(runtime: &Runtime) -> Result<bool> {
    if runtime.image_exists(BASE_IMAGE)? {
        return Ok(false);
    }
    let tarball = ensure_rootfs_tarball()?;
    tracing::info!(runtime = %runtime.kind(), "importing {BASE_IMAGE}");
    let spec = runtime
        .engine()
        .arg("import")
        .arg(tarball.display().to_string())
        .arg(BASE_IMAGE);
    exec::run_ok(&spec, Duration::from_secs(600), Interrupt::Allowed)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_planted_or_altered_tarball_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("base");
        std::fs::create_dir(&cache).unwrap();
        let tarball = cache.join("bookworm-minbase.tar");
        std::fs::write(&tarball, b"rootfs").unwrap();
        // Without the digest recorded when it was made: refused.
        let err = verify_tarball(&tarball).unwrap_err().to_string();
        assert!(err.contains("digest file is missing"), "{err}");
        std::fs::write(
            digest_path(&tarball),
            format!("{}  x\n", file_sha256(&tarball).unwrap()),
        )
        .unwrap();
        verify_tarball(&tarball).unwrap();
        std::fs::write(&tarball, b"rootfs, altered").unwrap();
        let err = verify_tarball(&tarball).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        // A cache directory someone else owns (or can write) is refused whatever it holds.
        std::fs::write(
            digest_path(&tarball),
            format!("{}  x\n", file_sha256(&tarball).unwrap()),
        )
        .unwrap();
        std::os::unix::fs::chown(&cache, Some(65534), None).unwrap();
        assert!(verify_tarball(&tarball)
            .unwrap_err()
            .to_string()
            .contains("owned by uid 65534"));
        std::os::unix::fs::chown(&cache, Some(0), None).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(verify_tarball(&tarball)
            .unwrap_err()
            .to_string()
            .contains("writable by every user"));
    }

    #[test]
    fn a_planted_cache_is_refused_by_ensure() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("planted");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("bookworm-minbase.tar"), b"attacker's rootfs").unwrap();
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
        let err = ensure_rootfs_tarball_in(&cache).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }

    #[rstest]
    #[case::deb822(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n",
        Some("http://mirror.example/debian")
    )]
    #[case::one_line(
        "# comment\ndeb http://m.example/debian/ bookworm main\n",
        Some("http://m.example/debian")
    )]
    #[case::one_line_opts(
        "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n",
        Some("http://m.example/debian")
    )]
    #[case::other_suite_only("deb http://m.example/ubuntu jammy main\n", None)]
    #[case::disabled("Types: deb\nURIs: http://x.example/debian\nSuites: bookworm\nEnabled: no\n", None)]
    #[case::deb_src_only("Types: deb-src\nURIs: http://x.example/debian\nSuites: bookworm\n", None)]
    fn finds_the_bookworm_mirror(#[case] text: &str, #[case] expected: Option<&str>) {
        assert_eq!(mirror_from_sources(text, "bookworm").as_deref(), expected);
    }
}
