//! What the CLI shows: progress while waiting, tables, and the per-runtime outcome of `validate`.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressStyle};

use hydra::doctor::{RuntimeReport, Status};
use hydra::images::ImagesReport;
use hydra::report::redact::redact_output;
use hydra::stack::{Event, UpReport};

/// A spinner on a terminal; plain phase lines otherwise (CI logs).
pub struct Progress {
    bar: Option<ProgressBar>,
    prefix: String,
    last: std::cell::RefCell<String>,
}

impl Progress {
    pub fn new(prefix: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]").expect("valid template"));
            b.set_prefix(prefix.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self {
            bar,
            prefix: prefix.to_string(),
            last: Default::default(),
        }
    }

    pub fn phase(&self, msg: &str) {
        let msg = &*redact_output(msg);
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => {
                if *self.last.borrow() != msg {
                    eprintln!("{}: {msg}", self.prefix);
                    *self.last.borrow_mut() = msg.to_string();
                }
            }
        }
    }

    pub fn event(&self, e: &Event) {
        match e {
            Event::Phase(p) => self.phase(p),
            Event::Waiting(w) if w.pending.is_empty() => self.phase(&format!("healthy {}/{}", w.ready, w.total)),
            Event::Waiting(w) => self.phase(&format!(
                "healthy {}/{}; waiting for {}",
                w.ready,
                w.total,
                w.pending.join(", ")
            )),
        }
    }

    /// A spinner that shares the terminal with the others of `group` (one line each).
    fn in_group(group: &indicatif::MultiProgress, prefix: &str) -> Self {
        let mut p = Self::new(prefix);
        p.bar = p.bar.take().map(|b| group.add(b));
        p
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Progress of targets that run at the same time: on a terminal one spinner line each; otherwise
/// plain lines, each prefixed with its target.
pub struct ProgressGroup(indicatif::MultiProgress);

impl ProgressGroup {
    pub fn new() -> Self {
        Self(indicatif::MultiProgress::new())
    }

    pub fn progress(&self, prefix: &str) -> Progress {
        Progress::in_group(&self.0, prefix)
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
    t
}

pub fn doctor_table(r: &RuntimeReport) {
    let mut t = table(&["check", "status", "detail", "fix"]);
    for f in &r.findings {
        let status = match f.status {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        t.add_row(vec![f.check, status, f.detail.as_str(), f.fix.as_deref().unwrap_or("")]);
    }
    println!(
        "{} — {}\n{t}",
        r.runtime,
        if r.usable() { "usable" } else { "NOT USABLE" }
    );
}

pub fn images_table(r: &ImagesReport) {
    let mut t = table(&["image", "services", "result", "seconds"]);
    for i in &r.images {
        t.add_row(vec![
            i.reference.clone(),
            i.services.join(", "),
            if i.built { "built".into() } else { "unchanged".into() },
            format!("{:.1}", i.seconds),
        ]);
    }
    println!(
        "{}: images in {:.1}s{}\n{t}",
        r.runtime,
        r.seconds,
        if r.base_imported { " (base image imported)" } else { "" }
    );
}

pub fn ready_table(r: &UpReport) {
    let mut t = table(&["service", "container", "healthy after (s)", "harness probes"]);
    for s in &r.services {
        t.add_row(vec![
            s.service.clone(),
            s.container.clone(),
            format!("{:.1}", s.seconds),
            s.probes.to_string(),
        ]);
    }
    println!(
        "{} via {} {}: all {} services healthy in {:.1}s (compose up {:.1}s)\n{t}",
        r.runtime,
        r.compose.tool,
        r.compose.version,
        r.services.len(),
        r.total_seconds,
        r.compose_up_seconds
    );
}
