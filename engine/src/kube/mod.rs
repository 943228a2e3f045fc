//! Kubernetes YAML from the merged compose model, for `podman kube play` (Podman 4.3.1) and for a
//! real cluster, checked against the Kubernetes schemas (the harness's `kube::validate`). No engine is needed: the
//! images are compose's `image:` values unless the caller pins them ([`KubeOptions::images`]).
//!
//! What Podman 4.3.1's `kube play` does with the YAML (read in its source,
//! `pkg/domain/infra/abi/play.go` and `pkg/specgen/generate/kube/` at tag v4.3.1), and so what the
//! generator writes:
//!
//! - **Kinds.** It plays `Pod`, `Deployment`, `PersistentVolumeClaim`, `ConfigMap` and `Secret`;
//!   any other kind (`Service`, `NetworkPolicy`) is skipped with an info-level log line, and a file
//!   with none of the five is an error. Claims and secrets are created before the pods whatever
//!   their order; pods are played in file order, so the generator writes them in `depends_on`
//!   order (created in order, not waited for).
//! - **Pod or Deployment.** A pod is named after the `Pod`'s name; a `Deployment` named `x` plays
//!   as pods `x-pod-0`, ... On the network, the DNS name of a pod is its pod name (netavark is
//!   given the pod's name for the infra container). So a service other services reach by name
//!   (`depends_on`, or its name as a host in their environment) is a bare `Pod` named after it:
//!   `PGHOST=db` keeps resolving. The others are `Deployment`s of one replica, which a cluster
//!   recreates when their node goes. A headless `Service` per compose service gives every pod its
//!   compose name on a cluster (Podman skips it).
//! - **Networks.** Every pod joins the network(s) given by `--network` (by default one network,
//!   `podman-default-kube-network`, with DNS): compose's separate networks and their isolation are
//!   not reproduced under Podman. On a cluster the generated `NetworkPolicy` objects (ingress only
//!   from pods of a shared compose network, plus published ports from anywhere) reproduce it
//!   where the network plugin enforces policies.
//! - **Probes.** Only `livenessProbe` is used: it becomes the container's healthcheck, run as
//!   `/bin/sh -c "<command joined by spaces> || exit 1"`, with `periodSeconds`, `timeoutSeconds`,
//!   `failureThreshold` and `initialDelaySeconds` as interval, timeout, retries and start period;
//!   under restart policy `Always` a failing check restarts the container. `readinessProbe` is
//!   ignored (it matters to a cluster's Service endpoints).
//! - **Security context.** `readOnlyRootFilesystem`, `allowPrivilegeEscalation` (as
//!   no-new-privileges), `capabilities`, numeric `runAsUser` / `runAsGroup` are honoured.
//!   `seccompProfile` is **not** read: Podman 4.3.1 takes seccomp only from the pod's
//!   annotations `container.seccomp.security.alpha.kubernetes.io/<container>` (or
//!   `seccomp.security.alpha.kubernetes.io/pod`), value `localhost/<file>` resolved against
//!   `--seccomp-profile-root` (default `/var/lib/kubelet/seccomp`). The generator writes both
//!   the field (for a cluster) and the annotation (for Podman), with the same profile.
//! - **Resources.** `resources.limits.memory` becomes the memory limit. There is no pids limit.
//! - **Volumes.** A claim becomes a named Podman volume called after the claim (size ignored);
//!   `hostPath` a bind mount; `emptyDir` an anonymous volume on disk (its `medium: Memory` and
//!   `sizeLimit` are ignored, so a tmpfs is no tmpfs there).
//! - **Secrets.** A `Secret` document is stored as a Podman secret holding the object's YAML, but
//!   4.3.1 reads a secret for `secretKeyRef` / `envFrom` as a JSON map of base64 values and fails
//!   on that YAML ("is not valid JSON"; 4.4.0 reads both). The generator therefore writes no
//!   `Secret`: values of env files are referenced by key ([`SecretRef`]) and the secret is created
//!   beforehand from the env file itself (a cluster: `kubectl create secret generic NAME
//!   --from-env-file=FILE`; Podman 4.3.1: `podman secret create NAME` with that JSON map). The
//!   values are never in the YAML.
//! - **Stop signal.** Taken from the image's `STOPSIGNAL` only; a pod has no field for it.
//! - **Annotations.** Besides seccomp, pod annotations carry little per container in 4.3.1
//!   (`io.podman.annotations.init.container.type`, sd-notify modes, SELinux bind-mount labels);
//!   none of compose's options needs them.
//!
//! Everything that does not carry over unchanged is returned as a [`KubeDivergence`], derived
//! from the compose model: a stack without `depends_on` gets no `depends_on` divergence.

pub mod objects;
pub mod play;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compose::file::{interpolate, ComposeFile, MountKind, Service as ComposeService};
use crate::error::{HarnessError, Result};
use crate::secrets::is_secret_name;
use objects::*;

