//! `cargo test --test migration`: every check of the spec as its own trial
//! `<runtime>::<area>::<check>`, each runtime's stack brought up once, checks run in a safe order,
//! teardown always. Filters, `--skip`, `--exact` and `--list` work as in libtest. Reports: JUnit
//! at `target/hydra/junit/migration.xml` (`HYDRA_JUNIT`), parity report in `target/hydra/`
//! (`HYDRA_REPORT_DIR`). Spec: `HYDRA_SPEC` (default `fixtures/phoenix.spec.toml`), extra compose
//! overlays: `HYDRA_COMPOSE` (colon-separated, replaces the spec's list).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use hydra::outcome::{CheckId, CheckOutcome, RunSummary, Verdict};
use hydra::report;
use hydra::runtime::RuntimeKind;
use hydra::session::{self, Availability, Plan, RuntimeRun};
use hydra::spec::Spec;
use hydra::stack::StackOptions;
use libtest_mimic::{Arguments, Failed, Trial};

type Session = Arc<OnceLock<RuntimeRun>>;

fn main() {
    // RUST_LOG tunes the harness's log here as in the CLI.
    hydra::logging::init();
    let args = Arguments::from_args();
    if let Err(e) = ctrlc::set_handler(hydra::runtime::exec::cancel) {
        eprintln!("warning: no Ctrl-C handler: {e}");
    }
    let spec_path = std::env::var_os("HYDRA_SPEC")
        .map(PathBuf::from)
        .unwrap_or_else(hydra::spec::bundled_spec_file);
    let compose: Vec<PathBuf> = std::env::var("HYDRA_COMPOSE")
        .ok()
        .map(|v| v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect())
        .unwrap_or_default();
    let plan = match Spec::load(&spec_path, &compose).and_then(Plan::new) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(hydra::error::exit::USAGE);
        }
    };
    // The run's one redactor: trial failure texts, reports and the summary all go through it.
    let redactor = match plan.redactor() {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(hydra::error::exit::USAGE);
        }
    };
    report::redact::install(&redactor);
    let runtimes = if args.list {
        RuntimeKind::ALL.iter().map(|k| (*k, Availability::Use)).collect()
    } else {
        match session::availability(&[], &[]) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(hydra::error::exit::USAGE);
            }
        }
    };
    let filters: Vec<String> = args.filter.iter().cloned().collect();
    let selected = session::selection(&filters, &args.skip, args.exact);
    let sessions: Arc<Mutex<BTreeMap<RuntimeKind, Session>>> = Default::default();
    let mut per_target = Vec::new();
    for (kind, availability) in &runtimes {
        let kind = *kind;
        let mut trials = Vec::new();
        let session: Session = Arc::new(OnceLock::new());
        sessions.lock().unwrap().insert(kind, session.clone());
        let unenforceable = if matches!(availability, Availability::Use) && !args.list {
            session::not_enforceable_here(kind, &plan)
        } else {
            Vec::new()
        };
        for id in plan.ids() {
            let name = id.trial_name(kind);
            let why_not = unenforceable.iter().find(|(i, _)| *i == id).map(|(_, why)| why.clone());
            let trial = if let (Availability::Use, Some(why)) = (availability, &why_not) {
                // Still evaluated by the session (reports show not-enforceable); never a pass.
                eprintln!("NOT ENFORCEABLE {name}: {why}");
                Trial::test(name, || Ok(())).with_ignored_flag(true)
            } else {
                let (plan, session, selected, id) = (plan.clone(), session.clone(), selected.clone(), id.clone());
                let redactor = redactor.clone();
                hydra_suites::trial(name, availability, move || {
                    let run = session.get_or_init(|| {
                        let keep = |c: &CheckId| selected(&c.trial_name(kind));
                        session::run(kind, &plan, &StackOptions::new(kind), &keep, &mut |e| {
                            if let hydra::stack::Event::Phase(p) = e {
                                eprintln!("{kind}: {p}");
                            }
                        })
                    });
                    verdict_of(run, &id)
                        .map_err(|f| Failed::from(redactor.redact(f.message().unwrap_or_default()).into_owned()))
                })
            };
            trials.push(trial);
        }
        per_target.push((kind, trials));
    }
    let trials = hydra_suites::engines_side_by_side(per_target);
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list {
        write_reports(&redactor, &runtimes, &sessions.lock().unwrap());
    }
    conclusion.exit();
}

fn verdict_of(run: &RuntimeRun, id: &CheckId) -> Result<(), Failed> {
    let o = run
        .outcomes
        .iter()
        .find(|o| o.id == *id)
        .ok_or_else(|| Failed::from("no outcome recorded for this check"))?;
    match o.verdict {
        Verdict::Pass => Ok(()),
        Verdict::Fail => Err(Failed::from(failure_text(o))),
        Verdict::Skip | Verdict::NotEnforceable | Verdict::Interrupted => {
            Err(Failed::from(format!("{:?}: {}", o.verdict, o.message)))
        }
    }
}

fn failure_text(o: &CheckOutcome) -> String {
    match &o.logs {
        Some(logs) if !logs.trim().is_empty() => format!(
            "{}\n--- recent logs of {} ---\n{}",
            o.message,
            o.service.as_deref().unwrap_or("?"),
            report::sanitize::sanitize(logs)
        ),
        _ => o.message.clone(),
    }
}

fn write_reports(
    redactor: &report::Redactor,
    runtimes: &[(RuntimeKind, Availability)],
    sessions: &BTreeMap<RuntimeKind, Session>,
) {
    let mut summary = RunSummary::default();
    for (kind, availability) in runtimes {
        match (availability, sessions.get(kind).and_then(|s| s.get())) {
            (_, Some(run)) => {
                summary.runtimes.push(run.info.clone());
                summary.outcomes.extend(run.outcomes.iter().cloned());
                summary.observations.extend(run.observations.iter().cloned());
            }
            (Availability::Skip(reason), None) | (Availability::Broken(reason), None) => {
                let verdict = if matches!(availability, Availability::Skip(_)) {
                    Verdict::Skip
                } else {
                    Verdict::Fail
                };
                summary
                    .outcomes
                    .push(CheckOutcome::runtime_unavailable(*kind, verdict, reason.clone()));
            }
            (Availability::Use, None) => {}
        }
    }
    if summary.outcomes.is_empty() {
        return;
    }
    let junit = std::env::var_os("HYDRA_JUNIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| hydra::workspace::root().join(report::junit::DEFAULT_JUNIT_PATH));
    let dir = std::env::var_os("HYDRA_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| hydra::workspace::root().join(report::parity::DEFAULT_REPORT_DIR));
    match report::write_all(&summary, &junit, &dir, Some(redactor)) {
        Ok(w) => eprintln!(
            "reports: {}, {}, {}",
            w.junit.display(),
            w.parity_md.display(),
            w.parity_json.display()
        ),
        Err(e) => eprintln!("error: writing reports failed: {e}"),
    }
    eprint!("{}", report::terminal::render(&summary, Some(redactor)));
}
