//! Configuration checks: normalised facts + configuration -> outcomes. Pure; no engine knowledge
//! (engine differences are gone by the time facts reach here).

use std::net::IpAddr;

use serde_json::Value;

use super::config::{PostureConfig, Rule};
use super::facts::{CapSet, ContainerFacts, Namespace, Seccomp};
use crate::outcome::{CheckOutcome, Verdict};
use crate::runtime::RuntimeKind;

/// What the rules need to know about the run and the host, besides the container.
#[derive(Debug, Clone)]
pub struct Context {
    /// The target the stack runs on.
    pub runtime: RuntimeKind,
    /// Host address published ports must bind to.
    pub bind_ip: IpAddr,
    /// The engine runs as an unprivileged user.
    pub rootless: bool,
    /// The host runs the unified cgroup hierarchy (v2).
    pub cgroup_v2: bool,
    /// Content of the configured project seccomp profile, if the configuration names one.
    pub project_seccomp: Option<Value>,
}

impl Context {
    /// Whether the host can enforce memory/pids limits for this engine: rootless on cgroup v1
    /// cannot (Podman: "Resource limits are not supported and ignored on cgroups V1 rootless
    /// systems").
    pub fn limits_enforceable(&self) -> bool {
        !self.rootless || self.cgroup_v2
    }
}

/// A violation found by a rule: `value` is what an allowance may name to cover it.
struct Violation {
    value: Option<String>,
    text: String,
}

fn violation(value: Option<&str>, text: impl Into<String>) -> Violation {
    Violation {
        value: value.map(str::to_string),
        text: text.into(),
    }
}

/// No violation, or the one a rule found (no allowance value can narrow it).
fn single(text: Option<impl Into<String>>) -> Vec<Violation> {
    text.map(|t| violation(None, t)).into_iter().collect()
}

/// Builds an outcome for `service`/`rule`.
pub fn outcome(ctx: &Context, service: &str, rule: Rule, verdict: Verdict, cause: &str) -> CheckOutcome {
    let cis = rule.cis().map(|id| format!(" (CIS {id})")).unwrap_or_default();
    let message = match verdict {
        Verdict::Fail => format!("{service}: {cause}{cis}"),
        _ => format!("{service}: {cause}"),
    };
    CheckOutcome {
        runtime: ctx.runtime,
        id: crate::outcome::CheckId::of_service(crate::outcome::Area::Posture, service, rule.name()),
        verdict,
        message,
        service: Some(service.to_string()),
        logs: None,
        seconds: 0.0,
    }
}

/// One container under judgement: the run's context, the allowances and the facts.
pub struct Subject<'a> {
    /// The run's context.
    pub ctx: &'a Context,
    /// The posture configuration, with its allowances.
    pub config: &'a PostureConfig,
    /// The compose service.
    pub service: &'a str,
    /// The container's facts.
    pub facts: &'a ContainerFacts,
}

impl Subject<'_> {
    /// Passes when nothing is violated; a violation covered by an allowance passes with its reason.
    fn judge(&self, rule: Rule, violations: Vec<Violation>, ok: &str) -> CheckOutcome {
        if violations.is_empty() {
            return self.decide(rule, Verdict::Pass, ok);
        }
        let mut allowed = Vec::new();
        let mut failed = Vec::new();
        for v in violations {
            match self.config.allowance(self.service, rule, v.value.as_deref()) {
                Some(a) => allowed.push(format!("{} (allowed: {})", v.text, a.reason.trim())),
                None => failed.push(v.text),
            }
        }
        if failed.is_empty() {
            self.decide(rule, Verdict::Pass, &allowed.join("; "))
        } else {
            self.decide(rule, Verdict::Fail, &failed.join("; "))
        }
    }

    /// An outcome no allowance can change.
    fn decide(&self, rule: Rule, verdict: Verdict, cause: &str) -> CheckOutcome {
        outcome(self.ctx, self.service, rule, verdict, cause)
    }
}

