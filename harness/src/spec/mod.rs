//! The declarative spec: what must hold for a compose stack under every runtime (health
//! endpoints, DNS reachability and isolation, published and internal ports, persistence probes,
//! posture allowances). Parsing is pure; unknown keys and references to services that the compose
//! file does not define are errors that name the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{HarnessError, Result};

mod monitoring;
pub use monitoring::{Monitored, Monitoring};

/// A validated spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The spec file it was read from.
    pub path: PathBuf,
    /// Compose files named by the spec, resolved against the spec's directory.
    pub compose: Vec<PathBuf>,
    /// Per-service expectations, by compose service name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Which services must and must not resolve each other.
    pub dns: DnsSpec,
    /// Transitive health rules.
    pub transitive: Vec<Transitive>,
    /// The PostgreSQL persistence probe, if the spec has one.
    pub persistence: Option<Persistence>,
    /// The project's seccomp profile every service must run with (absolute), if the spec asks.
    pub seccomp_profile: Option<PathBuf>,
    /// How `harness migrate` moves the stack, and what it accepts as different on the target.
    pub migrate: MigrateSpec,
    /// What a real Prometheus must see of the services, if the spec asks.
    pub monitoring: Option<Monitoring>,
}

/// How the PostgreSQL volume of the persistence probe moves between engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The volume's files, as a tar stream between helper containers (owners kept).
    #[default]
    Raw,
    /// `pg_dump` out of the source's database, `pg_restore` into the target's.
    Logical,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Raw => "raw",
            Strategy::Logical => "logical",
        })
    }
}

/// `[migrate]`: the drill's strategy and the target failures it accepts, each with its reason.
#[derive(Debug, Clone, Default)]
pub struct MigrateSpec {
    /// How the database volume of the persistence probe moves.
    pub strategy: Strategy,
    /// Check name (`ports::db_unreachable_from_nginx`) to the reason its failure on the target is
    /// accepted, with the known remedy in the stack's terms.
    pub accept: BTreeMap<String, String>,
}

impl Spec {
    /// The posture configuration: the project seccomp profile and each service's allowances.
    pub fn posture_config(&self) -> crate::posture::PostureConfig {
        crate::posture::PostureConfig {
            seccomp_profile: self.seccomp_profile.clone(),
            services: self
                .services
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), s.posture.clone()?)))
                .collect(),
        }
    }
}

/// What must hold for one service: its ports, health endpoints and posture allowances.
#[derive(Debug, Clone, Default)]
pub struct ServiceSpec {
    /// Container ports that must be published on the bind address only.
    pub published: Vec<u16>,
    /// Container ports peers on a shared network must reach (and others must not).
    pub internal: Vec<u16>,
    /// HTTP health endpoints that must answer as expected.
    pub health: Vec<HealthProbe>,
    /// Posture allowances (each with its reason), interpreted by the posture checks.
    pub posture: Option<crate::posture::ServicePosture>,
}

/// One HTTP health expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthProbe {
    /// Request path, starting with `/`.
    pub path: String,
    /// Container port of the service reached through its published host port (default: the first
    /// published port).
    pub port: Option<u16>,
    /// Reach the path through this service's published port instead (e.g. `nginx`).
    pub via: Option<String>,
    /// Expected HTTP status (default 200).
    pub status: u16,
    /// Top-level JSON fields and the string values they must have.
    pub fields: BTreeMap<String, String>,
}

/// Name-resolution expectations: `(from, to)` pairs.
#[derive(Debug, Clone, Default)]
pub struct DnsSpec {
    /// `from` must resolve `to`'s name.
    pub resolve: Vec<(String, String)>,
    /// `from` must not resolve `to`'s name.
    pub isolated: Vec<(String, String)>,
    /// Also check every pair of services against the compose file's networks.
    pub all_pairs: bool,
}