/// What the generator needs besides the compose model.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Prefix of claim and secret names (compose's project name plays this part).
    pub project: String,
    /// Image reference per service; a service not in the map uses its compose `image:`. A play
    /// target pins the references the harness built.
    pub images: BTreeMap<String, String>,
    /// Storage each claim requests (compose volumes have no size).
    pub claim_size: String,
    /// Labels added to every pod and claim (a played run's labels, which Podman copies onto each
    /// container of a pod and onto each claim's volume). Empty for the YAML written for a cluster.
    pub extra_labels: BTreeMap<String, String>,
    /// Label keys added to every pod with the compose service's name as value
    /// (`com.docker.compose.service`, so the harness finds a played service's container).
    pub service_label_keys: Vec<String>,
    /// Every service a bare Pod, so each keeps its compose name as its DNS name under podman
    /// kube play (a Deployment `x` plays as pod `x-pod-0`, which no one resolves as `x`). Compose
    /// gives every service its name on the network; the played stack must too.
    pub pods_only: bool,
    /// Every pod with `restartPolicy: Never`: the remedy for podman kube play 4.3.1, under which
    /// a restart cannot rejoin a one-container pod whose infra container stopped with it (see the
    /// `pod_exit` divergence). The YAML for a cluster keeps compose's policy.
    pub never_restart: bool,
    /// Leave memory limits out: rootless Podman on cgroup v1 cannot apply them, and where
    /// `podman run` (so podman-compose) drops them with a warning, `podman kube play` 4.3.1 hands
    /// them to the runtime, and every container fails to start.
    pub drop_limits: bool,
}

impl KubeOptions {
    /// Options for `project` with compose's images and 1Gi claims.
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            images: BTreeMap::new(),
            claim_size: "1Gi".to_string(),
            extra_labels: BTreeMap::new(),
            service_label_keys: Vec::new(),
            pods_only: false,
            never_restart: false,
            drop_limits: false,
        }
    }
}

/// Something that does not carry over from compose unchanged: what, and why (and what to do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeDivergence {
    /// Which kind of divergence (`networks`, `pids_limit`, `pod_exit`, ...): what the harness
    /// matches a played target's check results against.
    pub kind: String,
    /// What changes, naming the services or volumes concerned.
    pub what: String,
    /// Why, under `podman kube play` 4.3.1 and on a cluster.
    pub reason: String,
}

/// Whether a service became a bare pod or a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WorkloadKind {
    /// `kind: Pod`.
    Pod,
    /// `kind: Deployment`, one replica.
    Deployment,
}

/// What a service became, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// The compose service.
    pub service: String,
    /// Pod or Deployment.
    pub kind: WorkloadKind,
    /// Why that kind.
    pub reason: String,
}

/// A Secret the generated pods reference, to be created before they start; its values come from
/// `source` and are never written by the generator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// The env file its values are read from.
    pub source: PathBuf,
    /// Its keys (variable names).
    pub keys: Vec<String>,
}

/// The generated stack: documents in play order, and what a caller must know about them.
#[derive(Debug, Clone, Serialize)]
pub struct KubeStack {
    /// The project name.
    pub project: String,
    /// Claims, services, policies, then the workloads in `depends_on` order.
    pub objects: Vec<Object>,
    /// Per service: Pod or Deployment, and why.
    pub workloads: Vec<Workload>,
    /// Secrets to create first.
    pub secrets: Vec<SecretRef>,
    /// What does not carry over unchanged.
    pub divergences: Vec<KubeDivergence>,
}

impl KubeStack {
    /// The multi-document YAML.
    pub fn to_yaml(&self) -> String {
        let mut out = format!(
            "# Generated by hydra harness from the compose files of {}: `podman kube play` (4.3.1 and later)\n\
             # or `kubectl apply`. Create the referenced secrets first: {}.\n",
            self.project,
            if self.secrets.is_empty() {
                "none".to_string()
            } else {
                self.secrets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(o).expect("kube objects serialise"));
        }
        out
    }

    /// The object with `id` (`Kind/name`).
    pub fn object(&self, id: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.id() == id)
    }
}

/// Label naming the compose service of a pod.
pub const SERVICE_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the project.
pub const PROJECT_LABEL: &str = "app.kubernetes.io/part-of";
/// Prefix of the labels marking a pod's compose networks (`networks.hydra.io/<network>: "true"`).
pub const NETWORK_LABEL_PREFIX: &str = "networks.hydra.io/";
/// The annotation Podman 4.3.1 reads a container's seccomp profile from.
pub const SECCOMP_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// `name` as a DNS-1123 label: lower case, `[a-z0-9-]`, at most 63 characters. Pure.
pub fn dns_label(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    s.trim_matches('-').to_string()
}

/// The lookup compose interpolates with: the process environment, then the project's `.env`.
pub fn project_lookup(file: &ComposeFile) -> impl Fn(&str) -> Option<String> {
    let dotenv = std::fs::read_to_string(file.dir().join(".env")).unwrap_or_default();
    move |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| crate::envfile::value(&dotenv, name))
    }
}

/// Generates the stack from the merged compose model, interpolating with `lookup`.
pub fn generate(file: &ComposeFile, opts: &KubeOptions, lookup: &dyn Fn(&str) -> Option<String>) -> Result<KubeStack> {
    let project = dns_label(&opts.project);
    if project.is_empty() {
        return Err(HarnessError::usage(format!(
            "project name '{}' has no letter or digit",
            opts.project
        )));
    }
    let mut g = Gen {
        file,
        opts,
        project,
        lookup,
        divergences: Divergences::default(),
        secrets: Vec::new(),
    };
    g.run()
}

/// Divergences collected per kind, each naming the services concerned.
#[derive(Default)]
struct Divergences(BTreeMap<&'static str, (BTreeSet<String>, String)>);

impl Divergences {
    fn add(&mut self, key: &'static str, subject: impl Into<String>, reason: impl Into<String>) {
        let e = self.0.entry(key).or_insert_with(|| (BTreeSet::new(), reason.into()));
        e.0.insert(subject.into());
    }
}

struct Gen<'a> {
    file: &'a ComposeFile,
    opts: &'a KubeOptions,
    project: String,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    divergences: Divergences,
    secrets: Vec<SecretRef>,
}

