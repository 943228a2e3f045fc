//! Behavioural probes: what the kernel enforces inside a container (read from `/proc/1/status`,
//! `/proc/1/uid_map`, mountinfo, and attempts that must be refused), compared with what the
//! configuration claims. A mismatch fails as "config says X, kernel enforces Y". Parsing and
//! comparison are pure; the probe script runs through `Stack::exec`.

use std::collections::BTreeMap;

use super::config::Rule;
use super::facts::{caps_from_mask, CapSet, ContainerFacts, Seccomp};
use super::rules::{describe_caps, outcome, Context};
use crate::error::{HarnessError, Result};
use crate::outcome::{CheckOutcome, Verdict};

/// The probe, run with `sh -c` inside the container. Needs sh, coreutils, grep and perl-base.
pub const SCRIPT: &str = include_str!("probe.sh");

/// The result of one attempt that must be refused unless the configuration grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt succeeded.
    Succeeded,
    /// The attempt was refused, with the error.
    Denied(String),
    /// Not attempted (no tool in the image, ...): never counts as a pass.
    Skipped(String),
}

impl Attempt {
    fn parse(v: &str) -> Self {
        let v = v.trim();
        if v == "ok" {
            Attempt::Succeeded
        } else if let Some(why) = v.strip_prefix("skip:") {
            Attempt::Skipped(why.trim().to_string())
        } else {
            Attempt::Denied(v.strip_prefix("denied:").unwrap_or(v).trim().to_string())
        }
    }
}

/// One line of `/proc/PID/uid_map`: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id of the range inside the namespace.
    pub inside: u32,
    /// The host id that `inside` maps to.
    pub outside: u32,
    /// Number of ids in the range.
    pub count: u32,
}

/// Parses uid_map/gid_map text (lines or `;`-separated).
pub fn parse_id_map(text: &str) -> Result<Vec<IdRange>> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let n: Vec<u32> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| HarnessError::Parse {
                    what: "uid_map".into(),
                    reason: format!("'{l}': {e}"),
                })?;
            match n[..] {
                [inside, outside, count] => Ok(IdRange { inside, outside, count }),
                _ => Err(HarnessError::Parse {
                    what: "uid_map".into(),
                    reason: format!("'{l}': expected 3 numbers"),
                }),
            }
        })
        .collect()
}

/// The host id a container id maps to.
pub fn map_id(map: &[IdRange], id: u32) -> Option<u32> {
    map.iter()
        .find(|r| id >= r.inside && (id - r.inside) < r.count)
        .map(|r| r.outside + (id - r.inside))
}

/// Whether a map is the identity over the whole id space (no user namespace).
pub fn is_identity(map: &[IdRange]) -> bool {
    matches!(map, [IdRange { inside: 0, outside: 0, count }] if *count == u32::MAX)
}

fn describe_map(map: &[IdRange]) -> String {
    map.iter()
        .map(|r| format!("{}->{} x{}", r.inside, r.outside, r.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The effective uid on the `Uid:` line of a `/proc/PID/status` text.
pub fn status_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// What the probe script reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Effective uid of the container's first process.
    pub uid: u32,
    /// The first process's effective capabilities (`CapEff`).
    pub cap_eff: CapSet,
    /// The first process's bounding set (`CapBnd`).
    pub cap_bnd: CapSet,
    /// Whether the kernel's NoNewPrivs flag is set.
    pub no_new_privs: bool,
    /// 0 off, 1 strict, 2 filter.
    pub seccomp_mode: u8,
    /// The first process's uid map (`/proc/1/uid_map`).
    pub uid_map: Vec<IdRange>,
    /// Mount options of `/` (`ro,relatime`).
    pub root_mount: String,
    /// Creating a file in `/`.
    pub rootfs_write: Attempt,
    /// Opening a raw IP socket.
    pub raw_socket: Attempt,
    /// A chown of a scratch file to another uid.
    pub chown: Attempt,
    /// A tmpfs mount.
    pub mount: Attempt,
    /// `ptrace(PTRACE_ATTACH)` of a pid that does not exist: refused (EPERM) only by a seccomp
    /// filter that blocks ptrace (the project profile), not by the engines' default profiles.
    pub ptrace: Attempt,
}

/// Parses the probe script's `key=value` output.
pub fn parse_report(stdout: &str) -> Result<ProbeReport> {
    let kv: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        kv.get(k).copied().ok_or_else(|| HarnessError::Parse {
            what: "posture probe".into(),
            reason: format!("no '{k}' in its output"),
        })
    };
    let num = |k: &str| -> Result<u32> {
        let v = get(k)?;
        v.split_whitespace()
            .nth(1)
            .or_else(|| v.split_whitespace().next())
            .unwrap_or_default()
            .parse()
            .map_err(|e| HarnessError::Parse {
                what: "posture probe".into(),
                reason: format!("{k}='{v}': {e}"),
            })
    };
    Ok(ProbeReport {
        uid: num("status.Uid")?,
        cap_eff: caps_from_mask(get("status.CapEff")?)?,
        cap_bnd: caps_from_mask(get("status.CapBnd")?)?,
        no_new_privs: get("status.NoNewPrivs")?.trim() == "1",
        seccomp_mode: get("status.Seccomp")?.trim().parse().map_err(|e| HarnessError::Parse {
            what: "posture probe".into(),
            reason: format!("Seccomp: {e}"),
        })?,
        uid_map: parse_id_map(get("uid_map")?)?,
        root_mount: get("root_mount")?.trim().to_string(),
        rootfs_write: Attempt::parse(get("rootfs_write")?),
        raw_socket: Attempt::parse(get("raw_socket")?),
        chown: Attempt::parse(get("chown")?),
        mount: Attempt::parse(get("mount")?),
        ptrace: kv
            .get("ptrace")
            .map(|v| Attempt::parse(v))
            .unwrap_or_else(|| Attempt::Skipped("the probe did not report it".into())),
    })
}

/// What the host sees of the container's first process, for the rootless proof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// Effective uid of the container's first process on the host (`/proc/<host pid>/status`).
    pub uid: Option<u32>,
    /// Why it is unknown, when it is.
    pub note: String,
}

