//! `cargo test --test overlays`: proves the migration checks can fail. Each compose overlay in
//! `fixtures/overlays/` breaks one thing; under every runtime, the checks of that area run against
//! the broken stack and exactly the expected checks must fail, with messages naming the service
//! and the cause, while the rest of the area still passes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hydra::outcome::{trial_name, Area, CheckId, Verdict};
use hydra::session::{self, Availability, Plan};
use hydra::spec::Spec;
use hydra::stack::StackOptions;
use libtest_mimic::{Arguments, Failed};

/// One negative fixture and what it must break.
struct Overlay {
    file: &'static str,
    area: Area,
    must_fail: &'static [&'static str],
    /// Words every failure message must contain (service and cause).
    message_has: &'static [&'static str],
}

const OVERLAYS: &[Overlay] = &[
    Overlay {
        file: "dns-nginx-on-data-network.yml",
        area: Area::Dns,
        must_fail: &[
            "nginx_cannot_resolve_db",
            "nginx_cannot_resolve_model-service",
            "nginx_cannot_resolve_rubik-agent",
        ],
        message_has: &["nginx", "isolated"],
    },
    Overlay {
        file: "ports-gap-detector-on-all-interfaces.yml",
        area: Area::Ports,
        must_fail: &["gap-detector_5000_bound_to_bind_ip_only"],
        message_has: &["gap-detector", "0.0.0.0"],
    },
    Overlay {
        file: "persistence-db-on-tmpfs.yml",
        area: Area::Persistence,
        must_fail: &[
            "down_up_keeps_data",
            "force_recreate_keeps_data",
            "kill_9_keeps_acknowledged_rows",
        ],
        message_has: &["db"],
    },
    Overlay {
        file: "health-analysis-engine-500.yml",
        area: Area::Health,
        must_fail: &[
            "analysis-engine_health",
            "nginx_analysis_health",
            "starting_db_recovers_analysis-engine",
        ],
        message_has: &["analysis-engine"],
    },
    Overlay {
        file: "monitoring-gap-detector-invalid-metrics.yml",
        area: Area::Monitoring,
        must_fail: &[
            "gap-detector::up",
            "gap-detector::no_scrape_error",
            "gap-detector::counter_increases",
        ],
        // Prometheus's own parse error (for the line the fixture plants).
        message_has: &["gap-detector", "expected label value"],
    },
];

fn main() {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    let mut args = Arguments::from_args();
    // One thread per fixture target: a target's trials take turns anyway (see `run_overlay`),
    // and most of a trial is spent waiting on its stack (the health overlay waits out a 90 s
    // recovery deadline), so the three engines work at once.
    args.test_threads.get_or_insert(hydra_suites::FIXTURE_TARGETS.len());
    let runtimes = if args.list {
        hydra_suites::FIXTURE_TARGETS
            .iter()
            .map(|k| (*k, Availability::Use))
            .collect()
    } else {
        hydra_suites::fixture_runtimes()
    };
    let mut trials = Vec::new();
    // Overlay-major order: with one stack per runtime at a time, consecutive trials on different
    // runtimes are what lets the test threads work in parallel.
    for o in OVERLAYS {
        for (kind, availability) in &runtimes {
            let kind = *kind;
            let name = trial_name(kind, &format_args!("overlay::{}", o.file.trim_end_matches(".yml")));
            trials.push(hydra_suites::trial(name, availability, move || run_overlay(kind, o)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// One stack per engine at a time (the fixture targets are one per engine): under Podman,
/// tearing down any isolated network removes netavark's isolation jump for all others (netavark
/// 1.4), which would break a concurrent stack's isolation checks. Different engines still run in
/// parallel.
fn run_overlay(kind: hydra::RuntimeKind, o: &Overlay) -> Result<(), Failed> {
    let _one_at_a_time = hydra_suites::engine_to_itself(kind);
    let root = hydra::workspace::root();
    let compose: Vec<PathBuf> = vec![
        root.join("compose/phoenix.yml"),
        root.join("fixtures/overlays").join(o.file),
    ];
    let plan = Plan::new(Spec::load(&hydra::spec::bundled_spec_file(), &compose)?)?;
    let area = o.area;
    let run = session::run(
        kind,
        &plan,
        &StackOptions::new(kind),
        &|id| id.area == area,
        &mut |_| {},
    );
    for lifecycle in [CheckId::up_healthy(), CheckId::down_leaves_nothing()] {
        if let Some(l) = run
            .outcomes
            .iter()
            .find(|x| x.id == lifecycle && x.verdict != Verdict::Pass)
        {
            return Err(format!("{lifecycle} failed with the overlay: {}", l.message).into());
        }
    }
    let in_area: Vec<_> = run.outcomes.iter().filter(|x| x.id.area == area).collect();
    if in_area.len() < o.must_fail.len() + 1 {
        return Err(format!("only {} {area} checks ran", in_area.len()).into());
    }
    // `<service>::<check>` for checks filed under a service, else the check's name.
    let failed: BTreeSet<String> = in_area
        .iter()
        .filter(|x| x.verdict != Verdict::Pass)
        .map(|x| x.id.name_in_area())
        .collect();
    let expected: BTreeSet<String> = o.must_fail.iter().map(|s| s.to_string()).collect();
    if failed != expected {
        let detail: Vec<String> = in_area
            .iter()
            .filter(|x| x.verdict != Verdict::Pass)
            .map(|x| format!("  {}: {}", x.id.name_in_area(), x.message))
            .collect();
        return Err(format!(
            "{}: expected exactly {expected:?} to fail, got {failed:?}\n{}",
            o.file,
            detail.join("\n")
        )
        .into());
    }
    for x in in_area.iter().filter(|x| x.verdict == Verdict::Fail) {
        if let Some(word) = o.message_has.iter().find(|w| !x.message.contains(*w)) {
            return Err(format!("{} failed but its message lacks '{word}': {}", x.id, x.message).into());
        }
    }
    eprintln!(
        "{kind} {}: {} of {} {area} checks failed as planted",
        o.file,
        failed.len(),
        in_area.len()
    );
    Ok(())
}
