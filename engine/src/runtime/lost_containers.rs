//! Container processes that outlive Podman's record of them.
//!
//! A `podman start` killed after the OCI runtime started the container but before Podman saved
//! the new state (the first Ctrl-C kills the compose tool's process group while it starts
//! services; seen here on rootful and rootless Podman 4.3 in the signals tests) leaves Podman
//! believing the container is not running. The label sweep's `podman rm -f` then drops its
//! record and storage without stopping it: conmon goes on monitoring the service's process, and
//! `podman ps -a --external` no longer shows it. Nothing in the engine can find it any more, so
//! the harness ends it itself, by PID, starting from the container IDs the engine listed for the
//! run.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::procs::{children, engine_uid, kill_same, owner, pids, running_since};
use super::{exec, Interrupt, ObjectKind, Runtime};

/// The monitor Podman starts for each container (the container's init is its child).
const MONITOR: &str = "conmon";

/// How long a monitor gets to leave on its own once its container's processes are gone.
const MONITOR_EXIT: Duration = Duration::from_secs(5);

/// One container monitor found running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Monitor {
    /// The monitor's PID.
    pub pid: u32,
    /// The container it monitors (full ID).
    pub id: String,
    /// The container's name, as Podman gave it to the monitor.
    pub name: String,
    /// The OCI runtime the monitor drives (an absolute path to `runc` or `crun`), if it names one.
    #[serde(skip)]
    pub oci_runtime: Option<String>,
}

impl Monitor {
    /// How reports name the container: its name, or its short ID when the monitor named none.
    pub fn container(&self) -> &str {
        if self.name.is_empty() {
            super::short_id(&self.id)
        } else {
            &self.name
        }
    }
}

/// A container Podman no longer knows whose processes were still running, and what ended them.
#[derive(Debug, Clone, Serialize)]
pub struct LostContainer {
    /// Its monitor.
    pub monitor: Monitor,
    /// PIDs the harness killed (the container's init, then the monitor if it stayed).
    pub killed: Vec<u32>,
}

/// OCI runtimes the harness runs to delete a lost container's state.
const OCI_RUNTIMES: [&str; 2] = ["runc", "crun"];

/// What a monitor's arguments name (`-c`/`--cid`, `-n`/`--name`, `-r`/`--runtime`); `None`
/// unless the ID is a full hexadecimal container ID. A name that breaks Podman's naming rule is
/// left empty. The runtime is kept only when it is an absolute path to one of [`OCI_RUNTIMES`].
/// Pure.
pub(crate) fn parse_monitor_args<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> Option<(String, String, Option<String>)> {
    let (mut id, mut name, mut oci) = (None, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v)),
            _ => (arg, None),
        };
        let slot = match key {
            "-c" | "--cid" => &mut id,
            "-n" | "--name" => &mut name,
            "-r" | "--runtime" => &mut oci,
            // Arguments passed through to other programs (the exit command is Podman with its
            // own `--runtime runc`): their values are not the monitor's options.
            "--exit-command" | "--exit-command-arg" | "--runtime-arg" | "--runtime-opt" => {
                if inline.is_none() {
                    args.next();
                }
                continue;
            }
            _ => continue,
        };
        let value = match inline {
            Some(v) => Some(v),
            None => args.next(),
        };
        if slot.is_none() {
            *slot = value;
        }
    }
    let id = id.filter(|i| super::is_full_id(i))?;
    // The name ends up in reports: one that is not a container name (Podman's rule) is dropped.
    let name = name.filter(|n| super::dns_leftovers::valid_network_name(n));
    let oci = oci.filter(|p| {
        let path = std::path::Path::new(p);
        path.is_absolute()
            && !p.contains("/../")
            && path.file_name().is_some_and(|f| OCI_RUNTIMES.iter().any(|r| f == *r))
    });
    Some((
        id.to_string(),
        name.unwrap_or_default().to_string(),
        oci.map(String::from),
    ))
}