/// One container's probe report, with the configuration it is compared against.
pub struct Probed<'a> {
    /// The run's context.
    pub ctx: &'a Context,
    /// The compose service.
    pub service: &'a str,
    /// The container's facts: what the configuration claims.
    pub facts: &'a ContainerFacts,
    /// What the probe found inside the container.
    pub report: &'a ProbeReport,
    /// What the host sees of the container's first process.
    pub host: &'a HostView,
}

impl Probed<'_> {
    fn outcome(&self, rule: Rule, verdict: Verdict, cause: &str) -> CheckOutcome {
        outcome(self.ctx, self.service, rule, verdict, cause)
    }

    /// Passes with `pass` when the kernel agrees with the configuration, fails with `fail` otherwise.
    fn agree(
        &self,
        rule: Rule,
        agrees: bool,
        pass: impl FnOnce() -> String,
        fail: impl FnOnce() -> String,
    ) -> CheckOutcome {
        if agrees {
            self.outcome(rule, Verdict::Pass, &pass())
        } else {
            self.outcome(rule, Verdict::Fail, &fail())
        }
    }
}

/// Whether the configuration lets a process holding `eff` use `syscall` with `cap`; `None` when
/// the seccomp profile's content is unknown.
fn grants(seccomp: &Seccomp, eff: &CapSet, cap: &str, syscall: &str) -> Option<bool> {
    seccomp.allows(syscall, eff).map(|allowed| allowed && eff.contains(cap))
}

/// `CAP_X effective` or `no effective CAP_X`.
fn holding(eff: &CapSet, cap: &str) -> String {
    if eff.contains(cap) {
        format!("CAP_{cap} effective")
    } else {
        format!("no effective CAP_{cap}")
    }
}

/// Compares an attempt with what the configuration expects (`Some(true)`: allowed).
fn attempt_check(
    p: &Probed,
    rule: Rule,
    what: &str,
    attempt: &Attempt,
    expect_allowed: Option<bool>,
    why: &str,
) -> CheckOutcome {
    let (verdict, cause) = match (attempt, expect_allowed) {
        (Attempt::Skipped(reason), _) => (Verdict::Skip, format!("{what} not attempted: {reason}")),
        (Attempt::Succeeded, Some(true)) => (Verdict::Pass, format!("{what} succeeded, as configured ({why})")),
        (Attempt::Denied(err), Some(false)) => {
            (Verdict::Pass, format!("{what} refused ({err}), as configured ({why})"))
        }
        (Attempt::Succeeded, Some(false)) => (
            Verdict::Fail,
            format!("config says {what} is refused ({why}), kernel allows it"),
        ),
        (Attempt::Denied(err), Some(true)) => (
            Verdict::Fail,
            format!("config says {what} is allowed ({why}), kernel refuses it ({err})"),
        ),
        (a, None) => (
            Verdict::Skip,
            format!("configuration makes no claim about {what} ({why}); kernel: {a:?}"),
        ),
    };
    p.outcome(rule, verdict, &cause)
}

