use std::path::Path;

use rstest::rstest;

use super::*;
use crate::stack::ComposeSet;

fn bundled() -> ComposeFile {
    ComposeSet::load_with_profiles(&[crate::workspace::bundled_compose_file()], vec![])
        .unwrap()
        .merged()
}

/// Compose's defaults: nothing set in the environment.
fn defaults(_: &str) -> Option<String> {
    None
}

fn generate_bundled() -> KubeStack {
    generate(&bundled(), &KubeOptions::new("phoenix"), &defaults).unwrap()
}

fn pod_spec<'a>(stack: &'a KubeStack, service: &str) -> &'a PodSpec {
    stack
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Pod(p) if p.metadata.name == service => Some(&p.spec),
            Object::Deployment(d) if d.metadata.name == service => Some(&d.spec.template.spec),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no workload {service}"))
}

fn ids(stack: &KubeStack, kind: &str) -> Vec<String> {
    stack
        .objects
        .iter()
        .filter(|o| o.kind() == kind)
        .map(|o| o.id())
        .collect()
}

#[test]
fn the_bundled_stack_gives_claims_services_policies_and_workloads() {
    let stack = generate_bundled();
    assert_eq!(
        ids(&stack, "PersistentVolumeClaim"),
        [
            "PersistentVolumeClaim/phoenix-db-data",
            "PersistentVolumeClaim/phoenix-model-cache"
        ]
    );
    assert_eq!(ids(&stack, "Service").len(), 7);
    assert_eq!(ids(&stack, "NetworkPolicy").len(), 7);
    // Reached by name (depends_on or a host in an environment value): bare pods, so that the
    // name resolves under podman kube play; the others are deployments.
    assert_eq!(
        ids(&stack, "Pod"),
        [
            "Pod/db",
            "Pod/model-service",
            "Pod/gap-detector",
            "Pod/recurrent-processor",
            "Pod/analysis-engine"
        ]
    );
    assert_eq!(
        ids(&stack, "Deployment"),
        ["Deployment/rubik-agent", "Deployment/nginx"]
    );
    // Claims, services and policies come before the workloads, which follow depends_on.
    let kinds: Vec<&str> = stack.objects.iter().map(Object::kind).collect();
    let first_workload = kinds.iter().position(|k| *k == "Pod").unwrap();
    assert!(kinds[first_workload..]
        .iter()
        .all(|k| *k == "Pod" || *k == "Deployment"));
    let pos = |id: &str| stack.objects.iter().position(|o| o.id() == id).unwrap();
    assert!(pos("Pod/db") < pos("Pod/gap-detector"));
    assert!(pos("Pod/recurrent-processor") < pos("Pod/analysis-engine"));
    assert!(pos("Pod/analysis-engine") < pos("Deployment/nginx"));
    let yaml = stack.to_yaml();
    assert_eq!(yaml.matches("\n---\n").count(), 2 + 7 + 7 + 7);
}

#[test]
fn posture_limits_probes_and_mounts_of_db() {
    let stack = generate_bundled();
    let Some(Object::Pod(db)) = stack.object("Pod/db") else {
        panic!("db is a pod")
    };
    assert_eq!(
        db.metadata.annotations[&format!("{SECCOMP_ANNOTATION_PREFIX}db")],
        "localhost/phoenix.json"
    );
    assert_eq!(db.spec.restart_policy, "Always");
    let c = &db.spec.containers[0];
    assert_eq!(c.image, "localhost/phoenix/db:dev");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop, ["ALL"]);
    assert_eq!(
        sc.seccomp_profile,
        Some(SeccompProfile {
            kind: "Localhost",
            localhost_profile: Some("phoenix.json".into())
        })
    );
    assert_eq!(sc.run_as_user, None, "compose names no user: the image's applies");
    assert_eq!(c.resources.as_ref().unwrap().limits["memory"], "256Mi");
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(live.exec.command, ["/usr/local/bin/phoenix-db-healthcheck"]);
    assert_eq!(
        (
            live.period_seconds,
            live.timeout_seconds,
            live.failure_threshold,
            live.initial_delay_seconds
        ),
        (Some(3), Some(4), Some(5), Some(30))
    );
    assert_eq!(c.readiness_probe.as_ref().unwrap().initial_delay_seconds, None);
    assert_eq!(
        c.ports,
        [ContainerPort {
            name: "p5432".into(),
            container_port: 5432,
            host_port: Some(15432),
            host_ip: Some("127.0.0.1".into()),
            protocol: "TCP"
        }]
    );
    let mount = |path: &str| c.volume_mounts.iter().find(|m| m.mount_path == path).unwrap();
    let volume = |name: &str| db.spec.volumes.iter().find(|v| v.name == name).unwrap();
    let data = volume(&mount("/var/lib/postgresql/data").name);
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().claim_name,
        "phoenix-db-data"
    );
    let schema = mount("/etc/phoenix/db/schema.sql");
    assert!(schema.read_only);
    let host = volume(&schema.name).host_path.as_ref().unwrap();
    assert_eq!(
        Path::new(&host.path),
        crate::workspace::root().join("fixtures/db/schema.sql")
    );
    assert_eq!(host.kind, "File");
    let tmp = volume(&mount("/tmp").name).empty_dir.as_ref().unwrap();
    assert_eq!((tmp.medium, tmp.size_limit.as_deref()), (Some("Memory"), Some("16Mi")));
}

