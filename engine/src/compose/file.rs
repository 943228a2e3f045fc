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
    /// The file it was read from (the first one, for a merged set); relative paths resolve
    /// against its directory.
    pub path: PathBuf,
    /// Services by name, with `extends:` and merge keys applied.
    pub services: BTreeMap<String, Service>,
    /// Non-external networks declared at the top level.
    pub networks: Vec<String>,
    /// Non-external named volumes declared at the top level.
    pub volumes: Vec<String>,
    /// Services left out because none of their `profiles:` is enabled, with those profiles.
    /// Filled by [`ComposeFile::activate`]; empty after `parse`.
    pub inactive: BTreeMap<String, Vec<String>>,
}

/// What the harness needs to know about one service of a compose file.
#[derive(Debug, Clone, Default)]
pub struct Service {
    /// The raw `image:` value (may contain `${VAR:-default}`).
    pub image: Option<String>,
    /// The `build:` section, if the service builds its image.
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
    /// Every `ports:` entry, as written (long syntax as `host_ip:published:target`).
    pub ports: Vec<String>,
    /// `profiles:`; a service with profiles runs only when one of them is enabled.
    pub profiles: Vec<String>,
    /// Services named by `depends_on:` (list or mapping form).
    pub depends_on: Vec<String>,
    /// `volumes:` entries (short or long syntax), in order; an overlay's entry replaces the one
    /// with the same target.
    pub mounts: Vec<Mount>,
    /// How the container runs (environment, posture, limits, healthcheck), as written: what a
    /// translation to another format (Kubernetes YAML) needs beyond networks, ports and mounts.
    pub run: RunSettings,
}

/// How a service's container runs, as the compose file writes it (values may contain `${VAR}`).
/// `None` / empty: the file does not say, the engine's or image's default applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSettings {
    /// `environment:` (mapping or list form); `None` for a bare name, whose value compose takes
    /// from the environment it runs in.
    pub environment: BTreeMap<String, Option<String>>,
    /// `env_file:` paths in order (the string and list forms, and `path:` of the long form).
    pub env_files: Vec<String>,
    /// `tmpfs:` entries (`/tmp:mode=1777,size=16m`).
    pub tmpfs: Vec<String>,
    /// `read_only:`.
    pub read_only: Option<bool>,
    /// `cap_add:`.
    pub cap_add: Vec<String>,
    /// `cap_drop:`.
    pub cap_drop: Vec<String>,
    /// `security_opt:` entries (`no-new-privileges:true`, `seccomp=PATH`).
    pub security_opt: Vec<String>,
    /// `user:` (`uid[:gid]` or names).
    pub user: Option<String>,
    /// `mem_limit:` as written (`256m`, or a number of bytes).
    pub mem_limit: Option<String>,
    /// `pids_limit:`.
    pub pids_limit: Option<i64>,
    /// `healthcheck:`.
    pub healthcheck: Option<Healthcheck>,
    /// `stop_signal:`.
    pub stop_signal: Option<String>,
    /// `restart:`.
    pub restart: Option<String>,
    /// `command:` as argv (the string form split as a shell would, without expansion).
    pub command: Option<Vec<String>>,
    /// `entrypoint:` as argv.
    pub entrypoint: Option<Vec<String>>,
    /// `working_dir:`.
    pub working_dir: Option<String>,
    /// `privileged:`.
    pub privileged: Option<bool>,
    /// `devices:` entries (`/dev/fuse:/dev/fuse:rwm`).
    pub devices: Vec<String>,
}

/// A service's `healthcheck:`; durations as written (`3s`, `1m30s`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// `test:` in list form (`["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]`); the string form
    /// is `["CMD-SHELL", text]`, as compose reads it.
    pub test: Vec<String>,
    /// `interval:`.
    pub interval: Option<String>,
    /// `timeout:`.
    pub timeout: Option<String>,
    /// `retries:`.
    pub retries: Option<u32>,
    /// `start_period:`.
    pub start_period: Option<String>,
    /// `disable: true` (or a `NONE` test).
    pub disable: bool,
}

/// One `volumes:` entry of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, ... as declared (long syntax), or `None` for the short syntax,
    /// where the source decides (see [`Mount::kind`]).
    pub declared_type: Option<String>,
    /// The source as written (may contain `${VAR}`); `None` for an anonymous volume.
    pub source: Option<String>,
    /// The path inside the container.
    pub target: String,
    /// Mounted read-only (`:ro` or `read_only: true`).
    pub read_only: bool,
}

/// What a mount's source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A named volume: the engine holds the data and a migration can carry it.
    Named(String),
    /// A host path.
    Bind(String),
    /// A volume without a name, made for one container.
    Anonymous,
    /// Memory only.
    Tmpfs,
    /// Anything else (`npipe`, `cluster`, ...), named by its type.
    Other(String),
}

impl Mount {
    /// The mount's kind, with `${VAR}` in the source resolved by `lookup` (compose decides
    /// between a path and a volume name after interpolation).
    pub fn kind(&self, lookup: &dyn Fn(&str) -> Option<String>) -> MountKind {
        let source = self.source.as_deref().map(|s| interpolate(s, lookup));
        match (self.declared_type.as_deref(), source) {
            (Some("tmpfs"), _) => MountKind::Tmpfs,
            (Some("bind"), Some(src)) => MountKind::Bind(src),
            (Some("volume") | None, None) => MountKind::Anonymous,
            (Some("volume"), Some(src)) => MountKind::Named(src),
            (None, Some(src)) if src.starts_with(['/', '.', '~']) => MountKind::Bind(src),
            (None, Some(src)) => MountKind::Named(src),
            (Some(other), _) => MountKind::Other(other.to_string()),
        }
    }
}

