//! Golden record of everything the pure posture code says about the recorded inspect JSON of all
//! three engines: the normalised facts, every configuration outcome under several contexts, and
//! every behavioural outcome for a set of probe reports. Recorded from the code before the rules
//! became a table; any change in a name, order, verdict or message shows up as a diff here.
//! After a deliberate change, copy the file the failing test names over `golden/outcomes.txt`.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::Value;

use super::facts::{parse_facts, redact_env, ContainerFacts, ProfileSource, Seccomp};
use super::probe::{check_kernel, parse_report, probe_failed, HostView};
use super::rules::{check_config, Context};
use crate::outcome::CheckOutcome;
use crate::runtime::RuntimeKind;
use crate::test_support::inspect_fixture as fixture;

const GOLDEN: &str = include_str!("golden/outcomes.txt");

const FIXTURES: [(&str, RuntimeKind); 9] = [
    ("docker-db.json", RuntimeKind::Docker),
    ("docker-flaws.json", RuntimeKind::Docker),
    ("docker-gap-detector.json", RuntimeKind::Docker),
    ("podman-db.json", RuntimeKind::Podman),
    ("podman-flaws.json", RuntimeKind::Podman),
    ("podman-gap-detector.json", RuntimeKind::Podman),
    ("podman-rootless-db.json", RuntimeKind::PodmanRootless),
    ("podman-rootless-flaws.json", RuntimeKind::PodmanRootless),
    ("podman-rootless-gap-detector.json", RuntimeKind::PodmanRootless),
];

/// The hardened db's probe output under rootless Podman.
const PROBE: &str = "status.Uid=999\t999\t999\t999\nstatus.CapEff=0000000000000000\nstatus.CapBnd=0000000000000000\nstatus.NoNewPrivs=1\nstatus.Seccomp=2\nuid_map= 0 1001 1; 1 100000 65536;\nroot_mount=ro,relatime\nrootfs_write=denied: Read-only file system\nraw_socket=denied: Operation not permitted\nchown=denied: Operation not permitted\nmount=denied: Operation not permitted\nptrace=denied: Operation not permitted\n";

/// Probe outputs that exercise every branch of the behavioural rules: (label, replacements).
const PROBES: [(&str, &[(&str, &str)]); 5] = [
    ("hardened", &[]),
    (
        "loose",
        &[
            ("status.NoNewPrivs=1", "status.NoNewPrivs=0"),
            ("status.Seccomp=2", "status.Seccomp=0"),
            ("root_mount=ro,relatime", "root_mount=rw,relatime"),
            ("rootfs_write=denied: Read-only file system", "rootfs_write=ok"),
        ],
    ),
    (
        "privileged",
        &[
            ("status.Uid=999\t999", "status.Uid=0\t0"),
            ("status.CapEff=0000000000000000", "status.CapEff=000001ffffffffff"),
            ("status.CapBnd=0000000000000000", "status.CapBnd=000001ffffffffff"),
            ("raw_socket=denied: Operation not permitted", "raw_socket=ok"),
            ("chown=denied: Operation not permitted", "chown=ok"),
            ("mount=denied: Operation not permitted", "mount=ok"),
            ("ptrace=denied: Operation not permitted", "ptrace=ok"),
        ],
    ),
    (
        "skipped",
        &[
            ("raw_socket=denied: Operation not permitted", "raw_socket=skip: no perl"),
            ("chown=denied: Operation not permitted", "chown=skip: no mktemp"),
            (
                "rootfs_write=denied: Read-only file system",
                "rootfs_write=skip: no touch",
            ),
        ],
    ),
    (
        "identity",
        &[("uid_map= 0 1001 1; 1 100000 65536;", "uid_map= 0 0 4294967295;")],
    ),
];

fn ctx(runtime: RuntimeKind, project_seccomp: Option<Value>, cgroup_v2: bool) -> Context {
    Context {
        runtime,
        bind_ip: IpAddr::from([127, 0, 0, 1]),
        rootless: runtime.is_rootless(),
        cgroup_v2,
        project_seccomp,
    }
}

