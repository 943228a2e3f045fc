//! Docker Compose v2 against Podman's Docker-compatible API: what differs from Compose v2 on
//! Docker, and the remedy the harness applies.
//!
//! Compose v2 (like the docker CLI) reads a service's seccomp profile file and sends its JSON
//! *content* in `SecurityOpt`; Podman 4.3's compatible API takes the value as a *path* and refuses
//! the container (`opening seccomp profile failed: open {"defaultAction":...}: file name too
//! long`). The remedy a migrating team uses is to set the profile engine-wide (`seccomp_profile`
//! in containers.conf) and leave it out of the compose file. The harness observes the refusal with
//! a throwaway container first, and applies the remedy only when the engine refuses: on the run's
//! own API service ([`crate::runtime::api_service`]) and in an override file with `!override`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{HarnessError, Result};
use crate::runtime::{exec, Interrupt, Runtime};

/// The part of `docker compose config --format json` (the resolved model) the harness reads.
#[derive(Debug, Deserialize)]
pub struct ResolvedModel {
    /// Services by name.
    #[serde(default)]
    pub services: BTreeMap<String, ResolvedService>,
}

/// One service of the resolved model.
#[derive(Debug, Deserialize)]
pub struct ResolvedService {
    /// The service's `security_opt:` entries (`seccomp=FILE`, ...).
    #[serde(default)]
    pub security_opt: Vec<String>,
}

impl ResolvedModel {
    /// Parses the JSON that `docker compose config --format json` prints.
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| HarnessError::Parse {
            what: "docker compose config --format json".into(),
            reason: e.to_string(),
        })
    }

    /// Services that name a seccomp profile file, with that file resolved against `workdir` (the
    /// directory Compose v2 runs in reads relative paths from there).
    pub fn seccomp_profiles(&self, workdir: &Path) -> BTreeMap<String, PathBuf> {
        self.services
            .iter()
            .filter_map(|(name, svc)| {
                let file = svc.security_opt.iter().filter_map(|o| seccomp_file(o)).next_back()?;
                Some((name.clone(), workdir.join(file)))
            })
            .collect()
    }
}

/// The profile file of a `seccomp=FILE` (or `seccomp:FILE`) option; `None` for `unconfined`,
/// `builtin` and other options.
fn seccomp_file(opt: &str) -> Option<&str> {
    let value = opt.strip_prefix("seccomp=").or_else(|| opt.strip_prefix("seccomp:"))?;
    (!matches!(value, "unconfined" | "builtin") && !value.is_empty()).then_some(value)
}

/// What the engine answered to a seccomp profile sent inline, the way Compose v2 sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InlineSeccomp {
    /// The engine took the profile as Compose v2 sends it: no remedy is needed.
    Accepted,
    /// Refused, with the engine's message (the profile's JSON shortened to `{...}`).
    Refused(String),
}

/// Creates (never starts) a throwaway container through `docker_host` with `--security-opt
/// seccomp=PROFILE`, as Compose v2 would, and removes it again.
pub fn probe_inline_seccomp(
    runtime: &Runtime,
    docker_host: &str,
    image: &str,
    profile: &Path,
    labels: &BTreeMap<String, String>,
) -> Result<InlineSeccomp> {
    let docker = || runtime.command("docker").env("DOCKER_HOST", docker_host).cwd("/");
    let mut spec = docker().arg("create");
    for (k, v) in labels {
        spec = spec.arg("--label").arg(format!("{k}={v}"));
    }
    spec = spec
        .arg("--security-opt")
        .arg(format!("seccomp={}", profile.display()))
        .args(["--entrypoint", "true", image]);
    let out = exec::run(&spec, Duration::from_secs(60), Interrupt::Allowed)?;
    if out.success() {
        let id = out.stdout.trim().to_string();
        let _ = exec::run(
            &docker().args(["rm", "-f", &id]),
            Duration::from_secs(60),
            Interrupt::Ignored,
        );
        return Ok(InlineSeccomp::Accepted);
    }
    let message = shorten_profile(out.stderr.trim());
    if message.contains("seccomp") {
        Ok(InlineSeccomp::Refused(message))
    } else {
        Err(HarnessError::Failed {
            cmd: spec.display(),
            status: out.status,
            stderr: exec::tail(&out.stderr, 5),
        })
    }
}

/// Replaces an inline JSON profile in an engine message by `{...}`.
fn shorten_profile(message: &str) -> String {
    match (message.find('{'), message.rfind('}')) {
        (Some(a), Some(b)) if b > a => format!("{}{{...}}{}", &message[..a], &message[b + 1..]),
        _ => message.to_string(),
    }
}

/// An override that leaves every `seccomp=` option out of the named services (their other
/// security options kept), so the engine-wide profile applies. `!override` needs Compose 2.24.4+.
pub fn remedy_override(model: &ResolvedModel, services: &[String]) -> String {
    let mut yaml = String::from("# Written by hydra: Compose v2 on Podman 4.3 cannot pass a seccomp profile\n# (see compose/README.md); the run's API service applies it engine-wide instead.\nservices:\n");
    for name in services {
        let kept: Vec<String> = model
            .services
            .get(name)
            .map(|s| {
                s.security_opt
                    .iter()
                    .filter(|o| seccomp_file(o).is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let list = kept
            .iter()
            .map(|o| serde_json::to_string(o).expect("strings serialise"))
            .collect::<Vec<_>>()
            .join(", ");
        let key = serde_json::to_string(name).expect("strings serialise");
        yaml.push_str(&format!("  {key}:\n    security_opt: !override [{list}]\n"));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"{"name":"p","services":{
        "db":{"image":"x","security_opt":["no-new-privileges:true","seccomp=../fixtures/seccomp/phoenix.json"]},
        "agent":{"image":"y","security_opt":["seccomp=unconfined"]},
        "web":{"image":"z"}}}"#;

    #[test]
    fn profiles_resolve_against_the_working_directory() {
        let m = ResolvedModel::parse(MODEL).unwrap();
        let p = m.seccomp_profiles(Path::new("/p/compose"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p["db"], Path::new("/p/compose/../fixtures/seccomp/phoenix.json"));
    }

    #[test]
    fn the_override_keeps_the_other_options() {
        let m = ResolvedModel::parse(MODEL).unwrap();
        let y = remedy_override(&m, &["db".into()]);
        assert!(
            y.contains("\"db\":\n    security_opt: !override [\"no-new-privileges:true\"]"),
            "{y}"
        );
        assert!(!y.contains("phoenix.json"), "{y}");
    }

    #[test]
    fn the_engine_message_loses_the_profile_body() {
        let m = shorten_profile(
            "Error response from daemon: container create: opening seccomp profile failed: open {\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{}]}: file name too long",
        );
        assert_eq!(
            m,
            "Error response from daemon: container create: opening seccomp profile failed: open {...}: file name too long"
        );
    }
}
