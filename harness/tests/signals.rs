//! Signals under every runtime, for real: `harness validate` interrupted while the transitive
//! health checks have the db stopped must start teardown at once, exit 130 within 60 s, write the
//! JUnit and parity reports with the unfinished checks marked interrupted, and leave nothing in
//! the engine; a second signal must skip to the label sweep and exit sooner still.
//!
//! Trials are named `<runtime>::signals::<check>`. A runtime that is not usable here is shown as
//! ignored (reason on stderr), or fails when `HYDRA_REQUIRE` names it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use hydra::labels;
use hydra::runtime::{ObjectKind, Runtime, RuntimeKind};
use libtest_mimic::{Arguments, Failed};

/// Exit after the first signal: the done-when of the issue.
const FIRST_SIGNAL_EXIT: Duration = Duration::from_secs(60);
/// Exit after a second signal: only a label sweep is left to do.
const SECOND_SIGNAL_EXIT: Duration = Duration::from_secs(30);
/// Teardown must begin within 1 s of the first signal; the slack covers a loaded 2-core host.
const TEARDOWN_START: Duration = Duration::from_millis(1500);

fn main() {
    let args = Arguments::from_args();
    let mut per_target = Vec::new();
    for (kind, availability) in common::runtimes() {
        let mut trials = Vec::new();
        let checks: [(&str, Check); 2] = [
            (
                "sigint_during_transitive_health_writes_reports_and_leaves_nothing",
                sigint_during_transitive_health,
            ),
            ("second_sigint_skips_to_the_sweep", second_sigint_skips_to_the_sweep),
        ];
        for (name, check) in checks {
            let trial_name = format!("{}::signals::{name}", kind.ident());
            let trial = common::trial(trial_name, &availability, move || check(kind));
            trials.push(trial);
        }
        per_target.push((kind, trials));
    }
    // Engines in turn: the two test threads mostly work on different engines.
    libtest_mimic::run(&args, common::engines_in_turn(per_target)).exit();
}

type Check = fn(RuntimeKind) -> Result<(), Failed>;

/// A `harness validate` child whose stderr lines arrive on a channel (and are kept for messages).
struct Validate {
    child: Child,
    lines: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
    /// Everything it printed on stdout (its summary names why a run failed).
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    run_id: String,
    dir: tempfile::TempDir,
}

