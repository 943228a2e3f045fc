//! The kube-play targets: the stack generated as Kubernetes YAML ([`super::generate`]) and played
//! by `podman kube play`, rootful or as the rootless user, in place of a compose tool.
//!
//! The played YAML is the one written for a cluster plus the run's labels on every pod and claim
//! (Podman copies a pod's labels onto each of its containers and a claim's onto its volume), and
//! `com.docker.compose.project` / `com.docker.compose.service` on every pod: so the readiness loop,
//! the checks, the teardown's label sweep and `harness gc` find a played service as they find a
//! composed one. What the harness creates beside the pods carries the same labels:
//!
//! - one network for the run (pods join the networks given to `kube play`, never compose's);
//! - one Podman secret per env file, a JSON map of base64 values (what 4.3.1 reads for
//!   `secretKeyRef`), written through stdin, never to a file;
//! - the claims, played once before the first `up`, since playing a claim whose volume exists
//!   fails (so `up` after a `down` that kept volumes plays the workloads only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::objects::Object;
use super::{generate, project_lookup, KubeDivergence, KubeOptions, KubeStack, WorkloadKind};
use crate::compose::file::ComposeFile;
use crate::compose::Action;
use crate::error::{HarnessError, Result};
use crate::runtime::{exec, CommandSpec, Interrupt, Runtime};

/// What a kube-play run needs to drive its pods, kept in the run's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Played {
    /// The run's network, which every pod joins.
    pub network: String,
    /// Pods and deployments in start order (plus the Services and NetworkPolicies Podman skips):
    /// what `up` plays and `down` takes down.
    pub workloads: PathBuf,
    /// The claims, played once before the first `up`; `None` when the stack has no named volume.
    pub claims: Option<PathBuf>,
    /// Per service, a file with its workload alone: what recreating the service plays again.
    pub per_service: BTreeMap<String, PathBuf>,
    /// Per service, the pod Podman names for it (a Deployment `x` plays as pod `x-pod-0`).
    pub pods: BTreeMap<String, String>,
    /// The directory the pods' `localhost/<file>` seccomp profiles are read from.
    pub seccomp_root: Option<PathBuf>,
    /// The secrets created for the run.
    pub secrets: Vec<String>,
    /// What does not carry over from compose (the checks that meet one are reported with it).
    #[serde(default)]
    pub divergences: Vec<KubeDivergence>,
}

/// Compose's label of the project, which the played pods carry too.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// Compose's label of the service, which the played pods carry too.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// The engine argv (after `podman`) for a compose action on a played stack. Pure.
///
/// `down` keeps the volumes in both forms (`kube down` removes pods only): the teardown's label
/// sweep removes the run's volumes afterwards.
pub fn action_args(played: &Played, project: &str, action: &Action) -> Vec<String> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let pod = |service: &str| played.pods.get(service).cloned().unwrap_or_else(|| service.to_string());
    let play = |file: &Path, replace: bool| {
        let mut args = v(&["kube", "play"]);
        if replace {
            args.push("--replace".into());
        }
        args.extend(["--network".to_string(), played.network.clone()]);
        if let Some(root) = &played.seccomp_root {
            args.extend(["--seccomp-profile-root".to_string(), root.display().to_string()]);
        }
        args.push(file.display().to_string());
        args
    };
    match action {
        Action::Up => play(&played.workloads, false),
        Action::Down { .. } | Action::DownKeepVolumes { .. } => {
            v(&["kube", "down", &played.workloads.display().to_string()])
        }
        Action::Ps => v(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={PROJECT_LABEL}={project}"),
            "--format",
            "json",
        ]),
        Action::Stop { service } => v(&["pod", "stop", "-t", "10", &pod(service)]),
        Action::StopAll => {
            let mut args = v(&["pod", "stop", "-t", "10"]);
            args.extend(played.pods.values().cloned());
            args
        }
        Action::Start { service } => v(&["pod", "start", &pod(service)]),
        Action::Recreate { service } => match played.per_service.get(service) {
            Some(file) => play(file, true),
            // An unknown service: Podman says so.
            None => v(&["pod", "inspect", &pod(service)]),
        },
        // The resolved model of a played stack: the YAML Podman generates from its pods.
        Action::Config => {
            let mut args = v(&["kube", "generate"]);
            args.extend(played.pods.values().cloned());
            args
        }
    }
}