/// What each divergence is called, in report order, and how its subjects are introduced.
const DIVERGENCE_ORDER: &[(&str, &str)] = &[
    ("networks", "compose networks"),
    ("depends_on", "depends_on of"),
    ("healthcheck", "healthchecks become exec probes for"),
    ("shell_probe", "probes with a shell script break under podman 4.3.1 for"),
    ("bare_pod", "bare Pods (not Deployments) for"),
    ("volumes", "named volumes become PersistentVolumeClaims"),
    ("tmpfs", "tmpfs mounts become emptyDir (medium Memory) for"),
    ("bind", "bind mounts become hostPath (not portable) for"),
    ("anonymous", "anonymous volumes become emptyDir for"),
    ("seccomp", "seccomp profiles become Localhost profiles"),
    ("devices", "devices are not carried for"),
    ("limits", "memory limits not played for"),
    ("pids_limit", "pids_limit has no equivalent for"),
    ("stop_signal", "stop_signal has no equivalent for"),
    ("ports", "published ports become hostPort/hostIP for"),
    ("secrets", "env file values become Secret references"),
    ("restart", "restart: unless-stopped becomes restartPolicy Always for"),
    (
        "pod_exit",
        "a container that dies stays down under podman kube play 4.3.1 for",
    ),
    ("user", "user by name is not carried for"),
    ("images", "locally built images"),
    ("renamed", "names changed to DNS-1123 labels"),
    (
        "environment_from_host",
        "variables taken from the generating environment for",
    ),
];

