//! Run records on disk: which runs exist, who owns them, and which were deliberately left running
//! by `harness up` (so `down` finds them and `gc` leaves them alone).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compose::ComposeTool;
use crate::error::Result;
use crate::runtime::RuntimeKind;

/// Root of the harness's state: `HYDRA_STATE_DIR`, else `/var/lib/hydra/state` as root (a
/// root-owned place: records there steer what root removes), else `$XDG_STATE_HOME/hydra`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HYDRA_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if crate::runtime::euid() == 0 {
        PathBuf::from(ROOT_STATE_DIR)
    } else {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join("hydra")
    }
}

/// Where root keeps run records by default.
pub const ROOT_STATE_DIR: &str = "/var/lib/hydra/state";

/// The runs directory, created if needed and checked to be trusted (see [`crate::trusted_dir`]).
pub fn runs_dir() -> Result<PathBuf> {
    let dir = state_dir().join("runs");
    crate::trusted_dir::ensure(&dir, 0o755)?;
    Ok(dir)
}

/// Creates `dir` and missing parents with mode 0755 (the rootless user must read override files).
pub fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Whether `id` has the shape of a run id: 1 to 48 lowercase letters, digits and inner dashes.
/// Run ids arrive back from engine labels, which less trusted users can set: only ids of this
/// shape are ever joined onto a path.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 48
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// What a run's record says about its stack: whether it may outlive its owner process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// `up` in progress; its owner process must be alive, else `gc` sweeps it.
    Starting,
    /// Left running on purpose by a successful `harness up`.
    Kept,
    /// The source stack of a migration drill: it outlives its drill process, so that an
    /// interrupted drill leaves the source and its data as they were; once that process is gone,
    /// the next drill (after checking the volumes) or `harness gc` removes it.
    DrillSource,
}

/// The files a run keeps in its directory (names fixed here, never taken from input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFile {
    /// `run.json`: the record itself.
    Record,
    /// `drill.json`: a migration drill's journal, kept with its source run.
    DrillJournal,
}

impl RunFile {
    /// The file's name in the run's directory.
    pub fn name(self) -> &'static str {
        match self {
            RunFile::Record => "run.json",
            RunFile::DrillJournal => "drill.json",
        }
    }
}

/// Everything needed to find, reach and remove a run's stack later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id, also its directory's name.
    pub run_id: String,
    /// The compose project name.
    pub project: String,
    /// The target the stack runs on.
    pub runtime: RuntimeKind,
    /// The compose tool that started it, and must take it down.
    pub tool: ComposeTool,
    /// Compose files in `-f` order, the harness's override files included.
    pub compose_files: Vec<PathBuf>,
    /// Directory the compose tool runs in.
    pub workdir: PathBuf,
    /// Environment the compose tool was given (why the record is root-only).
    pub env: Vec<(String, String)>,
    /// The services that run (profiles applied).
    pub services: Vec<String>,
    /// Host port chosen for each port variable.
    pub ports: BTreeMap<String, u16>,
    /// Host address published ports were bound to.
    #[serde(default = "loopback")]
    pub bind_ip: std::net::IpAddr,
    /// PID of the harness process that owns the run.
    pub owner_pid: u32,
    /// Start time of that process (clock ticks since boot), so a reused PID is not taken for it.
    pub owner_start: u64,
    /// Whether the stack may outlive its owner.
    pub status: RunStatus,
    /// When the record was made, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// For the kube-play targets: the played YAML and the pods, network and secrets it uses.
    #[serde(default)]
    pub kube: Option<crate::kube::play::Played>,
}

impl RunRecord {
    /// The directory of a run; `None` for anything that is not a run id.
    pub fn dir_for(run_id: &str) -> Option<PathBuf> {
        valid_run_id(run_id).then(|| state_dir().join("runs").join(run_id))
    }

    /// This run's directory under the state directory.
    pub fn dir(&self) -> PathBuf {
        Self::dir_for(&self.run_id).expect("records are only made and loaded with valid run ids")
    }

    /// Creates this run's directory, which must not exist yet.
    pub fn create_dir(run_id: &str) -> Result<PathBuf> {
        let dir = Self::dir_for(run_id).ok_or_else(|| invalid_run_id(run_id))?;
        runs_dir()?;
        crate::trusted_dir::create_new(&dir, 0o755)?;
        Ok(dir)
    }

    /// Writes `run.json` (root-only: it holds the compose environment).
    pub fn save(&self) -> Result<()> {
        self.write_file(
            RunFile::Record,
            &serde_json::to_vec_pretty(self).expect("record serialises"),
        )
    }