/// Stopping `stop` must turn each dependant's health 503 within `within_secs`; starting it again
/// must bring them back within `recover_within_secs`.
#[derive(Debug, Clone)]
pub struct Transitive {
    /// The dependency service that is stopped.
    pub stop: String,
    /// Services whose health must follow it.
    pub dependants: Vec<String>,
    /// Deadline for the dependants to turn unhealthy (default 20).
    pub within_secs: u64,
    /// Deadline for the dependants to recover (default 90).
    pub recover_within_secs: u64,
}

/// A PostgreSQL persistence probe over the service's published port.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// The PostgreSQL service.
    pub service: String,
    /// The compose volume (its key in the compose file) that holds the database's data.
    pub volume: String,
    /// Container port of PostgreSQL, reached through its published host port.
    pub port: u16,
    /// Database user to connect as.
    pub user: String,
    /// Database to connect to.
    pub database: String,
    /// Resolved against the spec's directory.
    pub password_env_file: PathBuf,
    /// Variable of the env file that holds the password.
    pub password_var: String,
    /// Rows in the data set the probe writes (default 500).
    pub rows: u32,
}

impl Persistence {
    /// Reads the password from its env file.
    pub fn password(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.password_env_file).map_err(|e| {
            HarnessError::usage(format!("cannot read {}: {e}", self.password_env_file.display()))
                .with_hint("fix persistence.password.env_file in the spec".to_string())
        })?;
        crate::envfile::value(&text, &self.password_var).ok_or_else(|| {
            HarnessError::usage(format!(
                "{} does not set {}",
                self.password_env_file.display(),
                self.password_var
            ))
            .with_hint("fix persistence.password.var in the spec".to_string())
        })
    }
}