/// The played stack's files and what the run must create before `up`, from the merged compose
/// model: generated with the run's labels and images, written under `dir`.
pub struct Prepared {
    /// The files and names the run's record keeps.
    pub played: Played,
    /// What does not carry over from compose.
    pub divergences: Vec<KubeDivergence>,
    /// The generated stack.
    pub stack: KubeStack,
}

/// Generates the played YAML and writes it under `dir/kube/`. Pure but for the writes.
pub fn write(
    merged: &ComposeFile,
    project: &str,
    env: &[(String, String)],
    labels: &BTreeMap<String, String>,
    images: &BTreeMap<String, String>,
    drop_limits: bool,
    dir: &Path,
) -> Result<Prepared> {
    let mut opts = KubeOptions::new(project);
    opts.images = images.clone();
    opts.extra_labels = labels.clone();
    opts.extra_labels.insert(PROJECT_LABEL.into(), project.into());
    opts.service_label_keys = vec![SERVICE_LABEL.into()];
    opts.pods_only = true;
    opts.never_restart = true;
    opts.drop_limits = drop_limits;
    // The run's variables (ports, bind address) first, then compose's own lookup.
    let fallback = project_lookup(merged);
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| fallback(name))
    };
    let stack = generate(merged, &opts, &lookup)?;
    let kube_dir = dir.join("kube");
    std::fs::create_dir_all(&kube_dir)?;
    let yaml = |objects: &[&Object]| -> String {
        objects
            .iter()
            .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("kube objects serialise")))
            .collect()
    };
    let claims: Vec<&Object> = stack
        .objects
        .iter()
        .filter(|o| matches!(o, Object::PersistentVolumeClaim(_)))
        .collect();
    let rest: Vec<&Object> = stack
        .objects
        .iter()
        .filter(|o| !matches!(o, Object::PersistentVolumeClaim(_)))
        .collect();
    let claims_path = (!claims.is_empty()).then(|| kube_dir.join("claims.yaml"));
    if let Some(p) = &claims_path {
        std::fs::write(p, yaml(&claims))?;
    }
    let workloads = kube_dir.join("workloads.yaml");
    std::fs::write(&workloads, yaml(&rest))?;
    let mut per_service = BTreeMap::new();
    let mut pods = BTreeMap::new();
    for w in &stack.workloads {
        let label = super::dns_label(&w.service);
        let id = match w.kind {
            WorkloadKind::Pod => format!("Pod/{label}"),
            WorkloadKind::Deployment => format!("Deployment/{label}"),
        };
        let object = stack
            .object(&id)
            .ok_or_else(|| HarnessError::usage(format!("generated YAML lacks {id}")))?;
        let path = kube_dir.join(format!("service-{label}.yaml"));
        std::fs::write(&path, yaml(&[object]))?;
        per_service.insert(w.service.clone(), path);
        pods.insert(
            w.service.clone(),
            match w.kind {
                WorkloadKind::Pod => label,
                WorkloadKind::Deployment => format!("{label}-pod-0"),
            },
        );
    }
    let seccomp_root = seccomp_root(merged, &lookup)?;
    Ok(Prepared {
        played: Played {
            network: format!("{project}_kube"),
            workloads,
            claims: claims_path,
            per_service,
            pods,
            seccomp_root,
            secrets: stack.secrets.iter().map(|s| s.name.clone()).collect(),
            divergences: stack.divergences.clone(),
        },
        divergences: stack.divergences.clone(),
        stack,
    })
}