#[test]
fn env_file_values_are_secret_references_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("prod.env");
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    std::fs::write(
        &env_file,
        format!("POSTGRES_PASSWORD={password}\nOTHER=\"{password}x\"\n"),
    )
    .unwrap();
    let file = env_file.display().to_string();
    let lookup = move |name: &str| (name == "PHOENIX_ENV_FILE").then(|| file.clone());
    let stack = generate(&bundled(), &KubeOptions::new("phoenix"), &lookup).unwrap();
    let yaml = stack.to_yaml();
    assert!(!yaml.contains(&password), "a secret value is in the YAML:\n{yaml}");
    assert!(!generate_bundled().to_yaml().contains("phoenix-dev-password"));
    assert_eq!(
        stack.secrets,
        [SecretRef {
            name: "phoenix-env-prod".into(),
            source: env_file.clone(),
            keys: vec!["POSTGRES_PASSWORD".into(), "OTHER".into()],
        }]
    );
    for service in ["db", "gap-detector", "rubik-agent"] {
        let env = &pod_spec(&stack, service).containers[0].env;
        let pw = env.iter().find(|e| e.name == "POSTGRES_PASSWORD").unwrap();
        assert_eq!(pw.value, None);
        assert_eq!(
            pw.value_from.as_ref().unwrap().secret_key_ref,
            SecretKeySelector {
                name: "phoenix-env-prod".into(),
                key: "POSTGRES_PASSWORD".into()
            }
        );
    }
    // Plain environment stays plain; model-service has no env file and so no reference.
    let gap = &pod_spec(&stack, "gap-detector").containers[0].env;
    assert!(gap
        .iter()
        .any(|e| e.name == "PGHOST" && e.value.as_deref() == Some("db")));
    assert!(pod_spec(&stack, "model-service").containers[0]
        .env
        .iter()
        .all(|e| e.value_from.is_none()));
}

#[test]
fn a_secret_in_plain_environment_is_refused_rather_than_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.yml");
    std::fs::write(&c, "services:\n  a: {image: x, environment: {API_TOKEN: abc}}\n").unwrap();
    let file = ComposeSet::load_with_profiles(&[c], vec![]).unwrap().merged();
    let err = generate(&file, &KubeOptions::new("p"), &defaults).unwrap_err();
    assert!(err.to_string().contains("API_TOKEN looks like a secret"), "{err}");
    assert_eq!(err.exit_code(), crate::error::exit::USAGE);
}

#[test]
fn the_image_map_pins_references() {
    let mut opts = KubeOptions::new("phoenix");
    opts.images
        .insert("nginx".into(), "localhost/phoenix/nginx:h-abc".into());
    let stack = generate(&bundled(), &opts, &defaults).unwrap();
    assert_eq!(
        pod_spec(&stack, "nginx").containers[0].image,
        "localhost/phoenix/nginx:h-abc"
    );
    assert_eq!(pod_spec(&stack, "db").containers[0].image, "localhost/phoenix/db:dev");
}