impl Validate {
    fn start(kind: RuntimeKind, tag: &str) -> Result<Self, Failed> {
        // Unique per runtime too: the runtimes' trials run in parallel and the harness refuses
        // to reuse an existing run's directory.
        let run_id = format!("t{tag}-{}-{:06x}", kind.name(), std::process::id() & 0xffffff);
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["validate", "--runtime", kind.name()])
            // Transitive health has the db stopped; persistence comes after it and must show up
            // as interrupted. Other areas are left out to get there sooner.
            .args(["--filter", "::health::", "--filter", "::persistence::"])
            .arg("--junit")
            .arg(dir.path().join("j.xml"))
            .arg("--report")
            .arg(dir.path().join("r"))
            .env("HYDRA_RUN_ID", &run_id)
            // This run is about one runtime: the suite's own selection (CI requires all three)
            // would report the others as required but not selected.
            .env_remove("HYDRA_REQUIRE")
            .env_remove("HYDRA_RUNTIMES")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut out = child.stdout.take().expect("piped");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
            stdout,
            run_id,
            dir,
        })
    }

    /// Waits for a stderr line containing `text`; returns when it was printed.
    fn wait_line(&mut self, text: &str, deadline: Duration) -> Result<Instant, Failed> {
        let end = Instant::now() + deadline;
        loop {
            match self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok((at, line)) => {
                    let hit = line.contains(text);
                    self.seen.push((at, line));
                    if hit {
                        return Ok(at);
                    }
                }
                Err(why) => {
                    let status = self.child.try_wait().ok().flatten().and_then(|s| s.code());
                    return Err(format!(
                        "harness validate never printed {text:?} ({why:?}; exit {status:?}); it printed:\n{}",
                        self.printed()
                    )
                    .into());
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process by PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for exit; kills the child (and fails) past `deadline`.
    fn wait_exit(&mut self, deadline: Duration) -> Result<(Option<i32>, Duration), Failed> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status.code(), start.elapsed()));
            }
            if start.elapsed() > deadline {
                self.signal(libc::SIGINT);
                std::thread::sleep(Duration::from_secs(1));
                self.signal(libc::SIGINT);
                let status = self.child.wait()?;
                return Err(format!(
                    "harness did not exit within {deadline:?} of the signal (it exited {:?} after it with {:?}; JUnit file written: {})",
                    start.elapsed(),
                    status.code(),
                    self.junit().exists()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn drain(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        self.printed()
    }

    /// Its stderr lines read so far, then the end of its stdout (the summary with the failures).
    fn printed(&self) -> String {
        let stderr = self.seen.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
        let stdout = String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        let tail: Vec<&str> = stdout
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{stderr}\n--- stdout (last 40 lines) ---\n{}", tail.join("\n"))
    }

    /// When a stderr line containing `text` was printed, among those read so far.
    fn printed_at(&self, text: &str) -> Option<Instant> {
        self.seen.iter().find(|(_, l)| l.contains(text)).map(|(at, _)| *at)
    }

    fn junit(&self) -> std::path::PathBuf {
        self.dir.path().join("j.xml")
    }
}

impl Drop for Validate {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts validate and returns once the transitive health checks have really stopped the db.
fn until_db_stopped(kind: RuntimeKind, tag: &str) -> Result<(Validate, Runtime), Failed> {
    let rt = Runtime::resolve(kind)?;
    let mut v = Validate::start(kind, tag)?;
    v.wait_line("checks: transitive health", Duration::from_secs(900))?;
    let run_label = labels::filter(labels::RUN, &v.run_id);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = rt.list_by_label(ObjectKind::Container, &run_label)?;
        let stopped = rt
            .inspect_containers(&ids)?
            .iter()
            .any(|c| c.label("com.docker.compose.service") == Some("db") && !c.state.running);
        if stopped {
            return Ok((v, rt));
        }
        if Instant::now() > end {
            return Err(format!(
                "the transitive checks never stopped db; harness printed:\n{}",
                v.drain()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Objects of the run left in the engine (by run label and by compose project), the DNS entries
/// of its removed networks and the processes of containers Podman dropped while they ran (a
/// compose start killed by the second signal leaves both).
fn leftovers(rt: &Runtime, kind: RuntimeKind, run_id: &str) -> Vec<String> {
    let project = hydra::stack::project_name(kind, run_id);
    let mut left: Vec<String> = [
        labels::filter(labels::RUN, run_id),
        labels::filter("com.docker.compose.project", &project),
    ]
    .iter()
    .flat_map(|l| common::objects_with(rt, l))
    .collect();
    left.extend(common::stale_dns_of(rt, &project));
    left.extend(common::monitors_of(rt, &project));
    left.extend(common::storage_only_of(rt, &project));
    left
}

/// Each testcase's `name` and the result element under it (`error`, `failure`, `skipped`, or
/// `pass`) with its `type` attribute (a failure: its `message`), read with quick-xml as a CI
/// consumer would.
fn junit_cases(path: &Path) -> Result<BTreeMap<String, (String, String)>, Failed> {
    use quick_xml::events::Event;
    let xml = std::fs::read_to_string(path).map_err(|e| format!("no JUnit file at {}: {e}", path.display()))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut cases = BTreeMap::new();
    let mut current: Option<String> = None;
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("{}: not XML: {e}", path.display()))?
        {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |key: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key)
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    b"testcase" => {
                        let name = attr(b"name");
                        cases.insert(name.clone(), ("pass".to_string(), String::new()));
                        current = Some(name);
                    }
                    tag @ (b"error" | b"failure" | b"skipped") => {
                        if let Some(name) = &current {
                            // A failure keeps its message: it says what went wrong.
                            let detail = if tag == b"failure" {
                                attr(b"message")
                            } else {
                                attr(b"type")
                            };
                            cases.insert(name.clone(), (String::from_utf8_lossy(tag).into_owned(), detail));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(cases)
}

/// The reports exist, parse, show the interruption where it happened, and the teardown passed.
fn check_reports(v: &Validate, output: &str) -> Result<(), Failed> {
    let cases = junit_cases(&v.junit())?;
    let interrupted: Vec<&String> = cases
        .iter()
        .filter(|(_, (el, ty))| el == "error" && ty == "interrupted")
        .map(|(n, _)| n)
        .collect();
    let state = |name: &str| cases.get(name).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if state("lifecycle::up_healthy").0 != "pass" {
        problems.push(format!("lifecycle::up_healthy is {:?}", state("lifecycle::up_healthy")));
    }
    if state("lifecycle::down_leaves_nothing").0 != "pass" {
        problems.push(format!(
            "lifecycle::down_leaves_nothing is {:?}",
            state("lifecycle::down_leaves_nothing")
        ));
    }
    for name in [
        "persistence::down_up_keeps_data",
        "persistence::kill_9_keeps_acknowledged_rows",
    ] {
        if !interrupted.contains(&&name.to_string()) {
            problems.push(format!("{name} is {:?}, expected interrupted", state(name)));
        }
    }
    if !interrupted.iter().any(|n| n.starts_with("health::")) {
        problems.push("no transitive health check is marked interrupted".into());
    }
    if let Some((name, (_, message))) = cases.iter().find(|(_, (el, _))| el == "failure") {
        problems.push(format!(
            "{name} is reported failed ({message}): the interruption must not look like a failure"
        ));
    }
    let parity = v.dir.path().join("r/parity.json");
    match std::fs::read_to_string(&parity) {
        Ok(text) if text.contains("\"interrupted\"") => {}
        Ok(_) => problems.push("parity.json does not mention interrupted checks".into()),
        Err(e) => problems.push(format!("no parity.json: {e}")),
    }
    let checker = Path::new("/opt/hydra/junit-venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-junit.py");
    if checker.exists() {
        let out = Command::new(checker).arg(&script).arg(v.junit()).output()?;
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            problems.push(format!(
                "check-junit.py (junitparser) rejected the file: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if problems.is_empty() {
        eprintln!("interrupted checks in the JUnit file: {interrupted:?}");
        Ok(())
    } else {
        Err(format!("{}\nharness printed:\n{output}", problems.join("\n")).into())
    }
}

fn sigint_during_transitive_health(kind: RuntimeKind) -> Result<(), Failed> {
    let (mut v, rt) = until_db_stopped(kind, "s")?;
    let sent = Instant::now();
    v.signal(libc::SIGINT);
    let (code, took) = v.wait_exit(FIRST_SIGNAL_EXIT)?;
    let output = v.drain();
    let left = leftovers(&rt, kind, &v.run_id);
    if !left.is_empty() {
        let _ = hydra::gc::sweep(&rt, false);
        return Err(format!("left after SIGINT: {left:?}\nharness printed:\n{output}").into());
    }
    let teardown_after = v
        .printed_at("interrupted: teardown")
        .ok_or_else(|| format!("teardown after the signal was never announced\nharness printed:\n{output}"))?
        .saturating_duration_since(sent);
    eprintln!("{kind}: teardown began {teardown_after:?} after SIGINT; exit {code:?} {took:?} after it");
    if code != Some(hydra::error::exit::INTERRUPTED) {
        return Err(format!("exit code {code:?}, expected 130\nharness printed:\n{output}").into());
    }
    if teardown_after > TEARDOWN_START {
        return Err(format!("teardown began {teardown_after:?} after SIGINT (limit {TEARDOWN_START:?})").into());
    }
    check_reports(&v, &output)
}

fn second_sigint_skips_to_the_sweep(kind: RuntimeKind) -> Result<(), Failed> {
    let (mut v, rt) = until_db_stopped(kind, "d")?;
    v.signal(libc::SIGINT);
    // By now teardown has begun (it must within 1 s) and compose down is running.
    std::thread::sleep(Duration::from_secs(1));
    // SIGTERM counts as well: the second signal may come from CI cancelling the job.
    v.signal(libc::SIGTERM);
    let (code, took) = v.wait_exit(SECOND_SIGNAL_EXIT)?;
    let output = v.drain();
    let left = leftovers(&rt, kind, &v.run_id);
    if !left.is_empty() {
        let _ = hydra::gc::sweep(&rt, false);
        return Err(format!("left after two signals: {left:?}\nharness printed:\n{output}").into());
    }
    eprintln!("{kind}: exit {code:?} {took:?} after the second signal");
    // What teardown had to end itself: Podman dropped a container while its processes ran.
    for line in output
        .lines()
        .filter(|l| l.contains("ended the processes of container"))
    {
        eprintln!("{kind}: {line}");
    }
    if code != Some(hydra::error::exit::INTERRUPTED) {
        return Err(format!("exit code {code:?}, expected 130\nharness printed:\n{output}").into());
    }
    if !output.contains("interrupted again") {
        return Err(format!("the second signal was not acknowledged\nharness printed:\n{output}").into());
    }
    check_reports(&v, &output)
}