/// A configuration rule: the container under judgement in, the rule's outcome out.
pub type ConfigRule = fn(&Subject, Rule) -> CheckOutcome;

/// Every configuration rule, in evaluation (and report) order.
pub const CONFIG_RULES: [(Rule, ConfigRule); 19] = [
    (Rule::User, user),
    (Rule::Privileged, privileged),
    (Rule::Capabilities, capabilities),
    (Rule::NoNewPrivileges, no_new_privileges),
    (Rule::Seccomp, seccomp),
    (Rule::ReadOnlyRootfs, read_only_rootfs),
    (Rule::HostNetwork, host_namespace),
    (Rule::HostPid, host_namespace),
    (Rule::HostIpc, host_namespace),
    (Rule::HostUts, host_namespace),
    (Rule::HostUserns, host_namespace),
    (Rule::EngineSocket, engine_socket),
    (Rule::SensitiveMounts, sensitive_mounts),
    (Rule::PortBindIp, port_bind_ip),
    (Rule::MemoryLimit, limit),
    (Rule::PidsLimit, limit),
    (Rule::Healthcheck, healthcheck),
    (Rule::RestartPolicy, restart_policy),
    (Rule::SecretEnv, secret_env),
];

/// Runs every configuration rule (not the behavioural ones) for one container.
pub fn check_config(ctx: &Context, config: &PostureConfig, service: &str, f: &ContainerFacts) -> Vec<CheckOutcome> {
    let subject = Subject {
        ctx,
        config,
        service,
        facts: f,
    };
    CONFIG_RULES
        .iter()
        .map(|(rule, check)| check(&subject, *rule))
        .collect()
}

fn user(s: &Subject, rule: Rule) -> CheckOutcome {
    let u = &s.facts.user;
    let user = if u.raw.is_empty() {
        "image default (root)".to_string()
    } else {
        format!("'{}'", u.raw)
    };
    let root = u.is_root().then(|| format!("runs as root (user {user})"));
    s.judge(rule, single(root), &format!("runs as non-root user {user}"))
}

fn privileged(s: &Subject, rule: Rule) -> CheckOutcome {
    let flaw = "runs privileged: every capability, host devices, no confinement";
    s.judge(rule, single(s.facts.privileged.then_some(flaw)), "not privileged")
}

fn capabilities(s: &Subject, rule: Rule) -> CheckOutcome {
    let caps = &s.facts.caps;
    let violations = if caps.all {
        vec![violation(None, "privileged: every capability")]
    } else {
        caps.bounding
            .iter()
            .map(|c| {
                let state = if caps.effective.contains(c) {
                    "effective"
                } else {
                    "bounding set only"
                };
                violation(Some(c), format!("may hold CAP_{c} ({state})"))
            })
            .collect()
    };
    s.judge(rule, violations, "no capabilities (all dropped)")
}

fn no_new_privileges(s: &Subject, rule: Rule) -> CheckOutcome {
    let flaw = "no-new-privileges is not set: setuid binaries can raise privileges";
    s.judge(
        rule,
        single((!s.facts.no_new_privileges).then_some(flaw)),
        "no-new-privileges is set",
    )
}

/// What is wrong with the container's seccomp filter, given the project profile (if required).
fn seccomp_flaw(actual: &Seccomp, project: Option<&Value>) -> Option<&'static str> {
    match (actual, project) {
        (Seccomp::Unconfined { by_privileged: true }, _) => Some("no seccomp filter: privileged turns it off"),
        (Seccomp::Unconfined { by_privileged: false }, _) => Some("no seccomp filter: seccomp=unconfined"),
        (_, None) => None,
        (Seccomp::EngineDefault, Some(_)) => Some("filters with the engine's default profile, not the project profile"),
        (Seccomp::Custom(src), Some(project)) => match src.content() {
            Some(p) if p == project => None,
            Some(_) => Some("filters with a custom profile that differs from the project profile"),
            None => {
                Some("filters with a profile given by path that could not be read to compare with the project profile")
            }
        },
    }
}