/// A behavioural rule: one container's probe report in, the rule's outcome out.
pub type KernelRule = fn(&Probed, Rule) -> CheckOutcome;

/// Every behavioural rule, in evaluation (and report) order.
pub const KERNEL_RULES: [(Rule, KernelRule); 10] = [
    (Rule::KernelUser, kernel_user),
    (Rule::KernelCapabilities, kernel_capabilities),
    (Rule::KernelNoNewPrivileges, kernel_no_new_privileges),
    (Rule::KernelSeccomp, kernel_seccomp),
    (Rule::KernelRootfs, kernel_rootfs),
    (Rule::KernelRawSocket, kernel_attempt),
    (Rule::KernelChown, kernel_attempt),
    (Rule::KernelMount, kernel_mount),
    (Rule::KernelSeccompProfile, kernel_seccomp_profile),
    (Rule::UsernsMapping, |p, _| {
        userns_check(p.ctx, p.service, p.report, p.host)
    }),
];

/// The behavioural checks of one container: kernel state and attempts compared with the facts,
/// and the user-namespace mapping (rootless proof).
pub fn check_kernel(
    ctx: &Context,
    service: &str,
    f: &ContainerFacts,
    r: &ProbeReport,
    host: &HostView,
) -> Vec<CheckOutcome> {
    let probed = Probed {
        ctx,
        service,
        facts: f,
        report: r,
        host,
    };
    KERNEL_RULES.iter().map(|(rule, check)| check(&probed, *rule)).collect()
}

fn kernel_user(p: &Probed, rule: Rule) -> CheckOutcome {
    let (user, r) = (&p.facts.user, p.report);
    match user.uid {
        Some(uid) => p.agree(
            rule,
            r.uid == uid,
            || format!("runs as uid {uid}, as configured"),
            || format!("config says uid {uid}, kernel runs uid {}", r.uid),
        ),
        None => p.outcome(
            rule,
            Verdict::Pass,
            &format!("named user '{}' runs as uid {}", user.raw, r.uid),
        ),
    }
}

