//! The merged view of a run's compose files: which services run (profiles applied), their networks,
//! volumes and port variables, as one compose file for planning.

use std::path::{Path, PathBuf};

use crate::compose::file::{ComposeFile, RunSettings};
use crate::error::{HarnessError, Result};

/// The merged view of the compose files of one run, with compose profiles applied.
#[derive(Debug, Clone)]
pub struct ComposeSet {
    /// Each file as loaded, in `-f` order.
    pub files: Vec<ComposeFile>,
    /// Profiles enabled for the run: `COMPOSE_PROFILES` (comma separated) from the environment,
    /// else from the project's `.env` file, as the compose tools read it. Empty: only services
    /// without `profiles:` run.
    pub profiles: Vec<String>,
    /// The merged file with only the services that run.
    active: ComposeFile,
}

impl ComposeSet {
    /// Loads the files with the profiles the compose tools will see (see [`ComposeSet::profiles`]).
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let profiles = match paths.first() {
            Some(first) => enabled_profiles(first),
            None => Vec::new(),
        };
        Self::load_with_profiles(paths, profiles)
    }

    /// Loads the files with `profiles` enabled.
    pub fn load_with_profiles(paths: &[PathBuf], profiles: Vec<String>) -> Result<Self> {
        if paths.is_empty() {
            return Err(
                HarnessError::usage("no compose file given".to_string()).with_hint("pass --compose FILE".to_string())
            );
        }
        let files: Vec<ComposeFile> = paths.iter().map(|p| ComposeFile::load(p)).collect::<Result<_>>()?;
        let all = merge_files(&files);
        // Overlays may name only what they change; the merged result must still be runnable.
        if let Some((name, _)) = all
            .services
            .iter()
            .find(|(_, s)| s.image.is_none() && s.build.is_none())
        {
            let path = files
                .iter()
                .rev()
                .find(|f| f.services.contains_key(name))
                .map(|f| f.path.clone())
                .unwrap_or_default();
            return Err(HarnessError::compose(
                path,
                format!("service '{name}' has neither image nor build"),
            ));
        }
        let active = all.activate(&profiles)?;
        for (name, svc) in &active.services {
            for port in svc.fixed_address_ports() {
                tracing::warn!(
                    service = %name,
                    port,
                    "published on a fixed address, not on --bind-ip (all interfaces when it names none); use a variable such as ${{BIND_IP:-127.0.0.1}}"
                );
            }
        }
        Ok(Self {
            files,
            profiles,
            active,
        })
    }

    /// A single file equivalent for planning: later files' services, networks and volumes win;
    /// services whose profiles are not enabled are left out (listed in `inactive`).
    pub fn merged(&self) -> ComposeFile {
        self.active.clone()
    }
}

/// The profiles compose enables: `COMPOSE_PROFILES` from the environment, else from the `.env`
/// file beside the first compose file (the project directory both tools read it from).
fn enabled_profiles(first_file: &Path) -> Vec<String> {
    profiles_from(std::env::var("COMPOSE_PROFILES").ok(), first_file)
}

