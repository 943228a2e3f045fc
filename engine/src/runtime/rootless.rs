//! Who rootless Podman runs as: the current user, or (when the harness runs as root) an unprivileged
//! user reached through `runuser` with its own `XDG_RUNTIME_DIR`.

use std::path::{Path, PathBuf};

use super::exec::CommandSpec;
use crate::error::{HarnessError, Result};

/// Default unprivileged user for rootless Podman when the harness runs as root.
pub const DEFAULT_USER: &str = "hydra";

/// The `PATH` the rootless user's tools get when the caller has none.
pub const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The `PATH` the rootless user's tools get: the caller's own (it chooses which engine and compose
/// tool run, and holds no secret), else [`SAFE_PATH`]. Only absolute entries are kept.
fn user_path() -> String {
    let caller = std::env::var("PATH").unwrap_or_default();
    let kept: Vec<&str> = caller.split(':').filter(|d| d.starts_with('/')).collect();
    if kept.is_empty() {
        SAFE_PATH.to_string()
    } else {
        kept.join(":")
    }
}

/// `runuser` by absolute path: the caller's PATH (which the switched command inherits) may lack sbin.
fn runuser_program() -> &'static str {
    ["/usr/sbin/runuser", "/sbin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("runuser")
}

/// The unprivileged identity that owns the rootless engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootlessUser {
    /// Login name (the uid as text when the caller has no passwd entry).
    pub name: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Home directory, where its Podman keeps its storage and configuration.
    pub home: PathBuf,
    /// Its `XDG_RUNTIME_DIR` (`/run/user/<uid>` unless the caller set one).
    pub runtime_dir: PathBuf,
    /// True when the harness runs as root and must switch to this user for every call.
    pub switch: bool,
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Parses `/etc/passwd` text into entries, skipping malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
            })
        })
        .collect()
}

/// Whether `/etc/subuid`-style text grants `name` (or `uid`) a range of at least `min` ids.
pub fn has_subid_range(text: &str, name: &str, uid: u32, min: u64) -> bool {
    text.lines().any(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        f.len() == 3
            && (f[0] == name || f[0] == uid.to_string())
            && f[2].parse::<u64>().map(|n| n >= min).unwrap_or(false)
    })
}