fn kernel_capabilities(p: &Probed, rule: Rule) -> CheckOutcome {
    let (caps, r) = (&p.facts.caps, p.report);
    let bnd_ok = if caps.all {
        r.cap_bnd.contains("SYS_ADMIN")
    } else {
        r.cap_bnd == caps.bounding
    };
    let pass = || {
        let bounding = if caps.all {
            format!("{} capabilities", r.cap_bnd.len())
        } else {
            describe_caps(&r.cap_bnd)
        };
        let effective = describe_caps(&r.cap_eff);
        format!("kernel capabilities match the configuration: effective {effective}, bounding {bounding}")
    };
    let fail = || {
        let claimed_bnd = if caps.all {
            "every capability".to_string()
        } else {
            describe_caps(&caps.bounding)
        };
        format!(
            "config says effective {} / bounding {claimed_bnd}, kernel enforces effective {} / bounding {}",
            describe_caps(&caps.effective),
            describe_caps(&r.cap_eff),
            describe_caps(&r.cap_bnd)
        )
    };
    p.agree(rule, r.cap_eff == caps.effective && bnd_ok, pass, fail)
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn kernel_no_new_privileges(p: &Probed, rule: Rule) -> CheckOutcome {
    let (claimed, kernel) = (p.facts.no_new_privileges, p.report.no_new_privs);
    p.agree(
        rule,
        kernel == claimed,
        || format!("NoNewPrivs {} in the kernel, as configured", onoff(kernel)),
        || {
            format!(
                "config says no-new-privileges {}, kernel enforces NoNewPrivs {}",
                onoff(claimed),
                onoff(kernel)
            )
        },
    )
}

fn kernel_seccomp(p: &Probed, rule: Rule) -> CheckOutcome {
    let (claimed, mode) = (p.facts.seccomp.is_filtering(), p.report.seccomp_mode);
    p.agree(
        rule,
        (mode == 2) == claimed,
        || format!("Seccomp mode {mode} in the kernel, as configured"),
        || {
            format!(
                "config says seccomp filter {}, kernel enforces Seccomp mode {mode}",
                onoff(claimed)
            )
        },
    )
}

fn kernel_rootfs(p: &Probed, rule: Rule) -> CheckOutcome {
    let r = p.report;
    let kernel_ro = r.root_mount.split(',').next() == Some("ro") && r.rootfs_write != Attempt::Succeeded;
    let write = match &r.rootfs_write {
        Attempt::Succeeded => "a write to / succeeded".to_string(),
        Attempt::Denied(e) => format!("a write to / was refused: {e}"),
        Attempt::Skipped(e) => format!("no write attempted: {e}"),
    };
    let claimed = if p.facts.read_only_rootfs {
        "read-only"
    } else {
        "writable"
    };
    p.agree(
        rule,
        kernel_ro == p.facts.read_only_rootfs,
        || format!("root filesystem mounted {} ({write}), as configured", r.root_mount),
        || {
            format!(
                "config says root filesystem {claimed}, kernel has it mounted {} ({write})",
                r.root_mount
            )
        },
    )
}

/// An attempt that needs one capability (and its syscall past the seccomp filter).
fn kernel_attempt(p: &Probed, rule: Rule) -> CheckOutcome {
    let r = p.report;
    let (what, attempt, cap, syscall) = match rule {
        Rule::KernelRawSocket => ("a raw socket", &r.raw_socket, "NET_RAW", "socket"),
        Rule::KernelChown => ("a chown to another uid", &r.chown, "CHOWN", "fchownat"),
        other => unreachable!("{other} is not a single-capability attempt"),
    };
    let eff = &p.facts.caps.effective;
    let expect = grants(&p.facts.seccomp, eff, cap, syscall);
    attempt_check(p, rule, what, attempt, expect, &holding(eff, cap))
}

fn kernel_mount(p: &Probed, rule: Rule) -> CheckOutcome {
    let (f, eff) = (p.facts, &p.facts.caps.effective);
    if !eff.contains("SYS_ADMIN") {
        return attempt_check(
            p,
            rule,
            "a mount",
            &p.report.mount,
            Some(false),
            &holding(eff, "SYS_ADMIN"),
        );
    }
    let seccomp = if f.seccomp.allows("mount", eff) == Some(false) {
        "blocks mount"
    } else {
        "allows mount"
    };
    let why = format!("CAP_SYS_ADMIN effective, seccomp {seccomp}");
    let expect = grants(&f.seccomp, eff, "SYS_ADMIN", "mount");
    attempt_check(p, rule, "a mount", &p.report.mount, expect, &why)
}

/// Which profile the kernel enforces, not only that one is on: the engines' default profiles
/// allow ptrace, the project profile does not, so a ptrace attach tells them apart.
fn kernel_seccomp_profile(p: &Probed, rule: Rule) -> CheckOutcome {
    let f = p.facts;
    let expect = f.seccomp.allows("ptrace", &f.caps.effective);
    let why = match expect {
        Some(true) => format!("{} allows ptrace", seccomp_source(&f.seccomp)),
        Some(false) => format!("{} blocks ptrace", seccomp_source(&f.seccomp)),
        None => format!("{} could not be read", seccomp_source(&f.seccomp)),
    };
    attempt_check(p, rule, "a ptrace attach", &p.report.ptrace, expect, &why)
}

/// Where the filter the configuration claims comes from, for messages.
fn seccomp_source(s: &Seccomp) -> &'static str {
    use super::facts::ProfileSource;
    match s {
        Seccomp::EngineDefault => "the engine's default profile",
        Seccomp::Unconfined { .. } => "no filter",
        Seccomp::Custom(ProfileSource::Inline(_)) => "the profile sent inline",
        Seccomp::Custom(ProfileSource::Path { .. }) => "the profile given by path",
        Seccomp::Custom(ProfileSource::EngineWide { .. }) => "the profile set engine-wide for this run",
    }
}

/// The rootless proof: under a rootless engine container uid 0 and the running uid map to
/// unprivileged host uids (from uid_map and from the host's view of the process); under a
/// rootful engine the identity mapping is reported as such.
pub fn userns_check(ctx: &Context, service: &str, r: &ProbeReport, host: &HostView) -> CheckOutcome {
    let (verdict, cause) = userns_verdict(ctx.rootless, r, host);
    outcome(ctx, service, Rule::UsernsMapping, verdict, &cause)
}

/// A host uid for messages.
fn host_uid(uid: Option<u32>) -> String {
    uid.map(|m| m.to_string()).unwrap_or("unmapped".into())
}