fn seccomp(s: &Subject, rule: Rule) -> CheckOutcome {
    let project = s.ctx.project_seccomp.as_ref();
    let engine_wide = matches!(
        s.facts.seccomp,
        Seccomp::Custom(super::facts::ProfileSource::EngineWide { .. })
    );
    let ok = match (project.is_some(), engine_wide) {
        (true, true) => "filters with the project seccomp profile, set engine-wide for this run (the compose tool could not pass it: see the parity report's seccomp_remedy)",
        (true, false) => "filters with the project seccomp profile",
        (false, _) => "seccomp filter on",
    };
    s.judge(rule, single(seccomp_flaw(&s.facts.seccomp, project)), ok)
}

fn read_only_rootfs(s: &Subject, rule: Rule) -> CheckOutcome {
    let flaw = (!s.facts.read_only_rootfs).then_some("root filesystem is writable");
    s.judge(rule, single(flaw), "root filesystem is read-only")
}

/// The container must not share the host's namespace the rule is about.
fn host_namespace(s: &Subject, rule: Rule) -> CheckOutcome {
    let ns = &s.facts.namespaces;
    let (space, what) = match rule {
        Rule::HostNetwork => (&ns.network, "network"),
        Rule::HostPid => (&ns.pid, "PID"),
        Rule::HostIpc => (&ns.ipc, "IPC"),
        Rule::HostUts => (&ns.uts, "UTS"),
        Rule::HostUserns => (&ns.user, "user"),
        other => unreachable!("{other} is not a namespace rule"),
    };
    let ok = match space {
        Namespace::Container(id) => format!(
            "shares the {what} namespace of container {}, not the host's",
            crate::runtime::short_id(id)
        ),
        _ => format!("private {what} namespace"),
    };
    let shared = (*space == Namespace::Host).then(|| format!("shares the host's {what} namespace"));
    s.judge(rule, single(shared), &ok)
}

fn engine_socket(s: &Subject, rule: Rule) -> CheckOutcome {
    let violations = s
        .facts
        .mounts
        .iter()
        .filter(|m| is_engine_socket(&m.source) || is_engine_socket(&m.destination))
        .map(|m| {
            let mode = if m.rw {
                "rw"
            } else {
                "ro, which does not stop connect()"
            };
            let text = format!(
                "engine socket {} mounted at {} ({mode}): full control of the engine",
                m.source, m.destination
            );
            violation(Some(&m.source), text)
        })
        .collect();
    s.judge(rule, violations, "no engine socket mounted")
}

fn sensitive_mounts(s: &Subject, rule: Rule) -> CheckOutcome {
    let violations = s
        .facts
        .mounts
        .iter()
        .filter(|m| m.kind == "bind" && !is_engine_socket(&m.source) && is_sensitive_host_path(&m.source))
        .map(|m| {
            let mode = if m.rw { "rw" } else { "ro" };
            let text = format!("host path {} mounted at {} ({mode})", m.source, m.destination);
            violation(Some(&m.source), text)
        })
        .collect();
    s.judge(rule, violations, "no sensitive host path mounted")
}

fn port_bind_ip(s: &Subject, rule: Rule) -> CheckOutcome {
    let bind = s.ctx.bind_ip.to_string();
    let ports = &s.facts.ports;
    let violations = ports
        .iter()
        .filter(|p| p.host_ip != bind)
        .map(|p| {
            let why = if p.all_interfaces() {
                "every interface".to_string()
            } else {
                format!("{} instead of {bind}", p.host_ip)
            };
            let text = format!(
                "port {} published on {}:{} ({why})",
                p.container_port, p.host_ip, p.host_port
            );
            violation(Some(&p.host_ip), text)
        })
        .collect();
    let ok = if ports.is_empty() {
        "publishes no port".to_string()
    } else {
        format!("every published port binds {bind} only")
    };
    s.judge(rule, violations, &ok)
}

