//! Command-line interface: parses arguments, wires the library to progress output and tables, and
//! maps errors to exit codes. Nothing in the library imports this module.

mod output;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use hydra::doctor;
use hydra::error::exit;
use hydra::report::redact::{self, redact_output, Redactor};
use hydra::report::secrets_source;
use hydra::runs::{RunRecord, RunStatus};
use hydra::runtime::{self, dns_leftovers, Runtime, RuntimeKind};
use hydra::stack::{self, Stack, StackOptions};
use hydra::{gc, images, HarnessError};

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Validate a compose stack under docker, podman and rootless podman",
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct StackArgs {
    /// Compose file(s), in -f order (default: the bundled compose/phoenix.yml).
    #[arg(long = "compose", value_name = "FILE")]
    compose: Vec<PathBuf>,
    /// Loopback address published ports bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Seconds the stack may take to become healthy.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

impl StackArgs {
    fn options(&self, runtime: RuntimeKind) -> StackOptions {
        let mut o = StackOptions::new(runtime);
        if !self.compose.is_empty() {
            o.compose_files = self.compose.clone();
        }
        o.bind_ip = self.bind_ip;
        o.ready_timeout = Duration::from_secs(self.timeout);
        o
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check each runtime's prerequisites and print a fix for every problem.
    Doctor {
        #[arg(long = "runtime", value_name = "R", value_parser = RuntimeParser)]
        runtimes: Vec<RuntimeKind>,
        /// `json`: the reports of every runtime as a JSON array on stdout (same exit code).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Build the stack's images (only those whose inputs changed).
    Images {
        #[arg(long = "runtime", value_name = "R", value_parser = RuntimeParser)]
        runtimes: Vec<RuntimeKind>,
        #[arg(long = "compose", value_name = "FILE")]
        compose: Vec<PathBuf>,
        /// Only bootstrap and import the offline base image.
        #[arg(long)]
        base_only: bool,
    },
    /// Bring the stack up, wait until healthy, and leave it running.
    Up {
        #[arg(long, value_name = "R", value_parser = RuntimeParser)]
        runtime: RuntimeKind,
        #[command(flatten)]
        stack: StackArgs,
        /// `json`: print what `up` measured (per-service readiness with wall-clock times) and
        /// the published ports as one JSON object on stdout instead of the tables.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Podman targets: bring the stack up, write a systemd unit per container
    /// (`podman generate systemd --new`, secrets redacted) to <report>/systemd/<target>/, check
    /// them with `systemd-analyze verify`, take the stack down; exit 1 if a unit is missing or
    /// unsound.
    Units {
        #[arg(long, value_name = "R", value_parser = RuntimeParser)]
        runtime: RuntimeKind,
        #[command(flatten)]
        stack: StackArgs,
        /// Report directory (the units go to its `systemd/<target>/`).
        #[arg(long, value_name = "DIR", default_value = "target/hydra")]
        report: PathBuf,
        /// `json`: the units report as one JSON object on stdout.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Kubernetes YAML from the compose files (no engine needed): a Pod or Deployment per
    /// service, claims, headless services and network policies, written to
    /// <report>/kube/<project>.yaml and checked against the Kubernetes schemas with
    /// kubernetes-validate; prints what does not carry over from compose. Exit 1 if the schema
    /// check finds a problem.
    Kube {
        /// The spec whose compose files to use (default: the bundled spec's).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Compose file(s), in -f order (default: the spec's list).
        #[arg(long = "compose", value_name = "FILE")]
        compose: Vec<PathBuf>,
        /// Prefix of claim and secret names, and the file's name (default: the first compose
        /// file's name without extension).
        #[arg(long)]
        project: Option<String>,
        /// Report directory (the YAML goes to its `kube/`).
        #[arg(long, value_name = "DIR", default_value = "target/hydra")]
        report: PathBuf,
        /// `json`: objects, workloads, secrets to create, divergences and the schema check as one
        /// JSON object on stdout.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Tear down the stack `up` left running.
    Down {
        #[arg(long, value_name = "R", value_parser = RuntimeParser)]
        runtime: RuntimeKind,
        /// A specific run id (default: the newest kept run of that runtime).
        #[arg(long)]
        run: Option<String>,
    },
    /// Remove objects of harness runs whose process was killed (only objects the harness labelled).
    Gc {
        /// Also remove stacks deliberately left running by `harness up`.
        #[arg(long)]
        all: bool,
        #[arg(long = "runtime", value_name = "R", value_parser = RuntimeParser)]
        runtimes: Vec<RuntimeKind>,
        /// `json`: what was found, removed and left, per engine, as one JSON object on stdout.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Validate a stack under each runtime: lifecycle, DNS, ports, health, monitoring, persistence,
    /// posture.
    Validate {
        /// Runtimes to use, repeated or comma-separated as in HYDRA_RUNTIMES (default:
        /// HYDRA_RUNTIMES, else every compose target doctor finds usable).
        #[arg(long = "runtime", value_name = "R", value_parser = RuntimeParser, value_delimiter = ',')]
        runtimes: Vec<RuntimeKind>,
        /// Runtimes whose absence is a failure, repeated or comma-separated (default: HYDRA_REQUIRE).
        #[arg(long = "require", value_name = "R", value_parser = RuntimeParser, value_delimiter = ',')]
        require: Vec<RuntimeKind>,
        /// Compose file(s), in -f order (default: the spec's list).
        #[arg(long = "compose", value_name = "FILE")]
        compose: Vec<PathBuf>,
        /// The spec of what must hold (default: fixtures/phoenix.spec.toml).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Only checks whose `<runtime>::<area>::<check>` name contains this text.
        #[arg(long, value_name = "TEXT")]
        filter: Vec<String>,
        /// JUnit XML output.
        #[arg(long, value_name = "PATH", default_value = "target/hydra/junit/migration.xml")]
        junit: PathBuf,
        /// Directory for parity.md and parity.json.
        #[arg(long, value_name = "DIR", default_value = "target/hydra")]
        report: PathBuf,
        /// Loopback address published ports bind to.
        #[arg(long, default_value = "127.0.0.1")]
        bind_ip: IpAddr,
        /// Seconds each stack may take to become healthy.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// `json`: instead of the tables, one JSON object on stdout: the counts per target,
        /// each failure with its message, the report paths and the exit code.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Migration drill: bring the stack up under --from, move it and its data to --to, verify,
    /// write there, roll back, and say GO (exit 0) or NO-GO (exit 1).
    Migrate {
        #[arg(long, value_name = "R", value_parser = RuntimeParser)]
        from: RuntimeKind,
        #[arg(long, value_name = "R", value_parser = RuntimeParser)]
        to: RuntimeKind,
        /// The spec of what must hold (default: fixtures/phoenix.spec.toml).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Compose file(s), in -f order (default: the spec's list).
        #[arg(long = "compose", value_name = "FILE")]
        compose: Vec<PathBuf>,
        /// How the database volume moves (default: the spec's `[migrate] strategy`, else raw).
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// Directory for migration.md and migration.json.
        #[arg(long, value_name = "DIR", default_value = "target/hydra")]
        report: PathBuf,
        /// JUnit XML output (one trial per phase).
        #[arg(long, value_name = "PATH", default_value = "target/hydra/junit/migrate.xml")]
        junit: PathBuf,
        /// Leave the target stack running at the end (take it down with `harness down`).
        #[arg(long)]
        keep: bool,
        /// Loopback address published ports bind to.
        #[arg(long, default_value = "127.0.0.1")]
        bind_ip: IpAddr,
        /// Seconds each stack may take to become healthy.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Work on the reports of finished runs.
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
    /// For setup scripts: reads a failed container run's stderr on stdin and prints the host fix
    /// it needs (`use-runc`, `no-default-ulimits`, `tun-readable`, `subordinate-ids`); exit 1 when
    /// no known fix applies.
    #[command(hide = true)]
    HostFix,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum StrategyArg {
    /// The volume's files, as a tar stream (owners kept).
    Raw,
    /// pg_dump out of the source's database, pg_restore into the target's.
    Logical,
}

#[derive(Subcommand)]
enum ReportAction {
    /// One JUnit file and one parity report from the reports of several runs (one per target,
    /// such as the jobs of a CI matrix): each DIR is a `--report` directory with its summary.json.
    Merge {
        /// Report directories of the runs to merge.
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// JUnit XML output.
        #[arg(long, value_name = "PATH", default_value = "target/hydra/junit/migration.xml")]
        junit: PathBuf,
        /// Directory for the merged parity.md, parity.json and summary.json.
        #[arg(long, value_name = "DIR", default_value = "target/hydra")]
        report: PathBuf,
    },
}

/// How a command prints its result.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Tables for a person.
    Text,
    /// One JSON document on stdout, for a program.
    Json,
}

/// Parses a runtime name for clap, keeping the error's hint (clap shows only the message).
/// `--runtime` values: the targets' names, listed in `--help`, parsed with the harness's own
/// error (which names the choices and a hint).
#[derive(Clone)]
struct RuntimeParser;

impl clap::builder::TypedValueParser for RuntimeParser {
    type Value = RuntimeKind;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RuntimeKind, clap::Error> {
        let text = value.to_string_lossy();
        text.parse::<RuntimeKind>().map_err(|e| {
            let message = match e.hint() {
                Some(hint) => format!("{e}\n  hint: {hint}\n"),
                None => format!("{e}\n"),
            };
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            RuntimeKind::EVERY
                .into_iter()
                .map(|k| clap::builder::PossibleValue::new(k.name())),
        ))
    }
}

/// The environment `harness` reads, shown at the end of `--help`.
const ENVIRONMENT: &str = "\
Environment:
  HYDRA_RUNTIMES        targets `validate` uses when --runtime is not given (comma-separated)
  HYDRA_REQUIRE         targets whose absence fails `validate` instead of skipping them
  HYDRA_ROOT            the workspace holding compose/, fixtures/ and containerfiles/ (default:
                        the source tree this binary was built from)
  HYDRA_STATE_DIR       run records and stream pipes (default /var/lib/hydra/state as root,
                        else $XDG_STATE_HOME/hydra)
  HYDRA_ROOTLESS_USER   the user whose rootless Podman the podman-rootless targets drive (hydra)
  HYDRA_RUN_ID          a fixed run id for `up` (tests use it to find their run)
  HYDRA_BASE_CACHE      where the offline base image's root filesystem is cached
                        (default /var/lib/hydra/base)
  HYDRA_KUBE_VALIDATE   the kubernetes-validate program `kube` checks its YAML with (default:
                        /opt/hydra/kube-validate-venv/bin/kubernetes-validate, else PATH)
  HYDRA_DEBIAN_MIRROR   the mirror the base image is bootstrapped from (default: the host's
                        apt sources)
  RUST_LOG              log filter (e.g. hydra=debug prints every engine and compose command)
  NO_COLOR              no colour in the output
The test suite (`cargo test --test migration`) also reads HYDRA_SPEC, HYDRA_COMPOSE (comma-
separated), HYDRA_JUNIT and HYDRA_REPORT_DIR; `harness/tests/migrate.rs` reads HYDRA_DRILLS.";

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    hydra::logging::init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    if let Err(e) = ctrlc::set_handler(on_signal) {
        eprintln!("warning: cannot install the Ctrl-C handler: {e}");
    }
    let result = match cli.command {
        Command::Doctor { runtimes, format } => cmd_doctor(&runtimes, format),
        Command::Images {
            runtimes,
            compose,
            base_only,
        } => cmd_images(&runtimes, compose, base_only),
        Command::Up { runtime, stack, format } => cmd_up(runtime, &stack, format),
        Command::Units {
            runtime,
            stack,
            report,
            format,
        } => cmd_units(runtime, &stack, &report, format),
        Command::Kube {
            spec,
            compose,
            project,
            report,
            format,
        } => cmd_kube(spec, compose, project, &report, format),
        Command::Down { runtime, run } => cmd_down(runtime, run),
        Command::Gc { all, runtimes, format } => cmd_gc(all, &runtimes, format),
        Command::HostFix => cmd_host_fix(),
        Command::Report {
            action: ReportAction::Merge { dirs, junit, report },
        } => cmd_report_merge(&dirs, &junit, &report),
        Command::Migrate {
            from,
            to,
            spec,
            compose,
            strategy,
            report,
            junit,
            keep,
            bind_ip,
            timeout,
        } => {
            let mut stack = StackOptions::new(from);
            stack.bind_ip = bind_ip;
            stack.ready_timeout = Duration::from_secs(timeout);
            let opts = hydra::migrate::DrillOptions {
                from,
                to,
                strategy: strategy.map(|s| match s {
                    StrategyArg::Raw => hydra::spec::Strategy::Raw,
                    StrategyArg::Logical => hydra::spec::Strategy::Logical,
                }),
                stack,
                keep,
            };
            cmd_migrate(&opts, spec, &compose, &report, &junit)
        }
        Command::Validate {
            runtimes,
            require,
            compose,
            spec,
            filter,
            junit,
            report,
            bind_ip,
            timeout,
            format,
        } => {
            let args = ValidateArgs {
                runtimes,
                require,
                compose,
                spec,
                filter,
                junit,
                report,
                format,
                stack: StackArgs {
                    compose: Vec::new(),
                    bind_ip,
                    timeout,
                },
            };
            cmd_validate(&args)
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            // A failed build's command line carries its build args: redact what is printed.
            eprintln!("error: {}", redact_output(&e.to_string()));
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {}", redact_output(&s.to_string()));
                source = s.source();
            }
            if let Some(hint) = e.hint() {
                eprintln!("  hint: {}", redact_output(hint));
            }
            e.exit_code()
        }
    };
    exit_code(code, &stack::teardown_failures())
}

/// The final exit code: a teardown that failed anywhere (also in a drop guard, after an error or
/// an interruption) means objects may be left behind, and that outranks every other outcome.
fn exit_code(code: i32, teardown_failures: &[String]) -> i32 {
    if teardown_failures.is_empty() {
        return code;
    }
    if code != exit::LEFTOVERS {
        eprintln!(
            "error: teardown left objects behind:\n{}\n  hint: run `harness gc` to sweep what is left",
            teardown_failures
                .iter()
                .map(|f| format!("  {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    exit::LEFTOVERS
}

/// SIGINT/SIGTERM: the first stops the checks and tears down in order, the second skips the
/// compose tool and sweeps the run's objects by label, a third exits at once.
fn on_signal() {
    runtime::exec::cancel();
    match runtime::exec::signal_count() {
        1 => eprintln!("\ninterrupted: stopping and tearing down (interrupt again to skip to a quick sweep)"),
        2 => eprintln!("\ninterrupted again: skipping compose down, removing the run's objects by label"),
        _ => {
            eprintln!("\ninterrupted a third time: exiting now\n  hint: run `harness gc` to remove what is left");
            std::process::exit(exit::INTERRUPTED);
        }
    }
}

fn cmd_host_fix() -> hydra::Result<i32> {
    use std::io::Read;
    let mut stderr = String::new();
    std::io::stdin().read_to_string(&mut stderr)?;
    Ok(match hydra::doctor::HostFix::classify(&stderr) {
        Some(fix) => {
            println!("{}", fix.key());
            exit::OK
        }
        None => {
            println!("unknown");
            exit::FAILED
        }
    })
}

/// Teaches the process-wide redactor (error messages, progress, tracing lines) the secrets of a
/// run's compose files before anything of the run can print them.
fn learn_secrets(compose_files: &[PathBuf]) -> Result<Redactor, HarnessError> {
    let redactor = secrets_source::for_run(compose_files, None)?;
    redact::install(&redactor);
    Ok(redactor)
}

fn all_or(runtimes: &[RuntimeKind]) -> Vec<RuntimeKind> {
    if runtimes.is_empty() {
        RuntimeKind::ALL.to_vec()
    } else {
        runtimes.to_vec()
    }
}

fn cmd_doctor(runtimes: &[RuntimeKind], format: Format) -> Result<i32, HarnessError> {
    let reports: Vec<doctor::RuntimeReport> = all_or(runtimes).into_iter().map(doctor::diagnose).collect();
    let failed = !reports.iter().all(doctor::RuntimeReport::usable);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&reports).expect("reports serialise")),
        Format::Text => reports.iter().for_each(output::doctor_table),
    }
    if failed {
        eprintln!("\nsome runtimes are not usable: apply the fixes above (or run `sudo scripts/setup-host.sh`)");
    }
    Ok(if failed { exit::RUNTIME_UNUSABLE } else { exit::OK })
}

fn cmd_images(runtimes: &[RuntimeKind], compose: Vec<PathBuf>, base_only: bool) -> Result<i32, HarnessError> {
    // Images live in the engine's storage: one pass per engine, whichever targets share it.
    let targets = hydra::runtime::one_per_engine(&all_or(runtimes));
    if base_only {
        for kind in targets.iter().copied() {
            let imported = images::base::ensure(&Runtime::resolve(kind)?)?;
            println!(
                "{kind}: {} {}",
                images::base::BASE_IMAGE,
                if imported { "imported" } else { "already present" }
            );
        }
        return Ok(exit::OK);
    }
    let files = if compose.is_empty() {
        vec![hydra::workspace::bundled_compose_file()]
    } else {
        compose
    };
    stack::ComposeSet::load(&files)?;
    learn_secrets(&files)?;
    for kind in targets.iter().copied() {
        let rt = Runtime::resolve(kind)?;
        let progress = output::Progress::new(&format!("{kind}: images"));
        let report = stack::build_images(&rt, &files, &mut |m| progress.phase(m))?;
        progress.finish();
        output::images_table(&report);
    }
    Ok(exit::OK)
}

fn cmd_units(runtime: RuntimeKind, args: &StackArgs, report: &Path, format: Format) -> Result<i32, HarnessError> {
    if !runtime.is_podman() || runtime.is_kube() {
        return Err(HarnessError::usage(format!(
            "{runtime} has no systemd unit generator here: units come from Podman (`podman generate systemd`) for a compose stack"
        ))
        .with_hint("pass a Podman compose target, e.g. --runtime podman or --runtime podman-rootless"));
    }
    let opts = args.options(runtime);
    let redactor = learn_secrets(&opts.compose_files)?;
    let dir = report.join("systemd").join(runtime.name());
    remove_earlier_units(&dir)?;
    let progress = output::Progress::new(&format!("{runtime}: up"));
    let (stack, _) = Stack::up(&opts, &mut |e| progress.event(e))?;
    progress.finish();
    let units = hydra::deploy::systemd_units(&stack, &dir, &redactor);
    stack.down()?;
    let units = units?;
    if format == Format::Json {
        println!("{}", redact_output(&serde_json::to_string(&units).unwrap_or_default()));
    } else {
        for (service, path) in &units.units {
            println!("{runtime}: {service}: {}", path.display());
        }
        for (service, why) in &units.refused {
            println!("{runtime}: {service}: no unit: {why}");
        }
        for f in &units.findings {
            println!("{runtime}: unit problem: {f}");
        }
        println!(
            "{runtime}: {} units written, {} refused, {} problem(s) (systemd-analyze verify, relative host paths)",
            units.units.len(),
            units.refused.len(),
            units.findings.len()
        );
    }
    Ok(if units.sound() { exit::OK } else { exit::FAILED })
}

fn cmd_kube(
    spec: Option<PathBuf>,
    compose: Vec<PathBuf>,
    project: Option<String>,
    report: &Path,
    format: Format,
) -> Result<i32, HarnessError> {
    use hydra::kube::{self, validate};
    let files = match (spec, compose.is_empty()) {
        (Some(spec), _) => hydra::spec::Spec::load(&spec, &compose)?.compose,
        (None, false) => compose,
        (None, true) => hydra::spec::Spec::load(&hydra::spec::bundled_spec_file(), &[])?.compose,
    };
    learn_secrets(&files)?;
    let merged = stack::ComposeSet::load(&files)?.merged();
    let project = project.unwrap_or_else(|| {
        files[0]
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stack".into())
    });
    let lookup = kube::project_lookup(&merged);
    let generated = kube::generate(&merged, &kube::KubeOptions::new(project), &lookup)?;
    let path = report.join("kube").join(format!("{}.yaml", generated.project));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, generated.to_yaml())?;
    let schema = validate::validate(&path)?;
    let code = if schema.valid() { exit::OK } else { exit::FAILED };
    if format == Format::Json {
        let json = serde_json::json!({
            "project": generated.project,
            "file": path,
            "objects": generated.objects.iter().map(|o| o.id()).collect::<Vec<_>>(),
            "workloads": generated.workloads,
            "secrets": generated.secrets,
            "divergences": generated.divergences,
            "schema": schema,
            "valid": schema.valid(),
            "exit_code": code,
        });
        println!("{}", redact_output(&json.to_string()));
        return Ok(code);
    }
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for o in &generated.objects {
        match kinds.iter_mut().find(|(k, _)| *k == o.kind()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((o.kind(), 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("kube: wrote {} ({})", path.display(), kinds.join(", "));
    for w in &generated.workloads {
        println!("  {}: {:?} ({})", w.service, w.kind, w.reason);
    }
    for s in &generated.secrets {
        println!(
            "secret to create first: {} from {} (keys: {})",
            s.name,
            s.source.display(),
            s.keys.join(", ")
        );
    }
    for d in &generated.divergences {
        println!("divergence: {}\n  why: {}", d.what, d.reason);
    }
    for f in &schema.findings {
        println!("schema problem: {}", redact_output(&f.message));
    }
    println!(
        "kube: {} object(s), {} divergence(s); schema check (kubernetes-validate --strict, Kubernetes {}): {}",
        generated.objects.len(),
        generated.divergences.len(),
        schema.kubernetes_version,
        if schema.valid() {
            "valid".to_string()
        } else {
            format!("{} problem(s)", schema.findings.len())
        }
    );
    Ok(code)
}

/// Removes the unit files an earlier `units` run wrote to `dir` (regular files named
/// `container-hydra-*.service`; links and anything else are left), so the directory holds one
/// run's units: container names carry the run id.
fn remove_earlier_units(dir: &Path) -> Result<(), HarnessError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let regular = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if regular && name.starts_with("container-hydra-") && name.ends_with(".service") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn cmd_up(runtime: RuntimeKind, args: &StackArgs, format: Format) -> Result<i32, HarnessError> {
    let opts = args.options(runtime);
    learn_secrets(&opts.compose_files)?;
    let progress = output::Progress::new(&format!("{runtime}: up"));
    let (stack, report) = Stack::up(&opts, &mut |e| progress.event(e))?;
    progress.finish();
    if runtime::exec::is_cancelled() {
        stack.down()?;
        return Err(HarnessError::Interrupted);
    }
    if format == Format::Json {
        let record = stack.keep()?;
        let json = serde_json::json!({ "up": report, "ports": record.ports });
        println!("{}", redact_output(&json.to_string()));
        return Ok(exit::OK);
    }
    output::ready_table(&report);
    let record = stack.keep()?;
    println!("\nstack {} is running (run {}).", record.project, record.run_id);
    for (var, port) in &record.ports {
        println!("  {var} = {}:{port}", args.bind_ip);
    }
    println!("take it down with: harness down --runtime {runtime}");
    Ok(exit::OK)
}

fn cmd_down(runtime: RuntimeKind, run: Option<String>) -> Result<i32, HarnessError> {
    let record = RunRecord::load_all()?
        .into_iter()
        .filter(|r| r.runtime == runtime && r.status == RunStatus::Kept)
        .find(|r| run.as_deref().map(|id| id == r.run_id).unwrap_or(true))
        .ok_or_else(|| {
            HarnessError::usage(format!(
                "no stack left running by `harness up` for runtime {runtime}{}",
                run.map(|r| format!(" with run id {r}")).unwrap_or_default()
            ))
            .with_hint("`harness gc` removes leftovers of killed runs".to_string())
        })?;
    let project = record.project.clone();
    // Best effort: the files of a kept run may be gone by now, and teardown must still work.
    if let Err(e) = learn_secrets(&record.compose_files) {
        tracing::debug!("secrets of {project} not learned: {e}");
    }
    let report = Stack::attach(record)?.down()?;
    println!(
        "removed {project} in {:.1}s; nothing with its labels is left",
        report.seconds
    );
    if !report.removed_after_compose.is_empty() {
        println!(
            "  compose down left (removed by the harness): {}",
            report.removed_after_compose.join(", ")
        );
    }
    Ok(exit::OK)
}

fn cmd_report_merge(dirs: &[PathBuf], junit: &std::path::Path, report: &std::path::Path) -> Result<i32, HarnessError> {
    use hydra::report::merge;
    let parts = dirs
        .iter()
        .map(|d| merge::load_summary(d).map(|s| (d.clone(), s)))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge::merge(parts)?;
    // The parts were redacted when they were written; nothing here knows their secrets.
    let written = hydra::report::write_all(&merged, junit, report, None)?;
    print!("{}", hydra::report::terminal::render(&merged, None));
    println!(
        "merged {} report(s): {}, {}, {}",
        dirs.len(),
        written.junit.display(),
        written.parity_md.display(),
        written.parity_json.display()
    );
    Ok(validate_exit_code(&merged, false))
}

/// What `harness gc` did on one engine.
#[derive(serde::Serialize)]
struct GcEngine {
    runtime: RuntimeKind,
    /// Why the engine was not swept (not reachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    runs: Vec<gc::RunFound>,
    dns_leftovers: dns_leftovers::DnsSweep,
}

/// What `harness gc` did.
#[derive(serde::Serialize)]
struct GcReport {
    engines: Vec<GcEngine>,
    /// Named-pipe directories of dead harness processes, removed.
    stream_dirs_removed: Vec<PathBuf>,
}

fn cmd_gc(all: bool, runtimes: &[RuntimeKind], format: Format) -> Result<i32, HarnessError> {
    let mut report = GcReport {
        engines: Vec::new(),
        stream_dirs_removed: Vec::new(),
    };
    // Objects live in the engine: one sweep per engine, whichever targets share it.
    for kind in hydra::runtime::one_per_engine(&all_or(runtimes)) {
        if let Some(reason) = doctor::diagnose_reachable(kind) {
            report.engines.push(GcEngine {
                runtime: kind,
                skipped: Some(reason),
                runs: Vec::new(),
                dns_leftovers: Default::default(),
            });
            continue;
        }
        let rt = Runtime::resolve(kind)?;
        let runs = gc::sweep(&rt, all)?;
        let dns = dns_leftovers::sweep(&rt)?;
        report.engines.push(GcEngine {
            runtime: kind,
            skipped: None,
            runs,
            dns_leftovers: dns,
        });
    }
    // Named pipes of copies whose harness was killed (one place for every engine).
    report.stream_dirs_removed = hydra::volumes::stream_dir::sweep_orphans()?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("gc report serialises")
        ),
        Format::Text => print_gc(&report),
    }
    Ok(exit::OK)
}

fn print_gc(report: &GcReport) {
    let mut swept = 0;
    for e in &report.engines {
        let kind = e.runtime;
        if let Some(reason) = &e.skipped {
            println!("{kind}: skipped ({reason})");
            continue;
        }
        for run in &e.runs {
            let what = match run.verdict {
                _ if run.ignored.is_some() => "left alone (not a harness run: malformed run id in its labels)",
                gc::Verdict::Orphaned => {
                    swept += 1;
                    "removed"
                }
                gc::Verdict::Active => "kept (its harness process is running)",
                gc::Verdict::Kept => "kept (left running by `harness up`; use --all)",
            };
            println!("{kind}: run {} {what}: {}", run.run_id, run.objects.join(", "));
        }
        for f in &e.dns_leftovers.removed {
            swept += 1;
            println!("{kind}: aardvark-dns entries of removed network {} removed", f.network);
        }
        for f in &e.dns_leftovers.foreign {
            println!(
                "{kind}: aardvark-dns entries of removed network {} left alone (not the harness's; remove {} as the engine's user)",
                f.network,
                f.path.display()
            );
        }
    }
    for dir in &report.stream_dirs_removed {
        swept += 1;
        println!("stream directory of a dead harness process removed: {}", dir.display());
    }
    if swept == 0 {
        println!("nothing to sweep");
    }
}

fn cmd_migrate(
    opts: &hydra::migrate::DrillOptions,
    spec: Option<PathBuf>,
    compose: &[PathBuf],
    report_dir: &std::path::Path,
    junit: &std::path::Path,
) -> Result<i32, HarnessError> {
    use hydra::migrate::{self, Decision};
    let spec_path = spec.unwrap_or_else(hydra::spec::bundled_spec_file);
    let plan = hydra::session::Plan::new(hydra::spec::Spec::load(&spec_path, compose)?)?;
    let redactor = plan.redactor()?;
    redact::install(&redactor);
    if !opts.stack.bind_ip.is_loopback() {
        return Err(HarnessError::usage(format!(
            "bind address {} is not a loopback address",
            opts.stack.bind_ip
        )));
    }
    if let Some(kube) = [opts.from, opts.to].into_iter().find(|k| k.is_kube()) {
        // A played stack's volumes are its claims, named differently from compose's.
        return Err(HarnessError::usage(format!(
            "{kube}: the migration drill moves compose stacks; a kube-play target is validated with `harness validate`"
        ))
        .with_hint("pick compose targets for --from and --to, e.g. --from docker --to podman-rootless"));
    }
    let progress = output::Progress::new(&format!("migrate {} → {}", opts.from, opts.to));
    let (report, result) = migrate::drill(&plan, opts, &mut |e| progress.event(e));
    progress.finish();
    migrate::report::write(&report, report_dir, junit, Some(&redactor))?;
    for p in &report.phases {
        println!(
            "{:<22} {:<5} {:>7.1}s  {}",
            p.name,
            hydra::report::verdict_label(p.verdict),
            p.seconds,
            redact_output(&p.message)
        );
    }
    println!(
        "\nreports: {} and migration.json, JUnit {}",
        report_dir.join("migration.md").display(),
        junit.display()
    );
    if result.is_err() {
        if let (Some(run), Some(project)) = (&report.source_run, &report.source_project) {
            if hydra::runs::RunRecord::load(run).is_some() {
                eprintln!(
                    "the source stack {project} is kept with its data; remove it with: harness down --runtime {} --run {run}",
                    opts.from
                );
            }
        }
    }
    result?;
    match report.verdict.as_ref().map(|v| v.decision) {
        Some(Decision::Go) => {
            println!(
                "verdict: GO ({} → {}, {} strategy)",
                opts.from, opts.to, report.strategy
            );
            Ok(exit::OK)
        }
        Some(Decision::NoGo) => {
            println!("verdict: NO-GO");
            for r in &report.verdict.as_ref().expect("decided").reasons {
                println!("  - {}", redact_output(r));
            }
            Ok(exit::FAILED)
        }
        None => Err(HarnessError::Interrupted),
    }
}

struct ValidateArgs {
    runtimes: Vec<RuntimeKind>,
    require: Vec<RuntimeKind>,
    compose: Vec<PathBuf>,
    spec: Option<PathBuf>,
    filter: Vec<String>,
    junit: PathBuf,
    report: PathBuf,
    format: Format,
    stack: StackArgs,
}

fn cmd_validate(args: &ValidateArgs) -> Result<i32, HarnessError> {
    use hydra::outcome::{CheckId, CheckOutcome, RunSummary, Verdict};
    use hydra::session::{self, Availability, Plan};
    let spec_path = args.spec.clone().unwrap_or_else(hydra::spec::bundled_spec_file);
    let plan = Plan::new(hydra::spec::Spec::load(&spec_path, &args.compose)?)?;
    // One redactor for the whole run, known before anything of the run can print a secret.
    let redactor = plan.redactor()?;
    redact::install(&redactor);
    let runtimes = session::availability(&args.runtimes, &args.require)?;
    let selected = session::selection(&args.filter, &[], false);
    let mut summary = RunSummary::default();
    let mut unusable = false;
    let asked: Vec<RuntimeKind> = runtimes.iter().map(|(kind, _)| *kind).collect();
    // What each target contributes to the summary: its info when it ran, and its outcomes.
    let mut results: Vec<(RuntimeKind, session::RuntimeRun, bool)> = Vec::new();
    let mut usable = Vec::new();
    for (kind, availability) in runtimes {
        let (broken, reason) = match availability {
            Availability::Use => {
                usable.push(kind);
                continue;
            }
            Availability::Skip(reason) => (false, reason),
            Availability::Broken(reason) => (true, reason),
        };
        eprintln!("{} {kind}: {reason}", if broken { "FAIL" } else { "SKIP" });
        unusable |= broken;
        let verdict = if broken { Verdict::Fail } else { Verdict::Skip };
        let run = session::RuntimeRun {
            outcomes: vec![CheckOutcome::runtime_unavailable(kind, verdict, reason)],
            ..Default::default()
        };
        results.push((kind, run, false));
    }
    // Targets of different engines run at the same time, one thread per engine; the targets of
    // one engine take turns (two stacks on one Podman engine would break each other's network
    // isolation, see hydra::runtime::slots). Progress lines name their target; the reports keep
    // the order the targets were asked in.
    let lanes = lanes_by_engine(usable);
    let group = output::ProgressGroup::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .into_iter()
            .map(|lane| {
                let (plan, selected, group) = (&plan, &selected, &group);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    for kind in lane {
                        let only = |id: &CheckId| selected(&id.trial_name(kind));
                        // Targets not reached because the run was stopped are reported, with
                        // every check interrupted.
                        if runtime::exec::is_cancelled() {
                            let run = session::RuntimeRun {
                                outcomes: session::interrupted_outcomes(kind, plan, &only),
                                ..Default::default()
                            };
                            done.push((kind, run, false));
                            continue;
                        }
                        let progress = group.progress(kind.name());
                        let run =
                            session::run(kind, plan, &args.stack.options(kind), &only, &mut |e| progress.event(e));
                        progress.finish();
                        done.push((kind, run, true));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            results.extend(h.join().expect("a validate thread panicked"));
        }
    });
    results.sort_by_key(|(kind, _, _)| asked.iter().position(|k| k == kind));
    for (kind, run, ran) in results {
        if let Some(yaml) = &run.played_yaml {
            let path = hydra::report::write_played_yaml(&args.report, kind, yaml, Some(&redactor))?;
            eprintln!("{kind}: played YAML in {}", path.display());
        }
        if ran {
            summary.runtimes.push(run.info);
        }
        summary.outcomes.extend(run.outcomes);
        summary.observations.extend(run.observations);
    }
    let written = hydra::report::write_all(&summary, &args.junit, &args.report, Some(&redactor))?;
    let code = validate_exit_code(&summary, unusable);
    match args.format {
        Format::Text => {
            print!("{}", hydra::report::terminal::render(&summary, Some(&redactor)));
            println!(
                "reports: {}, {}, {}",
                written.junit.display(),
                written.parity_md.display(),
                written.parity_json.display()
            );
        }
        Format::Json => {
            let json = validate_json(&summary, &written, code);
            println!(
                "{}",
                redact_output(&serde_json::to_string_pretty(&json).expect("summary serialises"))
            );
        }
    }
    Ok(code)
}

/// `validate --format json`: the counts per target, the failures, the reports and the exit code.
fn validate_json(
    summary: &hydra::outcome::RunSummary,
    written: &hydra::report::WrittenReports,
    code: i32,
) -> serde_json::Value {
    use hydra::outcome::Verdict;
    let mut targets: Vec<serde_json::Value> = Vec::new();
    let mut kinds: Vec<RuntimeKind> = Vec::new();
    for o in &summary.outcomes {
        if !kinds.contains(&o.runtime) {
            kinds.push(o.runtime);
        }
    }
    for kind in kinds {
        let count = |v: Verdict| {
            summary
                .outcomes
                .iter()
                .filter(|o| o.runtime == kind && o.verdict == v)
                .count()
        };
        targets.push(serde_json::json!({
            "runtime": kind,
            "passed": count(Verdict::Pass),
            "failed": count(Verdict::Fail),
            "skipped": count(Verdict::Skip),
            "not_enforceable": count(Verdict::NotEnforceable),
            "interrupted": count(Verdict::Interrupted),
        }));
    }
    let failures: Vec<serde_json::Value> = summary
        .outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .map(|o| serde_json::json!({ "trial": o.trial_name(), "message": o.message }))
        .collect();
    serde_json::json!({
        "exit_code": code,
        "targets": targets,
        "failures": failures,
        "reports": {
            "junit": written.junit,
            "parity_md": written.parity_md,
            "parity_json": written.parity_json,
        },
    })
}

/// `validate`'s exit code from what ran (reports are written whatever it is, so that a
/// cancelled CI job still has its JUnit file).
fn validate_exit_code(summary: &hydra::outcome::RunSummary, unusable: bool) -> i32 {
    use hydra::outcome::{CheckId, Verdict};
    let unavailable = CheckId::runtime_available();
    let failed = summary
        .outcomes
        .iter()
        .any(|o| o.verdict == Verdict::Fail && o.id != unavailable);
    let ran = summary.outcomes.iter().any(|o| o.id != unavailable);
    if runtime::exec::is_cancelled() {
        eprintln!("interrupted: checks that did not finish are marked interrupted in the reports");
        exit::INTERRUPTED
    } else if failed {
        exit::FAILED
    } else if unusable {
        exit::RUNTIME_UNUSABLE
    } else if !ran {
        eprintln!("no runtime was usable: nothing was validated\n  hint: run `sudo scripts/setup-host.sh`, then `harness doctor`");
        exit::RUNTIME_UNUSABLE
    } else {
        exit::OK
    }
}

/// The targets grouped by engine, each group in the order given: what one thread of
/// `validate` runs, one target after another.
fn lanes_by_engine(targets: Vec<RuntimeKind>) -> Vec<Vec<RuntimeKind>> {
    let mut lanes: Vec<Vec<RuntimeKind>> = Vec::new();
    for kind in targets {
        match lanes.iter_mut().find(|lane| lane[0].engine() == kind.engine()) {
            Some(lane) => lane.push(kind),
            None => lanes.push(vec![kind]),
        }
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_the_targets_and_the_environment() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd.render_help().to_string();
        for var in [
            "HYDRA_RUNTIMES",
            "HYDRA_ROOT",
            "HYDRA_STATE_DIR",
            "HYDRA_RUN_ID",
            "HYDRA_SPEC",
            "NO_COLOR",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
        let doctor = cmd
            .find_subcommand_mut("doctor")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            doctor.contains("podman-rootless-v2") && doctor.contains("docker-v1"),
            "{doctor}"
        );
    }

    #[test]
    fn targets_of_one_engine_share_a_lane() {
        use RuntimeKind::*;
        assert_eq!(
            lanes_by_engine(vec![
                Podman,
                Docker,
                PodmanRootlessV2,
                PodmanV2,
                DockerV1,
                PodmanRootless
            ]),
            vec![
                vec![Podman, PodmanV2],
                vec![Docker, DockerV1],
                vec![PodmanRootlessV2, PodmanRootless]
            ]
        );
        assert!(lanes_by_engine(vec![]).is_empty());
    }

    #[test]
    fn a_failed_teardown_anywhere_turns_the_exit_code_into_4() {
        let left = vec!["hydra-docker-1: teardown left objects behind: volume abc".to_string()];
        for code in [exit::OK, exit::FAILED, exit::INTERRUPTED, exit::LEFTOVERS] {
            assert_eq!(exit_code(code, &left), exit::LEFTOVERS);
            assert_eq!(exit_code(code, &[]), code);
        }
    }
}