fn project_profile() -> Value {
    let path = crate::workspace::root().join("fixtures/seccomp/phoenix.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// FNV-1a, to name a profile's content without printing it.
fn digest(v: &Value) -> String {
    let h = v.to_string().bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

/// The facts, with profile content reduced to a digest and secret values redacted.
fn facts_line(f: &ContainerFacts) -> String {
    let mut f = f.clone();
    let content = |c: Option<&Value>| c.map(digest).unwrap_or_else(|| "unknown".into());
    if let Seccomp::Custom(src) = &f.seccomp {
        let path = match src {
            ProfileSource::Inline(v) => format!("inline {}", content(Some(v))),
            ProfileSource::Path { path, content: c } => format!("{path} {}", content(c.as_ref())),
            ProfileSource::EngineWide { path, content: c } => {
                format!("engine-wide {} {}", path.display(), content(c.as_ref()))
            }
        };
        f.seccomp = Seccomp::Custom(ProfileSource::Path { path, content: None });
    }
    f.env = redact_env(&f.env);
    format!("{f:?}")
}

fn write_outcomes(text: &mut String, label: &str, outcomes: &[CheckOutcome]) {
    for o in outcomes {
        writeln!(
            text,
            "{label} | {} | {:?} | {}",
            o.id.name_in_area(),
            o.verdict,
            o.message
        )
        .unwrap();
    }
}

fn host_views() -> [HostView; 3] {
    [
        HostView {
            uid: Some(100998),
            note: String::new(),
        },
        HostView {
            uid: Some(0),
            note: String::new(),
        },
        HostView {
            uid: None,
            note: "/proc/7/status: gone".into(),
        },
    ]
}

fn render() -> String {
    let mut text = String::new();
    let compose = crate::workspace::root().join("compose");
    for (file, runtime) in FIXTURES {
        for mut f in parse_facts(&fixture(file)).unwrap() {
            f.resolve_seccomp(&compose);
            let service = f.service.clone().unwrap();
            writeln!(text, "{file} facts {}", facts_line(&f)).unwrap();
            for (label, project, v2) in [
                ("project", Some(project_profile()), false),
                ("any-filter", None, false),
                ("cgroup-v2", Some(project_profile()), true),
            ] {
                let c = ctx(runtime, project, v2);
                write_outcomes(
                    &mut text,
                    &format!("{file} config {label}"),
                    &check_config(&c, &super::PostureConfig::bundled(), &service, &f),
                );
            }
            let c = ctx(runtime, None, false);
            for (label, edits) in PROBES {
                let out = edits.iter().fold(PROBE.to_string(), |t, (a, b)| t.replace(a, b));
                let report = parse_report(&out).unwrap();
                // The host's view matters to the user-namespace rule only.
                for (i, host) in host_views().iter().enumerate() {
                    let mut out = check_kernel(&c, &service, &f, &report, host);
                    if i > 0 {
                        out.retain(|o| o.id.name_in_area().ends_with("::userns_mapping"));
                    }
                    write_outcomes(&mut text, &format!("{file} kernel {label} host{i}"), &out);
                }
            }
            write_outcomes(
                &mut text,
                &format!("{file} probe-failed"),
                &probe_failed(&c, &service, "exit 127"),
            );
        }
    }
    text
}

#[test]
fn every_posture_outcome_matches_the_golden_record() {
    let actual = render();
    if actual != GOLDEN {
        let path = std::env::temp_dir().join("hydra-posture-outcomes.txt");
        std::fs::write(&path, &actual).unwrap();
        let first = actual
            .lines()
            .zip(GOLDEN.lines())
            .find(|(a, g)| a != g)
            .map(|(a, g)| format!("first difference:\n  golden: {g}\n  actual: {a}"))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!(
            "posture outcomes differ from harness/src/posture/golden/outcomes.txt ({} vs {} lines); actual written to {}\n{first}",
            GOLDEN.lines().count(),
            actual.lines().count(),
            path.display()
        );
    }
}
