//! `harness doctor`: whether each runtime can run the stack here, and a concrete fix for every
//! problem found. The same diagnosis decides which runtimes a run uses by default.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::compose;
use crate::images::base::BASE_IMAGE;
use crate::labels;
use crate::runtime::rootless::{has_subid_range, RootlessUser};
use crate::runtime::{
    dns_leftovers, exec, lost_containers, storage_only, CommandSpec, EngineKind, HealthDriver, Interrupt, Runtime,
    RuntimeKind,
};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed.
    Ok,
    /// Works, with a problem worth fixing; the runtime stays usable.
    Warn,
    /// Failed: the runtime cannot run the stack until it is fixed.
    Fail,
}

/// One diagnostic line.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked (`engine reachable`, `compose tool`, ...).
    pub check: &'static str,
    /// How the check came out.
    pub status: Status,
    /// What was seen: a version, a path, or the error.
    pub detail: String,
    /// What to do about a warning or failure; `None` when the check passed.
    pub fix: Option<String>,
}

/// Everything doctor found for one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeReport {
    /// The runtime diagnosed.
    pub runtime: RuntimeKind,
    /// Each check's outcome, in the order the checks ran.
    pub findings: Vec<Finding>,
}

impl RuntimeReport {
    /// Usable when nothing failed.
    pub fn usable(&self) -> bool {
        self.findings.iter().all(|f| f.status != Status::Fail)
    }

    /// The first failure, as a one-line reason with its fix.
    pub fn reason(&self) -> Option<String> {
        self.findings
            .iter()
            .find(|f| f.status == Status::Fail)
            .map(|f| match &f.fix {
                Some(fix) => format!("{}: {} (fix: {fix})", f.check, f.detail),
                None => format!("{}: {}", f.check, f.detail),
            })
    }
}

const SETUP: &str = "run `sudo scripts/setup-host.sh`";

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}
fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}
fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// A host change that makes a failing container run work, recognised from the engine's error.
/// `scripts/setup-host.sh` asks the harness for it (`harness host-fix`), so the recognition lives
/// in one place with tests on both OCI runtimes' wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostFix {
    /// crun cannot handle a cgroup v1 hybrid host: `runtime = "runc"` under `[engine]`.
    UseRunc,
    /// The engine's default ulimits are refused: `default_ulimits = []` under `[containers]`.
    NoDefaultUlimits,
    /// slirp4netns cannot open `/dev/net/tun` as the rootless user.
    TunReadable,
    /// No subordinate uid/gid ranges (or no newuidmap) for the rootless user.
    SubordinateIds,
}

impl HostFix {
    /// Recognises the fix a failed `run` needs from its stderr; `None` when no known fix applies. Pure.
    pub fn classify(stderr: &str) -> Option<HostFix> {
        let s = stderr.to_ascii_lowercase();
        if s.contains("cgroups in hybrid mode") || (s.contains("crun") && s.contains("cgroup")) {
            Some(HostFix::UseRunc)
        } else if s.contains("rlimit_nofile")
            || s.contains("setrlimit")
            // runc: "error setting rlimits for ready process: error setting rlimit type 7: operation not permitted"
            || (s.contains("error setting rlimit") && s.contains("operation not permitted"))
        {
            Some(HostFix::NoDefaultUlimits)
        } else if s.contains("/dev/net/tun") {
            Some(HostFix::TunReadable)
        } else if s.contains("newuidmap") || s.contains("subuid") || s.contains("subgid") {
            Some(HostFix::SubordinateIds)
        } else {
            None
        }
    }

    /// The stable name setup scripts match on.
    pub fn key(self) -> &'static str {
        match self {
            HostFix::UseRunc => "use-runc",
            HostFix::NoDefaultUlimits => "no-default-ulimits",
            HostFix::TunReadable => "tun-readable",
            HostFix::SubordinateIds => "subordinate-ids",
        }
    }

    /// What to change on the host, in words.
    pub fn describe(self) -> &'static str {
        match self {
            HostFix::UseRunc => "crun cannot handle this cgroup setup: set runtime = \"runc\" under [engine] in containers.conf (scripts/setup-host.sh does it)",
            HostFix::NoDefaultUlimits => "the engine's default ulimits are refused: set default_ulimits = [] under [containers] in containers.conf (scripts/setup-host.sh does it)",
            HostFix::TunReadable => "slirp4netns cannot open /dev/net/tun: make it readable by the rootless user (chmod 0666 /dev/net/tun)",
            HostFix::SubordinateIds => "user namespaces are not set up: install uidmap and give the user /etc/subuid and /etc/subgid ranges",
        }
    }
}