#[test]
fn network_isolation_becomes_policies_by_network_label() {
    let stack = generate_bundled();
    let Some(Object::NetworkPolicy(db)) = stack.object("NetworkPolicy/db-ingress") else {
        panic!("no policy for db")
    };
    let peers: Vec<&BTreeMap<String, String>> = db.spec.ingress[0]
        .from
        .iter()
        .map(|p| &p.pod_selector.match_labels)
        .collect();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0][&format!("{NETWORK_LABEL_PREFIX}phoenix-data")], "true");
    assert_eq!(
        db.spec.ingress[1].ports[0].port, 5432,
        "the published port is open to anyone"
    );
    let Some(Object::Deployment(nginx)) = stack.object("Deployment/nginx") else {
        panic!("nginx")
    };
    let labels = &nginx.spec.template.metadata.labels;
    assert!(labels.contains_key(&format!("{NETWORK_LABEL_PREFIX}phoenix-net")));
    assert!(
        !labels.contains_key(&format!("{NETWORK_LABEL_PREFIX}phoenix-data")),
        "nginx is not on phoenix-data, so db's policy does not let it in"
    );
}

fn divergence_keys(stack: &KubeStack) -> Vec<String> {
    stack.divergences.iter().map(|d| d.what.clone()).collect()
}

#[test]
fn the_bundled_stack_reports_what_does_not_carry_over() {
    let stack = generate_bundled();
    let whats = divergence_keys(&stack);
    for intro in [
        "compose networks: phoenix-data, phoenix-net",
        "depends_on of",
        "healthchecks become exec probes for",
        "bare Pods (not Deployments) for: analysis-engine, db, gap-detector, model-service, recurrent-processor",
        "named volumes become PersistentVolumeClaims: db_data -> phoenix-db-data, model_cache -> phoenix-model-cache",
        "tmpfs mounts",
        "bind mounts become hostPath",
        "seccomp profiles",
        "pids_limit",
        "stop_signal has no equivalent for: db (SIGINT), nginx (SIGQUIT)",
        "published ports",
        "env file values become Secret references",
        "restart: unless-stopped",
        "locally built images",
    ] {
        assert!(
            whats.iter().any(|w| w.starts_with(intro)),
            "{intro} missing from {whats:#?}"
        );
    }
    for absent in [
        "probes with a shell script",
        "anonymous volumes",
        "user by name",
        "names changed",
        "variables taken",
    ] {
        assert!(!whats.iter().any(|w| w.starts_with(absent)), "{absent} in {whats:#?}");
    }
    assert!(stack.divergences.iter().all(|d| !d.reason.is_empty()));
}

/// Divergences come from the model: a stack without what they are about reports none of them.
#[test]
fn a_plain_stack_has_no_divergence_it_does_not_need() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.yml");
    std::fs::write(
        &c,
        "services:\n  web:\n    image: registry.example/web:1\n    restart: always\n    environment: {MODE: prod}\n  worker:\n    image: registry.example/worker:1\n    restart: always\n    environment: {WEB: 'http://web:80'}\n",
    )
    .unwrap();
    let file = ComposeSet::load_with_profiles(&[c], vec![]).unwrap().merged();
    let stack = generate(&file, &KubeOptions::new("plain"), &defaults).unwrap();
    let whats = divergence_keys(&stack);
    assert_eq!(
        whats,
        [
            "bare Pods (not Deployments) for: web",
            "a container that dies stays down under podman kube play 4.3.1 for: web, worker"
        ],
        "only web is reached by name (from worker's environment); both restart"
    );
    assert!(stack.secrets.is_empty());
    assert_eq!(ids(&stack, "Deployment"), ["Deployment/worker"]);
    assert!(ids(&stack, "PersistentVolumeClaim").is_empty());
}

#[test]
fn a_shell_healthcheck_and_a_command_are_carried_and_flagged() {
    let root = crate::workspace::root();
    let file = ComposeSet::load_with_profiles(&[root.join("fixtures/second-stack/compose.yml")], vec![])
        .unwrap()
        .merged();
    let stack = generate(&file, &KubeOptions::new("second"), &defaults).unwrap();
    let worker = &pod_spec(&stack, "worker").containers[0];
    assert_eq!(worker.args.as_ref().unwrap()[..3], ["python3", "-m", "http.server"]);
    let probe = worker.liveness_probe.as_ref().unwrap();
    assert_eq!(probe.exec.command[..2], ["/bin/sh", "-c"]);
    assert!(divergence_keys(&stack)
        .iter()
        .any(|w| w == "probes with a shell script break under podman 4.3.1 for: web, worker"));
    assert!(!divergence_keys(&stack).iter().any(|w| w.starts_with("depends_on")));
}