/// `s` split at each `sep` that is not inside a `${...}` (whose `:-` default would split it).
fn split_outside_braces(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    let mut prev = '\0';
    for (i, c) in s.char_indices() {
        match c {
            '{' if prev == '$' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
        prev = c;
    }
    parts.push(&s[start..]);
    parts
}

/// `volumes:` of a service: short (`src:target[:ro]`, `target`) and long (`type`, `source`,
/// `target`, `read_only`) syntax.
fn parse_mounts(v: Option<&Value>) -> std::result::Result<Vec<Mount>, Refusal> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let Value::Sequence(entries) = v else {
        return Err("volumes is not a list".into());
    };
    entries
        .iter()
        .map(|e| match e {
            Value::String(short) => {
                let parts = split_outside_braces(short, ':');
                let (source, target, opts) = match parts.as_slice() {
                    [target] => (None, *target, ""),
                    [source, target] => (Some(*source), *target, ""),
                    [source, target, opts, ..] => (Some(*source), *target, *opts),
                    [] => return Err(Refusal::from("an empty volume entry")),
                };
                Ok(Mount {
                    declared_type: None,
                    source: source.map(String::from),
                    target: target.to_string(),
                    read_only: opts.split(',').any(|o| o == "ro"),
                })
            }
            Value::Mapping(m) => {
                let target = m
                    .get("target")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Refusal::from("a long-syntax volume entry has no target"))?;
                Ok(Mount {
                    declared_type: Some(m.get("type").and_then(Value::as_str).unwrap_or("volume").to_string()),
                    source: m.get("source").and_then(Value::as_str).map(String::from),
                    target: target.to_string(),
                    read_only: m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
                })
            }
            _ => Err("a volume entry is neither a string nor a mapping".into()),
        })
        .collect()
}

impl Service {
    /// `ports:` entries whose host address is not a variable: the harness cannot point them at
    /// --bind-ip, so they publish where they say (all interfaces when they name no address).
    pub fn fixed_address_ports(&self) -> Vec<&str> {
        self.ports
            .iter()
            .filter(|p| split_port(p).0.and_then(variable_name).is_none())
            .map(String::as_str)
            .collect()
    }
}

/// A `build:` section, with paths relative to the compose file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The build context as written (may contain `${VAR}`); `.` when not given.
    pub context: String,
    /// The Dockerfile, relative to the context; `None` means `Dockerfile`.
    pub dockerfile: Option<String>,
    /// Build arguments (`args:` in either form; a bare name gets an empty value).
    pub args: BTreeMap<String, String>,
}

/// Why part of a compose file is refused, before the file it came from is known.
#[derive(Debug)]
struct Refusal {
    reason: String,
    hint: Option<String>,
}

impl Refusal {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The compose error for `path`, its reason after `prefix`.
    fn at(self, path: &Path, prefix: &str) -> HarnessError {
        let err = bad(path, format!("{prefix}{}", self.reason));
        match self.hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal { reason, hint: None }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::from(reason.to_string())
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> HarnessError {
    HarnessError::compose(path, reason)
}

impl ComposeFile {
    /// Reads and parses a compose file; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(path, format!("cannot read it: {e}")).with_hint(crate::workspace::missing_file_hint(
                path,
                "pass an existing file with --compose",
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Parses compose YAML text. YAML merge keys (`<<:`) and `extends:` are applied the way the
    /// compose tools apply them; `extends: {file: ...}` reads that file (relative to this one's
    /// directory). What the harness cannot model and that would change what runs or where it is
    /// published (top-level `include:`, `network_mode: host`, `!reset`/`!override` tags) is
    /// refused. Profiles are kept on each service; [`ComposeFile::activate`] applies them.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let root = load_yaml(path, text)?;
        let root = root
            .as_mapping()
            .ok_or_else(|| bad(path, "the top level is not a mapping"))?;
        if root.contains_key("include") {
            return Err(bad(
                path,
                "top-level `include:` is not supported by the harness (it would run services it cannot see)"
                    .to_string(),
            )
            .with_hint("pass the included files with --compose instead".to_string()));
        }
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
            if !def.is_mapping() {
                return Err(bad(path, format!("service '{name}' is not a mapping")));
            }
            let resolved = resolve_extends(path, services_v, &name, &mut Vec::new())?;
            let service = parse_service(path, &name, &resolved)?;
            if def.get("extends").is_some() {
                check_inherited_profiles(path, &name, def, &service)?;
            }
            services.insert(name.clone(), service);
        }
        Ok(Self {
            path: path.to_path_buf(),
            services,
            networks: declared(root.get("networks")),
            volumes: declared(root.get("volumes")),
            inactive: BTreeMap::new(),
        })
    }