/// Maps a failing trivial `run` to the host fix it needs, in words (pure).
pub fn fix_for_run_failure(stderr: &str) -> String {
    match HostFix::classify(stderr) {
        Some(fix) => fix.describe().into(),
        None => format!("see the error above; {SETUP}"),
    }
}

/// Diagnoses one runtime.
pub fn diagnose(kind: RuntimeKind) -> RuntimeReport {
    let mut findings = Vec::new();
    let done = |findings| RuntimeReport {
        runtime: kind,
        findings,
    };
    let Some(runtime) = prerequisites(kind, &mut findings) else {
        return done(findings);
    };
    if !engine_facts(&runtime, &mut findings) {
        return done(findings);
    }
    match runtime.image_exists(BASE_IMAGE) {
        Ok(true) => findings.push(trivial_run(&runtime)),
        Ok(false) => findings.push(warn(
            "trivial container",
            format!("not tried: base image {BASE_IMAGE} is not imported yet"),
            "`harness images` bootstraps and imports it",
        )),
        Err(e) => findings.push(fail("trivial container", e.to_string(), SETUP)),
    }
    findings.push(match runtime.health_driver() {
        HealthDriver::Engine => ok(
            "healthchecks",
            if kind.is_podman() {
                "run by systemd timers"
            } else {
                "run by the engine"
            },
        ),
        HealthDriver::Harness => ok(
            "healthchecks",
            "no systemd: the harness runs `podman healthcheck run` itself",
        ),
    });
    if kind.is_podman() {
        findings.push(dns_leftovers_finding(&runtime));
        findings.push(lost_containers_finding(&runtime));
        findings.push(storage_only_finding(&runtime));
    }
    match compose::detect(&runtime) {
        Ok(p) => findings.push(ok("compose tool", format!("{} {}", p.tool, p.version))),
        Err(e) => findings.push(fail("compose tool", e.to_string(), SETUP)),
    }
    done(findings)
}

/// The engine program is installed, the caller may drive this runtime, and its user resolves:
/// the runtime, or `None` after a failing finding.
fn prerequisites(kind: RuntimeKind, findings: &mut Vec<Finding>) -> Option<Runtime> {
    let program = kind.engine_program();
    let installed = exec::run(
        &CommandSpec::new(program).arg("--version"),
        Duration::from_secs(20),
        Interrupt::Allowed,
    );
    match installed {
        Ok(out) if out.success() => findings.push(ok("installed", out.stdout.trim().to_string())),
        _ => {
            findings.push(fail("installed", format!("`{program}` not found on PATH"), SETUP));
            return None;
        }
    }
    if kind.engine() == EngineKind::Podman && crate::runtime::euid() != 0 {
        findings.push(fail(
            "privileges",
            "rootful podman needs root",
            "run the harness as root, or use podman-rootless",
        ));
        return None;
    }
    let runtime = match Runtime::resolve(kind) {
        Ok(r) => r,
        Err(e) => {
            findings.push(fail("rootless user", e.to_string(), SETUP));
            return None;
        }
    };
    if let Some(user) = runtime.rootless_user() {
        rootless_checks(user, findings);
    }
    Some(runtime)
}

