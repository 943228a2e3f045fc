//! Reading the process table (`/proc`), for the processes of containers and engine commands that
//! outlive what the engine knows: who runs a process, its parent, its start time (so that a PID
//! reused meanwhile is never signalled).

use super::Runtime;
use crate::runs::parse_start_time;

/// The user this runtime's engine runs its commands and container monitors as.
pub(crate) fn engine_uid(runtime: &Runtime) -> u32 {
    runtime.rootless_user().map_or(0, |u| u.uid)
}

/// The parent PID in a `/proc/PID/stat` line (field 4; the command may contain spaces and
/// parentheses). Pure.
pub(crate) fn parse_parent(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The PIDs under `/proc`.
pub(crate) fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The user a process runs as, from its `/proc/PID/status`: only when its real, effective, saved
/// and filesystem IDs are all that one user. (The owner of `/proc/PID` is root for any process
/// that made itself non-dumpable, and a setuid program keeps its caller's real ID: neither may
/// pass for a root process, whose arguments root acts on.)
pub(crate) fn owner(pid: u32) -> Option<u32> {
    parse_uid(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The one user ID of a `/proc/PID/status` text's `Uid:` line; `None` when its four IDs differ.
/// Pure.
pub(crate) fn parse_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let ids: Vec<u32> = line.split_whitespace().map(|u| u.parse().ok()).collect::<Option<_>>()?;
    (ids.len() == 4 && ids.iter().all(|&u| u == ids[0])).then(|| ids[0])
}

/// The direct children of `parent`, each with its start time (to kill it only if its PID was not
/// reused meanwhile).
pub(crate) fn children(parent: u32) -> Vec<(u32, u64)> {
    pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            (parse_parent(&stat)? == parent).then_some((pid, parse_start_time(&stat)?))
        })
        .collect()
}

/// The start time of `pid` while it runs; `None` once it is gone or a zombie (a monitor whose
/// parent has not reaped it yet has ended all the same).
pub(crate) fn running_since(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
    (state != "Z").then(|| parse_start_time(&stat)).flatten()
}

/// SIGKILL to `pid` if it is still the process that started at `start`, and still running.
pub(crate) fn kill_same(pid: u32, start: u64) -> bool {
    if running_since(pid) != Some(start) {
        return false;
    }
    // SAFETY: kill(2) with a PID just checked to be the process we mean (same start time).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_only_when_all_four_agree() {
        assert_eq!(
            parse_uid("Name:\tconmon\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\n"),
            Some(1001)
        );
        // A setuid-root program started by user 1001.
        assert_eq!(parse_uid("Uid:\t1001\t0\t0\t0\n"), None);
        assert_eq!(parse_uid("Uid:\t0\t0\t0\n"), None);
        assert_eq!(parse_uid("Name:\tconmon\n"), None);
    }

    #[test]
    fn parent_from_stat() {
        assert_eq!(
            parse_parent("22567 (python3 -m (x)) S 22556 22567 22567 0 -1 4194560 0 0"),
            Some(22556)
        );
        assert_eq!(parse_parent("garbage"), None);
    }
}