/// The one directory every service's seccomp profile file is in, if any service sets one.
fn seccomp_root(merged: &ComposeFile, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<PathBuf>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for svc in merged.services.values() {
        for opt in &svc.run.security_opt {
            let opt = crate::compose::file::interpolate(opt, lookup);
            let Some(path) = opt.strip_prefix("seccomp=").or_else(|| opt.strip_prefix("seccomp:")) else {
                continue;
            };
            if path == "unconfined" {
                continue;
            }
            let full = crate::compose::file::normalize(&merged.dir().join(path));
            if let Some(parent) = full.parent() {
                if !dirs.iter().any(|d| d == parent) {
                    dirs.push(parent.to_path_buf());
                }
            }
        }
    }
    match dirs.len() {
        0 => Ok(None),
        1 => Ok(dirs.pop()),
        _ => {
            Err(HarnessError::compose(
                &merged.path,
                format!(
                "seccomp profiles in {} directories ({}): podman kube play reads them from one --seccomp-profile-root",
                dirs.len(),
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            ))
        }
    }
}

/// Creates the run's network, secrets and claims, labelled with `labels`. Whatever it created
/// before a failure carries the labels, so the teardown's sweep removes it.
pub fn create_objects(
    runtime: &Runtime,
    prepared: &Prepared,
    labels: &BTreeMap<String, String>,
    project: &str,
) -> Result<()> {
    let label_args = |spec: CommandSpec| {
        labels
            .iter()
            .chain([(&PROJECT_LABEL.to_string(), &project.to_string())])
            .fold(spec, |s, (k, v)| s.arg("--label").arg(format!("{k}={v}")))
    };
    let run = |spec: CommandSpec| exec::run_ok(&spec, Duration::from_secs(120), Interrupt::Allowed);
    run(label_args(runtime.engine().args(["network", "create"])).arg(&prepared.played.network))?;
    for secret in &prepared.stack.secrets {
        // The env file is named by the compose files: root reads it only if the engine's user
        // could, so a rootless run cannot turn root's reads into the user's secret.
        if let Some(user) = runtime.rootless_user().filter(|u| !u.can_read(&secret.source)) {
            return Err(HarnessError::usage(format!(
                "env file {} is not readable by {}, whose engine would hold its values",
                secret.source.display(),
                user.name
            )));
        }
        let text = std::fs::read_to_string(&secret.source)
            .map_err(|e| HarnessError::usage(format!("cannot read env file {}: {e}", secret.source.display())))?;
        let mut map = serde_json::Map::new();
        for key in &secret.keys {
            let value = crate::envfile::value(&text, key).unwrap_or_default();
            map.insert(key.clone(), base64_encode(value.as_bytes()).into());
        }
        let mut spec = label_args(runtime.engine().args(["secret", "create"])).args([secret.name.as_str(), "-"]);
        spec.stdin = Some(serde_json::to_vec(&map).expect("a map serialises"));
        run(spec)?;
    }
    if let Some(claims) = &prepared.played.claims {
        // Without --network, kube play creates the engine-wide `podman-default-kube-network`
        // even for a file of claims.
        run(runtime
            .engine()
            .args(["kube", "play", "--network", &prepared.played.network])
            .arg(claims.display().to_string()))?;
    }
    Ok(())
}

/// Standard base64 with padding (what Podman 4.3.1 decodes a secret's values with).
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn played() -> Played {
        Played {
            network: "hydra-podman-kube-1a2b3c4d_kube".into(),
            workloads: "/runs/1a2b3c4d/kube/workloads.yaml".into(),
            claims: Some("/runs/1a2b3c4d/kube/claims.yaml".into()),
            per_service: BTreeMap::from([("db".into(), "/runs/1a2b3c4d/kube/service-db.yaml".into())]),
            pods: BTreeMap::from([("db".into(), "db".into()), ("nginx".into(), "nginx-pod-0".into())]),
            seccomp_root: Some("/p/fixtures/seccomp".into()),
            secrets: vec![],
            divergences: vec![],
        }
    }

    #[test]
    fn compose_actions_become_kube_and_pod_commands() {
        let p = played();
        let line = |a: Action| action_args(&p, "hydra-podman-kube-1a2b3c4d", &a).join(" ");
        assert_eq!(
            line(Action::Up),
            "kube play --network hydra-podman-kube-1a2b3c4d_kube --seccomp-profile-root /p/fixtures/seccomp /runs/1a2b3c4d/kube/workloads.yaml"
        );
        assert_eq!(
            line(Action::Down { timeout_secs: 10 }),
            "kube down /runs/1a2b3c4d/kube/workloads.yaml"
        );
        assert_eq!(
            line(Action::Stop {
                service: "nginx".into()
            }),
            "pod stop -t 10 nginx-pod-0"
        );
        assert_eq!(line(Action::Start { service: "db".into() }), "pod start db");
        assert_eq!(line(Action::StopAll), "pod stop -t 10 db nginx-pod-0");
        assert!(line(Action::Recreate { service: "db".into() })
            .starts_with("kube play --replace --network hydra-podman-kube-1a2b3c4d_kube"));
        assert!(line(Action::Recreate { service: "db".into() }).ends_with("service-db.yaml"));
        assert_eq!(line(Action::Config), "kube generate db nginx-pod-0");
        assert_eq!(
            line(Action::Ps),
            "ps -a --filter label=com.docker.compose.project=hydra-podman-kube-1a2b3c4d --format json"
        );
    }

    #[test]
    fn secret_values_are_standard_base64() {
        assert_eq!(base64_encode(b"phoenix-pw"), "cGhvZW5peC1wdw==");
    }
}