impl Gen<'_> {
    fn interp(&self, s: &str) -> String {
        interpolate(s, self.lookup)
    }

    fn run(&mut self) -> Result<KubeStack> {
        let order = start_order(self.file)?;
        let mut claims = Vec::new();
        let mut volumes_used: BTreeSet<String> = BTreeSet::new();
        let mut services = Vec::new();
        let mut policies = Vec::new();
        let mut workloads_objects = Vec::new();
        let mut workloads = Vec::new();
        let reached = reached_by_name(self.file, self.lookup);
        for name in &order {
            let svc = &self.file.services[name];
            let label = dns_label(name);
            if label != *name {
                self.divergences.add(
                    "renamed",
                    format!("service {name} -> {label}"),
                    "Kubernetes names pods, containers and services with DNS-1123 labels; other services must use the new name",
                );
            }
            let mut labels = BTreeMap::from([
                (SERVICE_LABEL.to_string(), label.clone()),
                (PROJECT_LABEL.to_string(), self.project.clone()),
            ]);
            for net in svc.networks.keys() {
                labels.insert(format!("{NETWORK_LABEL_PREFIX}{}", dns_label(net)), "true".to_string());
            }
            labels.extend(self.opts.extra_labels.clone());
            for key in &self.opts.service_label_keys {
                labels.insert(key.clone(), name.clone());
            }
            let (container, volumes, annotations) = self.container(name, svc, &label, &mut volumes_used)?;
            let restart_policy = match self.opts.never_restart {
                true => "Never",
                false => restart_policy(svc.run.restart.as_deref()),
            };
            let (kind, reason) = match (reached.get(name), restart_policy) {
                _ if self.opts.pods_only => (
                    WorkloadKind::Pod,
                    "played by podman kube play 4.3.1: a bare Pod keeps the service's name as its DNS name, as compose does"
                        .to_string(),
                ),
                (Some(by), _) => (
                    WorkloadKind::Pod,
                    format!("reached by name ({by}): under podman kube play 4.3.1 a Deployment's pod is named {label}-pod-0, and the network's DNS answers with pod names"),
                ),
                (None, p) if p != "Always" => (
                    WorkloadKind::Pod,
                    format!("restart policy {p}: a Deployment's pods always restart"),
                ),
                _ => (
                    WorkloadKind::Deployment,
                    "nothing reaches it by name: a cluster recreates its pod when the node goes, podman plays one pod".to_string(),
                ),
            };
            if kind == WorkloadKind::Pod {
                self.divergences.add(
                    "bare_pod",
                    name.clone(),
                    "a bare Pod keeps its name as its DNS name under podman kube play, but no controller recreates it on a cluster if its node fails",
                );
            }
            let spec = PodSpec {
                restart_policy,
                containers: vec![container.clone()],
                volumes,
            };
            let selector = BTreeMap::from([(SERVICE_LABEL.to_string(), label.clone())]);
            workloads_objects.push(match kind {
                WorkloadKind::Pod => Object::Pod(Pod {
                    api_version: "v1",
                    kind: "Pod",
                    metadata: ObjectMeta {
                        name: label.clone(),
                        labels: labels.clone(),
                        annotations,
                    },
                    spec,
                }),
                WorkloadKind::Deployment => Object::Deployment(Deployment {
                    api_version: "apps/v1",
                    kind: "Deployment",
                    metadata: ObjectMeta {
                        name: label.clone(),
                        labels: labels.clone(),
                        annotations: BTreeMap::new(),
                    },
                    spec: DeploymentSpec {
                        replicas: 1,
                        selector: LabelSelector {
                            match_labels: selector.clone(),
                        },
                        strategy: DeploymentStrategy { kind: "Recreate" },
                        template: PodTemplate {
                            metadata: ObjectMeta {
                                name: String::new(),
                                labels: labels.clone(),
                                annotations,
                            },
                            spec,
                        },
                    },
                }),
            });
            workloads.push(Workload {
                service: name.clone(),
                kind,
                reason,
            });
            services.push(Object::Service(objects::Service {
                api_version: "v1",
                kind: "Service",
                metadata: ObjectMeta {
                    name: label.clone(),
                    labels: BTreeMap::from([(PROJECT_LABEL.to_string(), self.project.clone())]),
                    annotations: BTreeMap::new(),
                },
                spec: ServiceSpec {
                    cluster_ip: "None",
                    selector: selector.clone(),
                    ports: container
                        .ports
                        .iter()
                        .map(|p| ServicePort {
                            name: p.name.clone(),
                            port: p.container_port,
                            target_port: p.container_port,
                            protocol: p.protocol,
                        })
                        .collect(),
                },
            }));
            policies.push(self.policy(&label, svc, &container, selector));
        }
        // Claims for the named volumes the services mount, in the file's order.
        for v in self.file.volumes.iter().filter(|v| volumes_used.contains(*v)) {
            claims.push(Object::PersistentVolumeClaim(PersistentVolumeClaim {
                api_version: "v1",
                kind: "PersistentVolumeClaim",
                metadata: ObjectMeta {
                    name: self.claim_name(v),
                    labels: std::iter::once((PROJECT_LABEL.to_string(), self.project.clone()))
                        .chain(self.opts.extra_labels.clone())
                        .collect(),
                    annotations: BTreeMap::new(),
                },
                spec: ClaimSpec {
                    access_modes: vec!["ReadWriteOnce"],
                    resources: ClaimResources {
                        requests: BTreeMap::from([("storage".to_string(), self.opts.claim_size.clone())]),
                    },
                },
            }));
        }
        for v in &volumes_used {
            self.divergences.add("volumes", format!("{v} -> {}", self.claim_name(v)), format!("Podman creates a local volume named after the claim (size ignored), so the data of the compose volume is not in it: move it; a cluster provisions {} ReadWriteOnce per claim from its default StorageClass (compose volumes have no size), which ties the pod to one node", self.opts.claim_size));
        }
        let networks: BTreeSet<&String> = self.file.services.values().flat_map(|s| s.networks.keys()).collect();
        let everyone_on_all = self.file.services.values().all(|s| s.networks.len() == networks.len());
        if networks.len() > 1 || !everyone_on_all {
            for n in &networks {
                self.divergences.add("networks", n.to_string(), "podman kube play 4.3.1 puts every pod on the network(s) given by --network (default: podman-default-kube-network), so pods reach each other across what compose kept apart, and it skips NetworkPolicy; on a cluster the generated NetworkPolicy objects keep the isolation only where the network plugin enforces them");
            }
        }
        for (name, svc) in &self.file.services {
            if !svc.depends_on.is_empty() {
                self.divergences.add("depends_on", format!("{name} ({})", svc.depends_on.join(", ")), "Kubernetes has no start order or service_healthy condition: podman creates the pods in the file's (dependency) order without waiting, a cluster starts them all at once; readiness probes keep a pod out of its Service until healthy, and clients must retry");
            }
        }
        let mut objects = claims;
        objects.extend(services);
        objects.extend(policies);
        objects.extend(workloads_objects);
        let mut divergences = Vec::new();
        for (key, intro) in DIVERGENCE_ORDER {
            if let Some((subjects, reason)) = self.divergences.0.remove(key) {
                divergences.push(KubeDivergence {
                    kind: key.to_string(),
                    what: format!("{intro}: {}", subjects.into_iter().collect::<Vec<_>>().join(", ")),
                    reason,
                });
            }
        }
        debug_assert!(self.divergences.0.is_empty(), "every divergence kind is ordered");
        Ok(KubeStack {
            project: self.project.clone(),
            objects,
            workloads,
            secrets: std::mem::take(&mut self.secrets),
            divergences,
        })
    }

    /// The name of an emptyDir volume of `service`: podman kube play 4.3.1 creates the volume under
    /// the pod volume's own name, host-wide, so two pods with a `tmp` emptyDir would share one
    /// volume (seen: db's and nginx's `/tmp`). The name carries the service and a digest of the
    /// project, so each service of each project gets its own; on a cluster it is only a name.
    fn empty_dir_name(&self, service: &str, base: &str) -> String {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(format!("{}/{service}", self.project)));
        let head = dns_label(&format!("{}-{base}", dns_label(service)));
        let head: String = head.chars().take(63 - 9).collect();
        format!("{}-{}", head.trim_end_matches('-'), &digest[..8])
    }

    fn claim_name(&self, volume: &str) -> String {
        dns_label(&format!("{}-{volume}", self.project))
    }

    /// The container of `name`, the pod volumes it mounts, and the pod's annotations.
    fn container(
        &mut self,
        name: &str,
        svc: &ComposeService,
        label: &str,
        volumes_used: &mut BTreeSet<String>,
    ) -> Result<(Container, Vec<Volume>, BTreeMap<String, String>)> {
        let image = match (self.opts.images.get(name), &svc.image) {
            (Some(i), _) => i.clone(),
            (None, Some(i)) => self.interp(i),
            (None, None) => {
                return Err(HarnessError::compose(
                    &self.file.path,
                    format!("service '{name}' has no image: Kubernetes cannot build"),
                )
                .with_hint("give it an `image:`, or pin its reference in the image map"))
            }
        };
        if image.starts_with("localhost/") {
            self.divergences.add("images", image.clone(), "a cluster pulls images from a registry: push them and pin the pushed references (podman uses the local ones)");
        }
        let env = self.environment(name, svc)?;
        let ports = self.ports(name, svc)?;
        let (volume_mounts, volumes) = self.mounts(name, svc, volumes_used)?;
        let run = &svc.run;
        let resources = run.mem_limit.as_deref().map(|m| -> Result<Resources> {
            let q = memory_quantity(&self.interp(m)).ok_or_else(|| {
                HarnessError::compose(
                    &self.file.path,
                    format!("service '{name}': mem_limit '{m}' is not a size"),
                )
            })?;
            Ok(Resources {
                limits: BTreeMap::from([("memory".to_string(), q)]),
            })
        });
        let mut resources = resources.transpose()?;
        if self.opts.drop_limits && resources.is_some() {
            resources = None;
            self.divergences.add("limits", format!("{name} ({})", run.mem_limit.as_deref().unwrap_or_default()), "left out of the played YAML: rootless Podman on cgroup v1 cannot set memory limits, and where `podman run` (so podman-compose) drops them with a warning, podman kube play 4.3.1 passes them on and every container fails to start (`cannot set memory limit: container could not join or create cgroup`, seen here); the checks of limits are not enforceable on this host either way");
        }
        if let Some(p) = run.pids_limit {
            self.divergences.add("pids_limit", format!("{name} ({p})"), "a container has no pids limit in Kubernetes (the kubelet's podPidsLimit applies per node) and podman kube play 4.3.1 sets none");
        }
        if let Some(sig) = &run.stop_signal {
            self.divergences.add("stop_signal", format!("{name} ({sig})"), "a pod has no stop signal field: podman kube play and the cluster's runtime send the image's STOPSIGNAL, so the image must declare it");
        }
        if run.restart.as_deref() == Some("unless-stopped") {
            self.divergences.add("restart", name.to_string(), "Kubernetes has no 'unless-stopped': a stopped container is restarted, and a failing liveness probe restarts it (a cluster's kubelet; podman kube play 4.3.1 tries, see the next row)");
        }
        if restart_policy(run.restart.as_deref()) != "Never" && self.opts.never_restart {
            self.divergences.add("pod_exit", name.to_string(), "the played pods restart nothing (restartPolicy Never, where compose says restart): podman kube play 4.3.1 creates every pod with exit policy `stop`, so when a pod's only container exits (killed, or stopped by the restart a failing liveness probe asks for under Always) its infra container stops too and the restart fails (seen here: `cannot get namespace path unless container ... is running`), leaving the service down for good after any transient failure; under Never a failing probe only marks the container unhealthy, as under compose. A container that dies stays down; a cluster's kubelet restarts it under the YAML's own policy");
        } else if restart_policy(run.restart.as_deref()) != "Never" {
            self.divergences.add("pod_exit", name.to_string(), "podman kube play 4.3.1 creates every pod with exit policy `stop`: when the pod's only container exits (killed, or stopped by the restart a failing liveness probe asks for), the pod's infra container stops with it and the restart fails (seen here: `cannot get namespace path unless container ... is running`), so the service stays down where compose's restart policy brings it back; a cluster's kubelet restarts it");
        }
        let mut annotations = BTreeMap::new();
        let mut sc = SecurityContext {
            read_only_root_filesystem: run.read_only,
            privileged: run.privileged.filter(|p| *p),
            ..Default::default()
        };
        for d in &run.devices {
            self.divergences.add("devices", format!("{name} ({})", self.interp(d)), "not in the YAML: a pod gets a host device only as a privileged hostPath (a device plugin on a cluster); podman kube play 4.3.1 turns a hostPath of type CharDevice into a device, which the play target must add");
        }
        for opt in &run.security_opt {
            let opt = self.interp(opt);
            let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
            match key {
                "no-new-privileges" => sc.allow_privilege_escalation = Some(value != "true"),
                "seccomp" if value == "unconfined" => {
                    sc.seccomp_profile = Some(SeccompProfile {
                        kind: "Unconfined",
                        localhost_profile: None,
                    });
                    annotations.insert(format!("{SECCOMP_ANNOTATION_PREFIX}{label}"), "unconfined".to_string());
                }
                "seccomp" => {
                    let file = Path::new(value)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.divergences.add("seccomp", format!("{name} ({value} -> {file})"), "a Localhost profile is a file name under the kubelet's seccomp root (/var/lib/kubelet/seccomp) on every node, or under `podman kube play --seccomp-profile-root DIR`; podman 4.3.1 reads it only from the deprecated container.seccomp.security.alpha.kubernetes.io annotation, which the YAML carries beside the field");
                    sc.seccomp_profile = Some(SeccompProfile {
                        kind: "Localhost",
                        localhost_profile: Some(file.clone()),
                    });
                    annotations.insert(
                        format!("{SECCOMP_ANNOTATION_PREFIX}{label}"),
                        format!("localhost/{file}"),
                    );
                }
                _ => {}
            }
        }
        if !run.cap_add.is_empty() || !run.cap_drop.is_empty() {
            sc.capabilities = Some(Capabilities {
                add: run.cap_add.clone(),
                drop: run.cap_drop.clone(),
            });
        }
        if let Some(user) = &run.user {
            let user = self.interp(user);
            let (u, g) = user
                .split_once(':')
                .map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
            match (u.parse::<i64>(), g.map(str::parse::<i64>)) {
                (Ok(uid), None) => sc.run_as_user = Some(uid),
                (Ok(uid), Some(Ok(gid))) => {
                    sc.run_as_user = Some(uid);
                    sc.run_as_group = Some(gid);
                }
                _ => self.divergences.add(
                    "user",
                    format!("{name} ({user})"),
                    "runAsUser and runAsGroup are numeric: give compose `user: UID:GID`, or the image's USER applies",
                ),
            }
        }
        let security_context = (sc != SecurityContext::default()).then_some(sc);
        let (liveness_probe, readiness_probe) = match run
            .healthcheck
            .as_ref()
            .filter(|h| !h.disable && !h.test.is_empty())
        {
            None => (None, None),
            Some(h) => {
                let command = match h.test.first().map(String::as_str) {
                    Some("CMD") => h.test[1..].to_vec(),
                    Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
                    _ => h.test.clone(),
                };
                let secs = |d: &Option<String>| -> Result<Option<u32>> {
                    d.as_deref()
                        .map(|d| {
                            duration_seconds(d).ok_or_else(|| {
                                HarnessError::compose(
                                    &self.file.path,
                                    format!("service '{name}': healthcheck duration '{d}' is not a duration"),
                                )
                            })
                        })
                        .transpose()
                };
                let probe = Probe {
                    exec: ExecAction { command },
                    initial_delay_seconds: None,
                    period_seconds: secs(&h.interval)?,
                    timeout_seconds: secs(&h.timeout)?,
                    failure_threshold: h.retries,
                };
                if probe.exec.command.iter().any(|a| a.contains(char::is_whitespace)) {
                    self.divergences.add("shell_probe", name.to_string(), "podman kube play 4.3.1 joins a probe's arguments with spaces and runs the result through /bin/sh -c, so an argument with spaces (a CMD-SHELL script) is split apart and the healthcheck fails under podman; a cluster runs it as written");
                }
                self.divergences.add("healthcheck", name.to_string(), "podman kube play 4.3.1 turns only the liveness probe into the container's healthcheck (through /bin/sh -c, arguments joined by spaces, whole seconds) and restarts the container when it fails, where compose only marks it unhealthy; start_period becomes initialDelaySeconds, which a cluster waits out instead of ignoring failures; the readiness probe only matters to a cluster's Service");
                let liveness = Probe {
                    initial_delay_seconds: secs(&h.start_period)?,
                    ..probe.clone()
                };
                (Some(liveness), Some(probe))
            }
        };
        Ok((
            Container {
                name: label.to_string(),
                image,
                image_pull_policy: "IfNotPresent",
                command: run
                    .entrypoint
                    .as_ref()
                    .map(|a| a.iter().map(|x| self.interp(x)).collect()),
                args: run.command.as_ref().map(|a| a.iter().map(|x| self.interp(x)).collect()),
                working_dir: run.working_dir.as_ref().map(|w| self.interp(w)),
                env,
                ports,
                volume_mounts,
                resources,
                security_context,
                liveness_probe,
                readiness_probe,
            },
            volumes,
            annotations,
        ))
    }

    /// `env_file:` values (as secret references) overridden by `environment:` (plain values, or
    /// references when the name looks secret), as compose orders them.
    fn environment(&mut self, name: &str, svc: &ComposeService) -> Result<Vec<EnvVar>> {
        let mut vars: BTreeMap<String, EnvVar> = BTreeMap::new();
        for raw in &svc.run.env_files {
            let rel = self.interp(raw);
            let path = crate::compose::file::normalize(&self.file.dir().join(&rel));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                HarnessError::compose(
                    &self.file.path,
                    format!("service '{name}': env file {} cannot be read: {e}", path.display()),
                )
            })?;
            let keys: Vec<String> = crate::envfile::parse(&text)
                .into_iter()
                .map(|a| a.name.to_string())
                .collect();
            let stem = Path::new(&rel)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let secret = dns_label(&format!("{}-env-{stem}", self.project));
            if let Some(existing) = self.secrets.iter_mut().find(|s| s.name == secret) {
                if existing.source != path {
                    return Err(HarnessError::compose(
                        &self.file.path,
                        format!(
                            "env files {} and {} would both become Secret {secret}",
                            existing.source.display(),
                            path.display()
                        ),
                    )
                    .with_hint("give the env files different names"));
                }
            } else {
                self.secrets.push(SecretRef {
                    name: secret.clone(),
                    source: path.clone(),
                    keys: keys.clone(),
                });
            }
            self.divergences.add("secrets", format!("{} -> Secret {secret}", path.display()), "the YAML holds no value of an env file, only secretKeyRefs: create the Secret from the file first (kubectl create secret generic NAME --from-env-file=FILE; podman 4.3.1: podman secret create NAME with a JSON map of base64 values, since a Secret document played by 4.3.1 is stored as YAML, which its secretKeyRef cannot read)");
            for key in keys {
                vars.insert(
                    key.clone(),
                    EnvVar {
                        name: key.clone(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            secret_key_ref: SecretKeySelector {
                                name: secret.clone(),
                                key,
                            },
                        }),
                    },
                );
            }
        }
        for (key, value) in &svc.run.environment {
            let value = match value {
                Some(v) => self.interp(v),
                None => match (self.lookup)(key) {
                    Some(v) => {
                        self.divergences.add("environment_from_host", format!("{name} ({key})"), "compose reads a bare variable from the environment it runs in; the YAML carries the value it had when generated");
                        v
                    }
                    None => continue,
                },
            };
            if is_secret_name(key) {
                return Err(HarnessError::compose(&self.file.path, format!("service '{name}': environment variable {key} looks like a secret and would be written into the YAML in clear"))
                    .with_hint("move it to an env_file: its values become a Secret reference"));
            }
            vars.insert(
                key.clone(),
                EnvVar {
                    name: key.clone(),
                    value: Some(value),
                    value_from: None,
                },
            );
        }
        Ok(vars.into_values().collect())
    }

    fn ports(&mut self, name: &str, svc: &ComposeService) -> Result<Vec<ContainerPort>> {
        let mut out: Vec<ContainerPort> = Vec::new();
        for raw in &svc.ports {
            let entry = self.interp(raw);
            let p = parse_port(&entry).ok_or_else(|| {
                HarnessError::compose(
                    &self.file.path,
                    format!(
                        "service '{name}': port '{raw}' (here '{entry}') cannot be expressed as one container port"
                    ),
                )
            })?;
            if p.host_port.is_some() {
                self.divergences.add("ports", format!("{name} ({entry})"), "podman publishes hostPort on hostIP as compose does; on a cluster hostPort binds on whichever node runs the pod: a NodePort or LoadBalancer Service, or an Ingress, is the usual way in");
            }
            if !out
                .iter()
                .any(|o| o.container_port == p.container_port && o.protocol == p.protocol)
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn mounts(
        &mut self,
        name: &str,
        svc: &ComposeService,
        used: &mut BTreeSet<String>,
    ) -> Result<(Vec<VolumeMount>, Vec<Volume>)> {
        let (mut mounts, mut volumes) = (Vec::new(), Vec::new());
        let add =
            |vol: Volume, target: &str, read_only: bool, mounts: &mut Vec<VolumeMount>, volumes: &mut Vec<Volume>| {
                mounts.push(VolumeMount {
                    name: vol.name.clone(),
                    mount_path: target.to_string(),
                    read_only,
                });
                volumes.push(vol);
            };
        let none = Volume {
            name: String::new(),
            persistent_volume_claim: None,
            empty_dir: None,
            host_path: None,
        };
        for (i, m) in svc.mounts.iter().enumerate() {
            let vol_name = format!("v{i}-{}", dns_label(&m.target))
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_string();
            match m.kind(self.lookup) {
                MountKind::Named(v) => {
                    used.insert(v.clone());
                    add(
                        Volume {
                            name: vol_name,
                            persistent_volume_claim: Some(ClaimSource {
                                claim_name: self.claim_name(&v),
                            }),
                            ..none.clone()
                        },
                        &m.target,
                        m.read_only,
                        &mut mounts,
                        &mut volumes,
                    );
                }
                MountKind::Bind(src) => {
                    let src = expand_home(&src);
                    let path = if Path::new(&src).is_absolute() {
                        PathBuf::from(&src)
                    } else {
                        crate::compose::file::normalize(&self.file.dir().join(&src))
                    };
                    let kind = if path.is_file() {
                        "File"
                    } else if path.is_dir() {
                        "Directory"
                    } else {
                        "DirectoryOrCreate"
                    };
                    self.divergences.add("bind", format!("{name} ({})", path.display()), "hostPath names a path on the host that runs the pod: every node (or the podman host) must hold the same file there; a ConfigMap carries small read-only files portably");
                    add(
                        Volume {
                            name: vol_name,
                            host_path: Some(HostPath {
                                path: path.display().to_string(),
                                kind,
                            }),
                            ..none.clone()
                        },
                        &m.target,
                        m.read_only,
                        &mut mounts,
                        &mut volumes,
                    );
                }
                MountKind::Anonymous => {
                    self.divergences.add(
                        "anonymous",
                        format!("{name} ({})", m.target),
                        "an emptyDir lives and dies with the pod, as an anonymous volume with its container",
                    );
                    add(
                        Volume {
                            name: self.empty_dir_name(name, &vol_name),
                            empty_dir: Some(EmptyDir::default()),
                            ..none.clone()
                        },
                        &m.target,
                        m.read_only,
                        &mut mounts,
                        &mut volumes,
                    );
                }
                MountKind::Tmpfs => {
                    self.divergences
                        .add("tmpfs", format!("{name} ({})", m.target), TMPFS_REASON);
                    add(
                        Volume {
                            name: self.empty_dir_name(name, &vol_name),
                            empty_dir: Some(EmptyDir {
                                medium: Some("Memory"),
                                size_limit: None,
                            }),
                            ..none.clone()
                        },
                        &m.target,
                        m.read_only,
                        &mut mounts,
                        &mut volumes,
                    );
                }
                MountKind::Other(t) => {
                    return Err(HarnessError::compose(
                        &self.file.path,
                        format!("service '{name}': a `{t}` mount has no Kubernetes equivalent"),
                    ));
                }
            }
        }
        for (j, entry) in svc.run.tmpfs.iter().enumerate() {
            let entry = self.interp(entry);
            let (target, options) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
            let size = options
                .split(',')
                .find_map(|o| o.strip_prefix("size="))
                .map(|s| {
                    memory_quantity(s).ok_or_else(|| {
                        HarnessError::compose(
                            &self.file.path,
                            format!("service '{name}': tmpfs size '{s}' is not a size"),
                        )
                    })
                })
                .transpose()?;
            self.divergences.add("tmpfs", format!("{name} ({entry})"), TMPFS_REASON);
            let vol_name = format!("tmpfs{j}-{}", dns_label(target))
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_string();
            add(
                Volume {
                    name: self.empty_dir_name(name, &vol_name),
                    empty_dir: Some(EmptyDir {
                        medium: Some("Memory"),
                        size_limit: size,
                    }),
                    ..none.clone()
                },
                target,
                false,
                &mut mounts,
                &mut volumes,
            );
        }
        Ok((mounts, volumes))
    }

    fn policy(
        &self,
        label: &str,
        svc: &ComposeService,
        container: &Container,
        selector: BTreeMap<String, String>,
    ) -> Object {
        let mut ingress = vec![IngressRule {
            from: svc
                .networks
                .keys()
                .map(|n| PolicyPeer {
                    pod_selector: LabelSelector {
                        match_labels: BTreeMap::from([(
                            format!("{NETWORK_LABEL_PREFIX}{}", dns_label(n)),
                            "true".to_string(),
                        )]),
                    },
                })
                .collect(),
            ports: Vec::new(),
        }];
        let published: Vec<PolicyPort> = container
            .ports
            .iter()
            .filter(|p| p.host_port.is_some())
            .map(|p| PolicyPort {
                port: p.container_port,
                protocol: p.protocol,
            })
            .collect();
        if !published.is_empty() {
            ingress.push(IngressRule {
                from: Vec::new(),
                ports: published,
            });
        }
        Object::NetworkPolicy(NetworkPolicy {
            api_version: "networking.k8s.io/v1",
            kind: "NetworkPolicy",
            metadata: ObjectMeta {
                name: format!("{}-ingress", label.chars().take(55).collect::<String>()),
                labels: BTreeMap::from([(PROJECT_LABEL.to_string(), self.project.clone())]),
                annotations: BTreeMap::new(),
            },
            spec: NetworkPolicySpec {
                pod_selector: LabelSelector { match_labels: selector },
                policy_types: vec!["Ingress"],
                ingress,
            },
        })
    }
}

const TMPFS_REASON: &str = "an emptyDir has no mode (compose's mode=1777 is lost; a cluster makes it world-writable) and podman kube play 4.3.1 makes it an anonymous volume on disk, ignoring medium Memory and sizeLimit, named after the pod volume host-wide (so the generator gives each service its own name, or two pods would share one `tmp` volume)";

/// Services in an order where each comes after what it depends on (names break ties).
fn start_order(file: &ComposeFile) -> Result<Vec<String>> {
    let mut done: Vec<String> = Vec::new();
    let mut left: BTreeSet<&String> = file.services.keys().collect();
    while !left.is_empty() {
        let ready: Vec<&String> = left
            .iter()
            .copied()
            .filter(|n| {
                file.services[*n]
                    .depends_on
                    .iter()
                    .all(|d| done.contains(d) || !file.services.contains_key(d))
            })
            .collect();
        if ready.is_empty() {
            return Err(HarnessError::compose(
                &file.path,
                format!(
                    "depends_on forms a cycle among {}",
                    left.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for n in ready {
            left.remove(n);
            done.push(n.clone());
        }
    }
    Ok(done)
}

/// Services other services reach by name: named in their `depends_on`, or as a host in an
/// environment value (`PGHOST: db`, `http://gap-detector:5000`), with who reaches them.
fn reached_by_name(file: &ComposeFile, lookup: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, svc) in &file.services {
        for d in &svc.depends_on {
            by.entry(d.clone()).or_default().insert(name.clone());
        }
        for value in svc.run.environment.values().flatten() {
            let value = interpolate(value, lookup);
            for token in value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')) {
                if token != name && file.services.contains_key(token) {
                    by.entry(token.to_string()).or_default().insert(name.clone());
                }
            }
        }
    }
    by.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(", ")))
        .collect()
}

fn restart_policy(restart: Option<&str>) -> &'static str {
    match restart {
        Some("no") | None => "Never",
        Some(r) if r.starts_with("on-failure") => "OnFailure",
        _ => "Always",
    }
}

