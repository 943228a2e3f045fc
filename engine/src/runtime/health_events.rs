//! The engine's own word that a container turned healthy, as it happens. Where the engine runs
//! the healthchecks (Docker), polling its state learns of a pass up to a poll period late (700 ms
//! at p95 here with a 500 ms poll); its event stream says it within milliseconds. Podman without
//! systemd has nothing to announce: the harness runs its probes itself and knows at once.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::exec::{self, CommandSpec};
use super::{EngineKind, Runtime};
use crate::error::{HarnessError, Result};
use crate::readiness::SERVICE_LABEL;

/// One container the engine declared healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy {
    /// The container's ID.
    pub id: String,
    /// Its name, as the engine reports it (no leading `/`).
    pub name: String,
    /// Its compose service, from the label compose tools set.
    pub service: Option<String>,
}

/// A running `events` stream of the containers matching one label filter, read on a thread of
/// its own; ended (its process group killed) on drop.
pub struct HealthEvents {
    child: Child,
    rx: Receiver<Healthy>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: Actor,
}

#[derive(Deserialize, Default)]
struct Actor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// A healthy event from one line of `events --format '{{json .}}'`; `None` for any other event
/// or a line that is not one. Pure.
pub fn parse_healthy(line: &str) -> Option<Healthy> {
    let ev: RawEvent = serde_json::from_str(line).ok()?;
    if ev.action.trim() != "health_status: healthy" || ev.actor.id.is_empty() {
        return None;
    }
    Some(Healthy {
        name: ev.actor.attributes.get("name").cloned().unwrap_or_default(),
        service: ev.actor.attributes.get(SERVICE_LABEL).cloned(),
        id: ev.actor.id,
    })
}

impl Runtime {
    /// The health events of containers matching `label_filter` (`key=value`) from `since` on,
    /// where the engine runs healthchecks and announces them (Docker); `None` elsewhere, or when
    /// the stream cannot start (the caller then polls, as before).
    pub fn health_events(&self, label_filter: &str, since: SystemTime) -> Option<HealthEvents> {
        if self.kind.engine() != EngineKind::Docker {
            return None;
        }
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
            .unwrap_or_else(|_| "0".into());
        let spec = self.engine().args([
            "events",
            "--since",
            &since,
            "--filter",
            "type=container",
            "--filter",
            &format!("label={label_filter}"),
            "--format",
            "{{json .}}",
        ]);
        match HealthEvents::spawn(&spec) {
            Ok(ev) => Some(ev),
            Err(e) => {
                tracing::warn!("no event stream from {}, polling instead: {e}", self.kind);
                None
            }
        }
    }
}

impl HealthEvents {
    fn spawn(spec: &CommandSpec) -> Result<Self> {
        tracing::debug!(cmd = %spec.display(), "events");
        let mut cmd = exec::command_for(spec);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            cmd: spec.display(),
            source,
        })?;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(h) = parse_healthy(&line) {
                    if tx.send(h).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Self { child, rx })
    }

    /// Waits up to `limit` for the next healthy events and returns all that came (none at the
    /// limit, or once the stream has ended). Returns [`HarnessError::Interrupted`] on Ctrl-C.
    pub fn next_within(&self, limit: Duration) -> Result<Vec<Healthy>> {
        let end = Instant::now() + limit;
        loop {
            if exec::is_cancelled() {
                return Err(HarnessError::Interrupted);
            }
            let slice = exec::POLL.min(end.saturating_duration_since(Instant::now()));
            match self.rx.recv_timeout(slice) {
                Ok(first) => {
                    let mut got = vec![first];
                    got.extend(self.rx.try_iter());
                    return Ok(got);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The stream ended: wait out the period as the poll would.
                    std::thread::sleep(end.saturating_duration_since(Instant::now()));
                    return Ok(Vec::new());
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() >= end => return Ok(Vec::new()),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Drop for HealthEvents {
    fn drop(&mut self) {
        exec::kill_group_now(self.child.id() as i32);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_healthy_events_are_read_with_their_service() {
        let healthy = r#"{"status":"health_status: healthy","id":"cec1","Type":"container","Action":"health_status: healthy","Actor":{"ID":"cec1","Attributes":{"com.docker.compose.service":"db","io.hydra.run":"r1","name":"hydra-docker-r1-db-1"}},"scope":"local","time":1795995696,"timeNano":1795995696006403301}"#;
        assert_eq!(
            parse_healthy(healthy),
            Some(Healthy {
                id: "cec1".into(),
                name: "hydra-docker-r1-db-1".into(),
                service: Some("db".into()),
            })
        );
        for other in [
            healthy.replace("health_status: healthy", "health_status: unhealthy"),
            healthy.replace("health_status: healthy", "exec_die"),
            "not json".to_string(),
            r#"{"Action":"health_status: healthy","Actor":{"ID":""}}"#.to_string(),
        ] {
            assert_eq!(parse_healthy(&other), None, "{other}");
        }
    }

    #[test]
    fn the_stream_hands_over_events_as_they_come_and_ends_on_drop() {
        let line = r#"{"Action":"health_status: healthy","Actor":{"ID":"c1","Attributes":{"name":"n"}}}"#;
        let spec = CommandSpec::new("sh").args(["-c", &format!("sleep 0.2; echo '{line}'; exec sleep 30")]);
        let ev = HealthEvents::spawn(&spec).unwrap();
        assert_eq!(ev.next_within(Duration::from_millis(50)).unwrap(), vec![]);
        let t = Instant::now();
        let got = ev.next_within(Duration::from_secs(5)).unwrap();
        assert_eq!(got.len(), 1);
        assert!(t.elapsed() < Duration::from_secs(2));
        let pid = ev.child.id() as i32;
        drop(ev);
        // SAFETY: signal 0 only asks whether the process exists.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "the stream outlived its owner");
    }
}