impl RootlessUser {
    /// Resolves the rootless identity: `HYDRA_ROOTLESS_USER` (default `hydra`) when root, else the caller.
    pub fn resolve() -> Result<Self> {
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let entries = parse_passwd(&passwd);
        let euid = super::euid();
        if euid == 0 {
            let name = std::env::var("HYDRA_ROOTLESS_USER").unwrap_or_else(|_| DEFAULT_USER.to_string());
            let entry = entries.into_iter().find(|e| e.name == name).ok_or_else(|| HarnessError::RuntimeUnusable {
                runtime: "podman-rootless".into(),
                reason: format!("user '{name}' does not exist"),
                hint: "run `sudo scripts/setup-host.sh` (creates it), or set HYDRA_ROOTLESS_USER to an existing unprivileged user".into(),
            })?;
            if entry.uid == 0 {
                return Err(HarnessError::RuntimeUnusable {
                    runtime: "podman-rootless".into(),
                    reason: format!("user '{name}' is uid 0"),
                    hint: "set HYDRA_ROOTLESS_USER to an unprivileged user".into(),
                });
            }
            Ok(Self {
                runtime_dir: PathBuf::from(format!("/run/user/{}", entry.uid)),
                name: entry.name,
                uid: entry.uid,
                gid: entry.gid,
                home: entry.home,
                switch: true,
            })
        } else {
            let entry = entries.into_iter().find(|e| e.uid == euid);
            let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("/run/user/{euid}")));
            Ok(Self {
                name: entry
                    .as_ref()
                    .map(|e| e.name.clone())
                    .unwrap_or_else(|| euid.to_string()),
                uid: euid,
                gid: entry.as_ref().map(|e| e.gid).unwrap_or(euid),
                home: entry.map(|e| e.home).unwrap_or_else(|| PathBuf::from("/")),
                runtime_dir,
                switch: false,
            })
        }
    }

    /// A command that runs `program` as this user with its runtime dir (the same for engine and
    /// compose). When switching from root, the environment is minimal and explicit: nothing of
    /// root's own environment (CI tokens, credentials) reaches the less trusted user's tools.
    pub fn wrap(&self, program: &str) -> CommandSpec {
        if self.switch {
            let mut spec = CommandSpec::new(runuser_program())
                // setpriv: the user's tool dies with runuser, which dies with the harness.
                .args(["-u", &self.name, "--", "setpriv", "--pdeathsig", "KILL", program])
                .env("PATH", user_path())
                .env("HOME", self.home.display().to_string())
                .env("USER", self.name.clone())
                .env("LOGNAME", self.name.clone())
                .env("LANG", "C.UTF-8")
                .env("XDG_RUNTIME_DIR", self.runtime_dir.display().to_string())
                .cwd(&self.home);
            spec.clear_env = true;
            spec
        } else {
            CommandSpec::new(program).env("XDG_RUNTIME_DIR", self.runtime_dir.display().to_string())
        }
    }

    /// Whether this user can read `path` (and traverse to it): checked by the user itself when switching.
    pub fn can_read(&self, path: &Path) -> bool {
        self.can_read_all(&[path.to_path_buf()])
    }

    /// Whether this user can read every one of `paths`: one process as the user for all of them
    /// (the paths are arguments, never part of the script).
    pub fn can_read_all(&self, paths: &[PathBuf]) -> bool {
        if !self.switch {
            return paths.iter().all(|p| std::fs::metadata(p).is_ok());
        }
        let spec = self
            .wrap("sh")
            .args(["-c", r#"for f do test -r "$f" || exit 1; done"#, "sh"])
            .args(paths.iter().map(|p| p.display().to_string()));
        super::exec::run(
            &spec,
            std::time::Duration::from_secs(10),
            super::exec::Interrupt::Ignored,
        )
        .map(|o| o.success())
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nhydra:x:1001:1001::/home/hydra:/bin/bash\nbroken line\n";

    #[test]
    fn parses_passwd_entries() {
        let e = parse_passwd(PASSWD);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[1],
            PasswdEntry {
                name: "hydra".into(),
                uid: 1001,
                gid: 1001,
                home: "/home/hydra".into()
            }
        );
    }

    #[test]
    fn subid_ranges_by_name_or_uid() {
        let text = "hydra:100000:65536\n1002:200000:1000\n";
        assert!(has_subid_range(text, "hydra", 1001, 65536));
        assert!(!has_subid_range(text, "other", 1002, 65536));
        assert!(has_subid_range(text, "other", 1002, 1000));
        assert!(!has_subid_range(text, "nobody", 9, 1));
    }

    #[test]
    fn switching_wraps_with_runuser_and_runtime_dir() {
        let u = RootlessUser {
            name: "hydra".into(),
            uid: 1001,
            gid: 1001,
            home: "/home/hydra".into(),
            runtime_dir: "/run/user/1001".into(),
            switch: true,
        };
        let spec = u.wrap("podman").args(["ps", "-a"]);
        assert!(spec.program.ends_with("runuser"), "{}", spec.program);
        assert_eq!(
            spec.args,
            [
                "-u",
                "hydra",
                "--",
                "setpriv",
                "--pdeathsig",
                "KILL",
                "podman",
                "ps",
                "-a"
            ]
        );
        assert!(spec.clear_env, "root's environment must not reach the rootless user");
        assert!(spec.env.contains(&("XDG_RUNTIME_DIR".into(), "/run/user/1001".into())));
        assert!(spec.env.contains(&("HOME".into(), "/home/hydra".into())));
        assert!(spec.env.iter().any(|(k, v)| k == "PATH" && !v.is_empty()));
        let direct = RootlessUser { switch: false, ..u };
        let spec = direct.wrap("podman");
        assert_eq!(spec.program, "podman");
        assert!(spec.env.contains(&("XDG_RUNTIME_DIR".into(), "/run/user/1001".into())));
    }

    #[test]
    fn readable_only_when_every_path_is() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("compose.yml");
        std::fs::write(&file, "services: {}\n").unwrap();
        let u = RootlessUser {
            name: "me".into(),
            uid: 0,
            gid: 0,
            home: d.path().into(),
            runtime_dir: d.path().into(),
            switch: false,
        };
        assert!(u.can_read_all(std::slice::from_ref(&file)));
        assert!(!u.can_read_all(&[file.clone(), d.path().join("missing.yml")]));
        assert!(u.can_read_all(&[]));
    }
}