/// Whether the engine answers, with its OCI runtime and storage driver; false after a failing finding.
fn engine_facts(runtime: &Runtime, findings: &mut Vec<Finding>) -> bool {
    let kind = runtime.kind();
    let (reach_args, reach_fix): (&[&str], &str) = match kind.engine() {
        EngineKind::Docker => (
            &["version", "--format", "{{.Server.Version}}"],
            "start dockerd (`sudo scripts/setup-host.sh` starts it when no init system does)",
        ),
        _ => (
            &[
                "info",
                "--format",
                "{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}",
            ],
            SETUP,
        ),
    };
    let out = match runtime.query(reach_args) {
        Ok(out) => out.trim().to_string(),
        Err(e) => {
            findings.push(fail("engine reachable", e.to_string(), reach_fix));
            return false;
        }
    };
    if kind.engine() == EngineKind::Docker {
        findings.push(ok("engine reachable", format!("server {out}")));
        if let Ok(rt) = runtime.query(&["info", "--format", "{{.DefaultRuntime}}"]) {
            findings.push(ok("oci runtime", rt.trim().to_string()));
        }
        return true;
    }
    let mut parts = out.split_whitespace();
    let (oci, driver) = (
        parts.next().unwrap_or("?").to_string(),
        parts.next().unwrap_or("?").to_string(),
    );
    findings.push(ok(
        "engine reachable",
        format!("podman {}", runtime.version().unwrap_or_default()),
    ));
    findings.push(ok("oci runtime", oci));
    if kind.is_rootless() && driver == "vfs" {
        findings.push(warn("storage driver", "vfs (slow, copies every layer)", "set driver = \"overlay\" in ~/.config/containers/storage.conf, then `podman system reset` (setup-host.sh does it)"));
    } else {
        findings.push(ok("storage driver", driver));
    }
    true
}

/// Names aardvark-dns still serves for removed networks (see [`dns_leftovers`]): a warning, since
/// they only break name resolution on networks that happen to get the same subnet.
fn dns_leftovers_finding(runtime: &Runtime) -> Finding {
    const CHECK: &str = "dns leftovers";
    match dns_leftovers::stale(runtime) {
        Ok(files) if files.is_empty() => ok(CHECK, "aardvark-dns serves no removed network's names"),
        Ok(files) => {
            let (ours, foreign): (Vec<_>, Vec<_>) = files.iter().partition(|f| f.is_harness());
            let names: Vec<&str> = files.iter().map(|f| f.network.as_str()).collect();
            let mut fix = Vec::new();
            if !ours.is_empty() {
                fix.push("`harness gc` removes the harness's".to_string());
            }
            if !foreign.is_empty() {
                let paths: Vec<String> = foreign.iter().map(|f| f.path.display().to_string()).collect();
                fix.push(format!("remove {} as the engine's user", paths.join(" ")));
            }
            warn(
                CHECK,
                format!(
                    "aardvark-dns still serves names of removed network(s) {} (a `podman start` was killed \
                     mid-way); networks that get the same subnet resolve them to dead addresses",
                    names.join(", ")
                ),
                fix.join("; "),
            )
        }
        Err(e) => warn(CHECK, format!("could not look: {e}"), SETUP),
    }
}

/// Container processes Podman no longer knows (see [`lost_containers`]): a warning, since they
/// hold ports, memory and the volumes they write while no engine command shows them.
fn lost_containers_finding(runtime: &Runtime) -> Finding {
    const CHECK: &str = "lost containers";
    match lost_containers::unknown_monitors(runtime) {
        Ok(lost) if lost.is_empty() => ok(CHECK, "every conmon monitors a container Podman knows"),
        Ok(lost) => {
            let what: Vec<String> = lost
                .iter()
                .map(|m| format!("{} (conmon pid {})", m.container(), m.pid))
                .collect();
            let oci = lost
                .iter()
                .find_map(|m| m.oci_runtime.clone())
                .unwrap_or_else(|| "runc".into());
            warn(
                CHECK,
                format!(
                    "container process(es) run on that Podman has no record of: {} (a `podman start` was \
                     killed mid-way, then the container removed)",
                    what.join(", ")
                ),
                format!(
                    "for each: as root, `kill -9` the conmon's child (the container's init), then as the \
                     engine's user `{oci} delete --force <id>` (the conmon's `-c`); a harness run's own are \
                     ended by its teardown or `harness gc`"
                ),
            )
        }
        Err(e) => warn(CHECK, format!("could not look: {e}"), SETUP),
    }
}