/// [`enabled_profiles`] with the environment's value given.
fn profiles_from(env_value: Option<String>, first_file: &Path) -> Vec<String> {
    let value = env_value.or_else(|| {
        let env_file = first_file.parent()?.join(".env");
        crate::envfile::value(&std::fs::read_to_string(env_file).ok()?, "COMPOSE_PROFILES")
    });
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Merges compose files the way `-f a -f b` does for what the harness models.
fn merge_files(files: &[ComposeFile]) -> ComposeFile {
    fn union(into: &mut Vec<String>, from: &[String]) {
        for x in from {
            if !into.contains(x) {
                into.push(x.clone());
            }
        }
    }
    fn merge_run(into: &mut RunSettings, over: &RunSettings) {
        into.environment
            .extend(over.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        union(&mut into.env_files, &over.env_files);
        union(&mut into.tmpfs, &over.tmpfs);
        union(&mut into.cap_add, &over.cap_add);
        union(&mut into.cap_drop, &over.cap_drop);
        union(&mut into.security_opt, &over.security_opt);
        union(&mut into.devices, &over.devices);
        fn set<T: Clone>(into: &mut Option<T>, over: &Option<T>) {
            if over.is_some() {
                into.clone_from(over);
            }
        }
        set(&mut into.read_only, &over.read_only);
        set(&mut into.user, &over.user);
        set(&mut into.mem_limit, &over.mem_limit);
        set(&mut into.pids_limit, &over.pids_limit);
        set(&mut into.stop_signal, &over.stop_signal);
        set(&mut into.restart, &over.restart);
        set(&mut into.command, &over.command);
        set(&mut into.entrypoint, &over.entrypoint);
        set(&mut into.working_dir, &over.working_dir);
        set(&mut into.privileged, &over.privileged);
        match (&mut into.healthcheck, &over.healthcheck) {
            (Some(h), Some(o)) => {
                if !o.test.is_empty() {
                    h.test.clone_from(&o.test);
                }
                set(&mut h.interval, &o.interval);
                set(&mut h.timeout, &o.timeout);
                set(&mut h.retries, &o.retries);
                set(&mut h.start_period, &o.start_period);
                h.disable = o.disable || (h.disable && o.test.is_empty());
            }
            (h @ None, Some(o)) => *h = Some(o.clone()),
            _ => {}
        }
    }
    let mut merged = files[0].clone();
    for f in &files[1..] {
        for (name, svc) in &f.services {
            let entry = merged.services.entry(name.clone()).or_default();
            if svc.image.is_some() {
                entry.image = svc.image.clone();
            }
            if svc.build.is_some() {
                entry.build = svc.build.clone();
            }
            if svc.declares_networks || entry.networks.is_empty() {
                entry.networks = svc.networks.clone();
                entry.uses_default_network = svc.uses_default_network;
                entry.declares_networks |= svc.declares_networks;
            }
            entry.port_vars.extend(svc.port_vars.iter().cloned());
            entry.bind_vars.extend(svc.bind_vars.iter().cloned());
            union(&mut entry.ports, &svc.ports);
            union(&mut entry.profiles, &svc.profiles);
            union(&mut entry.depends_on, &svc.depends_on);
            for m in &svc.mounts {
                match entry.mounts.iter_mut().find(|e| e.target == m.target) {
                    Some(e) => *e = m.clone(),
                    None => entry.mounts.push(m.clone()),
                }
            }
            merge_run(&mut entry.run, &svc.run);
        }
        union(&mut merged.networks, &f.networks);
        union(&mut merged.volumes, &f.volumes);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::super::ports::publish_env;
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn overlays_keep_base_networks_unless_they_name_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yml");
        let ports = dir.path().join("ports.yml");
        let nets = dir.path().join("nets.yml");
        std::fs::write(&base, "services:\n  web: {image: x, networks: [front]}\n").unwrap();
        std::fs::write(&ports, "services:\n  web: {ports: ['0.0.0.0::80']}\n").unwrap();
        std::fs::write(&nets, "services:\n  web: {networks: [front, back]}\n").unwrap();
        let keep = ComposeSet::load(&[base.clone(), ports]).unwrap().merged();
        assert_eq!(keep.services["web"].networks.keys().collect::<Vec<_>>(), ["front"]);
        let moved = ComposeSet::load(&[base, nets]).unwrap().merged();
        assert_eq!(
            moved.services["web"].networks.keys().collect::<Vec<_>>(),
            ["back", "front"]
        );
        let partial = dir.path().join("partial.yml");
        std::fs::write(&partial, "services:\n  api: {ports: ['1:1']}\n").unwrap();
        let err = ComposeSet::load(&[partial]).unwrap_err().to_string();
        assert!(err.contains("service 'api' has neither image nor build"), "{err}");
    }

    #[test]
    fn an_overlay_mount_replaces_the_one_with_the_same_target() {
        use crate::compose::file::MountKind;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yml");
        let overlay = dir.path().join("bind.yml");
        std::fs::write(
            &base,
            "services:\n  db: {image: x, volumes: ['db_data:/data', '/cache']}\nvolumes: {db_data: {}}\n",
        )
        .unwrap();
        std::fs::write(
            &overlay,
            "services:\n  db: {volumes: ['./data:/data', 'logs:/logs']}\nvolumes: {logs: {}}\n",
        )
        .unwrap();
        let merged = ComposeSet::load(&[base, overlay]).unwrap().merged();
        let kinds: Vec<(String, MountKind)> = merged.services["db"]
            .mounts
            .iter()
            .map(|m| (m.target.clone(), m.kind(&|_| None)))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/data".to_string(), MountKind::Bind("./data".into())),
                ("/cache".to_string(), MountKind::Anonymous),
                ("/logs".to_string(), MountKind::Named("logs".into())),
            ]
        );
    }

    #[test]
    fn an_overlay_adds_to_lists_and_environment_and_replaces_scalars() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yml");
        let overlay = dir.path().join("o.yml");
        std::fs::write(
            &base,
            "services:\n  a:\n    image: x\n    environment: {A: '1', B: '2'}\n    cap_drop: [ALL]\n    mem_limit: 64m\n    healthcheck: {test: [CMD, t], interval: 3s}\n",
        )
        .unwrap();
        std::fs::write(
            &overlay,
            "services:\n  a:\n    environment: {B: '3'}\n    cap_add: [CHOWN]\n    mem_limit: 1g\n    healthcheck: {interval: 9s}\n",
        )
        .unwrap();
        let run = ComposeSet::load_with_profiles(&[base, overlay], vec![])
            .unwrap()
            .merged()
            .services["a"]
            .run
            .clone();
        assert_eq!(run.environment["A"].as_deref(), Some("1"));
        assert_eq!(run.environment["B"].as_deref(), Some("3"));
        assert_eq!(
            (run.cap_drop, run.cap_add),
            (vec!["ALL".to_string()], vec!["CHOWN".to_string()])
        );
        assert_eq!(run.mem_limit.as_deref(), Some("1g"));
        let hc = run.healthcheck.unwrap();
        assert_eq!(
            (hc.test, hc.interval.as_deref()),
            (vec!["CMD".to_string(), "t".to_string()], Some("9s"))
        );
    }

    /// A port reached through a merge key gets the run's bind address and a free port, exactly as
    /// the same port written inline: it never publishes on the file's 0.0.0.0/8080 defaults.
    #[test]
    fn ports_from_an_anchor_are_published_on_the_bind_ip_like_inline_ones() {
        let dir = tempfile::tempdir().unwrap();
        let inline = dir.path().join("inline.yml");
        let anchored = dir.path().join("anchored.yml");
        std::fs::write(
            &inline,
            "services:\n  web:\n    image: x\n    ports: ['${ANCHOR_BIND_T:-0.0.0.0}:${ANCHOR_PORT_T:-8080}:80']\n",
        )
        .unwrap();
        std::fs::write(
            &anchored,
            "x-web: &web\n  image: x\n  ports: ['${ANCHOR_BIND_T:-0.0.0.0}:${ANCHOR_PORT_T:-8080}:80']\nservices:\n  web:\n    <<: *web\n",
        )
        .unwrap();
        let bind = IpAddr::from([127, 0, 0, 1]);
        for file in [inline, anchored] {
            let merged = ComposeSet::load_with_profiles(std::slice::from_ref(&file), vec![])
                .unwrap()
                .merged();
            let (env, ports) = publish_env(&merged, bind).unwrap();
            assert!(
                env.contains(&("ANCHOR_BIND_T".into(), "127.0.0.1".into())),
                "{}: {env:?}",
                file.display()
            );
            let port = ports.get("ANCHOR_PORT_T").copied();
            assert!(port.is_some_and(|p| p != 8080), "{}: {ports:?}", file.display());
        }
    }

    /// Services behind a profile that is not enabled are not planned, built or waited on.
    #[test]
    fn services_of_disabled_profiles_are_left_out_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.yml");
        let overlay = dir.path().join("overlay.yml");
        std::fs::write(
            &base,
            "services:\n  app: {image: a}\n  dbg: {image: d, profiles: [debug]}\n  web: {image: w}\n",
        )
        .unwrap();
        // An overlay can put a service behind a profile too.
        std::fs::write(&overlay, "services:\n  web: {profiles: [web]}\n").unwrap();
        let files = [base, overlay];
        let none = ComposeSet::load_with_profiles(&files, vec![]).unwrap().merged();
        assert_eq!(none.services.keys().collect::<Vec<_>>(), ["app"]);
        assert_eq!(none.inactive.keys().collect::<Vec<_>>(), ["dbg", "web"]);
        let all = ComposeSet::load_with_profiles(&files, vec!["debug".into(), "web".into()])
            .unwrap()
            .merged();
        assert_eq!(all.services.keys().collect::<Vec<_>>(), ["app", "dbg", "web"]);
        // COMPOSE_PROFILES in the project's .env enables profiles as the compose tools do.
        std::fs::write(dir.path().join(".env"), "COMPOSE_PROFILES=debug\n").unwrap();
        assert_eq!(profiles_from(None, &files[0]), ["debug"]);
        // The environment wins over the .env file.
        assert_eq!(profiles_from(Some(" web , x,".into()), &files[0]), ["web", "x"]);
    }

    #[test]
    fn depending_on_a_disabled_service_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(
            &file,
            "services:\n  app: {image: a, depends_on: [dbg]}\n  dbg: {image: d, profiles: [debug]}\n",
        )
        .unwrap();
        let err = ComposeSet::load_with_profiles(std::slice::from_ref(&file), vec![]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&file.display().to_string()) && msg.contains("'app' depends on 'dbg', which is not enabled"),
            "{msg}"
        );
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(ComposeSet::load_with_profiles(&[file], vec!["debug".into()]).is_ok());
    }

    /// The stricter model still accepts every stack the project ships: the bundled one with each
    /// negative overlay, and the second stack.
    #[test]
    fn every_shipped_compose_combination_loads() {
        let root = crate::workspace::root();
        let overlays: Vec<PathBuf> = std::fs::read_dir(root.join("fixtures/overlays"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        assert!(overlays.len() >= 5, "{overlays:?}");
        let bundled = ComposeSet::load_with_profiles(&[crate::workspace::bundled_compose_file()], vec![])
            .unwrap()
            .merged();
        assert_eq!(bundled.services.len(), 7);
        assert!(bundled.inactive.is_empty());
        for overlay in overlays {
            let set =
                ComposeSet::load_with_profiles(&[crate::workspace::bundled_compose_file(), overlay.clone()], vec![]);
            assert!(set.is_ok(), "{}: {}", overlay.display(), set.unwrap_err());
        }
        let second = ComposeSet::load_with_profiles(&[root.join("fixtures/second-stack/compose.yml")], vec![])
            .unwrap()
            .merged();
        assert_eq!(second.services.keys().collect::<Vec<_>>(), ["web", "worker"]);
        assert_eq!(second.port_vars(), ["SECOND_WEB_PORT"]);
        for entry in std::fs::read_dir(root.join("fixtures/second-stack/overlays")).unwrap() {
            let overlay = entry.unwrap().path();
            if overlay.extension().is_some_and(|e| e == "yml") {
                let set = ComposeSet::load_with_profiles(
                    &[root.join("fixtures/second-stack/compose.yml"), overlay.clone()],
                    vec![],
                );
                assert!(set.is_ok(), "{}: {}", overlay.display(), set.unwrap_err());
            }
        }
    }
}
