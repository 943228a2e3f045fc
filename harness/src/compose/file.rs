//! A compose file read as data: which services, networks and volumes it declares, what it builds,
//! which variables choose its published ports. From that the harness derives its per-run override
//! (labels on every object, content-hashed image tags), so any compose stack can be driven.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{HarnessError, Result};

/// What the harness needs to know about one compose file.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    pub path: PathBuf,
    pub services: BTreeMap<String, Service>,
    /// Non-external networks declared at the top level.
    pub networks: Vec<String>,
    /// Non-external named volumes declared at the top level.
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Service {
    /// The raw `image:` value (may contain `${VAR:-default}`).
    pub image: Option<String>,
    pub build: Option<BuildSpec>,
    /// True when the service names no networks (it joins `default`).
    pub uses_default_network: bool,
    /// Networks the service joins (`default` when it names none), with the aliases it asks for.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Whether this file itself has a `networks:` (or `network_mode:`) key for the service; an
    /// overlay without one keeps the base file's networks.
    pub declares_networks: bool,
    /// Host-port variables found in `ports:` (`${PHOENIX_DB_PORT:-15432}` gives `PHOENIX_DB_PORT`).
    pub port_vars: Vec<String>,
    /// Bind-address variables found in `ports:`.
    pub bind_vars: Vec<String>,
}

/// A `build:` section, with paths relative to the compose file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> HarnessError {
    HarnessError::Compose {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl ComposeFile {
    /// Reads and parses a compose file; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(
                path,
                format!("cannot read it: {e}\n  hint: pass an existing file with --compose"),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses compose YAML text (pure).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let root: Value = serde_yaml::from_str(text).map_err(|e| bad(path, e.to_string()))?;
        let root = root
            .as_mapping()
            .ok_or_else(|| bad(path, "the top level is not a mapping"))?;
        let services_v = root
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or_else(|| bad(path, "no `services:` mapping"))?;
        let mut services = BTreeMap::new();
        for (name, def) in services_v {
            let name = name
                .as_str()
                .ok_or_else(|| bad(path, "a service name is not a string"))?
                .to_string();
            let def = def
                .as_mapping()
                .ok_or_else(|| bad(path, format!("service '{name}' is not a mapping")))?;
            services.insert(name.clone(), parse_service(path, &name, def)?);
        }
        Ok(Self {
            path: path.to_path_buf(),
            services,
            networks: declared(root.get("networks")),
            volumes: declared(root.get("volumes")),
        })
    }

    /// The directory relative paths in the file are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// All host-port variables, in service order, without duplicates.
    pub fn port_vars(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.services.values() {
            for v in &s.port_vars {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
        }
        out
    }

    /// All bind-address variables, without duplicates.
    pub fn bind_vars(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.services.values() {
            for v in &s.bind_vars {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
        }
        out
    }
}

fn declared(section: Option<&Value>) -> Vec<String> {
    let Some(map) = section.and_then(Value::as_mapping) else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, def)| {
            let external = def
                .as_mapping()
                .and_then(|m| m.get("external"))
                .map(|e| !matches!(e, Value::Bool(false)));
            !external.unwrap_or(false)
        })
        .filter_map(|(k, _)| k.as_str().map(String::from))
        .collect()
}

