//! The Docker-compatible API service of a Podman engine, started by the harness for one run of a
//! Compose v2 target (`podman-v2`, `podman-rootless-v2`). The run gets its own socket and its own
//! containers.conf, so an engine-wide setting the run needs (the project's seccomp profile, see
//! [`crate::compose::v2_on_podman`]) never touches the host's configuration or other runs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{exec, EngineKind, Interrupt, Runtime};
use crate::error::{HarnessError, Result};

/// How long the service may take to answer its first ping.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// The containers.conf files Podman reads, in order, when `CONTAINERS_CONF` is not set. Setting
/// it replaces them all, so the run's file starts from their merge.
const SYSTEM_CONFS: [&str; 2] = [
    "/usr/share/containers/containers.conf",
    "/etc/containers/containers.conf",
];

/// Where a run's directory records the service's process (`<pid> <start time>`).
const PID_FILE: &str = "api-service.pid";

/// Stops the API service a run recorded in `run_dir`, if that very process (same start time, a
/// `podman system service` command line) still runs: what a killed harness left behind.
pub fn stop_recorded(run_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(run_dir.join(PID_FILE)) else {
        return;
    };
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (Some(Some(pid)), Some(Some(start))) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(pid) = u32::try_from(pid) else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_service = String::from_utf8_lossy(&cmdline)
        .replace('\0', " ")
        .contains("podman system service");
    if is_service && crate::runs::process_start_time(pid) == Some(start) {
        tracing::info!(pid, "stopping the API service of a killed run");
        exec::kill_group(pid as i32);
    }
    let _ = std::fs::remove_file(run_dir.join(PID_FILE));
}

/// A running `podman system service` owned by this process; dropping it stops the service.
pub struct ApiService {
    child: Mutex<Option<Child>>,
    /// Whether the service has answered a ping (it is not waited for again once it has).
    answering: Mutex<bool>,
    runtime: Runtime,
    socket: PathBuf,
    conf: PathBuf,
    run_dir: PathBuf,
}

impl ApiService {
    /// Starts a service for `run_id`, with the engine's own configuration plus, when given, the
    /// default seccomp profile `seccomp_profile` (a path the engine's user can read).
    pub fn start(runtime: &Runtime, run_id: &str, run_dir: &Path, seccomp_profile: Option<&Path>) -> Result<Self> {
        let service = Self::spawn(runtime, run_id, run_dir, seccomp_profile)?;
        service.wait_answering()?;
        Ok(service)
    }

    /// [`ApiService::start`] without waiting for the service to answer: the caller does other
    /// work while it starts (about 0.1 s) and calls [`ApiService::wait_answering`] before its
    /// first request.
    pub fn spawn(runtime: &Runtime, run_id: &str, run_dir: &Path, seccomp_profile: Option<&Path>) -> Result<Self> {
        if !runtime.kind().is_podman() {
            return Err(HarnessError::usage(format!(
                "{} has no Podman API service to start",
                runtime.kind()
            )));
        }
        let (socket, conf) = match runtime.rootless_user() {
            Some(user) => (
                user.runtime_dir.join(format!("hydra-{run_id}.sock")),
                user.runtime_dir.join(format!("hydra-{run_id}.containers.conf")),
            ),
            None => (run_dir.join("api.sock"), run_dir.join("containers.conf")),
        };
        let text = service_conf(runtime, seccomp_profile)?;
        write_as_engine_user(runtime, &conf, &text)?;
        let spec = runtime
            .command("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env("CONTAINERS_CONF", conf.display().to_string())
            .cwd("/");
        let child = exec::spawn_background(&spec, &run_dir.join("api-service.log"))?;
        // For `harness gc`, should this process be killed before it stops the service.
        let pid = child.id();
        let _ = std::fs::write(
            run_dir.join(PID_FILE),
            format!("{pid} {}\n", crate::runs::process_start_time(pid).unwrap_or(0)),
        );
        Ok(ApiService {
            child: Mutex::new(Some(child)),
            answering: Mutex::new(false),
            runtime: runtime.clone(),
            socket,
            conf,
            run_dir: run_dir.to_path_buf(),
        })
    }

    /// The `DOCKER_HOST` value that reaches this service.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Waits until the service answers a ping, at most [`START_DEADLINE`]; at once when it
    /// already has.
    pub fn wait_answering(&self) -> Result<()> {
        let mut answering = self.answering.lock().unwrap_or_else(|p| p.into_inner());
        if *answering {
            return Ok(());
        }
        let log = self.run_dir.join("api-service.log");
        let started = Instant::now();
        loop {
            if ping(&self.socket) {
                *answering = true;
                return Ok(());
            }
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() >= START_DEADLINE {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(HarnessError::RuntimeUnusable {
                    runtime: self.runtime.kind().to_string(),
                    reason: format!(
                        "the Podman API service on {} {} ({})",
                        self.socket.display(),
                        match exited {
                            Some(status) => format!("exited at once with {status}"),
                            None => format!("did not answer within {} s", START_DEADLINE.as_secs()),
                        },
                        exec::tail(said.trim(), 5)
                    ),
                    hint: "check that `podman system service` runs for this user (`harness doctor`)".into(),
                });
            }
            exec::sleep(Duration::from_millis(100))?;
        }
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = child {
            // SIGKILL at once: the service takes about 2 s to act on SIGTERM (the grace period
            // always ran out), and it holds nothing of its own once the run's compose commands
            // have returned; the engine's state lives in its database, not in the service.
            exec::kill_group_now(child.id() as i32);
            let _ = child.wait();
            let _ = std::fs::remove_file(self.run_dir.join(PID_FILE));
        }
        // SIGKILL leaves the socket file behind; the configuration is the run's own.
        match self.runtime.rootless_user() {
            Some(_) => remove_user_files(&self.runtime, &self.socket, &self.conf),
            None => {
                let _ = std::fs::remove_file(&self.socket);
                let _ = std::fs::remove_file(&self.conf);
            }
        }
    }
}

/// Removes, as the rootless user, the socket and configuration a service of run `run_id` had in
/// that user's runtime directory (what a killed run leaves there; for `harness gc`). `run_id` must
/// already be a valid run id.
pub fn remove_rootless_leftovers(runtime: &Runtime, run_id: &str) {
    if let Some(user) = runtime.rootless_user() {
        let socket = user.runtime_dir.join(format!("hydra-{run_id}.sock"));
        let conf = user.runtime_dir.join(format!("hydra-{run_id}.containers.conf"));
        remove_user_files(runtime, &socket, &conf);
    }
}

/// `rm -f` as the engine's user: root never deletes in that user's directories.
fn remove_user_files(runtime: &Runtime, socket: &Path, conf: &Path) {
    let spec = runtime
        .command("rm")
        .arg("-f")
        .arg(socket.display().to_string())
        .arg(conf.display().to_string())
        .cwd("/");
    let _ = exec::run(&spec, Duration::from_secs(10), Interrupt::Ignored);
}

/// Whether a Docker-compatible API answers `/_ping` on `socket`.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.") && buf[..n].windows(3).any(|w| w == b"200"),
        Err(_) => false,
    }
}