    /// Keeps only the services compose would run with `enabled` profiles (a service without
    /// `profiles:` always runs) and moves the others to `inactive`. An active service that
    /// depends on an inactive or undefined one is refused, as compose refuses it.
    pub fn activate(mut self, enabled: &[String]) -> Result<Self> {
        let (active, inactive): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.services)
            .into_iter()
            .partition(|(_, s): &(String, Service)| {
                s.profiles.is_empty() || s.profiles.iter().any(|p| enabled.contains(p))
            });
        for (name, svc) in &active {
            for dep in &svc.depends_on {
                if let Some(dep_svc) = inactive.get(dep) {
                    let dep_profiles: &Vec<String> = &dep_svc.profiles;
                    return Err(bad(&self.path, format!("service '{name}' depends on '{dep}', which is not enabled: its profiles are [{}] and the enabled profiles are [{}]", dep_profiles.join(", "), enabled.join(", "))).with_hint(format!("give '{dep}' and '{name}' a common profile, or enable one of '{dep}''s profiles with COMPOSE_PROFILES")));
                }
                if !active.contains_key(dep) {
                    return Err(bad(
                        &self.path,
                        format!("service '{name}' depends on '{dep}', which is not defined"),
                    )
                    .with_hint(format!("define '{dep}' or remove it from depends_on")));
                }
            }
        }
        self.inactive = inactive.into_iter().map(|(k, s)| (k, s.profiles)).collect();
        self.services = active;
        Ok(self)
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
        self.each_service_var(|s| &s.port_vars)
    }

    /// All bind-address variables, without duplicates.
    pub fn bind_vars(&self) -> Vec<String> {
        self.each_service_var(|s| &s.bind_vars)
    }

    fn each_service_var(&self, vars: impl Fn(&Service) -> &Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in self.services.values().flat_map(vars) {
            if !out.contains(v) {
                out.push(v.clone());
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

/// Parses YAML text and applies merge keys; refuses tags the harness cannot model.
pub(crate) fn load_yaml(path: &Path, text: &str) -> Result<Value> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| bad(path, e.to_string()))?;
    resolve_merges(&mut root).map_err(|r| r.at(path, ""))?;
    Ok(root)
}

/// Applies YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`) everywhere, as the compose tools'
/// YAML loaders do: keys written in the mapping win over merged ones, among merged mappings the
/// first wins, and a merged mapping's own `<<:` is applied first (serde_yaml's `apply_merge`
/// leaves that one behind, so an anchor built on another anchor would lose keys).
fn resolve_merges(v: &mut Value) -> std::result::Result<(), Refusal> {
    match v {
        Value::Mapping(m) => {
            if let Some(mut merge) = m.remove("<<") {
                resolve_merges(&mut merge)?;
                let sources = match merge {
                    Value::Mapping(src) => vec![src],
                    Value::Sequence(seq) => seq
                        .into_iter()
                        .map(|x| match x {
                            Value::Mapping(src) => Ok(src),
                            _ => Err(Refusal::from("an element of a `<<:` merge list is not a mapping").hint("merge only anchors of mappings (`<<: [*a, *b]`)")),
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                    _ => {
                        return Err(Refusal::from("a `<<:` merge key is neither a mapping nor a list of mappings").hint("merge an anchor of a mapping (`<<: *common`)"))
                    }
                };
                for src in sources {
                    for (k, val) in src {
                        if !m.contains_key(&k) {
                            m.insert(k, val);
                        }
                    }
                }
            }
            for (_, val) in m.iter_mut() {
                resolve_merges(val)?;
            }
            Ok(())
        }
        Value::Sequence(seq) => seq.iter_mut().try_for_each(resolve_merges),
        Value::Tagged(t) => Err(Refusal::from(format!(
            "the YAML tag {} is not supported by the harness (tags such as !reset and !override change what a file removes, which the harness cannot model)",
            t.tag
        ))
        .hint("write the value out without the tag")),
        _ => Ok(()),
    }
}

/// `a/./b/../c` -> `a/c` without touching the file system (a relative path keeps the `..` it
/// cannot resolve), so an `extends` cycle through differently spelled paths is found.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Longest `extends` chain followed before giving up (a guard; cycles are detected exactly).
const MAX_EXTENDS_DEPTH: usize = 32;

/// The definition of `services[name]` with its `extends:` chain applied: the base service's keys
/// first, this service's own keys merged over them (see [`merge_extended`]). `extends: {file: f}`
/// is read relative to `path`'s directory, and relative build contexts of a service from
/// another directory are rebased onto `path`'s directory.
fn resolve_extends(path: &Path, services: &Mapping, name: &str, chain: &mut Vec<(PathBuf, String)>) -> Result<Mapping> {
    let def = services
        .get(name)
        .and_then(Value::as_mapping)
        .ok_or_else(|| bad(path, format!("service '{name}' is not a mapping")))?;
    let Some(ext) = def.get("extends") else {
        return Ok(def.clone());
    };
    let key = (normalize(path), name.to_string());
    if let Some(at) = chain.iter().position(|k| *k == key) {
        let cycle: Vec<String> = chain[at..]
            .iter()
            .chain(std::iter::once(&key))
            .map(|(p, s)| format!("{s} ({})", p.display()))
            .collect();
        return Err(bad(
            path,
            format!("service '{name}': `extends` forms a cycle: {}", cycle.join(" -> ")),
        )
        .with_hint("break the cycle".to_string()));
    }
    if chain.len() >= MAX_EXTENDS_DEPTH {
        return Err(bad(
            path,
            format!("service '{name}': `extends` chain longer than {MAX_EXTENDS_DEPTH}"),
        ));
    }
    let (file, base_name) = match ext {
        Value::String(s) => (None, s.clone()),
        Value::Mapping(m) => {
            let svc = m.get("service").and_then(Value::as_str).ok_or_else(|| {
                bad(path, format!("service '{name}': `extends` has no `service:` string"))
                    .with_hint("write `extends: {service: NAME}` or `extends: {file: FILE, service: NAME}`".to_string())
            })?;
            let file = match m.get("file") {
                None => None,
                Some(Value::String(f)) => Some(f.clone()),
                Some(_) => {
                    return Err(bad(path, format!("service '{name}': `extends.file` is not a string")));
                }
            };
            (file, svc.to_string())
        }
        _ => {
            return Err(bad(
                path,
                format!("service '{name}': `extends` is neither a service name nor a mapping"),
            ))
        }
    };
    chain.push(key);
    let base = match file {
        None => {
            if !services.get(base_name.as_str()).is_some_and(Value::is_mapping) {
                return Err(bad(path, format!("service '{name}' extends '{base_name}', which is not a service of this file")).with_hint(format!("define '{base_name}' here, or name its file with `extends: {{file: FILE, service: {base_name}}}` (the harness resolves `extends` within one file, not across --compose files)")));
            }
            resolve_extends(path, services, &base_name, chain)?
        }
        Some(f) => {
            let dir = path.parent().unwrap_or(Path::new(""));
            let other = dir.join(&f);
            let text = std::fs::read_to_string(&other).map_err(|e| {
                bad(
                    path,
                    format!(
                        "service '{name}' extends '{base_name}' from {}, which cannot be read: {e}",
                        other.display()
                    ),
                )
                .with_hint("`extends.file` is relative to this file's directory".to_string())
            })?;
            let root = load_yaml(&other, &text)?;
            let Some(other_services) = root.get("services").and_then(Value::as_mapping) else {
                return Err(bad(&other, "no `services:` mapping"));
            };
            if !other_services.get(base_name.as_str()).is_some_and(Value::is_mapping) {
                return Err(bad(
                    path,
                    format!(
                        "service '{name}' extends '{base_name}' from {}, which does not define it",
                        other.display()
                    ),
                ));
            }
            let mut base = resolve_extends(&other, other_services, &base_name, chain)?;
            if let Some(sub) = Path::new(&f).parent() {
                rebase_build(&mut base, sub);
            }
            base
        }
    };
    chain.pop();
    Ok(merge_extended(base, def))
}

/// Refuses a service whose profiles change through `extends`: docker-compose (and the compose
/// spec) apply the inherited profiles, podman-compose 1.6.0 chooses services by their own
/// `profiles:` before it resolves `extends`, so one tool would start the service and the other
/// not.
fn check_inherited_profiles(path: &Path, name: &str, own: &Value, service: &Service) -> Result<()> {
    let mut written: Vec<&str> = own
        .get("profiles")
        .and_then(Value::as_sequence)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut effective: Vec<&str> = service.profiles.iter().map(String::as_str).collect();
    written.sort_unstable();
    written.dedup();
    effective.sort_unstable();
    effective.dedup();
    if written == effective {
        return Ok(());
    }
    Err(bad(path, format!("service '{name}' gets profiles [{}] through `extends`, but names [{}] itself: docker-compose applies the inherited ones, podman-compose only its own, so the compose tools disagree on whether it runs", effective.join(", "), written.join(", "))).with_hint(format!("write `profiles: [{}]` on '{name}' itself", effective.join(", "))))
}

/// Makes a relative build context of a service taken from `sub/file.yml` relative to the
/// extending file's directory (compose resolves it against the file that declares it).
fn rebase_build(def: &mut Mapping, sub: &Path) {
    if sub.as_os_str().is_empty() {
        return;
    }
    let rebase = |ctx: &str| -> String {
        if ctx.contains("://") || ctx.starts_with("git@") || Path::new(ctx).is_absolute() {
            ctx.to_string()
        } else {
            sub.join(ctx).display().to_string()
        }
    };
    match def.get_mut("build") {
        Some(Value::String(ctx)) => *ctx = rebase(ctx),
        Some(Value::Mapping(b)) => {
            let ctx = b.get("context").and_then(Value::as_str).unwrap_or(".").to_string();
            b.insert("context".into(), Value::from(rebase(&ctx)));
        }
        _ => {}
    }
}

/// List keys whose entries an extending service adds to the base service's (compose merges them
/// as sets); other lists are replaced.
const UNION_LISTS: &[&str] = &[
    "ports",
    "expose",
    "profiles",
    "cap_add",
    "cap_drop",
    "security_opt",
    "volumes",
    "devices",
    "dns",
    "dns_search",
    "tmpfs",
    "env_file",
    "external_links",
    "volumes_from",
];

/// A list of names (`[a, b]`) as a mapping of names to null; a mapping as is.
fn as_named_map(v: Value) -> Option<Mapping> {
    match v {
        Value::Mapping(m) => Some(m),
        Value::Sequence(s) => Some(s.into_iter().map(|n| (n, Value::Null)).collect()),
        _ => None,
    }
}

/// `build` as a mapping (`build: ./dir` is `build: {context: ./dir}`), `args` as a mapping.
fn build_map(v: Value) -> Option<Mapping> {
    let mut m = match v {
        Value::String(ctx) => Mapping::from_iter([(Value::from("context"), Value::from(ctx))]),
        Value::Mapping(m) => m,
        _ => return None,
    };
    if let Some(Value::Sequence(args)) = m.get("args").cloned() {
        let args: Mapping = args
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (Value::from(k), Value::from(v)),
                None => (Value::from(kv), Value::from("")),
            })
            .collect();
        m.insert("args".into(), Value::Mapping(args));
    }
    Some(m)
}

/// Shallow merge: `over`'s keys win.
fn merge_maps(mut base: Mapping, over: Mapping) -> Mapping {
    for (k, v) in over {
        base.insert(k, v);
    }
    base
}

/// A service that `extends` another, as compose builds it: the base's keys, then the service's
/// own: `networks`/`depends_on` and mappings merged key by key, `build` merged (with its
/// `args`), the lists of [`UNION_LISTS`] joined without duplicates, anything else replaced.
fn merge_extended(mut base: Mapping, local: &Mapping) -> Mapping {
    base.remove("extends");
    for (k, v) in local {
        let key = k.as_str().unwrap_or_default();
        if key == "extends" {
            continue;
        }
        let merged = match (key, base.remove(k)) {
            (_, None) => v.clone(),
            ("networks" | "depends_on", Some(b)) => match (as_named_map(b), as_named_map(v.clone())) {
                (Some(b), Some(o)) => Value::Mapping(merge_maps(b, o)),
                _ => v.clone(),
            },
            ("build", Some(b)) => match (build_map(b), build_map(v.clone())) {
                (Some(mut b), Some(mut o)) => {
                    let args = match (b.remove("args"), o.remove("args")) {
                        (Some(Value::Mapping(ba)), Some(Value::Mapping(oa))) => {
                            Some(Value::Mapping(merge_maps(ba, oa)))
                        }
                        (ba, oa) => oa.or(ba),
                    };
                    let mut m = merge_maps(b, o);
                    if let Some(args) = args {
                        m.insert("args".into(), args);
                    }
                    Value::Mapping(m)
                }
                _ => v.clone(),
            },
            (_, Some(Value::Sequence(mut b))) if UNION_LISTS.contains(&key) && v.is_sequence() => {
                for item in v.as_sequence().into_iter().flatten() {
                    if !b.contains(item) {
                        b.push(item.clone());
                    }
                }
                Value::Sequence(b)
            }
            (_, Some(Value::Mapping(b))) if v.is_mapping() => {
                Value::Mapping(merge_maps(b, v.as_mapping().cloned().unwrap_or_default()))
            }
            _ => v.clone(),
        };
        base.insert(k.clone(), merged);
    }
    base
}

fn parse_service(path: &Path, name: &str, def: &Mapping) -> Result<Service> {
    let prefix = format!("service '{name}': ");
    let err = |r: Refusal| r.at(path, &prefix);
    let (networks, uses_default_network) = parse_networks(def);
    if def.get("network_mode").and_then(Value::as_str).map(str::trim) == Some("host") {
        return Err(err(Refusal::from(
            "`network_mode: host` puts every port it listens on on all host interfaces, whatever --bind-ip says",
        )
        .hint("join a network and publish ports with `ports:` on ${BIND_VAR:-127.0.0.1}")));
    }
    let ports = parse_ports(def.get("ports")).map_err(err)?;
    Ok(Service {
        image: def.get("image").and_then(Value::as_str).map(String::from),
        build: parse_build(def.get("build")).map_err(err)?,
        uses_default_network,
        networks,
        declares_networks: def.contains_key("networks") || def.contains_key("network_mode"),
        port_vars: ports.port_vars,
        bind_vars: ports.bind_vars,
        ports: ports.entries,
        profiles: parse_profiles(def.get("profiles")).map_err(err)?,
        depends_on: parse_depends_on(def.get("depends_on")).map_err(err)?,
        mounts: parse_mounts(def.get("volumes")).map_err(err)?,
        run: parse_run_settings(def).map_err(err)?,
    })
}

/// A list of strings, or one string as a list of one (`env_file: x.env`, `tmpfs: /tmp`).
fn string_list(v: Option<&Value>, key: &str) -> std::result::Result<Vec<String>, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| match i {
                // env_file's long form: {path: x.env, required: false}
                Value::Mapping(m) if key == "env_file" => m
                    .get("path")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| Refusal::from("an `env_file:` entry has no `path:`")),
                other => scalar(other).ok_or_else(|| Refusal::from(format!("a `{key}:` entry is not a string"))),
            })
            .collect(),
        Some(_) => Err(Refusal::from(format!("`{key}:` is neither a string nor a list"))),
    }
}