fn userns_verdict(rootless: bool, r: &ProbeReport, host: &HostView) -> (Verdict, String) {
    let map = &r.uid_map;
    let mapped = map_id(map, r.uid);
    let root = map_id(map, 0);
    let host_text = match host.uid {
        Some(u) => format!("host sees uid {u}"),
        None => format!("host view unavailable: {}", host.note),
    };
    let consistent = match (host.uid, mapped) {
        (Some(h), Some(m)) => h == m,
        _ => true,
    };
    if !consistent {
        let cause = format!(
            "uid_map ({}) says container uid {} is host uid {}, but the {host_text}",
            describe_map(map),
            r.uid,
            host_uid(mapped)
        );
        return (Verdict::Fail, cause);
    }
    if rootless {
        let unprivileged = root.is_some_and(|h| h != 0) && mapped.is_some_and(|h| h != 0) && host.uid != Some(0);
        let text = format!(
            "container uid {} is host uid {}, container root is host uid {} (uid_map {}; {host_text})",
            r.uid,
            host_uid(mapped),
            host_uid(root),
            describe_map(map)
        );
        if unprivileged {
            (Verdict::Pass, format!("rootless: {text}"))
        } else {
            let cause = format!("config says rootless, kernel maps to a privileged host uid: {text}");
            (Verdict::Fail, cause)
        }
    } else if is_identity(map) {
        let cause = format!(
            "identity mapping (rootful engine, no user namespace): container uid {} is host uid {} ({host_text})",
            r.uid, r.uid
        );
        (Verdict::Pass, cause)
    } else {
        let cause = format!(
            "user namespace remapping: container uid {} is host uid {} (uid_map {}; {host_text})",
            r.uid,
            host_uid(mapped),
            describe_map(map)
        );
        (Verdict::Pass, cause)
    }
}