#[rstest]
#[case("127.0.0.1:15432:5432", Some((5432, Some(15432), Some("127.0.0.1"), "TCP")))]
#[case("8080:80", Some((80, Some(8080), None, "TCP")))]
#[case("53/udp", Some((53, None, None, "UDP")))]
#[case("[::1]:8080:80", Some((80, Some(8080), Some("::1"), "TCP")))]
#[case("127.0.0.1::80", Some((80, None, None, "TCP")))]
#[case("8000-8010:8000-8010", None)]
fn ports(#[case] entry: &str, #[case] want: Option<(u16, Option<u16>, Option<&str>, &str)>) {
    let got = parse_port(entry).map(|p| (p.container_port, p.host_port, p.host_ip, p.protocol));
    assert_eq!(got, want.map(|(c, h, i, p)| (c, h, i.map(String::from), p)));
}

#[rstest]
#[case("256m", Some("256Mi"))]
#[case("1g", Some("1Gi"))]
#[case("16M", Some("16Mi"))]
#[case("512kb", Some("512Ki"))]
#[case("1048576", Some("1048576"))]
#[case("lots", None)]
fn sizes(#[case] size: &str, #[case] want: Option<&str>) {
    assert_eq!(memory_quantity(size).as_deref(), want);
}

#[rstest]
#[case("3s", Some(3))]
#[case("1m30s", Some(90))]
#[case("500ms", Some(1))]
#[case("1.5s", Some(2))]
#[case("1h", Some(3600))]
#[case("soon", None)]
fn durations(#[case] d: &str, #[case] want: Option<u32>) {
    assert_eq!(duration_seconds(d), want);
}

#[rstest]
#[case("db_data", "db-data")]
#[case("Gap_Detector", "gap-detector")]
#[case("-x-", "x")]
fn dns_labels(#[case] name: &str, #[case] want: &str) {
    assert_eq!(dns_label(name), want);
}

/// Writes the bundled stack's YAML where `HYDRA_KUBE_DUMP` says (a look by hand).
#[test]
fn dump_when_asked() {
    if let Some(p) = std::env::var_os("HYDRA_KUBE_DUMP") {
        std::fs::write(p, generate_bundled().to_yaml()).unwrap();
    }
}

#[test]
fn every_service_gets_its_own_empty_dir_volume() {
    // podman kube play 4.3.1 names an emptyDir's volume after the pod volume, host-wide: db and
    // nginx both mount a tmpfs at /tmp, and must not end up sharing one volume.
    let stack = generate_bundled();
    let names: Vec<String> = stack
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Pod(p) => Some(p.spec.volumes.clone()),
            Object::Deployment(d) => Some(d.spec.template.spec.volumes.clone()),
            _ => None,
        })
        .flatten()
        .filter(|v| v.empty_dir.is_some())
        .map(|v| v.name)
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    assert!(names.iter().all(|n| n.len() <= 63 && dns_label(n) == *n), "{names:?}");
}

#[test]
fn the_played_variant_is_all_pods_never_restarted_with_labels_and_optionally_no_limits() {
    let mut opts = KubeOptions::new("hydra-podman-kube-1a2b3c4d");
    opts.extra_labels = BTreeMap::from([("io.hydra.run".to_string(), "1a2b3c4d".to_string())]);
    opts.service_label_keys = vec!["com.docker.compose.service".into()];
    opts.pods_only = true;
    opts.never_restart = true;
    opts.drop_limits = true;
    let stack = generate(&bundled(), &opts, &defaults).unwrap();
    assert!(ids(&stack, "Deployment").is_empty());
    for o in &stack.objects {
        match o {
            Object::Pod(p) => {
                assert_eq!(p.spec.restart_policy, "Never");
                assert_eq!(p.metadata.labels["io.hydra.run"], "1a2b3c4d");
                assert_eq!(p.metadata.labels["com.docker.compose.service"], p.metadata.name);
                assert!(
                    p.spec.containers.iter().all(|c| c.resources.is_none()),
                    "{}",
                    p.metadata.name
                );
            }
            Object::PersistentVolumeClaim(c) => assert_eq!(c.metadata.labels["io.hydra.run"], "1a2b3c4d"),
            _ => {}
        }
    }
    let kinds: Vec<&str> = stack.divergences.iter().map(|d| d.kind.as_str()).collect();
    for k in ["networks", "pod_exit", "limits", "pids_limit"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let pod_exit = stack.divergences.iter().find(|d| d.kind == "pod_exit").unwrap();
    assert!(pod_exit.reason.contains("restartPolicy Never"), "{}", pod_exit.reason);
}