/// The run's containers.conf: the engine's own files merged in Podman's order (the rootless
/// user's file read as that user), then `seccomp_profile` when given.
fn service_conf(runtime: &Runtime, seccomp_profile: Option<&Path>) -> Result<String> {
    let mut texts: Vec<(String, String)> = SYSTEM_CONFS
        .iter()
        .filter_map(|p| Some((p.to_string(), std::fs::read_to_string(p).ok()?)))
        .collect();
    if let Some(user) = runtime.rootless_user() {
        let path = user.home.join(".config/containers/containers.conf");
        let spec = runtime.command("cat").arg(path.display().to_string());
        if let Ok(out) = exec::run(&spec, Duration::from_secs(10), Interrupt::Ignored) {
            if out.success() {
                texts.push((path.display().to_string(), out.stdout));
            }
        }
    }
    let mut merged = toml::Table::new();
    for (path, text) in texts {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| HarnessError::Parse {
            what: path.clone(),
            reason: e.to_string(),
        })?;
        merge(&mut merged, table);
    }
    if let Some(profile) = seccomp_profile {
        let containers = merged
            .entry("containers")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = containers {
            t.insert(
                "seccomp_profile".into(),
                toml::Value::String(profile.display().to_string()),
            );
        }
    }
    toml::to_string(&merged).map_err(|e| HarnessError::Parse {
        what: "the run's containers.conf".into(),
        reason: e.to_string(),
    })
}

/// Merges `over` into `base` as Podman layers its files: tables key by key, other values replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Writes `text` to `path` as the engine's user: for rootless, root never writes into the user's
/// directories (a planted link would make it write anywhere).
fn write_as_engine_user(runtime: &Runtime, path: &Path, text: &str) -> Result<()> {
    if runtime.kind().engine() != EngineKind::PodmanRootless {
        return std::fs::write(path, text).map_err(HarnessError::from);
    }
    let mut spec = runtime
        .command("sh")
        .args(["-c", "umask 077 && cat > \"$1\"", "sh"])
        .arg(path.display().to_string())
        .cwd("/");
    spec.stdin = Some(text.as_bytes().to_vec());
    exec::run_ok(&spec, Duration::from_secs(10), Interrupt::Ignored).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_override_keys_and_keep_the_rest() {
        let mut base: toml::Table =
            "[containers]\ndefault_ulimits = []\nlog_driver = \"k8s-file\"\n[engine]\nruntime = \"crun\"\n"
                .parse()
                .unwrap();
        merge(&mut base, "[containers]\nlog_driver = \"journald\"\n".parse().unwrap());
        let c = base["containers"].as_table().unwrap();
        assert_eq!(c["log_driver"].as_str(), Some("journald"));
        assert!(c["default_ulimits"].as_array().unwrap().is_empty());
        assert_eq!(base["engine"]["runtime"].as_str(), Some("crun"));
    }
}
