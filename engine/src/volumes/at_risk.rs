//! What a move between engines would carry and what it would lose, read from the compose model
//! before anything is stopped: named volumes travel; a writable bind mount or an anonymous
//! volume keeps state the move cannot see, so the drill must say NO-GO naming service and path.

use serde::Serialize;

use crate::compose::file::{ComposeFile, MountKind};

/// Where a service keeps state a move would not carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AtRisk {
    /// The service that mounts it.
    pub service: String,
    /// The path inside the container.
    pub target: String,
    /// `writable bind mount of <host path>`, `anonymous volume` or `<type> mount`.
    pub kind: String,
    /// What to change in the stack so that the state moves.
    pub remedy: String,
}

/// A named volume the move carries, with the services that mount it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Carried {
    /// The volume's name, as the compose file gives it.
    pub volume: String,
    /// Each (service, path inside the container) where it is mounted.
    pub mounts: Vec<(String, String)>,
}

/// What the stack's mounts mean for a move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MovePlan {
    /// Named volumes the move carries.
    pub carried: Vec<Carried>,
    /// State the move would lose.
    pub at_risk: Vec<AtRisk>,
}

/// Sorts every mount of `file` into what a move carries and what it would lose. Read-only bind
/// mounts are configuration that comes with the compose files; tmpfs holds nothing to keep.
pub fn plan(file: &ComposeFile, lookup: &dyn Fn(&str) -> Option<String>) -> MovePlan {
    let mut out = MovePlan::default();
    for (service, svc) in &file.services {
        for m in &svc.mounts {
            let risk = |kind: String, remedy: String| AtRisk {
                service: service.clone(),
                target: m.target.clone(),
                kind,
                remedy,
            };
            match m.kind(lookup) {
                MountKind::Named(volume) => {
                    let entry = match out.carried.iter_mut().find(|c| c.volume == volume) {
                        Some(c) => c,
                        None => {
                            out.carried.push(Carried {
                                volume: volume.clone(),
                                mounts: Vec::new(),
                            });
                            out.carried.last_mut().expect("just pushed")
                        }
                    };
                    entry.mounts.push((service.clone(), m.target.clone()));
                }
                MountKind::Bind(_) if m.read_only => {}
                MountKind::Bind(host) => out.at_risk.push(risk(
                    format!("writable bind mount of {host}"),
                    format!(
                        "mount a named volume at {} (or make the bind read-only if the service never writes it)",
                        m.target
                    ),
                )),
                MountKind::Anonymous => out.at_risk.push(risk(
                    "anonymous volume".into(),
                    format!(
                        "name the volume: `- <name>:{}` and declare it under top-level `volumes:`",
                        m.target
                    ),
                )),
                MountKind::Tmpfs => {}
                MountKind::Other(kind) => out.at_risk.push(risk(
                    format!("{kind} mount"),
                    "use a named volume for state that must move".into(),
                )),
            }
        }
    }
    out.carried.sort_by(|a, b| a.volume.cmp(&b.volume));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parsed(text: &str) -> ComposeFile {
        ComposeFile::parse(Path::new("/p/compose.yml"), text).unwrap()
    }

    #[test]
    fn the_bundled_stack_moves_its_two_named_volumes_and_risks_nothing() {
        let text = std::fs::read_to_string(crate::workspace::bundled_compose_file()).unwrap();
        let plan = plan(&parsed(&text), &|_| None);
        assert_eq!(plan.at_risk, []);
        let volumes: Vec<&str> = plan.carried.iter().map(|c| c.volume.as_str()).collect();
        assert_eq!(volumes, ["db_data", "model_cache"]);
        assert_eq!(
            plan.carried[0].mounts,
            [("db".to_string(), "/var/lib/postgresql/data".to_string())]
        );
    }

    #[test]
    fn writable_binds_and_anonymous_volumes_are_named_with_their_service_and_path() {
        let file = parsed(
            "services:\n  app:\n    image: x\n    volumes:\n      - ./data:/srv/data\n      - ./conf.toml:/etc/app.toml:ro\n      - /var/cache/app\n      - type: bind\n        source: ${LOGS:-/var/log/app}\n        target: /logs\n      - type: tmpfs\n        target: /tmp\n      - type: volume\n        target: /scratch\n",
        );
        let plan = plan(&file, &|_| None);
        let got: Vec<(&str, &str)> = plan
            .at_risk
            .iter()
            .map(|r| (r.target.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/srv/data", "writable bind mount of ./data"),
                ("/var/cache/app", "anonymous volume"),
                ("/logs", "writable bind mount of /var/log/app"),
                ("/scratch", "anonymous volume"),
            ]
        );
        assert!(plan.at_risk.iter().all(|r| r.service == "app" && !r.remedy.is_empty()));
        assert!(plan.carried.is_empty());
    }

    #[test]
    fn a_source_is_a_volume_or_a_path_after_interpolation() {
        let file = parsed(
            "services:\n  app:\n    image: x\n    volumes:\n      - ${DATA:-appdata}:/data\nvolumes:\n  appdata: {}\n",
        );
        assert_eq!(plan(&file, &|_| None).carried[0].volume, "appdata");
        let to_path = plan(&file, &|k| (k == "DATA").then(|| "/srv/appdata".to_string()));
        assert_eq!(to_path.at_risk[0].kind, "writable bind mount of /srv/appdata");
    }
}
