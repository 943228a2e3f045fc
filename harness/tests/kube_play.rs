//! The kube-play targets for real: `harness validate --runtime <target>` plays the bundled stack
//! as Kubernetes YAML with `podman kube play` and runs every check of the bundled spec.
//!
//! - `<target>::kube_play::spec_passes_and_names_each_divergence` (podman-kube,
//!   podman-rootless-kube): validate exits 0; in its JUnit no check failed, the isolation checks
//!   compose passes are skipped naming the `networks` divergence with what they observed, the
//!   other checks passed; the parity report lists the played YAML's divergences with their
//!   reasons; nothing of the run (pods, containers, networks, volumes, secrets) is left.
//!
//! A kube-play target is required when its engine's compose target is (`HYDRA_REQUIRE` names
//! `podman` / `podman-rootless`, as CI does); otherwise an unusable engine is an ignored trial
//! with the reason on stderr.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hydra::runtime::{parse_list, Runtime, RuntimeKind};
use hydra::session::Availability;
use libtest_mimic::{Arguments, Failed};

mod common;

fn main() {
    let args = Arguments::from_args();
    let trials = RuntimeKind::KUBE
        .into_iter()
        .map(|kind| {
            common::trial(
                format!("{}::kube_play::spec_passes_and_names_each_divergence", kind.ident()),
                &availability(kind),
                move || spec_passes(kind),
            )
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Usable, or why not: required when the target or its engine's compose target is required.
fn availability(kind: RuntimeKind) -> Availability {
    let listed = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| parse_list(&v).ok())
            .unwrap_or_default()
    };
    let required = listed("HYDRA_REQUIRE");
    let required = required.contains(&kind) || required.contains(&kind.compose_counterpart());
    match hydra::doctor::diagnose(kind).reason() {
        None => Availability::Use,
        Some(r) if required => Availability::Broken(r),
        Some(r) => Availability::Skip(r),
    }
}

fn spec_passes(kind: RuntimeKind) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["validate", "--runtime", kind.name(), "--report"])
        .arg(dir.path())
        .arg("--junit")
        .arg(&junit)
        .env_remove("HYDRA_RUNTIMES")
        .env_remove("HYDRA_REQUIRE")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(0) {
        return Err(format!(
            "validate --runtime {kind} exited {:?}:\n{}\n{}",
            out.status.code(),
            stdout,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        )
        .into());
    }
    let cases = junit_cases(&junit)?;
    let prefix = format!("{}::", kind.ident());
    let ours: BTreeMap<&String, &(String, String)> = cases.iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
    if ours.len() < 100 {
        return Err(format!("only {} testcases of {kind} in the JUnit file", ours.len()).into());
    }
    let failed: Vec<&&String> = ours
        .keys()
        .filter(|n| ours[**n].0 != "pass" && ours[**n].0 != "skipped")
        .collect();
    if !failed.is_empty() {
        return Err(format!("not passed nor skipped: {failed:?}").into());
    }
    // Isolation across compose networks is what the played YAML cannot keep: compose's
    // `nginx_cannot_resolve_db` must be a skip naming the divergence and what was seen.
    let isolation = format!("{prefix}dns::nginx_cannot_resolve_db");
    match ours.iter().find(|(n, _)| n.ends_with("dns::nginx_cannot_resolve_db")) {
        Some((_, (verdict, message)))
            if verdict == "skipped"
                && message.contains("diverges from compose (networks)")
                && message.contains("observed: nginx resolves db") => {}
        other => {
            return Err(format!("{isolation}: expected a skip naming the networks divergence, got {other:?}").into())
        }
    }
    // Everything else that holds under compose holds when played: resolution, health, data.
    for must_pass in [
        "dns::nginx_resolves_gap-detector",
        "persistence::down_up_keeps_data",
        "persistence::force_recreate_keeps_data",
        "health::",
    ] {
        let hits: Vec<_> = ours.iter().filter(|(n, _)| n.contains(must_pass)).collect();
        if hits.is_empty() || hits.iter().any(|(_, (v, _))| v != "pass") {
            return Err(format!("{must_pass}: expected passes, got {hits:?}").into());
        }
    }
    let parity = std::fs::read_to_string(dir.path().join("parity.json"))?;
    for key in ["kube_networks", "kube_pod_exit", "kube_pids_limit", "kube_bare_pod"] {
        if !parity.contains(&format!("\"{key}\"")) {
            return Err(format!("parity.json has no observation {key}").into());
        }
    }
    // The played YAML is in the report directory, with the run's labels, no value of the env
    // file, and (where the validator is installed) valid against the Kubernetes schemas.
    let played = dir.path().join(format!("kube/{}.played.yaml", kind.name()));
    let yaml = std::fs::read_to_string(&played).map_err(|e| format!("{}: {e}", played.display()))?;
    if !yaml.contains("kind: Pod") || !yaml.contains("io.hydra.run:") || !yaml.contains("restartPolicy: Never") {
        return Err(format!("{} is not the played stack:\n{yaml}", played.display()).into());
    }
    let env = std::fs::read_to_string(hydra::workspace::root().join("compose/phoenix.env"))?;
    for (name, value) in hydra::envfile::readings(&env) {
        if yaml.contains(&value) {
            return Err(format!("the value of {name} is in {}", played.display()).into());
        }
    }
    if hydra::kube::validate::validator().is_some() {
        let report = hydra::kube::validate::validate(&played)?;
        if !report.valid() {
            return Err(format!("{} fails the schemas: {:?}", played.display(), report.findings).into());
        }
    }
    let rt = Runtime::resolve(kind)?;
    let label = format!("io.hydra.runtime={}", kind.name());
    let left = common::objects_with(&rt, &label);
    if !left.is_empty() {
        return Err(format!("left behind with {label}: {left:?}").into());
    }
    Ok(())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Each testcase's `name` and its result (`pass`, `failure`, `error`, `skipped`) with the
/// result element's `message`, read with quick-xml as a CI consumer would.
fn junit_cases(path: &Path) -> Result<BTreeMap<String, (String, String)>, Failed> {
    use quick_xml::events::Event;
    let xml = std::fs::read_to_string(path).map_err(|e| format!("no JUnit file at {}: {e}", path.display()))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut cases = BTreeMap::new();
    let mut current: Option<String> = None;
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("{}: not XML: {e}", path.display()))?
        {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |key: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key)
                        .and_then(|a| {
                            a.decoded_and_normalized_value(quick_xml::XmlVersion::default(), reader.decoder())
                                .ok()
                                .map(|v| v.into_owned())
                        })
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    b"testcase" => {
                        // classname `<target>::<area>`, name `<area>::<check>`.
                        let classname = attr(b"classname");
                        let target = classname.split("::").next().unwrap_or_default().to_string();
                        let name = format!("{target}::{}", attr(b"name"));
                        cases.insert(name.clone(), ("pass".to_string(), String::new()));
                        current = Some(name);
                    }
                    tag @ (b"error" | b"failure" | b"skipped") => {
                        if let Some(name) = &current {
                            cases.insert(
                                name.clone(),
                                (String::from_utf8_lossy(tag).into_owned(), attr(b"message")),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(cases)
}