fn parse_run_settings(def: &Mapping) -> std::result::Result<RunSettings, Refusal> {
    let environment = match def.get("environment") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let name = scalar(k).ok_or_else(|| Refusal::from("an `environment:` key is not a string"))?;
                Ok((name, scalar(v)))
            })
            .collect::<std::result::Result<_, Refusal>>()?,
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let text = scalar(i).ok_or_else(|| Refusal::from("an `environment:` entry is not a string"))?;
                Ok(match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (text, None),
                })
            })
            .collect::<std::result::Result<_, Refusal>>()?,
        Some(_) => return Err("`environment:` is neither a mapping nor a list".into()),
    };
    let text = |key: &str| def.get(key).and_then(scalar);
    let pids_limit = match def.get("pids_limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| scalar(v).and_then(|s| s.parse().ok()))
                .ok_or_else(|| Refusal::from("`pids_limit:` is not a number"))?,
        ),
    };
    Ok(RunSettings {
        environment,
        env_files: string_list(def.get("env_file"), "env_file")?,
        tmpfs: string_list(def.get("tmpfs"), "tmpfs")?,
        read_only: def.get("read_only").and_then(Value::as_bool),
        cap_add: string_list(def.get("cap_add"), "cap_add")?,
        cap_drop: string_list(def.get("cap_drop"), "cap_drop")?,
        security_opt: string_list(def.get("security_opt"), "security_opt")?,
        user: text("user"),
        mem_limit: text("mem_limit"),
        pids_limit,
        healthcheck: parse_healthcheck(def.get("healthcheck"))?,
        stop_signal: text("stop_signal"),
        restart: text("restart"),
        command: argv(def.get("command"), "command")?,
        entrypoint: argv(def.get("entrypoint"), "entrypoint")?,
        working_dir: text("working_dir"),
        privileged: def.get("privileged").and_then(Value::as_bool),
        devices: string_list(def.get("devices"), "devices")?,
    })
}