// ----- raw serde layer (private) --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    compose: Vec<String>,
    #[serde(default)]
    services: BTreeMap<Spanned<String>, RawService>,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    transitive: Vec<RawTransitive>,
    persistence: Option<RawPersistence>,
    posture: Option<RawPosture>,
    migrate: Option<RawMigrate>,
    monitoring: Option<monitoring::RawMonitoring>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMigrate {
    #[serde(default)]
    strategy: Strategy,
    #[serde(default)]
    accept: Vec<RawAccept>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccept {
    check: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPosture {
    /// Relative to the spec file.
    seccomp_profile: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    published: Vec<u16>,
    #[serde(default)]
    internal: Vec<u16>,
    #[serde(default)]
    health: Vec<RawHealth>,
    posture: Option<crate::posture::ServicePosture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: String,
    port: Option<u16>,
    via: Option<Spanned<String>>,
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

fn ok_status() -> u16 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    #[serde(default)]
    resolve: Vec<[Spanned<String>; 2]>,
    #[serde(default)]
    isolated: Vec<[Spanned<String>; 2]>,
    #[serde(default = "yes")]
    all_pairs: bool,
}

fn yes() -> bool {
    true
}

impl Default for RawDns {
    fn default() -> Self {
        Self {
            resolve: Vec::new(),
            isolated: Vec::new(),
            all_pairs: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransitive {
    stop: Spanned<String>,
    dependants: Vec<Spanned<String>>,
    #[serde(default = "default_within")]
    within_secs: u64,
    #[serde(default = "default_recover")]
    recover_within_secs: u64,
}

fn default_within() -> u64 {
    20
}
fn default_recover() -> u64 {
    90
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersistence {
    service: Spanned<String>,
    volume: String,
    port: u16,
    user: String,
    database: String,
    password: RawPassword,
    #[serde(default = "default_rows")]
    rows: u32,
}

fn default_rows() -> u32 {
    500
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassword {
    env_file: String,
    var: String,
}

// ----- resolution ---------------------------------------------------------------------------

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn spec_error(path: &Path, reason: impl Into<String>) -> HarnessError {
    HarnessError::usage(format!("invalid spec {}: {}", path.display(), reason.into()))
}

impl Spec {
    /// Reads and validates a spec file against the compose files it names (or `compose_override`).
    pub fn load(path: &Path, compose_override: &[PathBuf]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            spec_error(path, format!("cannot read it: {e}")).with_hint(crate::workspace::missing_file_hint(
                path,
                "pass an existing file with --spec",
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let raw = Self::parse_raw(path, &text)?;
        let compose: Vec<PathBuf> = if compose_override.is_empty() {
            raw.compose.iter().map(|c| base.join(c)).collect()
        } else {
            compose_override.to_vec()
        };
        if compose.is_empty() {
            return Err(spec_error(path, "names no compose file".to_string())
                .with_hint("add `compose = [\"path/to/compose.yml\"]` or pass --compose".to_string()));
        }
        // The services that run: merge keys, `extends` and profiles applied, as compose does.
        let merged = crate::stack::ComposeSet::load(&compose)?.merged();
        let known: Vec<String> = merged.services.keys().cloned().collect();
        Self::resolve(path, &text, raw, compose, &known, &merged.inactive)
    }

    /// Parses spec text and validates service references against `known` services. Pure.
    pub fn parse(path: &Path, text: &str, compose: Vec<PathBuf>, known: &[String]) -> Result<Self> {
        let raw = Self::parse_raw(path, text)?;
        Self::resolve(path, text, raw, compose, known, &BTreeMap::new())
    }

    fn parse_raw(path: &Path, text: &str) -> Result<RawSpec> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            spec_error(path, format!("{line}{}", e.message()))
        })
    }

    fn resolve(
        path: &Path,
        text: &str,
        raw: RawSpec,
        compose: Vec<PathBuf>,
        known: &[String],
        inactive: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self> {
        let r = Resolver {
            path,
            text,
            known,
            inactive,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let services = r.services(raw.services)?;
        let dns = r.dns(&raw.dns)?;
        let transitive = raw.transitive.iter().map(|t| r.transitive(t)).collect::<Result<_>>()?;
        let persistence = raw.persistence.map(|p| r.persistence(p, base)).transpose()?;
        let seccomp_profile = raw.posture.and_then(|p| p.seccomp_profile).map(|p| base.join(p));
        let migrate = raw.migrate.map(|m| r.migrate(m)).transpose()?.unwrap_or_default();
        let monitoring = raw
            .monitoring
            .map(|m| monitoring::resolve(m, &|s, what| r.service(s, what), &|why| spec_error(path, why)))
            .transpose()?;
        Ok(Spec {
            path: path.to_path_buf(),
            compose,
            services,
            dns,
            transitive,
            persistence,
            seccomp_profile,
            migrate,
            monitoring,
        })
    }
}

/// Resolves a parsed spec against the services the compose files run; errors name the line.
struct Resolver<'a> {
    path: &'a Path,
    text: &'a str,
    known: &'a [String],
    inactive: &'a BTreeMap<String, Vec<String>>,
}

impl Resolver<'_> {
    /// A service name the spec uses (as `what`), which must be one that runs.
    fn service(&self, s: &Spanned<String>, what: &str) -> Result<String> {
        let line = line_of(self.text, s.span().start);
        let name = s.get_ref();
        if self.known.iter().any(|k| k == name) {
            Ok(name.clone())
        } else if let Some(profiles) = self.inactive.get(name) {
            Err(spec_error(
                self.path,
                format!(
                    "line {line}: {what} '{name}' does not run: none of its compose profiles [{}] is enabled",
                    profiles.join(", ")
                ),
            )
            .with_hint("enable one with COMPOSE_PROFILES, or drop it from the spec".to_string()))
        } else {
            Err(spec_error(
                self.path,
                format!("line {line}: {what} '{name}' is not a service of the compose file"),
            )
            .with_hint(format!("services are: {}", self.known.join(", "))))
        }
    }

    fn services(&self, raw: BTreeMap<Spanned<String>, RawService>) -> Result<BTreeMap<String, ServiceSpec>> {
        let mut services = BTreeMap::new();
        for (name, svc) in raw {
            let n = self.service(&name, "service")?;
            let mut health = Vec::new();
            for h in svc.health {
                let via = h.via.as_ref().map(|v| self.service(v, "health.via")).transpose()?;
                if !h.path.starts_with('/') {
                    return Err(spec_error(
                        self.path,
                        format!("service '{n}': health path '{}' must start with '/'", h.path),
                    ));
                }
                health.push(HealthProbe {
                    path: h.path,
                    port: h.port,
                    via,
                    status: h.status,
                    fields: h.fields,
                });
            }
            for a in svc.posture.iter().flat_map(|p| &p.allow) {
                if a.reason.trim().is_empty() {
                    return Err(spec_error(
                        self.path,
                        format!("service '{n}': posture allowance '{}' has no reason", a.check),
                    )
                    .with_hint("add reason = \"<why the service needs it>\"".to_string()));
                }
            }
            services.insert(
                n,
                ServiceSpec {
                    published: svc.published,
                    internal: svc.internal,
                    health,
                    posture: svc.posture,
                },
            );
        }
        Ok(services)
    }

    fn dns(&self, raw: &RawDns) -> Result<DnsSpec> {
        let pairs = |list: &[[Spanned<String>; 2]], what: &str| -> Result<Vec<(String, String)>> {
            list.iter()
                .map(|[a, b]| Ok((self.service(a, what)?, self.service(b, what)?)))
                .collect()
        };
        let dns = DnsSpec {
            resolve: pairs(&raw.resolve, "dns.resolve")?,
            isolated: pairs(&raw.isolated, "dns.isolated")?,
            all_pairs: raw.all_pairs,
        };
        if let Some((a, b)) = dns.resolve.iter().find(|p| dns.isolated.contains(p)) {
            return Err(spec_error(
                self.path,
                format!("dns: '{a}' -> '{b}' is listed both in resolve and in isolated"),
            ));
        }
        Ok(dns)
    }

    fn transitive(&self, t: &RawTransitive) -> Result<Transitive> {
        Ok(Transitive {
            stop: self.service(&t.stop, "transitive.stop")?,
            dependants: t
                .dependants
                .iter()
                .map(|d| self.service(d, "transitive.dependants"))
                .collect::<Result<_>>()?,
            within_secs: t.within_secs,
            recover_within_secs: t.recover_within_secs,
        })
    }

    fn migrate(&self, m: RawMigrate) -> Result<MigrateSpec> {
        let mut accept = BTreeMap::new();
        for a in m.accept {
            if a.reason.trim().is_empty() {
                return Err(spec_error(
                    self.path,
                    format!("migrate: accepted failure of '{}' has no reason", a.check),
                )
                .with_hint("add reason = \"<why it may differ, and the remedy>\"".to_string()));
            }
            if a.check.split("::").count() < 2 || a.check.chars().any(char::is_whitespace) {
                return Err(spec_error(
                    self.path,
                    format!("migrate: '{}' is not a check name", a.check),
                )
                .with_hint("name it as in the reports, without the target: `<area>::<check>`, e.g. `ports::db_unreachable_from_nginx`".to_string()));
            }
            accept.insert(a.check, a.reason.trim().to_string());
        }
        Ok(MigrateSpec {
            strategy: m.strategy,
            accept,
        })
    }

    fn persistence(&self, p: RawPersistence, base: &Path) -> Result<Persistence> {
        Ok(Persistence {
            service: self.service(&p.service, "persistence.service")?,
            volume: p.volume,
            port: p.port,
            user: p.user,
            database: p.database,
            password_env_file: base.join(p.password.env_file),
            password_var: p.password.var,
            rows: p.rows,
        })
    }
}

/// The bundled spec for the Phoenix Hydra stack.
pub fn bundled_spec_file() -> PathBuf {
    crate::workspace::root().join("fixtures/phoenix.spec.toml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const KNOWN: &[&str] = &["db", "nginx", "api"];

    fn parse(text: &str) -> Result<Spec> {
        let known: Vec<String> = KNOWN.iter().map(|s| s.to_string()).collect();
        Spec::parse(Path::new("/s/spec.toml"), text, vec!["/s/c.yml".into()], &known)
    }

    const GOOD: &str = r#"
compose = ["c.yml"]
[services.api]
published = [8000]
internal = [8000]
health = [{ path = "/health", fields = { status = "ok" } }, { path = "/api/health", via = "nginx", status = 200 }]
[services.db]
published = [5432]
[dns]
resolve = [["api", "db"]]
isolated = [["nginx", "db"]]
[[transitive]]
stop = "db"
dependants = ["api"]
[persistence]
service = "db"
volume = "db_data"
port = 5432
user = "u"
database = "d"
password = { env_file = "x.env", var = "PW" }
"#;

    #[test]
    fn parses_a_full_spec() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.services["api"].health.len(), 2);
        assert_eq!(s.services["api"].health[0].status, 200);
        assert_eq!(s.services["api"].health[1].via.as_deref(), Some("nginx"));
        assert_eq!(s.dns.isolated, [("nginx".to_string(), "db".to_string())]);
        assert!(s.dns.all_pairs);
        assert_eq!(s.transitive[0].within_secs, 20);
        let p = s.persistence.unwrap();
        assert_eq!(p.password_env_file, Path::new("/s/x.env"));
        assert_eq!(p.rows, 500);
    }

    #[test]
    fn migrate_section_defaults_to_raw_and_keeps_reasons() {
        assert_eq!(parse(GOOD).unwrap().migrate.strategy, Strategy::Raw);
        let text = "[migrate]\nstrategy = \"logical\"\naccept = [{ check = \"ports::db_unreachable_from_nginx\", reason = \" set isolate \" }]\n";
        let m = parse(text).unwrap().migrate;
        assert_eq!(m.strategy, Strategy::Logical);
        assert_eq!(m.accept["ports::db_unreachable_from_nginx"], "set isolate");
    }

    #[rstest]
    #[case::unknown_key("[services.api]\npublishd = [1]\n", "line 2", "unknown field `publishd`")]
    #[case::unknown_service("[services.web]\npublished = [1]\n", "line 1", "service 'web' is not a service")]
    #[case::unknown_dns_peer("[dns]\nresolve = [[\"api\", \"cache\"]]\n", "line 2", "'cache' is not a service")]
    #[case::unknown_via(
        "[services.api]\nhealth = [{ path = \"/h\", via = \"proxy\" }]\n",
        "line 2",
        "health.via 'proxy'"
    )]
    #[case::unknown_top("colour = 1\n", "line 1", "unknown field `colour`")]
    #[case::relative_path("[services.api]\nhealth = [{ path = \"h\" }]\n", "", "must start with '/'")]
    #[case::allowance_without_reason(
        "[services.api]\nposture = { allow = [{ check = \"capabilities\", reason = \" \" }] }\n",
        "",
        "has no reason"
    )]
    #[case::unknown_posture_check(
        "[services.api]\nposture = { allow = [{ check = \"telepathy\", reason = \"x\" }] }\n",
        "line 2",
        "telepathy"
    )]
    #[case::accepted_without_reason(
        "[migrate]\naccept = [{ check = \"ports::x\", reason = \"\" }]\n",
        "",
        "accepted failure of 'ports::x' has no reason"
    )]
    #[case::accepted_not_a_check(
        "[migrate]\naccept = [{ check = \"x\", reason = \"r\" }]\n",
        "",
        "'x' is not a check name"
    )]
    #[case::unknown_strategy("[migrate]\nstrategy = \"rsync\"\n", "line 2", "unknown variant `rsync`")]
    #[case::contradiction(
        "[dns]\nresolve = [[\"api\",\"db\"]]\nisolated = [[\"api\",\"db\"]]\n",
        "",
        "both in resolve and in isolated"
    )]
    fn bad_specs_name_the_line_and_the_cause(#[case] text: &str, #[case] line: &str, #[case] cause: &str) {
        let err = parse(text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/s/spec.toml") && msg.contains(line) && msg.contains(cause),
            "{msg}"
        );
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }

    /// The spec sees the services that run: those of `extends` and merge keys, not those behind a
    /// disabled profile.
    #[test]
    fn spec_services_are_checked_against_the_services_that_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.yml"),
            "x-w: &w {image: w}\nservices:\n  web: {<<: *w}\n  copy: {extends: web}\n  dbg: {image: d, profiles: [debug]}\n",
        )
        .unwrap();
        let spec = dir.path().join("spec.toml");
        std::fs::write(&spec, "compose = [\"c.yml\"]\n[services.copy]\npublished = [80]\n").unwrap();
        // (Assumes COMPOSE_PROFILES does not enable `debug` in the test environment.)
        assert!(Spec::load(&spec, &[]).is_ok());
        std::fs::write(&spec, "compose = [\"c.yml\"]\n\n[services.dbg]\npublished = [80]\n").unwrap();
        let msg = Spec::load(&spec, &[]).unwrap_err().to_string();
        assert!(
            msg.contains(&spec.display().to_string())
                && msg.contains("line 3")
                && msg.contains("'dbg' does not run: none of its compose profiles [debug] is enabled"),
            "{msg}"
        );
    }

    #[test]
    fn the_bundled_spec_is_valid_against_the_bundled_compose_file() {
        let spec = Spec::load(&bundled_spec_file(), &[]).unwrap();
        assert!(spec.services.len() >= 7, "{:?}", spec.services.keys());
        assert!(spec.dns.isolated.contains(&("nginx".into(), "db".into())));
        assert!(spec.persistence.is_some());
        let posture = spec.posture_config();
        assert!(
            posture.seccomp_profile.as_ref().is_some_and(|p| p.exists()),
            "{:?}",
            posture.seccomp_profile
        );
        assert!(posture.services["db"].allow.iter().all(|a| !a.reason.is_empty()));
    }

    #[test]
    fn monitoring_takes_defaults_and_per_service_overrides() {
        let text = "[monitoring]\ncounter = 'hits_total{path=\"other\"}'\ntraffic = \"/probe\"\n[monitoring.services]\napi = { port = 8000 }\nnginx = { port = 9113, path = \"/stats\", requests = 2 }\n";
        let m = parse(text).unwrap().monitoring.unwrap();
        assert_eq!(m.up_within_secs, 60);
        let api = &m.services[0];
        assert_eq!(
            (api.service.as_str(), api.port, api.path.as_str(), api.requests),
            ("api", 8000, "/metrics", 5)
        );
        assert_eq!(api.counter, "hits_total{path=\"other\"}");
        let nginx = &m.services[1];
        assert_eq!(
            (nginx.path.as_str(), nginx.requests, nginx.traffic.as_str()),
            ("/stats", 2, "/probe")
        );
        assert!(parse(GOOD).unwrap().monitoring.is_none());
    }

    #[rstest]
    #[case::unknown_service(
        "[monitoring]\ncounter = 'c'\ntraffic = \"/p\"\n[monitoring.services]\nweb = { port = 1 }\n",
        "'web' is not a service"
    )]
    #[case::no_counter(
        "[monitoring]\ntraffic = \"/p\"\n[monitoring.services]\napi = { port = 1 }\n",
        "service 'api' has no counter"
    )]
    #[case::no_traffic(
        "[monitoring]\ncounter = 'c'\n[monitoring.services]\napi = { port = 1 }\n",
        "service 'api' has no traffic"
    )]
    #[case::relative_path(
        "[monitoring]\ncounter = 'c'\ntraffic = \"p\"\n[monitoring.services]\napi = { port = 1 }\n",
        "traffic 'p' is not a request path"
    )]
    #[case::no_requests(
        "[monitoring]\ncounter = 'c'\ntraffic = \"/p\"\nrequests = 0\n[monitoring.services]\napi = { port = 1 }\n",
        "requests = 0"
    )]
    #[case::no_services(
        "[monitoring]\ncounter = 'c'\ntraffic = \"/p\"\n[monitoring.services]\n",
        "names no service"
    )]
    #[case::no_port(
        "[monitoring]\ncounter = 'c'\ntraffic = \"/p\"\n[monitoring.services]\napi = { }\n",
        "missing field `port`"
    )]
    fn bad_monitoring_sections_say_what_to_fix(#[case] text: &str, #[case] says: &str) {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.contains("/s/spec.toml") && msg.contains(says), "{msg}");
    }
}
