//! One rule for turning a runtime's availability into a trial, shared by every engine suite (the
//! `suites/` tests and the CLI-driving ones in `harness/tests/` include this same file): usable
//! runs the check; absent and not required is an ignored trial whose reason is printed; required
//! but unusable is a failing trial that says why.

use hydra::runtime::RuntimeKind;
use hydra::session::Availability;
use libtest_mimic::{Failed, Trial};

/// `HYDRA_RUNTIMES` (default: all) diagnosed by doctor; `HYDRA_REQUIRE` turns a skip into a failure.
pub fn runtimes() -> Vec<(RuntimeKind, Availability)> {
    hydra::session::availability(&[], &[]).expect("HYDRA_RUNTIMES / HYDRA_REQUIRE")
}

/// The targets the negative-fixture suites (`posture`, `overlays`) run under: one per engine,
/// each with the compose tool their expected findings were recorded with (docker-compose 1.29 on
/// Docker: its `security_opt` merge decides which planted seccomp option wins). The Compose v2
/// targets run the whole spec in the `migration` suite.
pub const FIXTURE_TARGETS: [RuntimeKind; 3] = [RuntimeKind::DockerV1, RuntimeKind::Podman, RuntimeKind::PodmanRootless];

/// [`runtimes`], only those of [`FIXTURE_TARGETS`].
pub fn fixture_runtimes() -> Vec<(RuntimeKind, Availability)> {
    runtimes()
        .into_iter()
        .filter(|(k, _)| FIXTURE_TARGETS.contains(k))
        .collect()
}

/// The trial `name` for a runtime in the state `availability`, running `check` when usable.
pub fn trial<F>(name: String, availability: &Availability, check: F) -> Trial
where
    F: FnOnce() -> Result<(), Failed> + Send + 'static,
{
    match availability {
        Availability::Use => Trial::test(name, check),
        Availability::Skip(reason) => {
            eprintln!("SKIP {name}: {reason}");
            Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
        Availability::Broken(reason) => {
            let reason = reason.clone();
            Trial::test(name, move || Err(format!("required runtime unusable: {reason}").into()))
        }
    }
}

/// Trials of several targets, ordered so that targets of different engines run side by side:
/// each target's first runnable trial (the one that brings its stack up and runs its session)
/// comes first, engines taking turns (`podman-rootless`, `podman`, `docker`, then their second
/// targets: the slowest engine first, so that its second target does not run alone at the end),
/// then every other trial in the order given. Trials of one target only read its finished
/// session, and two targets of one engine never overlap anyway (see `hydra::runtime::slots`): in
/// target order, the test threads would wait on one stack at a time.
pub fn engines_side_by_side(per_target: Vec<(RuntimeKind, Vec<Trial>)>) -> Vec<Trial> {
    use hydra::runtime::EngineKind;
    let slowest_first = |e: EngineKind| match e {
        EngineKind::PodmanRootless => 0,
        EngineKind::Podman => 1,
        EngineKind::Docker => 2,
    };
    let mut turn: std::collections::BTreeMap<EngineKind, usize> = Default::default();
    // (round of its engine, engine rank, position given, trial)
    let mut leads: Vec<(usize, usize, usize, Trial)> = Vec::new();
    let mut rest = Vec::new();
    for (position, (kind, trials)) in per_target.into_iter().enumerate() {
        let round = turn.entry(kind.engine()).or_default();
        let mut lead_taken = false;
        for trial in trials {
            if !lead_taken && !trial.has_ignored_flag() {
                leads.push((*round, slowest_first(kind.engine()), position, trial));
                lead_taken = true;
            } else {
                rest.push(trial);
            }
        }
        *round += 1;
    }
    leads.sort_by_key(|(round, rank, position, _)| (*round, *rank, *position));
    leads.into_iter().map(|(_, _, _, t)| t).chain(rest).collect()
}

/// Held while a trial uses an engine on its own: one per engine, for trials that look at a whole
/// engine (its containers by command line, its networks' isolation) and so must not overlap with
/// another trial on that engine, while trials on other engines run beside them.
pub fn engine_to_itself(kind: RuntimeKind) -> std::sync::MutexGuard<'static, ()> {
    use hydra::runtime::EngineKind;
    static LOCKS: [std::sync::Mutex<()>; 3] = [
        std::sync::Mutex::new(()),
        std::sync::Mutex::new(()),
        std::sync::Mutex::new(()),
    ];
    let slot = match kind.engine() {
        EngineKind::Docker => 0,
        EngineKind::Podman => 1,
        EngineKind::PodmanRootless => 2,
    };
    LOCKS[slot].lock().unwrap_or_else(|p| p.into_inner())
}

/// Trials of several targets in turns by engine (a `docker` trial, a `podman` one, a
/// `podman-rootless` one, and again), so that the test threads work on different engines
/// rather than wait for [`engine_to_itself`] or on one engine's storage lock.
pub fn engines_in_turn(per_target: Vec<(RuntimeKind, Vec<Trial>)>) -> Vec<Trial> {
    let mut queues: std::collections::BTreeMap<hydra::runtime::EngineKind, std::collections::VecDeque<Trial>> =
        Default::default();
    for (kind, trials) in per_target {
        queues.entry(kind.engine()).or_default().extend(trials);
    }
    let mut out = Vec::new();
    while queues.values().any(|q| !q.is_empty()) {
        for q in queues.values_mut() {
            out.extend(q.pop_front());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(kinds: &[RuntimeKind]) -> Vec<String> {
        let per_target = kinds
            .iter()
            .map(|k| {
                let trials = (0..2)
                    .map(|i| Trial::test(format!("{}#{i}", k.ident()), || Ok(())))
                    .collect();
                (*k, trials)
            })
            .collect();
        engines_side_by_side(per_target)
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    #[test]
    fn first_trials_alternate_between_engines_slowest_first() {
        use RuntimeKind::*;
        let got = names(&[Docker, DockerV1, Podman, PodmanV2, PodmanRootless, PodmanRootlessV2]);
        assert_eq!(
            got[..6],
            [
                "podman_rootless#0",
                "podman#0",
                "docker#0",
                "podman_rootless_v2#0",
                "podman_v2#0",
                "docker_v1#0"
            ]
        );
        assert_eq!(got.len(), 12);
        assert_eq!(got[6..8], ["docker#1", "docker_v1#1"]);
    }

    #[test]
    fn engines_take_turns() {
        use RuntimeKind::*;
        let per_target = [Docker, DockerV1, Podman, PodmanRootless]
            .iter()
            .map(|k| {
                (
                    *k,
                    (0..2)
                        .map(|i| Trial::test(format!("{}#{i}", k.ident()), || Ok(())))
                        .collect(),
                )
            })
            .collect();
        let got: Vec<String> = engines_in_turn(per_target)
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "docker#0",
                "podman#0",
                "podman_rootless#0",
                "docker#1",
                "podman#1",
                "podman_rootless#1",
                "docker_v1#0",
                "docker_v1#1"
            ]
        );
    }

    #[test]
    fn an_ignored_first_trial_does_not_lead() {
        let trials = vec![
            Trial::test("podman#skipped", || Ok(())).with_ignored_flag(true),
            Trial::test("podman#runs", || Ok(())),
        ];
        let got: Vec<String> = engines_side_by_side(vec![(RuntimeKind::Podman, trials)])
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(got, ["podman#runs", "podman#skipped"]);
    }
}
