//! The Kubernetes objects the generator writes, as typed structs serialised with serde: only the
//! fields it sets, named as the API names them (camelCase), so a typo is a compile error and the
//! schema check sees exactly what `podman kube play` and a cluster would read.

use std::collections::BTreeMap;

use serde::Serialize;

/// One document of the generated YAML.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// A bare pod: a service other pods reach by name (see [`super::WorkloadKind`]).
    Pod(Pod),
    /// A deployment of one replica.
    Deployment(Deployment),
    /// A headless service: the compose service's DNS name on a cluster.
    Service(Service),
    /// A claim per named volume.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// Ingress rules reproducing compose's network isolation on a cluster.
    NetworkPolicy(NetworkPolicy),
}

impl Object {
    /// `Kind/name`, as `kubectl` names objects.
    pub fn id(&self) -> String {
        let (kind, meta) = match self {
            Object::Pod(o) => (o.kind, &o.metadata),
            Object::Deployment(o) => (o.kind, &o.metadata),
            Object::Service(o) => (o.kind, &o.metadata),
            Object::PersistentVolumeClaim(o) => (o.kind, &o.metadata),
            Object::NetworkPolicy(o) => (o.kind, &o.metadata),
        };
        format!("{kind}/{}", meta.name)
    }

    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(o) => o.kind,
            Object::Deployment(o) => o.kind,
            Object::Service(o) => o.kind,
            Object::PersistentVolumeClaim(o) => o.kind,
            Object::NetworkPolicy(o) => o.kind,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `metadata:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ObjectMeta {
    /// The object's name (a DNS-1123 label for pods and services); empty in a pod template.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `kind: Pod`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// `v1`.
    pub api_version: &'static str,
    /// `Pod`.
    pub kind: &'static str,
    /// Name, labels, annotations.
    pub metadata: ObjectMeta,
    /// The containers and volumes.
    pub spec: PodSpec,
}

/// `kind: Deployment` (apps/v1).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `apps/v1`.
    pub api_version: &'static str,
    /// `Deployment`.
    pub kind: &'static str,
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// Replicas, selector, pod template.
    pub spec: DeploymentSpec,
}

/// A deployment's `spec:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Always 1: compose runs one container per service.
    pub replicas: u32,
    /// Selects the template's pods.
    pub selector: LabelSelector,
    /// `Recreate`: a claim mounted ReadWriteOnce cannot be shared by an old and a new pod.
    pub strategy: DeploymentStrategy,
    /// The pod.
    pub template: PodTemplate,
}

/// A deployment's `strategy:`.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStrategy {
    /// `Recreate` or `RollingUpdate`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `template:` of a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct PodTemplate {
    /// Labels and annotations of the pod (Podman 4.3 reads seccomp annotations from here).
    pub metadata: ObjectMeta,
    /// The pod.
    pub spec: PodSpec,
}

/// `matchLabels` selector.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels a pod must carry.
    pub match_labels: BTreeMap<String, String>,
}

/// A pod's `spec:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// `Always`, `OnFailure` or `Never`, from compose's `restart:`.
    pub restart_policy: &'static str,
    /// One container: the compose service.
    pub containers: Vec<Container>,
    /// Claims, emptyDirs and host paths the container mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

/// One container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The compose service's name.
    pub name: String,
    /// The image reference (pinned by the caller's image map, else compose's `image:`).
    pub image: String,
    /// `IfNotPresent`: locally built images are used as they are.
    pub image_pull_policy: &'static str,
    /// From compose's `entrypoint:` (replaces the image's entrypoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// From compose's `command:` (replaces the image's command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// From compose's `working_dir:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment: plain values and references to secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Container ports, with host port and address when compose publishes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Mounts of the pod's volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Posture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// From compose's healthcheck (Podman 4.3 turns it into the container's healthcheck).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// The same check, deciding whether the pod serves (a cluster's Service endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// A value written in the YAML (never a secret's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// `valueFrom:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret.
    pub secret_key_ref: SecretKeySelector,
}

/// `secretKeyRef:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretKeySelector {
    /// The Secret's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// A port name (`p5432`), used by the Service.
    pub name: String,
    /// The port inside the container.
    pub container_port: u16,
    /// The published host port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The host address it is published on.
    #[serde(skip_serializing_if = "Option::is_none", rename = "hostIP")]
    pub host_ip: Option<String>,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}