/// `command:` / `entrypoint:`: a list as is, a string split into words as a shell would (quotes
/// and backslashes, no expansion), as compose splits it.
fn argv(v: Option<&Value>, key: &str) -> std::result::Result<Option<Vec<String>>, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| Refusal::from(format!("a `{key}:` entry is not a string"))))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::String(s)) => shell_words(s)
            .map(Some)
            .ok_or_else(|| Refusal::from(format!("`{key}:` has an unterminated quote"))),
        Some(_) => Err(Refusal::from(format!("`{key}:` is neither a string nor a list"))),
    }
}

/// Splits `s` into words as a POSIX shell does (quotes, backslashes), without expansion; `None`
/// for an unterminated quote. Pure.
pub fn shell_words(s: &str) -> Option<Vec<String>> {
    let (mut words, mut cur, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => cur.push(c),
                            c => {
                                cur.push('\\');
                                cur.push(c);
                            }
                        },
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

fn parse_healthcheck(v: Option<&Value>) -> std::result::Result<Option<Healthcheck>, Refusal> {
    let m = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Mapping(m)) => m,
        Some(_) => return Err("`healthcheck:` is not a mapping".into()),
    };
    let test = match m.get("test") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| Refusal::from("a `healthcheck.test` entry is not a string")))
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err("`healthcheck.test` is neither a string nor a list".into()),
    };
    let text = |key: &str| m.get(key).and_then(scalar);
    let retries = match m.get("retries") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| Refusal::from("`healthcheck.retries` is not a number"))?,
        ),
    };
    let disable =
        m.get("disable").and_then(Value::as_bool).unwrap_or(false) || test.first().is_some_and(|t| t == "NONE");
    Ok(Some(Healthcheck {
        test,
        interval: text("interval"),
        timeout: text("timeout"),
        retries,
        start_period: text("start_period"),
        disable,
    }))
}