    /// Replaces one of the run's files (mode 0600) through a fresh temporary file, never
    /// through a link, in the run's checked directory.
    pub fn write_file(&self, file: RunFile, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir();
        crate::trusted_dir::check(&dir)?;
        let tmp = dir.join(format!("{}.tmp", file.name()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(tmp, dir.join(file.name()))?;
        Ok(())
    }

    /// One of the run's files, if it is there (never through a link).
    pub fn read_file(&self, file: RunFile) -> Option<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir();
        crate::trusted_dir::check(&dir).ok()?;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(file.name()))
            .ok()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// Loads a run's record. Anything that is not a well-formed record of that very run id, in a
    /// trusted state directory, is ignored.
    pub fn load(run_id: &str) -> Option<Self> {
        let dir = Self::dir_for(run_id)?;
        if let Err(e) = crate::trusted_dir::check(&dir) {
            tracing::warn!("ignoring run record: {e}");
            return None;
        }
        let text = std::fs::read(dir.join("run.json")).ok()?;
        let record: Self = serde_json::from_slice(&text).ok()?;
        if record.run_id != run_id {
            tracing::warn!(
                "ignoring {}: it names run '{}'",
                dir.join("run.json").display(),
                record.run_id
            );
            return None;
        }
        Some(record)
    }

    /// All readable records, newest first; an error when the state directory cannot be trusted.
    pub fn load_all() -> Result<Vec<Self>> {
        let dir = state_dir().join("runs");
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(Vec::new());
        }
        crate::trusted_dir::check(&dir)?;
        let mut out: Vec<Self> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| Self::load(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created_unix));
        Ok(out)
    }

    /// Deletes the record and its run directory (override file, staged copy).
    pub fn remove(&self) {
        remove_run_dir(&self.run_id);
    }

    /// Whether the process that owns this run is still the same live process.
    pub fn owner_alive(&self) -> bool {
        owner_alive(self.owner_pid, self.owner_start)
    }
}

/// Removes `runs/<run_id>` of the state directory: only a real directory directly there, never
/// through a link, and nothing for an id that is not a run id.
pub fn remove_run_dir(run_id: &str) {
    let Some(dir) = RunRecord::dir_for(run_id) else {
        tracing::warn!(run_id, "not removing anything for a malformed run id");
        return;
    };
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_dir() => {
            // std's remove_dir_all does not follow links inside the tree.
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("could not remove {}: {e}", dir.display());
            }
        }
        Ok(_) => tracing::warn!("not removing {}: not a directory", dir.display()),
        Err(_) => {}
    }
}

pub(crate) fn invalid_run_id(run_id: &str) -> crate::error::HarnessError {
    crate::error::HarnessError::usage(format!("invalid run id '{run_id}'"))
        .with_hint("a run id is 1 to 48 lowercase letters, digits and inner dashes (check HYDRA_RUN_ID)".to_string())
}

fn loopback() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parses field 22 of a `/proc/PID/stat` line (the command may contain spaces and parentheses). Pure.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True when `pid` is alive and started at `start` (not a reused PID).
pub fn owner_alive(pid: u32, start: u64) -> bool {
    process_start_time(pid) == Some(start)
}

/// A fresh run id: 8 hex digits, or `HYDRA_RUN_ID` when set (tests use it to find their run).
pub fn new_run_id() -> Result<String> {
    match std::env::var("HYDRA_RUN_ID").ok().filter(|s| !s.is_empty()) {
        Some(id) if valid_run_id(&id) => Ok(id),
        Some(id) => Err(invalid_run_id(&id)),
        None => Ok(fresh_run_id()),
    }
}

/// A random run id (8 hex digits), for work that is not a run a test must find.
pub fn fresh_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let pid = std::process::id();
        let start = process_start_time(pid).unwrap();
        assert!(owner_alive(pid, start));
        assert!(!owner_alive(pid, start + 1));
        assert!(!owner_alive(u32::MAX - 1, start));
    }

    #[rstest::rstest]
    #[case("1a2b3c4d", true)]
    #[case("doctor-4242", true)]
    #[case("ti00beef", true)]
    #[case("", false)]
    #[case("..", false)]
    #[case("../../root/x", false)]
    #[case("a/b", false)]
    #[case("A1", false)]
    #[case("-x", false)]
    #[case("x-", false)]
    #[case("a b", false)]
    fn run_id_shapes(#[case] id: &str, #[case] ok: bool) {
        assert_eq!(valid_run_id(id), ok, "{id}");
        assert_eq!(RunRecord::dir_for(id).is_some(), ok);
    }

    #[test]
    fn root_keeps_state_out_of_world_writable_directories() {
        assert!(!ROOT_STATE_DIR.starts_with("/tmp") && !ROOT_STATE_DIR.starts_with("/var/tmp"));
    }

    #[test]
    fn run_ids_are_short_hex() {
        std::env::remove_var("HYDRA_RUN_ID");
        let id = new_run_id().unwrap();
        assert_eq!(id.len(), 8);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