/// One mount.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The pod volume's name.
    pub name: String,
    /// The path in the container.
    pub mount_path: String,
    /// Mounted read-only.
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// One pod volume: exactly one source is set.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its name in the pod.
    pub name: String,
    /// A named volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimSource>,
    /// A tmpfs (medium Memory) or an anonymous volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
    /// A bind mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPath>,
}

/// `persistentVolumeClaim:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSource {
    /// The claim.
    pub claim_name: String,
}

/// `emptyDir:`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// `Memory` for a tmpfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<&'static str>,
    /// The tmpfs size (`16Mi`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// `hostPath:`.
#[derive(Debug, Clone, Serialize)]
pub struct HostPath {
    /// Absolute path on the host.
    pub path: String,
    /// `File`, `Directory` or `DirectoryOrCreate`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `resources:`.
#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    /// `memory: 256Mi`.
    pub limits: BTreeMap<String, String>,
}

/// A container's `securityContext:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// From `read_only:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// From `privileged: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// `false` from `no-new-privileges:true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// From `cap_add:` / `cap_drop:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// From a numeric `user:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// From a numeric `user:` group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// From `seccomp=...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// `capabilities:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Dropped (`ALL`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// `seccompProfile:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    /// `Localhost`, `RuntimeDefault` or `Unconfined`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The profile's path relative to the kubelet's seccomp root (Localhost only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// An exec probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The command.
    pub exec: ExecAction,
    /// From `start_period` (liveness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    /// From `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// From `timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// From `retries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

/// `exec:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecAction {
    /// argv.
    pub command: Vec<String>,
}

/// `kind: Service`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `v1`.
    pub api_version: &'static str,
    /// `Service`.
    pub kind: &'static str,
    /// The compose service's name.
    pub metadata: ObjectMeta,
    /// Headless, selecting the service's pod.
    pub spec: ServiceSpec,
}

/// A service's `spec:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `None`: headless, the name resolves to the pod's address, as compose's DNS does.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: &'static str,
    /// The pod's labels.
    pub selector: BTreeMap<String, String>,
    /// The container's ports (none when compose names none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
}

/// One service port.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Same as the container port's name.
    pub name: String,
    /// The port.
    pub port: u16,
    /// The container port.
    pub target_port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}

/// `kind: PersistentVolumeClaim`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaim {
    /// `v1`.
    pub api_version: &'static str,
    /// `PersistentVolumeClaim`.
    pub kind: &'static str,
    /// The claim's name (Podman names the volume it creates after it).
    pub metadata: ObjectMeta,
    /// Access mode and size.
    pub spec: ClaimSpec,
}

/// A claim's `spec:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSpec {
    /// `ReadWriteOnce`.
    pub access_modes: Vec<&'static str>,
    /// `requests: {storage: 1Gi}`.
    pub resources: ClaimResources,
}

/// A claim's `resources:`.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimResources {
    /// `storage:`.
    pub requests: BTreeMap<String, String>,
}

/// `kind: NetworkPolicy` (networking.k8s.io/v1).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// `networking.k8s.io/v1`.
    pub api_version: &'static str,
    /// `NetworkPolicy`.
    pub kind: &'static str,
    /// `<service>-ingress`.
    pub metadata: ObjectMeta,
    /// Who may connect to the service's pod.
    pub spec: NetworkPolicySpec,
}

/// A network policy's `spec:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// The service's pod.
    pub pod_selector: LabelSelector,
    /// `Ingress`.
    pub policy_types: Vec<&'static str>,
    /// Pods of a shared compose network; anyone on a published port.
    pub ingress: Vec<IngressRule>,
}

/// One ingress rule.
#[derive(Debug, Clone, Serialize)]
pub struct IngressRule {
    /// Allowed peers (none: anyone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<PolicyPeer>,
    /// Allowed ports (none: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

/// A peer selected by its pod labels.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPeer {
    /// Pods on one compose network.
    pub pod_selector: LabelSelector,
}

/// A port of a rule.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyPort {
    /// The container port.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}