fn parse_service(path: &Path, name: &str, def: &Mapping) -> Result<Service> {
    let image = def.get("image").and_then(Value::as_str).map(String::from);
    let build = match def.get("build") {
        None => None,
        Some(Value::String(ctx)) => Some(BuildSpec {
            context: ctx.clone(),
            dockerfile: None,
            args: BTreeMap::new(),
        }),
        Some(Value::Mapping(m)) => {
            let context = m.get("context").and_then(Value::as_str).unwrap_or(".").to_string();
            let dockerfile = m.get("dockerfile").and_then(Value::as_str).map(String::from);
            let args = match m.get("args") {
                None => BTreeMap::new(),
                Some(Value::Mapping(a)) => a
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                    .collect(),
                Some(Value::Sequence(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.to_string(), String::new()),
                    })
                    .collect(),
                Some(_) => {
                    return Err(bad(
                        path,
                        format!("service '{name}': build.args is neither a mapping nor a list"),
                    ))
                }
            };
            Some(BuildSpec {
                context,
                dockerfile,
                args,
            })
        }
        Some(_) => {
            return Err(bad(
                path,
                format!("service '{name}': build is neither a path nor a mapping"),
            ))
        }
    };
    let uses_default_network = match def.get("networks") {
        None => def.get("network_mode").is_none(),
        Some(Value::Sequence(s)) => s.iter().any(|n| n.as_str() == Some("default")),
        Some(Value::Mapping(m)) => m.contains_key("default"),
        Some(_) => false,
    };
    let mut networks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match def.get("networks") {
        Some(Value::Sequence(s)) => {
            for n in s.iter().filter_map(Value::as_str) {
                networks.insert(n.to_string(), Vec::new());
            }
        }
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let Some(name) = k.as_str() else { continue };
                let aliases = v
                    .as_mapping()
                    .and_then(|m| m.get("aliases"))
                    .and_then(Value::as_sequence)
                    .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                    .unwrap_or_default();
                networks.insert(name.to_string(), aliases);
            }
        }
        _ => {}
    }
    if uses_default_network {
        networks.entry("default".to_string()).or_default();
    }
    let mut port_vars = Vec::new();
    let mut bind_vars = Vec::new();
    if let Some(Value::Sequence(ports)) = def.get("ports") {
        for p in ports {
            if let Some(s) = p.as_str() {
                let (bind, host) = split_port(s);
                bind_vars.extend(bind.and_then(variable_name));
                port_vars.extend(host.and_then(variable_name));
            } else if let Some(m) = p.as_mapping() {
                if let Some(h) = m.get("published").and_then(Value::as_str) {
                    port_vars.extend(variable_name(h));
                }
                if let Some(h) = m.get("host_ip").and_then(Value::as_str) {
                    bind_vars.extend(variable_name(h));
                }
            }
        }
    }
    let declares_networks = def.contains_key("networks") || def.contains_key("network_mode");
    Ok(Service {
        image,
        build,
        uses_default_network,
        networks,
        declares_networks,
        port_vars,
        bind_vars,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits a short port syntax into (bind address, host port) parts, keeping `${...}` intact.
fn split_port(s: &str) -> (Option<&str>, Option<&str>) {
    // Split on ':' outside ${...}.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b':' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    match parts.len() {
        3 => (Some(parts[0]), Some(parts[1])),
        2 => (None, Some(parts[0])),
        _ => (None, None),
    }
}

/// The variable named by `${NAME}`, `${NAME:-default}` or `$NAME` when that is the whole value.
fn variable_name(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = if let Some(rest) = s.strip_prefix("${") {
        rest.strip_suffix('}')?
    } else {
        s.strip_prefix('$')?
    };
    let name: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Substitutes `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR` and `$$` the way compose does.
pub fn interpolate(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let Some(end) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    out.extend(&chars[i..]);
                    break;
                };
                let body: String = chars[i + 2..i + 2 + end].iter().collect();
                let (name, default, empty_is_unset) = if let Some((n, d)) = body.split_once(":-") {
                    (n.to_string(), Some(d.to_string()), true)
                } else if let Some((n, d)) = body.split_once('-') {
                    (n.to_string(), Some(d.to_string()), false)
                } else {
                    (body.clone(), None, false)
                };
                let value = lookup(&name).filter(|v| !(empty_is_unset && v.is_empty()));
                out.push_str(&value.or(default).unwrap_or_default());
                i += 3 + end;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let name: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                out.push_str(&lookup(&name).unwrap_or_default());
                i += 1 + name.len();
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// Labels the harness puts on everything a run creates.
pub fn run_labels(run_id: &str, runtime: &str, pid: u32, pid_start: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (crate::labels::MANAGED.to_string(), "true".to_string()),
        (crate::labels::RUN.to_string(), run_id.to_string()),
        (crate::labels::RUNTIME.to_string(), runtime.to_string()),
        (crate::labels::OWNER_PID.to_string(), pid.to_string()),
        (crate::labels::OWNER_START.to_string(), pid_start.to_string()),
    ])
}