/// Outcomes for every behavioural check when the probe could not run at all.
pub fn probe_failed(ctx: &Context, service: &str, why: &str) -> Vec<CheckOutcome> {
    KERNEL_RULES
        .iter()
        .map(|&(rule, _)| {
            outcome(
                ctx,
                service,
                rule,
                Verdict::Fail,
                &format!("probe could not run: {why}"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::facts::parse_facts;
    use crate::runtime::RuntimeKind;
    use std::net::IpAddr;

    const ROOTLESS_DB: &str = "status.Uid=999\t999\t999\t999\nstatus.Gid=999\t999\t999\t999\nstatus.CapEff=0000000000000000\nstatus.CapBnd=0000000000000000\nstatus.NoNewPrivs=1\nstatus.Seccomp=2\nuid_map= 0 1001 1; 1 100000 65536;\ngid_map= 0 1001 1; 1 100000 65536;\nexec_uid=999\nroot_mount=ro,relatime\nrootfs_write=denied: touch: cannot touch '/.hydra-posture-probe': Read-only file system\nraw_socket=denied: Operation not permitted\nchown=denied: chown: changing ownership of '/dev/shm/tmp.x': Operation not permitted\nmount=denied: Operation not permitted\nptrace=denied: Operation not permitted\n";

    fn ctx(runtime: RuntimeKind) -> Context {
        Context {
            runtime,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            rootless: runtime.is_rootless(),
            cgroup_v2: false,
            project_seccomp: None,
        }
    }

    fn db(file: &str) -> ContainerFacts {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/inspect")
            .join(file);
        let mut f = parse_facts(&std::fs::read_to_string(path).unwrap()).unwrap().remove(0);
        f.resolve_seccomp(&crate::workspace::root().join("compose"));
        f
    }

    #[test]
    fn the_rule_tables_list_every_rule_once_in_report_order() {
        let config = crate::posture::rules::CONFIG_RULES.map(|(rule, _)| rule);
        let kernel = KERNEL_RULES.map(|(rule, _)| rule);
        assert!(config.iter().all(|r| !r.is_behavioural()), "{config:?}");
        assert!(kernel.iter().all(|r| r.is_behavioural()), "{kernel:?}");
        assert_eq!([&config[..], &kernel[..]].concat(), Rule::ALL);
    }

    #[test]
    fn parses_the_probe_output() {
        let r = parse_report(ROOTLESS_DB).unwrap();
        assert_eq!(r.uid, 999);
        assert!(r.cap_eff.is_empty() && r.no_new_privs && r.seccomp_mode == 2);
        assert_eq!(
            r.uid_map,
            [
                IdRange {
                    inside: 0,
                    outside: 1001,
                    count: 1
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65536
                }
            ]
        );
        assert_eq!(r.mount, Attempt::Denied("Operation not permitted".into()));
        assert!(parse_report("status.Uid=1\n").is_err());
    }

    #[test]
    fn id_maps() {
        let m = parse_id_map("0 1001 1\n1 100000 65536\n").unwrap();
        assert_eq!(map_id(&m, 0), Some(1001));
        assert_eq!(map_id(&m, 999), Some(100998));
        assert_eq!(map_id(&m, 70000), None);
        assert!(is_identity(&parse_id_map("         0          0 4294967295").unwrap()));
        assert!(!is_identity(&m));
        assert_eq!(
            status_uid("Name:\tx\nUid:\t100998\t100998\t100998\t100998\n"),
            Some(100998)
        );
    }

    #[test]
    fn hardened_db_matches_its_kernel_under_rootless() {
        let r = parse_report(ROOTLESS_DB).unwrap();
        let host = HostView {
            uid: Some(100998),
            note: String::new(),
        };
        let out = check_kernel(
            &ctx(RuntimeKind::PodmanRootless),
            "db",
            &db("podman-rootless-db.json"),
            &r,
            &host,
        );
        assert_eq!(out.len(), 10);
        for o in &out {
            assert_eq!(o.verdict, Verdict::Pass, "{}: {}", o.id.name_in_area(), o.message);
        }
        let proof = out
            .iter()
            .find(|o| o.id.name_in_area() == "db::userns_mapping")
            .unwrap();
        assert!(
            proof
                .message
                .contains("container uid 999 is host uid 100998, container root is host uid 1001"),
            "{}",
            proof.message
        );
    }

    #[test]
    fn mismatches_fail_with_both_sides() {
        let text = ROOTLESS_DB.replace("status.Seccomp=2", "status.Seccomp=0").replace(
            "rootfs_write=denied: touch: cannot touch '/.hydra-posture-probe': Read-only file system",
            "rootfs_write=ok",
        );
        let r = parse_report(&text).unwrap();
        let out = check_kernel(
            &ctx(RuntimeKind::PodmanRootless),
            "db",
            &db("podman-rootless-db.json"),
            &r,
            &HostView {
                uid: Some(100998),
                note: String::new(),
            },
        );
        let get = |n: &str| out.iter().find(|o| o.id.name_in_area() == format!("db::{n}")).unwrap();
        assert_eq!(get("kernel_seccomp").verdict, Verdict::Fail);
        assert!(
            get("kernel_seccomp")
                .message
                .contains("config says seccomp filter on, kernel enforces Seccomp mode 0"),
            "{}",
            get("kernel_seccomp").message
        );
        assert_eq!(get("kernel_rootfs").verdict, Verdict::Fail);
        assert!(
            get("kernel_rootfs")
                .message
                .starts_with("db: config says root filesystem read-only"),
            "{}",
            get("kernel_rootfs").message
        );
    }

    #[test]
    fn rootless_proof_fails_when_root_maps_to_host_root() {
        let r = parse_report(&ROOTLESS_DB.replace("uid_map= 0 1001 1; 1 100000 65536;", "uid_map= 0 0 4294967295;"))
            .unwrap();
        let o = userns_check(
            &ctx(RuntimeKind::PodmanRootless),
            "db",
            &r,
            &HostView {
                uid: Some(999),
                note: String::new(),
            },
        );
        assert_eq!(o.verdict, Verdict::Fail, "{}", o.message);
        let o = userns_check(
            &ctx(RuntimeKind::Podman),
            "db",
            &r,
            &HostView {
                uid: Some(999),
                note: String::new(),
            },
        );
        assert_eq!(o.verdict, Verdict::Pass);
        assert!(o.message.contains("identity mapping"), "{}", o.message);
        let o = userns_check(
            &ctx(RuntimeKind::Podman),
            "db",
            &r,
            &HostView {
                uid: Some(1234),
                note: String::new(),
            },
        );
        assert_eq!(o.verdict, Verdict::Fail, "{}", o.message);
    }

    #[test]
    fn skipped_attempts_never_pass() {
        let r = parse_report(&ROOTLESS_DB.replace(
            "raw_socket=denied: Operation not permitted",
            "raw_socket=skip: no perl in the image",
        ))
        .unwrap();
        let out = check_kernel(
            &ctx(RuntimeKind::PodmanRootless),
            "db",
            &db("podman-rootless-db.json"),
            &r,
            &HostView::default(),
        );
        let o = out
            .iter()
            .find(|o| o.id.name_in_area() == "db::kernel_raw_socket")
            .unwrap();
        assert_eq!(o.verdict, Verdict::Skip);
        assert!(o.message.contains("no perl"), "{}", o.message);
    }
}