/// A memory or pids limit must be set, where the host can enforce it at all.
fn limit(s: &Subject, rule: Rule) -> CheckOutcome {
    let (value, what) = match rule {
        Rule::MemoryLimit => (s.facts.memory_limit, "memory"),
        Rule::PidsLimit => (s.facts.pids_limit, "pids"),
        other => unreachable!("{other} is not a limit rule"),
    };
    if !s.ctx.limits_enforceable() {
        let cause =
            format!("{what} limit not enforceable: rootless engine on cgroup v1 ignores it (engine reports {value})");
        return s.decide(rule, Verdict::NotEnforceable, &cause);
    }
    let missing = (value <= 0).then(|| format!("no {what} limit"));
    s.judge(rule, single(missing), &format!("{what} limit {value}"))
}

fn healthcheck(s: &Subject, rule: Rule) -> CheckOutcome {
    let test = s.facts.healthcheck.as_ref();
    let ok = format!("healthcheck {}", test.map(|t| t.join(" ")).unwrap_or_default());
    s.judge(rule, single(test.is_none().then_some("no healthcheck")), &ok)
}

fn restart_policy(s: &Subject, rule: Rule) -> CheckOutcome {
    let policy = &s.facts.restart_policy;
    let none = (policy.is_empty() || policy == "no").then_some("no restart policy");
    s.judge(rule, single(none), &format!("restart policy {policy}"))
}

fn secret_env(s: &Subject, rule: Rule) -> CheckOutcome {
    let violations = s
        .facts
        .secret_env_names()
        .into_iter()
        .map(|name| {
            let text = format!("secret-looking variable {name} in plain env (value not shown); pass it as a file");
            violation(Some(&name), text)
        })
        .collect();
    s.judge(rule, violations, "no secret-looking variable in env")
}