/// `build:` as a path or a mapping (`context`, `dockerfile`, `args` as a mapping or a list).
fn parse_build(v: Option<&Value>) -> std::result::Result<Option<BuildSpec>, Refusal> {
    let m = match v {
        None => return Ok(None),
        Some(Value::String(ctx)) => {
            return Ok(Some(BuildSpec {
                context: ctx.clone(),
                dockerfile: None,
                args: BTreeMap::new(),
            }))
        }
        Some(Value::Mapping(m)) => m,
        Some(_) => return Err("build is neither a path nor a mapping".into()),
    };
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
        Some(_) => return Err("build.args is neither a mapping nor a list".into()),
    };
    Ok(Some(BuildSpec {
        context: m.get("context").and_then(Value::as_str).unwrap_or(".").to_string(),
        dockerfile: m.get("dockerfile").and_then(Value::as_str).map(String::from),
        args,
    }))
}

/// The networks a service joins with their aliases (`default` when it names none), and whether
/// it joins `default`.
fn parse_networks(def: &Mapping) -> (BTreeMap<String, Vec<String>>, bool) {
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
    (networks, uses_default_network)
}

/// What `ports:` publishes: each entry in short form, and the variables that choose host ports
/// and bind addresses.
#[derive(Default)]
struct Ports {
    entries: Vec<String>,
    port_vars: Vec<String>,
    bind_vars: Vec<String>,
}

fn parse_ports(v: Option<&Value>) -> std::result::Result<Ports, Refusal> {
    let mut out = Ports::default();
    let entries = match v {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Sequence(entries)) => entries,
        Some(_) => return Err("`ports:` is not a list".into()),
    };
    for p in entries {
        match p {
            Value::String(s) => {
                let (bind, host) = split_port(s);
                out.bind_vars.extend(bind.and_then(variable_name));
                out.port_vars.extend(host.and_then(variable_name));
                out.entries.push(s.clone());
            }
            Value::Number(n) => out.entries.push(n.to_string()),
            Value::Mapping(m) => {
                let published = m.get("published").and_then(scalar);
                let host_ip = m.get("host_ip").and_then(scalar);
                out.port_vars.extend(published.as_deref().and_then(variable_name));
                out.bind_vars.extend(host_ip.as_deref().and_then(variable_name));
                let target = m.get("target").and_then(scalar).unwrap_or_default();
                out.entries.push(match (host_ip, published) {
                    (Some(ip), p) => format!("{ip}:{}:{target}", p.unwrap_or_default()),
                    (None, Some(p)) => format!("{p}:{target}"),
                    (None, None) => target,
                });
            }
            _ => return Err("a `ports:` entry is neither a string, a number nor a mapping".into()),
        }
    }
    Ok(out)
}

fn parse_profiles(v: Option<&Value>) -> std::result::Result<Vec<String>, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|p| {
                p.as_str()
                    .map(String::from)
                    .ok_or_else(|| Refusal::from("a `profiles:` entry is not a string"))
            })
            .collect(),
        Some(_) => Err(Refusal::from("`profiles:` is not a list").hint("write `profiles: [NAME]`")),
    }
}

fn parse_depends_on(v: Option<&Value>) -> std::result::Result<Vec<String>, Refusal> {
    let names: Vec<&Value> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(list)) => list.iter().collect(),
        Some(Value::Mapping(m)) => m.keys().collect(),
        Some(_) => return Err("`depends_on:` is neither a list nor a mapping".into()),
    };
    names
        .into_iter()
        .map(|d| {
            d.as_str()
                .map(String::from)
                .ok_or_else(|| Refusal::from("a `depends_on:` entry is not a service name"))
        })
        .collect()
}