/// Containers named like the harness's projects that Podman holds in storage only (see
/// [`storage_only`]), except those of runs still in progress (a create passes through that
/// state): a warning, since they hold their names and disk space and no label finds them.
fn storage_only_finding(runtime: &Runtime) -> Finding {
    const CHECK: &str = "storage-only containers";
    let live: Vec<String> = crate::runs::RunRecord::load_all()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| crate::runs::owner_alive(r.owner_pid, r.owner_start))
        .map(|r| r.project)
        .collect();
    match storage_only::list(runtime) {
        Ok(found) => {
            let left: Vec<_> = found
                .into_iter()
                .filter(|c| !live.iter().any(|p| c.of_project(p)))
                .collect();
            if left.is_empty() {
                return ok(CHECK, "no harness container is left in storage only");
            }
            let names: Vec<String> = left
                .iter()
                .map(|c| format!("{} ({})", c.name, crate::runtime::short_id(&c.id)))
                .collect();
            let ids: Vec<&str> = left.iter().map(|c| crate::runtime::short_id(&c.id)).collect();
            warn(
                CHECK,
                format!(
                    "Podman holds container(s) in storage only, with no record or label: {} (a create was \
                     cut off mid-way)",
                    names.join(", ")
                ),
                format!(
                    "`harness gc` removes those of the runs it sweeps; otherwise, as the engine's user, \
                     `podman rm -f {}`",
                    ids.join(" ")
                ),
            )
        }
        Err(e) => warn(CHECK, format!("could not look: {e}"), SETUP),
    }
}

/// A quick check that the engine answers (for `gc`): `None` when reachable, else why not.
pub fn diagnose_reachable(kind: RuntimeKind) -> Option<String> {
    if kind.engine() == EngineKind::Podman && crate::runtime::euid() != 0 {
        return Some("rootful podman needs root".into());
    }
    let runtime = Runtime::resolve(kind).map_err(|e| e.to_string()).ok()?;
    match runtime.query(&["version"]) {
        Ok(_) => None,
        Err(e) => Some(e.to_string().lines().next().unwrap_or_default().to_string()),
    }
}

fn trivial_run(runtime: &Runtime) -> Finding {
    let pid = std::process::id();
    let start = crate::runs::process_start_time(pid).unwrap_or(0);
    let spec = runtime
        .engine()
        .args(["run", "--rm", "--network", "none"])
        .args(["--label", &format!("{}=true", labels::MANAGED)])
        .args(["--label", &format!("{}=doctor-{pid}", labels::RUN)])
        .args(["--label", &format!("{}={pid}", labels::OWNER_PID)])
        .args(["--label", &format!("{}={start}", labels::OWNER_START)])
        .args([BASE_IMAGE, "true"]);
    match exec::run(&spec, Duration::from_secs(120), Interrupt::Allowed) {
        Ok(out) if out.success() => ok(
            "trivial container",
            format!("`run {BASE_IMAGE} true` in {:.1}s", out.elapsed.as_secs_f64()),
        ),
        Ok(out) => fail(
            "trivial container",
            exec::tail(&out.stderr, 3),
            fix_for_run_failure(&out.stderr),
        ),
        Err(e) => fail("trivial container", e.to_string(), SETUP),
    }
}