/// The per-run override: labels on every service, network and volume, and pinned images.
pub fn override_yaml(
    file: &ComposeFile,
    labels: &BTreeMap<String, String>,
    images: &BTreeMap<String, String>,
) -> String {
    let label_map = || {
        let mut m = Mapping::new();
        for (k, v) in labels {
            m.insert(Value::from(k.as_str()), Value::from(v.as_str()));
        }
        Value::Mapping(m)
    };
    let with_labels = || {
        let mut m = Mapping::new();
        m.insert("labels".into(), label_map());
        Value::Mapping(m)
    };
    let mut services = Mapping::new();
    for name in file.services.keys() {
        let mut m = Mapping::new();
        m.insert("labels".into(), label_map());
        if let Some(image) = images.get(name) {
            m.insert("image".into(), Value::from(image.as_str()));
        }
        services.insert(Value::from(name.as_str()), Value::Mapping(m));
    }
    let mut networks = Mapping::new();
    for n in &file.networks {
        networks.insert(Value::from(n.as_str()), with_labels());
    }
    if file.services.values().any(|s| s.uses_default_network) && !file.networks.iter().any(|n| n == "default") {
        networks.insert("default".into(), with_labels());
    }
    let mut volumes = Mapping::new();
    for v in &file.volumes {
        volumes.insert(Value::from(v.as_str()), with_labels());
    }
    let mut root = Mapping::new();
    root.insert("services".into(), Value::Mapping(services));
    if !networks.is_empty() {
        root.insert("networks".into(), Value::Mapping(networks));
    }
    if !volumes.is_empty() {
        root.insert("volumes".into(), Value::Mapping(volumes));
    }
    format!(
        "# Generated by hydra harness for one run; safe to delete.\n{}",
        serde_yaml::to_string(&Value::Mapping(root)).expect("override serialises")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const SAMPLE: &str = r#"
x-podman: {in_pod: false}
services:
  db:
    image: ${PHOENIX_IMAGE_DB:-localhost/phoenix/db:dev}
    build: {context: ../containerfiles/db, dockerfile: Containerfile}
    ports: ["${PHOENIX_BIND_IP:-127.0.0.1}:${PHOENIX_DB_PORT:-15432}:5432"]
    networks: [data]
  api:
    build:
      context: ../containerfiles/python
      args: [SERVICE=api, "EMPTY"]
    ports:
      - target: 8000
        published: ${API_PORT:-8000}
        host_ip: ${PHOENIX_BIND_IP:-127.0.0.1}
  tool:
    image: busybox
networks:
  data: {}
  outside: {external: true}
volumes:
  db_data:
"#;

    fn sample() -> ComposeFile {
        ComposeFile::parse(Path::new("/p/compose/x.yml"), SAMPLE).unwrap()
    }

    #[test]
    fn reads_services_builds_networks_and_volumes() {
        let f = sample();
        assert_eq!(f.services.keys().collect::<Vec<_>>(), ["api", "db", "tool"]);
        assert_eq!(f.networks, ["data"]);
        assert_eq!(f.volumes, ["db_data"]);
        let db = &f.services["db"];
        assert_eq!(db.build.as_ref().unwrap().dockerfile.as_deref(), Some("Containerfile"));
        assert!(!db.uses_default_network);
        let api = &f.services["api"];
        assert_eq!(api.build.as_ref().unwrap().args["SERVICE"], "api");
        assert_eq!(api.build.as_ref().unwrap().args["EMPTY"], "");
        assert!(api.uses_default_network);
        assert_eq!(f.dir(), Path::new("/p/compose"));
        assert_eq!(db.networks.keys().collect::<Vec<_>>(), ["data"]);
        assert_eq!(api.networks.keys().collect::<Vec<_>>(), ["default"]);
    }

    #[test]
    fn network_aliases_are_read() {
        let text =
            "services:\n  db:\n    image: x\n    networks:\n      data: {aliases: [postgres, pg]}\n      other:\n";
        let f = ComposeFile::parse(Path::new("/c.yml"), text).unwrap();
        assert_eq!(f.services["db"].networks["data"], ["postgres", "pg"]);
        assert!(f.services["db"].networks["other"].is_empty());
    }

    #[test]
    fn finds_port_and_bind_variables_in_both_syntaxes() {
        let f = sample();
        assert_eq!(f.port_vars(), ["API_PORT", "PHOENIX_DB_PORT"]);
        assert_eq!(f.bind_vars(), ["PHOENIX_BIND_IP"]);
    }

    #[rstest]
    #[case("services: [a]", "no `services:` mapping")]
    #[case("services:\n  a: {build: 3}\n", "build is neither")]
    #[case("- x", "top level is not a mapping")]
    #[case("services: {a: [", "")]
    fn bad_files_name_file_and_cause(#[case] text: &str, #[case] cause: &str) {
        let err = ComposeFile::parse(Path::new("/p/bad.yml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/p/bad.yml") && msg.contains(cause), "{msg}");
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }

    #[rstest]
    #[case("${A:-x}", "set", "set")]
    #[case("${B:-x}", "", "x")]
    #[case("${U:-x}", "-", "x")]
    #[case("${B-x}", "", "")]
    #[case("${U-x}", "-", "x")]
    #[case("pre-$A-post", "set", "pre-set-post")]
    #[case("$$A", "set", "$A")]
    #[case("${A}", "set", "set")]
    #[case("localhost/${A:-db}:dev", "-", "localhost/db:dev")]
    fn interpolation(#[case] input: &str, #[case] a: &str, #[case] expected: &str) {
        let lookup = |name: &str| match name {
            "A" if a != "-" => Some(a.to_string()),
            "B" => Some(String::new()),
            _ => None,
        };
        assert_eq!(interpolate(input, &lookup), expected);
    }

    #[test]
    fn override_labels_everything_and_pins_images() {
        let f = sample();
        let labels = run_labels("ab12cd34", "docker", 42, 7);
        let images = BTreeMap::from([("db".to_string(), "localhost/phoenix/db:h-123".to_string())]);
        let y: Value = serde_yaml::from_str(&override_yaml(&f, &labels, &images)).unwrap();
        for svc in ["api", "db", "tool"] {
            assert_eq!(y["services"][svc]["labels"]["io.hydra.run"], "ab12cd34");
        }
        assert_eq!(y["services"]["db"]["image"], "localhost/phoenix/db:h-123");
        assert!(y["services"]["tool"].get("image").is_none());
        assert_eq!(y["networks"]["data"]["labels"]["io.hydra.managed"], "true");
        assert_eq!(y["networks"]["default"]["labels"]["io.hydra.owner-pid"], "42");
        assert!(
            y["networks"].get("outside").is_none(),
            "external networks are not ours to label"
        );
        assert_eq!(y["volumes"]["db_data"]["labels"]["io.hydra.runtime"], "docker");
    }
}
