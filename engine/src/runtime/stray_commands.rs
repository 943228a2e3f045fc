//! Podman commands that a killed run left running.
//!
//! The harness's own children die with it (parent-death signal), but their children do not:
//! the `podman create` and `podman start` processes podman-compose runs, and the copy of itself
//! that rootless Podman re-executes inside the user's namespaces, go on after a `kill -9` of the
//! harness. One that is still creating a container while a sweep removes the run races with the
//! sweep, and can leave that container's processes running with no record in Podman (see
//! [`super::lost_containers`]). So before a dead run is swept, the
//! Podman processes whose arguments carry its run label are ended, and only then is the run
//! listed. Their arguments are the engine user's input, read only for labels.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::procs::{engine_uid, kill_same, owner, pids, running_since};
use super::Runtime;
use crate::labels;

/// The program whose processes are looked at.
const ENGINE_PROGRAM: &str = "podman";

/// How long ended commands get to be gone before the sweep goes on regardless.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// One Podman process carrying a run's labels in its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayCommand {
    /// Its PID.
    pub pid: u32,
    /// Its start time (clock ticks since boot), so that a reused PID is never signalled.
    pub start: u64,
    /// The harness labels (`io.hydra.*`) its arguments set.
    pub labels: BTreeMap<String, String>,
}

impl StrayCommand {
    /// The run it belongs to.
    pub fn run_id(&self) -> &str {
        &self.labels[labels::RUN]
    }

    /// How reports name it.
    pub fn describe(&self) -> String {
        format!("podman command pid {}", self.pid)
    }
}

/// The harness labels a Podman command line sets (`--label k=v`, `--label=k=v`, `-l k=v`). Pure.
pub(crate) fn labels_in_args<'a>(args: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg {
            "--label" | "-l" => args.next(),
            _ => arg.strip_prefix("--label="),
        };
        if let Some((k, v)) = value.and_then(|v| v.split_once('=')) {
            if k.starts_with("io.hydra.") {
                found.entry(k.to_string()).or_insert_with(|| v.to_string());
            }
        }
    }
    found
}

/// The Podman processes of this runtime's engine user whose arguments name a harness run (none
/// for Docker: its client holds no state, and it dies with the harness).
pub fn list(runtime: &Runtime) -> Vec<StrayCommand> {
    if !runtime.kind().is_podman() {
        return Vec::new();
    }
    let uid = engine_uid(runtime);
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|&pid| pid != me && owner(pid) == Some(uid))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|f| f == ENGINE_PROGRAM))
        })
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            let labels = labels_in_args(text.split('\0'));
            if !labels.contains_key(labels::RUN) {
                return None;
            }
            Some(StrayCommand {
                pid,
                start: running_since(pid)?,
                labels,
            })
        })
        .collect()
}

/// SIGKILL to each of `commands` that is still the process that was listed, then waits (up to
/// [`EXIT_WAIT`]) for them to be gone. Returns the PIDs it signalled.
pub fn end(commands: &[StrayCommand]) -> Vec<u32> {
    let killed: Vec<&StrayCommand> = commands.iter().filter(|c| kill_same(c.pid, c.start)).collect();
    let deadline = Instant::now() + EXIT_WAIT;
    while killed.iter().any(|c| running_since(c.pid) == Some(c.start)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in killed.iter().filter(|c| running_since(c.pid) == Some(c.start)) {
        tracing::warn!(
            pid = c.pid,
            "a killed run's podman command is still there after SIGKILL"
        );
    }
    killed.iter().map(|c| c.pid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_podman_compose_and_the_helpers_pass_them() {
        // Arguments of a `podman create` podman-compose ran on this host (shortened).
        let args = [
            "podman",
            "create",
            "--name=hydra-podman-67ba6d41-rubik-agent-1",
            "--label",
            "io.hydra.managed=true",
            "--label",
            "io.hydra.owner-pid=13168",
            "--label=io.hydra.owner-start=30166",
            "-l",
            "io.hydra.run=67ba6d41",
            "--label",
            "io.podman.compose.project=hydra-podman-67ba6d41",
            "-e",
            "PGHOST=db",
            "localhost/phoenix/rubik-agent:h-b557918aa98f",
        ];
        let labels = labels_in_args(args);
        assert_eq!(
            labels,
            BTreeMap::from([
                ("io.hydra.managed".to_string(), "true".to_string()),
                ("io.hydra.owner-pid".to_string(), "13168".to_string()),
                ("io.hydra.owner-start".to_string(), "30166".to_string()),
                ("io.hydra.run".to_string(), "67ba6d41".to_string()),
            ])
        );
    }

    #[test]
    fn no_label_without_a_value_or_outside_the_harness() {
        assert!(labels_in_args(["podman", "ps", "--filter", "label=io.hydra.run=x"]).is_empty());
        assert!(labels_in_args(["podman", "run", "--label"]).is_empty());
        assert!(labels_in_args(["podman", "run", "--label", "io.hydra.run"]).is_empty());
        assert!(labels_in_args(["podman", "run", "--label", "other=1"]).is_empty());
        // The first value is kept.
        assert_eq!(
            labels_in_args(["--label", "io.hydra.run=a", "--label", "io.hydra.run=b"])["io.hydra.run"],
            "a"
        );
    }

    #[test]
    fn docker_has_no_stray_commands() {
        let rt = Runtime::for_tests(super::super::RuntimeKind::Docker);
        assert!(list(&rt).is_empty());
    }
}