/// A YAML scalar as compose reads it (strings, numbers and booleans as text). Pure.
pub fn scalar(v: &Value) -> Option<String> {
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

/// The variables `s` refers to (`${NAME}`, `${NAME:-default}`, `${NAME-default}`, `$NAME`; `$$`
/// is a literal dollar), each with its default when it has one.
pub fn variable_references(s: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => i += 2,
            Some('{') => {
                let Some(end) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    break;
                };
                let body: String = chars[i + 2..i + 2 + end].iter().collect();
                let name: String = body
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let rest = &body[name.len()..];
                let default = rest
                    .strip_prefix(":-")
                    .or_else(|| rest.strip_prefix('-'))
                    .map(String::from);
                if !name.is_empty() {
                    out.push((name, default));
                }
                i += 3 + end;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let name: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                i += 1 + name.len();
                out.push((name, None));
            }
            _ => i += 1,
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

/// [`run_labels`] of a run this process owns.
pub fn run_labels_of_this_process(run_id: &str, runtime: &str) -> BTreeMap<String, String> {
    let pid = std::process::id();
    run_labels(run_id, runtime, pid, crate::runs::process_start_time(pid).unwrap_or(0))
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

    #[rstest::rstest]
    #[case("db_data:/data", &["db_data", "/data"])]
    #[case("${SOCK:-/var/run/docker.sock}:/var/run/docker.sock:ro", &["${SOCK:-/var/run/docker.sock}", "/var/run/docker.sock", "ro"])]
    #[case("/cache", &["/cache"])]
    #[case("${A:-${B:-x:y}}:/t", &["${A:-${B:-x:y}}", "/t"])]
    fn volume_entries_split_outside_interpolations(#[case] entry: &str, #[case] want: &[&str]) {
        assert_eq!(split_outside_braces(entry, ':'), want);
    }
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
    fn run_settings_of_the_bundled_stack_are_read_through_merge_keys() {
        let f = ComposeFile::load(&crate::workspace::bundled_compose_file()).unwrap();
        let db = &f.services["db"].run;
        assert_eq!(db.environment["POSTGRES_USER"].as_deref(), Some("phoenix"));
        assert_eq!(db.env_files, ["${PHOENIX_ENV_FILE:-phoenix.env}"]);
        assert_eq!(db.tmpfs, ["/tmp:mode=1777,size=16m"]);
        assert_eq!(db.read_only, Some(true));
        assert_eq!(db.cap_drop, ["ALL"]);
        assert_eq!(db.security_opt[0], "no-new-privileges:true");
        assert_eq!(db.mem_limit.as_deref(), Some("256m"));
        assert_eq!(db.pids_limit, Some(128));
        assert_eq!(db.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(db.restart.as_deref(), Some("unless-stopped"));
        let hc = db.healthcheck.as_ref().unwrap();
        assert_eq!(hc.test, ["CMD", "/usr/local/bin/phoenix-db-healthcheck"]);
        assert_eq!((hc.interval.as_deref(), hc.retries), (Some("3s"), Some(5)));
        let gap = &f.services["gap-detector"].run;
        assert_eq!(gap.environment["PGHOST"].as_deref(), Some("db"), "from the <<: anchor");
        assert_eq!(gap.healthcheck.as_ref().unwrap().start_period.as_deref(), Some("20s"));
    }

    #[rstest]
    #[case("a b", &["a", "b"])]
    #[case("sh -c 'echo hi there'", &["sh", "-c", "echo hi there"])]
    #[case(r#"x "a \"q\" b" c\ d"#, &["x", r#"a "q" b"#, "c d"])]
    fn commands_are_split_as_a_shell_splits_them(#[case] text: &str, #[case] want: &[&str]) {
        assert_eq!(shell_words(text).unwrap(), want);
        assert!(shell_words("'open").is_none());
    }

    #[rstest]
    #[case("environment: [A=1, B]", "A", Some("1"))]
    #[case("environment: {A: 2}", "A", Some("2"))]
    #[case("environment: [B]", "B", None)]
    fn environment_in_both_forms(#[case] env: &str, #[case] name: &str, #[case] want: Option<&str>) {
        let text = format!(
            "services:\n  a:\n    image: x\n    {env}\n    env_file: one.env\n    healthcheck: {{test: exit 0}}\n"
        );
        let f = ComposeFile::parse(Path::new("/c.yml"), &text).unwrap();
        let run = &f.services["a"].run;
        assert_eq!(run.environment[name].as_deref(), want);
        assert_eq!(run.env_files, ["one.env"]);
        assert_eq!(run.healthcheck.as_ref().unwrap().test, ["CMD-SHELL", "exit 0"]);
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

    /// The same service written inline and through merge keys (nested anchors, a merge list).
    const INLINE: &str = r#"
services:
  web:
    image: busybox
    ports: ["${BIND:-0.0.0.0}:${WEB_PORT:-8080}:80", "0.0.0.0:8081:81"]
    networks: [front]
    profiles: [web]
    restart: always
"#;
    const MERGED: &str = r#"
x-ports: &ports
  ports: ["${BIND:-0.0.0.0}:${WEB_PORT:-8080}:80", "0.0.0.0:8081:81"]
  image: ignored-because-the-first-merge-wins
x-common: &common
  <<: *ports
  image: busybox
  networks: [front]
x-profile: &profile
  profiles: [web]
  image: ignored-too
services:
  web:
    <<: [*common, *profile]
    restart: always
"#;

    #[test]
    fn merge_keys_give_the_same_service_as_writing_it_inline() {
        let inline = ComposeFile::parse(Path::new("/p/inline.yml"), INLINE).unwrap();
        let merged = ComposeFile::parse(Path::new("/p/merged.yml"), MERGED).unwrap();
        let (a, b) = (&inline.services["web"], &merged.services["web"]);
        assert_eq!(b.port_vars, ["WEB_PORT"], "ports inside an anchor must be found");
        assert_eq!(b.bind_vars, ["BIND"]);
        assert_eq!(a.port_vars, b.port_vars);
        assert_eq!(a.bind_vars, b.bind_vars);
        assert_eq!(a.ports, b.ports);
        assert_eq!(a.fixed_address_ports(), ["0.0.0.0:8081:81"]);
        assert_eq!(a.fixed_address_ports(), b.fixed_address_ports());
        assert_eq!(a.image, b.image);
        assert_eq!(b.image.as_deref(), Some("busybox"));
        assert_eq!(a.networks, b.networks);
        assert_eq!(a.profiles, b.profiles);
        assert_eq!(merged.port_vars(), inline.port_vars());
        assert_eq!(merged.bind_vars(), inline.bind_vars());
    }

    #[test]
    fn keys_written_in_the_service_win_over_merged_ones() {
        let text =
            "x-c: &c\n  image: a\n  ports: ['${P:-1}:80']\nservices:\n  s:\n    <<: *c\n    ports: ['${Q:-2}:80']\n";
        let f = ComposeFile::parse(Path::new("/c.yml"), text).unwrap();
        assert_eq!(f.services["s"].port_vars, ["Q"]);
        assert_eq!(f.services["s"].image.as_deref(), Some("a"));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn extends_in_the_same_file_and_from_another_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sub/base.yml",
            "services:\n  basesvc:\n    image: base/img\n    build: {context: ./bctx, dockerfile: Containerfile, args: [A=1]}\n    ports: ['${BIND:-127.0.0.1}:${BASE_PORT:-19000}:90']\n    networks: [back]\n    profiles: [debug]\n",
        );
        let main = write(
            dir.path(),
            "c.yml",
            r#"
services:
  a:
    image: a
    ports: ["${BIND:-0.0.0.0}:${A_PORT:-1}:80"]
    networks: [front]
  b:
    extends: a
  c:
    extends: {service: a}
    ports: ["${BIND:-0.0.0.0}:${C_PORT:-2}:81"]
    networks: [back]
  d:
    extends: {file: sub/base.yml, service: basesvc}
    build: {args: {B: "2"}}
    profiles: [debug]
"#,
        );
        let f = ComposeFile::load(&main).unwrap();
        let b = &f.services["b"];
        assert_eq!(b.image.as_deref(), Some("a"));
        assert_eq!(b.port_vars, ["A_PORT"]);
        assert_eq!(b.bind_vars, ["BIND"]);
        let c = &f.services["c"];
        assert_eq!(c.port_vars, ["A_PORT", "C_PORT"], "compose adds the ports of both");
        assert_eq!(c.networks.keys().collect::<Vec<_>>(), ["back", "front"]);
        let d = &f.services["d"];
        assert_eq!(d.image.as_deref(), Some("base/img"));
        assert_eq!(d.port_vars, ["BASE_PORT"]);
        assert_eq!(d.profiles, ["debug"]);
        let build = d.build.as_ref().unwrap();
        assert_eq!(
            Path::new(&build.context),
            Path::new("sub/bctx"),
            "context is relative to base.yml"
        );
        assert_eq!(build.dockerfile.as_deref(), Some("Containerfile"));
        assert_eq!(build.args.get("A").map(String::as_str), Some("1"));
        assert_eq!(build.args.get("B").map(String::as_str), Some("2"));
        assert_eq!(f.port_vars(), ["A_PORT", "C_PORT", "BASE_PORT"]);
    }

    #[rstest]
    #[case::missing_service(
        "services:\n  b: {extends: nope}\n",
        "service 'b' extends 'nope', which is not a service of this file"
    )]
    #[case::missing_file(
        "services:\n  b: {extends: {file: gone.yml, service: x}}\n",
        "gone.yml, which cannot be read"
    )]
    #[case::cycle(
        "services:\n  a: {extends: b, image: x}\n  b: {extends: {service: c}}\n  c: {extends: a}\n",
        "forms a cycle"
    )]
    #[case::self_extension("services:\n  a: {extends: a, image: x}\n", "forms a cycle")]
    #[case::no_service_key("services:\n  a: {extends: {file: x.yml}}\n", "has no `service:`")]
    #[case::profiles_only_inherited(
        "services:\n  a: {image: x, profiles: [p]}\n  b: {extends: a}\n",
        "gets profiles [p] through `extends`, but names [] itself"
    )]
    #[case::include("include: [other.yml]\nservices:\n  a: {image: x}\n", "`include:` is not supported")]
    #[case::host_network("services:\n  a: {image: x, network_mode: host}\n", "network_mode: host")]
    #[case::reset_tag("services:\n  a:\n    image: x\n    ports: !reset []\n", "!reset")]
    #[case::ports_not_a_list("services:\n  a: {image: x, ports: '8080:80'}\n", "`ports:` is not a list")]
    #[case::profiles_not_a_list("services:\n  a: {image: x, profiles: debug}\n", "`profiles:` is not a list")]
    #[case::scalar_merge("services:\n  a:\n    <<: 3\n    image: x\n", "`<<:` merge key")]
    #[case::bad_depends_on("services:\n  a: {image: x, depends_on: 3}\n", "depends_on")]
    fn what_cannot_be_modelled_is_refused_naming_file_and_cause(#[case] text: &str, #[case] cause: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.yml", text);
        let err = ComposeFile::load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(cause),
            "{msg}"
        );
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }

    #[test]
    fn an_extends_cycle_across_files_is_found() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sub/b.yml",
            "services:\n  y: {extends: {file: ../a.yml, service: x}}\n",
        );
        let a = write(
            dir.path(),
            "a.yml",
            "services:\n  x: {extends: {file: ./sub/b.yml, service: y}}\n",
        );
        let msg = ComposeFile::load(&a).unwrap_err().to_string();
        assert!(msg.contains("forms a cycle"), "{msg}");
    }

    const PROFILES: &str = r#"