/// A compose port entry (interpolated) as one container port. `None` for ranges. Pure.
pub fn parse_port(entry: &str) -> Option<ContainerPort> {
    let (spec, protocol) = match entry.rsplit_once('/') {
        Some((s, "udp")) => (s, "UDP"),
        Some((s, "tcp")) => (s, "TCP"),
        Some(_) => return None,
        None => (entry, "TCP"),
    };
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = match spec.strip_prefix('[') {
        Some(r) => {
            let (ip, rest) = r.split_once("]:")?;
            (Some(ip.to_string()), rest.to_string())
        }
        None => (None, spec.to_string()),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (None, [h, c]) => (None, Some(*h), *c),
        (None, [ip, h, c]) => (Some(ip.to_string()), Some(*h), *c),
        (Some(ip), [h, c]) => (Some(ip), Some(*h), *c),
        _ => return None,
    };
    let container_port: u16 = container.parse().ok()?;
    let host_port = match host {
        None | Some("") => None,
        Some(h) => Some(h.parse::<u16>().ok()?),
    };
    Some(ContainerPort {
        name: format!("{}{container_port}", if protocol == "UDP" { "u" } else { "p" }),
        container_port,
        // A host address without a host port publishes on a random port: not expressible.
        host_port,
        host_ip: ip.filter(|i| !i.is_empty() && host_port.is_some()),
        protocol,
    })
}