fn rootless_checks(user: &RootlessUser, findings: &mut Vec<Finding>) {
    findings.push(ok(
        "rootless user",
        format!(
            "{} (uid {}){}",
            user.name,
            user.uid,
            if user.switch { ", reached with runuser" } else { "" }
        ),
    ));
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if has_subid_range(&text, &user.name, user.uid, 65536) {
            findings.push(ok(
                if file.ends_with("uid") { "subuid" } else { "subgid" },
                format!("{file} has a range for {}", user.name),
            ));
        } else {
            findings.push(fail(
                if file.ends_with("uid") { "subuid" } else { "subgid" },
                format!("{file} has no range of 65536 ids for {}", user.name),
                format!(
                    "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}",
                    user.name
                ),
            ));
        }
    }
    match std::fs::metadata(&user.runtime_dir) {
        Ok(m) => {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if m.uid() != user.uid || m.permissions().mode() & 0o777 != 0o700 {
                findings.push(fail(
                    "runtime dir",
                    format!(
                        "{} must be owned by uid {} with mode 0700",
                        user.runtime_dir.display(),
                        user.uid
                    ),
                    format!(
                        "chown {0}: {1} && chmod 0700 {1}",
                        user.name,
                        user.runtime_dir.display()
                    ),
                ));
            } else {
                findings.push(ok("runtime dir", user.runtime_dir.display().to_string()));
            }
        }
        Err(_) => findings.push(fail(
            "runtime dir",
            format!(
                "{} does not exist (no systemd-logind here to create it)",
                user.runtime_dir.display()
            ),
            format!(
                "install -d -m 0700 -o {0} -g {0} {1}",
                user.name,
                user.runtime_dir.display()
            ),
        )),
    }
    let tun = Path::new("/dev/net/tun");
    if !tun.exists() {
        findings.push(fail(
            "/dev/net/tun",
            "missing: slirp4netns cannot give rootless containers a network",
            "load the tun module (modprobe tun)",
        ));
    } else if user.can_read(tun) {
        findings.push(ok("/dev/net/tun", "readable by the rootless user"));
    } else {
        findings.push(fail(
            "/dev/net/tun",
            format!(
                "not readable by {} (slirp4netns fails with permission denied)",
                user.name
            ),
            "chmod 0666 /dev/net/tun",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    // Recorded from Podman 4.3.1 on Debian 12 hosts: crun 1.8 and runc 1.1 word the same refusals differently.
    const CRUN_HYBRID: &str =
        "Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2";
    const CRUN_ULIMIT: &str = "Error: OCI runtime error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted";
    const RUNC_ULIMIT: &str = "Error: OCI runtime error: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted";
    const SLIRP_TUN: &str = "Error: slirp4netns failed: \"open(\\\"/dev/net/tun\\\"): Permission denied\\nWARNING: Support for sandboxing is experimental\\n\"";
    const NEWUIDMAP: &str =
        "ERRO[0000] cannot find UID/GID for user hydra: no subuid ranges found for user \"hydra\" in /etc/subuid";

    #[rstest]
    #[case::crun_hybrid(CRUN_HYBRID, Some(HostFix::UseRunc))]
    #[case::crun_ulimit(CRUN_ULIMIT, Some(HostFix::NoDefaultUlimits))]
    #[case::runc_ulimit(RUNC_ULIMIT, Some(HostFix::NoDefaultUlimits))]
    #[case::tun(SLIRP_TUN, Some(HostFix::TunReadable))]
    #[case::subuid(NEWUIDMAP, Some(HostFix::SubordinateIds))]
    #[case::unknown("Error: image not known", None)]
    fn run_failures_are_classified_from_both_oci_runtimes(#[case] stderr: &str, #[case] expected: Option<HostFix>) {
        assert_eq!(HostFix::classify(stderr), expected);
    }

    #[rstest]
    #[case(CRUN_HYBRID, "runtime = \"runc\"")]
    #[case(CRUN_ULIMIT, "default_ulimits = []")]
    #[case(RUNC_ULIMIT, "default_ulimits = []")]
    #[case(SLIRP_TUN, "chmod 0666 /dev/net/tun")]
    #[case("something else", "setup-host.sh")]
    fn run_failures_map_to_host_fixes(#[case] stderr: &str, #[case] expected: &str) {
        assert!(
            fix_for_run_failure(stderr).contains(expected),
            "{}",
            fix_for_run_failure(stderr)
        );
    }

    #[test]
    fn usable_means_no_failure_and_reason_names_the_fix() {
        let r = RuntimeReport {
            runtime: RuntimeKind::Docker,
            findings: vec![ok("a", "x"), warn("b", "y", "z")],
        };
        assert!(r.usable());
        assert!(r.reason().is_none());
        let r = RuntimeReport {
            runtime: RuntimeKind::Docker,
            findings: vec![fail("engine reachable", "down", "start dockerd")],
        };
        assert!(!r.usable());
        assert_eq!(r.reason().unwrap(), "engine reachable: down (fix: start dockerd)");
    }
}