/// Capability names for messages (`none` for the empty set).
pub(crate) fn describe_caps(caps: &CapSet) -> String {
    if caps.is_empty() {
        "none".into()
    } else {
        caps.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// File names of engine API sockets.
const ENGINE_SOCKETS: [&str; 4] = ["docker.sock", "podman.sock", "containerd.sock", "crio.sock"];

/// Whether a path is an engine API socket.
pub fn is_engine_socket(path: &str) -> bool {
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    ENGINE_SOCKETS.contains(&name)
}

/// Host directories whose bind mount exposes the host (CIS 5.5, plus the runtime directories).
const SENSITIVE: [&str; 11] = [
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/proc",
    "/sys",
    "/usr",
    "/var/run",
    "/run",
    "/var/lib/docker",
    "/var/lib/containers",
];

/// Whether a bind-mount source is a sensitive host path: `/` itself, or one of `SENSITIVE` or
/// anything below it.
pub fn is_sensitive_host_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p.is_empty() || SENSITIVE.iter().any(|s| p == *s || p.starts_with(&format!("{s}/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::facts::parse_facts;
    use crate::runtime::EngineKind;
    use rstest::rstest;
    use std::collections::BTreeMap;

    use crate::test_support::inspect_fixture as fixture;

    fn project_profile() -> Value {
        let text = std::fs::read_to_string(crate::workspace::root().join("fixtures/seccomp/phoenix.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn ctx(runtime: RuntimeKind) -> Context {
        Context {
            runtime,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            rootless: runtime.is_rootless(),
            cgroup_v2: false,
            project_seccomp: Some(project_profile()),
        }
    }

    fn config() -> PostureConfig {
        PostureConfig::bundled()
    }

    fn run(file: &str, runtime: RuntimeKind) -> BTreeMap<String, CheckOutcome> {
        let mut out = BTreeMap::new();
        for mut f in parse_facts(&fixture(file)).unwrap() {
            f.resolve_seccomp(&crate::workspace::root().join("compose"));
            let service = f.service.clone().unwrap();
            for o in check_config(&ctx(runtime), &config(), &service, &f) {
                out.insert(o.id.name_in_area(), o);
            }
        }
        out
    }

    #[rstest]
    #[case::docker("docker-db.json", RuntimeKind::Docker)]
    #[case::podman("podman-db.json", RuntimeKind::Podman)]
    #[case::podman_rootless("podman-rootless-db.json", RuntimeKind::PodmanRootless)]
    #[case::docker_gap("docker-gap-detector.json", RuntimeKind::Docker)]
    #[case::podman_gap("podman-gap-detector.json", RuntimeKind::Podman)]
    #[case::podman_rootless_gap("podman-rootless-gap-detector.json", RuntimeKind::PodmanRootless)]
    fn bundled_services_pass_every_configuration_check(#[case] file: &str, #[case] runtime: RuntimeKind) {
        let out = run(file, runtime);
        assert_eq!(out.len(), 19);
        for o in out.values() {
            let limit = o.id.name_in_area().ends_with("memory_limit") || o.id.name_in_area().ends_with("pids_limit");
            if runtime.is_rootless() && limit {
                assert_eq!(o.verdict, Verdict::NotEnforceable, "{}", o.message);
            } else {
                assert_eq!(o.verdict, Verdict::Pass, "{}: {}", o.id.name_in_area(), o.message);
            }
        }
        let secret = out
            .values()
            .find(|o| o.id.name_in_area().ends_with("::secret_env"))
            .unwrap();
        assert!(secret.message.contains("allowed:"), "{}", secret.message);
    }

    /// (service::check, words the message must contain), per planted flaw; consequences of a flaw
    /// (privileged implies every capability) included.
    fn planted(runtime: RuntimeKind) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            ("gap-detector::user", "runs as root"),
            ("recurrent-processor::engine_socket", "/var/run/docker.sock"),
            ("analysis-engine::capabilities", "CAP_SYS_ADMIN"),
            ("model-service::port_bind_ip", "every interface"),
            ("rubik-agent::privileged", "privileged"),
            ("rubik-agent::capabilities", "every capability"),
            ("nginx::read_only_rootfs", "writable"),
            ("nginx::secret_env", "PHOENIX_API_TOKEN"),
        ];
        match runtime {
            // docker-compose drops the planted seccomp=unconfined; privileged turns seccomp off.
            k if k.engine() == EngineKind::Docker => v.push(("rubik-agent::seccomp", "privileged turns it off")),
            _ => v.push(("db::seccomp", "seccomp=unconfined")),
        }
        v
    }

    #[rstest]
    #[case::docker("docker-flaws.json", RuntimeKind::Docker)]
    #[case::podman("podman-flaws.json", RuntimeKind::Podman)]
    #[case::podman_rootless("podman-rootless-flaws.json", RuntimeKind::PodmanRootless)]
    fn exactly_the_planted_flaws_fail(#[case] file: &str, #[case] runtime: RuntimeKind) {
        let out = run(file, runtime);
        let expected = planted(runtime);
        for (name, word) in &expected {
            let o = &out[*name];
            assert_eq!(o.verdict, Verdict::Fail, "{name}: {}", o.message);
            let service = name.split("::").next().unwrap();
            assert!(
                o.message.starts_with(&format!("{service}: ")) && o.message.contains(word),
                "{}",
                o.message
            );
        }
        let failed: Vec<String> = out
            .values()
            .filter(|o| o.verdict == Verdict::Fail)
            .map(|o| o.id.name_in_area())
            .collect();
        assert_eq!(failed.len(), expected.len(), "{failed:?}");
    }

    #[rstest]
    #[case::docker("docker-flaws.json", RuntimeKind::Docker)]
    #[case::podman("podman-flaws.json", RuntimeKind::Podman)]
    #[case::podman_rootless("podman-rootless-flaws.json", RuntimeKind::PodmanRootless)]
    fn secret_values_never_reach_a_message(#[case] file: &str, #[case] runtime: RuntimeKind) {
        let json = fixture(file);
        assert!(
            json.contains("planted-flaw-token-7f3c9a"),
            "fixture lost its planted secret"
        );
        for o in run(file, runtime).values() {
            assert!(!o.message.contains("planted-flaw-token"), "{}", o.message);
            assert!(!o.message.contains("<redacted>"), "{}", o.message);
        }
    }

    #[test]
    fn allowances_cover_only_what_they_name() {
        let mut f = parse_facts(&fixture("docker-flaws.json"))
            .unwrap()
            .into_iter()
            .find(|f| f.service.as_deref() == Some("analysis-engine"))
            .unwrap();
        f.caps.bounding.insert("NET_RAW".into());
        let c = PostureConfig::from_yaml(
            "services:\n  analysis-engine: {allow: [{check: capabilities, value: SYS_ADMIN, reason: needs mounts}]}\n",
        )
        .unwrap();
        let out = check_config(&ctx(RuntimeKind::Docker), &c, "analysis-engine", &f);
        let caps = out
            .iter()
            .find(|o| o.id.name_in_area() == "analysis-engine::capabilities")
            .unwrap();
        assert_eq!(caps.verdict, Verdict::Fail);
        assert!(
            caps.message.contains("CAP_NET_RAW") && !caps.message.contains("CAP_SYS_ADMIN"),
            "{}",
            caps.message
        );
        f.caps.bounding.remove("NET_RAW");
        let out = check_config(&ctx(RuntimeKind::Docker), &c, "analysis-engine", &f);
        let caps = out
            .iter()
            .find(|o| o.id.name_in_area() == "analysis-engine::capabilities")
            .unwrap();
        assert_eq!(caps.verdict, Verdict::Pass);
        assert!(caps.message.contains("allowed: needs mounts"), "{}", caps.message);
    }

    #[rstest]
    #[case("/var/run/docker.sock", true)]
    #[case("/run/user/1001/podman/podman.sock", true)]
    #[case("/run/podman/podman.sock", true)]
    #[case("/work/main/fixtures/db/schema.sql", false)]
    fn engine_sockets(#[case] path: &str, #[case] yes: bool) {
        assert_eq!(is_engine_socket(path), yes);
    }

    #[rstest]
    #[case("/", true)]
    #[case("/etc", true)]
    #[case("/etc/passwd", true)]
    #[case("/proc", true)]
    #[case("/var/run", true)]
    #[case("/etcetera", false)]
    #[case("/work/main/fixtures/model/coefficients.json", false)]
    fn sensitive_paths(#[case] path: &str, #[case] yes: bool) {
        assert_eq!(is_sensitive_host_path(path), yes);
    }

    #[test]
    fn project_profile_mismatch_and_engine_default_fail_when_a_profile_is_required() {
        let mut f = parse_facts(&fixture("docker-db.json")).unwrap().remove(0);
        f.seccomp = Seccomp::EngineDefault;
        let out = check_config(&ctx(RuntimeKind::Docker), &config(), "db", &f);
        let s = out.iter().find(|o| o.id.name_in_area() == "db::seccomp").unwrap();
        assert_eq!(s.verdict, Verdict::Fail);
        assert!(s.message.contains("engine's default profile"), "{}", s.message);
        let mut relaxed = ctx(RuntimeKind::Docker);
        relaxed.project_seccomp = None;
        let out = check_config(&relaxed, &config(), "db", &f);
        assert_eq!(
            out.iter()
                .find(|o| o.id.name_in_area() == "db::seccomp")
                .unwrap()
                .verdict,
            Verdict::Pass
        );
    }
}