services:
  app: {image: a, depends_on: [db]}
  db: {image: d}
  dbg: {image: d, profiles: [debug]}
  tool: {image: t, profiles: [debug, tools], depends_on: {dbg: {condition: service_started}}}
"#;

    #[test]
    fn only_services_of_enabled_profiles_are_active() {
        let f = || ComposeFile::parse(Path::new("/c.yml"), PROFILES).unwrap();
        let none = f().activate(&[]).unwrap();
        assert_eq!(none.services.keys().collect::<Vec<_>>(), ["app", "db"]);
        assert_eq!(none.inactive["tool"], ["debug", "tools"]);
        let debug = f().activate(&["debug".to_string()]).unwrap();
        assert_eq!(debug.services.keys().collect::<Vec<_>>(), ["app", "db", "dbg", "tool"]);
        assert!(debug.inactive.is_empty());
        let err = f().activate(&["tools".to_string()]).unwrap_err().to_string();
        assert!(
            err.contains("/c.yml") && err.contains("service 'tool' depends on 'dbg', which is not enabled"),
            "{err}"
        );
        let undefined = ComposeFile::parse(Path::new("/c.yml"), "services:\n  a: {image: a, depends_on: [b]}\n")
            .unwrap()
            .activate(&[])
            .unwrap_err()
            .to_string();
        assert!(
            undefined.contains("depends on 'b', which is not defined"),
            "{undefined}"
        );
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