/// The container monitors running as this runtime's engine user (none for Docker).
pub fn monitors(runtime: &Runtime) -> Vec<Monitor> {
    if !runtime.kind().is_podman() {
        return Vec::new();
    }
    let uid = engine_uid(runtime);
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == MONITOR)
                && owner(*pid) == Some(uid)
        })
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            let (id, name, oci_runtime) = parse_monitor_args(text.split('\0'))?;
            Some(Monitor {
                pid,
                id,
                name,
                oci_runtime,
            })
        })
        .collect()
}

/// Monitors of containers Podman has no record of, whichever run they were (for `doctor`): the
/// monitors are read before Podman's list, so a container created meanwhile is not among them.
pub fn unknown_monitors(runtime: &Runtime) -> crate::error::Result<Vec<Monitor>> {
    let running = monitors(runtime);
    if running.is_empty() {
        return Ok(running);
    }
    let known: HashSet<String> = runtime
        .query(&["ps", "-a", "--external", "-q", "--no-trunc"])?
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    Ok(running.into_iter().filter(|m| !known.contains(&m.id)).collect())
}

/// One line of `podman events --format json`: only what [`created_for_run`] needs.
#[derive(Debug, serde::Deserialize)]
struct CreateEvent {
    #[serde(rename = "ID")]
    id: String,
}

/// The IDs in `podman events --format json` output (one object per line); lines that do not parse
/// and IDs that are not full container IDs are skipped. Pure.
pub(crate) fn parse_create_events(stdout: &str) -> HashSet<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<CreateEvent>(l.trim()).ok())
        .map(|e| e.id)
        .filter(|id| super::is_full_id(id))
        .collect()
}

/// Every container Podman ever created with run `run_id`'s label, from its event log, including
/// those it has since dropped: a container whose record went while its create was under way
/// (a `podman run --rm` of a copy's helper, cut off by a kill -9 of the harness) is listed
/// nowhere else, and its monitor names only its ID. Empty for Docker, whose containers never
/// outlive its record.
pub fn created_for_run(runtime: &Runtime, run_id: &str) -> crate::error::Result<HashSet<String>> {
    if !runtime.kind().is_podman() || !crate::runs::valid_run_id(run_id) {
        return Ok(HashSet::new());
    }
    let label = format!("label={}={run_id}", crate::labels::RUN);
    let out = runtime.query(&[
        "events",
        "--stream=false",
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &label,
        "--format",
        "json",
    ])?;
    Ok(parse_create_events(&out))
}

/// Ends the processes of those of `ids` (containers the engine listed for a run) that Podman has
/// dropped while their monitor still runs. Containers Podman still knows are left to the label
/// sweep. A no-op for Docker.
pub fn end_lost(runtime: &Runtime, ids: &HashSet<String>) -> Vec<LostContainer> {
    if ids.is_empty() {
        return Vec::new();
    }
    let mut ended = Vec::new();
    for monitor in monitors(runtime) {
        if !ids.contains(&monitor.id) || runtime.exists(ObjectKind::Container, &monitor.id) {
            continue;
        }
        let Some(monitor_start) = running_since(monitor.pid) else {
            continue;
        };
        // The container's init is the monitor's child; when it dies, the kernel ends the rest of
        // the container's PID namespace, and the monitor leaves after it.
        let mut killed: Vec<u32> = children(monitor.pid)
            .into_iter()
            .filter(|&(pid, start)| kill_same(pid, start))
            .map(|(pid, _)| pid)
            .collect();
        let deadline = Instant::now() + MONITOR_EXIT;
        while running_since(monitor.pid) == Some(monitor_start) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if kill_same(monitor.pid, monitor_start) {
            killed.push(monitor.pid);
        }
        let state = match delete_state(runtime, &monitor) {
            Ok(()) => "its runtime state deleted".to_string(),
            Err(e) => format!("its runtime state left: {e}"),
        };
        tracing::warn!(
            container = %monitor.container(),
            "ended the processes of container {} ({}): Podman had dropped it while they ran (a killed \
             `podman start`); killed pids {killed:?}, {state}",
            monitor.container(),
            super::short_id(&monitor.id)
        );
        ended.push(LostContainer { monitor, killed });
    }
    ended
}