/// A compose size (`256m`, `1g`, `16m`, a number of bytes) as a Kubernetes quantity (`256Mi`).
/// Compose sizes are binary. Pure.
pub fn memory_quantity(size: &str) -> Option<String> {
    let s = size.trim().to_ascii_lowercase();
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = s[digits.len()..].trim_end_matches('b');
    Some(match unit {
        "" => n.to_string(),
        "k" => format!("{n}Ki"),
        "m" => format!("{n}Mi"),
        "g" => format!("{n}Gi"),
        "t" => format!("{n}Ti"),
        _ => return None,
    })
}

/// A compose duration (`3s`, `1m30s`, `500ms`, `1h`) in whole seconds, rounded up (a probe's
/// fields are whole seconds, at least 1). Pure.
pub fn duration_seconds(d: &str) -> Option<u32> {
    let mut total_ms: u64 = 0;
    let mut rest = d.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let value: f64 = digits.parse().ok()?;
        rest = &rest[digits.len()..];
        let unit: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        rest = &rest[unit.len()..];
        let ms = match unit.as_str() {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" => 0.001,
            _ => return None,
        };
        total_ms += (value * ms) as u64;
    }
    Some(total_ms.div_ceil(1000).max(1) as u32)
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

#[cfg(test)]
mod tests;