/// Deletes the OCI runtime's state of a lost container whose processes were just ended (as the
/// engine's user, as Podman would have), so that the runtime no longer lists it. `--force`: a
/// process the kill did not reach (one reparented away from the monitor) goes with it.
fn delete_state(runtime: &Runtime, monitor: &Monitor) -> std::result::Result<(), String> {
    let Some(oci) = &monitor.oci_runtime else {
        return Err("the monitor names no known OCI runtime".into());
    };
    let spec = runtime
        .command(oci)
        .args(["delete", "--force", monitor.id.as_str()])
        .cwd("/");
    match exec::run(&spec, Duration::from_secs(30), Interrupt::Ignored) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!("`{}` failed: {}", spec.display(), exec::tail(&out.stderr, 3))),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4cc5c0358aa75092848272e8005c10212d1b7c872234b2586f382560e932b67e";

    #[test]
    fn monitor_arguments_as_podman_passes_them() {
        // Recorded from a rootless Podman 4.3 container's conmon on this host, one argument per
        // line (one is empty); Podman's exit command carries its own `--runtime runc`.
        let args = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/runtime/conmon-cmdline-podman-rootless.txt"
        ))
        .unwrap();
        assert_eq!(
            parse_monitor_args(args.lines()),
            Some((
                ID.to_string(),
                "hydra-podman-rootless-td-podman-rootless-003e28-model-service-1".to_string(),
                Some("/usr/bin/runc".to_string())
            ))
        );
    }

    #[test]
    fn long_options_and_bad_ids() {
        assert_eq!(
            parse_monitor_args([format!("--cid={ID}").as_str(), "--name", "n", "--runtime=/usr/bin/crun"]),
            Some((ID.to_string(), "n".to_string(), Some("/usr/bin/crun".to_string())))
        );
        for runtime in [
            "runc",
            "/tmp/evil",
            "/usr/bin/../../tmp/runc/../x",
            "/usr/bin/runc-evil",
        ] {
            assert_eq!(
                parse_monitor_args(["-c", ID, "-r", runtime]),
                Some((ID.to_string(), String::new(), None)),
                "{runtime}"
            );
        }
        assert_eq!(parse_monitor_args(["-c", "4cc5c0358aa7", "-n", "short"]), None);
        assert_eq!(parse_monitor_args(["-c", &"g".repeat(64)]), None);
        assert_eq!(parse_monitor_args(["-n", "no-id"]), None);
        assert_eq!(
            parse_monitor_args(["-c", ID, "-n", "x\u{1b}[31m"]),
            Some((ID.to_string(), String::new(), None))
        );
        assert_eq!(parse_monitor_args(["-c"]), None);
    }

    #[test]
    fn created_containers_from_the_event_log() {
        // Recorded on this host: the create event of a copy's helper Podman dropped during its
        // create (its monitor and `runc init` ran on), then one with a short ID and a line that is
        // not an event.
        let log = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/runtime/events-create-podman-rootless.json"
        ))
        .unwrap();
        let ids = parse_create_events(&log);
        assert_eq!(
            ids,
            HashSet::from(["01e1d6870da29841d66bc41c946db46b34dedd8b4d6aa4347509a7bd7ef0b5fb".to_string()])
        );
        assert!(parse_create_events("{\"ID\":\"abc\"}\nnot json\n").is_empty());
    }

    #[test]
    fn docker_has_no_monitors_to_end() {
        let rt = Runtime::for_tests(super::super::RuntimeKind::Docker);
        assert!(monitors(&rt).is_empty());
        assert!(end_lost(&rt, &HashSet::from([ID.to_string()])).is_empty());
    }
}
