//! The parity report: the point of the harness is that the stack behaves the same under every
//! runtime, so this puts each check's verdict under each runtime side by side, rows where the
//! runtimes disagree first, then what the compose tools and engines were seen doing
//! (observations), then what each runtime was (versions, storage, rootless). Written as
//! `parity.md` for people and `parity.json` (same content, [`ParityReport`] serialised) for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::redact::Redactor;
use super::{clean, describe, runtime_order, write_file};
use crate::error::Result;
use crate::outcome::{RunSummary, RuntimeInfo, Verdict};
use crate::runtime::RuntimeKind;

/// Where the CLI writes `parity.md` and `parity.json` by default.
pub const DEFAULT_REPORT_DIR: &str = "target/hydra";

/// Everything in the parity report. Runtimes are keyed by [`RuntimeKind::ident`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityReport {
    /// Column order: runtime idents.
    pub runtimes: Vec<String>,
    /// Verdict counts per runtime.
    pub totals: BTreeMap<String, Counts>,
    /// One row per `<area>::<name>`: divergent rows first, then the rest; each group sorted.
    pub checks: Vec<CheckRow>,
    /// Observed behaviours, one row per key (sorted), divergent ones flagged.
    pub observations: Vec<ObservationRow>,
    /// What each runtime was, sanitised and redacted.
    pub environment: Vec<RuntimeInfo>,
}

/// Verdict counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    /// Checks that passed.
    pub pass: usize,
    /// Checks that failed.
    pub fail: usize,
    /// Checks that were skipped.
    pub skip: usize,
    /// Checks the host cannot enforce.
    pub not_enforceable: usize,
    /// Checks the run did not finish because it was stopped by SIGINT/SIGTERM.
    #[serde(default)]
    pub interrupted: usize,
}

impl Counts {
    /// Counts one verdict.
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Skip => self.skip += 1,
            Verdict::NotEnforceable => self.not_enforceable += 1,
            Verdict::Interrupted => self.interrupted += 1,
        }
    }

    /// Number of verdicts counted.
    pub fn total(&self) -> usize {
        self.pass + self.fail + self.skip + self.not_enforceable + self.interrupted
    }
}

/// One check across runtimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    /// The check's area (`dns`, `posture`, ...).
    pub area: String,
    /// The check's name within its area (`<service>::<name>` or `<name>`; sanitised, redacted).
    pub name: String,
    /// True when the runtimes' verdicts differ, or a runtime has no result for this check.
    pub divergent: bool,
    /// Runtime ident → result; a runtime without a result for this check is absent.
    pub results: BTreeMap<String, Cell>,
}

impl CheckRow {
    /// A markdown line with this check's message under runtime `r`.
    fn note(&self, r: &str, cell: &Cell) -> String {
        format!(
            "- `{}::{}` under {r}: {}",
            self.area,
            self.name,
            md_inline(&cell.message)
        )
    }
}

/// One check under one runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The verdict; the most severe one when the check ran more than once under the runtime.
    pub verdict: Verdict,
    /// `<service>: <cause>` (sanitised, redacted); empty for a silent pass.
    pub message: String,
    /// Time the check took, in seconds.
    pub seconds: f64,
}

/// One observed behaviour across runtimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationRow {
    /// What was observed (sanitised, redacted).
    pub key: String,
    /// True when runtimes report different values, or a runtime did not report this key.
    pub divergent: bool,
    /// Runtime ident → value (several values of one runtime joined with `; `).
    pub values: BTreeMap<String, String>,
}

impl ParityReport {
    /// Builds the report from a run, sanitising and redacting every text that came from outside.
    pub fn build(summary: &RunSummary, redactor: Option<&Redactor>) -> Self {
        let order = runtime_order(summary);
        let runtimes: Vec<String> = order.iter().map(|r| r.ident().to_string()).collect();
        // Runtimes that produced outcomes: a missing result among them is a divergence.
        let with_outcomes: Vec<RuntimeKind> = order
            .iter()
            .copied()
            .filter(|r| summary.outcomes.iter().any(|o| o.runtime == *r))
            .collect();

        let mut totals: BTreeMap<String, Counts> = BTreeMap::new();
        let mut rows: BTreeMap<(String, String), BTreeMap<String, Cell>> = BTreeMap::new();
        for o in &summary.outcomes {
            totals.entry(o.runtime.ident().to_string()).or_default().add(o.verdict);
            let message = if o.verdict == Verdict::Pass && o.message.trim().is_empty() {
                String::new()
            } else {
                clean(&describe(o), redactor)
            };
            let cell = Cell {
                verdict: o.verdict,
                message,
                seconds: o.seconds,
            };
            let key = (o.id.area.to_string(), clean(&o.id.name_in_area(), redactor));
            // A repeated check under one runtime keeps its worst verdict (Fail sorts after Pass).
            let results = rows.entry(key).or_default();
            match results.get(o.runtime.ident()) {
                Some(prev) if severity(prev.verdict) >= severity(cell.verdict) => {}
                _ => {
                    results.insert(o.runtime.ident().to_string(), cell);
                }
            }
        }
        let mut checks: Vec<CheckRow> = rows
            .into_iter()
            .map(|((area, name), results)| {
                let mut verdicts = results.values().map(|c| c.verdict);
                let first = verdicts.next();
                let divergent = verdicts.any(|v| Some(v) != first)
                    || with_outcomes.iter().any(|r| !results.contains_key(r.ident()));
                CheckRow {
                    area,
                    name,
                    divergent,
                    results,
                }
            })
            .collect();
        // Stable: divergent first, each group keeps (area, name) order.
        checks.sort_by_key(|r| !r.divergent);

        let mut obs: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for o in &summary.observations {
            let values = obs
                .entry(clean(&o.key, redactor))
                .or_default()
                .entry(o.runtime.ident().to_string())
                .or_default();
            let v = clean(&o.value, redactor);
            if !values.contains(&v) {
                values.push(v);
            }
        }
        let observed: Vec<RuntimeKind> = order
            .iter()
            .copied()
            .filter(|r| summary.observations.iter().any(|o| o.runtime == *r))
            .collect();
        let observations = obs
            .into_iter()
            .map(|(key, per)| {
                let values: BTreeMap<String, String> = per.into_iter().map(|(r, v)| (r, v.join("; "))).collect();
                let mut vs = values.values();
                let first = vs.next();
                let divergent =
                    vs.any(|v| Some(v) != first) || observed.iter().any(|r| !values.contains_key(r.ident()));
                ObservationRow { key, divergent, values }
            })
            .collect();

        let environment = summary
            .runtimes
            .iter()
            .map(|i| RuntimeInfo {
                runtime: i.runtime,
                engine: clean(&i.engine, redactor),
                engine_version: clean(&i.engine_version, redactor),
                compose_tool: clean(&i.compose_tool, redactor),
                compose_version: clean(&i.compose_version, redactor),
                rootless: i.rootless,
                storage_driver: clean(&i.storage_driver, redactor),
                extra: i
                    .extra
                    .iter()
                    .map(|(k, v)| (clean(k, redactor), clean(v, redactor)))
                    .collect(),
            })
            .collect();

        ParityReport {
            runtimes,
            totals,
            checks,
            observations,
            environment,
        }
    }

    /// Number of divergent check rows.
    pub fn divergences(&self) -> usize {
        self.checks.iter().filter(|r| r.divergent).count()
    }

    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Runtime parity\n");
        if self.runtimes.is_empty() {
            let _ = writeln!(md, "No runtime produced any result.");
            return md;
        }
        let _ = writeln!(
            md,
            "| runtime | pass | fail | skip | not enforceable |\n|---|---:|---:|---:|---:|"
        );
        for r in &self.runtimes {
            let c = self.totals.get(r).copied().unwrap_or_default();
            let _ = writeln!(
                md,
                "| {r} | {} | {} | {} | {} |",
                c.pass, c.fail, c.skip, c.not_enforceable
            );
        }
        let interrupted: usize = self.totals.values().map(|c| c.interrupted).sum();
        if interrupted > 0 {
            let _ = writeln!(
                md,
                "\n**The run was interrupted:** {interrupted} checks did not finish (shown as `interrupted`)."
            );
        }
        self.checks_markdown(&mut md);
        self.observations_markdown(&mut md);
        self.environment_markdown(&mut md);
        md
    }

    /// The check sections: divergences with their messages, then the rows that agree.
    fn checks_markdown(&self, md: &mut String) {
        let (divergent, same): (Vec<&CheckRow>, Vec<&CheckRow>) = self.checks.iter().partition(|r| r.divergent);
        let _ = writeln!(md, "\n## Divergences ({})\n", divergent.len());
        if divergent.is_empty() {
            let _ = writeln!(md, "None: every check has the same verdict under every runtime.");
        } else {
            self.check_table(md, &divergent);
            let _ = writeln!(md);
            for row in &divergent {
                for r in &self.runtimes {
                    if let Some(cell) = row.results.get(r).filter(|c| !c.message.is_empty()) {
                        let _ = writeln!(md, "{}", row.note(r, cell));
                    }
                }
            }
        }
        let _ = writeln!(md, "\n## Same under every runtime ({})\n", same.len());
        if same.is_empty() {
            let _ = writeln!(md, "None.");
        } else {
            self.check_table(md, &same);
            let notes: Vec<String> = same
                .iter()
                .flat_map(|row| {
                    self.runtimes.iter().filter_map(move |r| {
                        let cell = row.results.get(r)?;
                        (cell.verdict != Verdict::Pass && !cell.message.is_empty()).then(|| row.note(r, cell))
                    })
                })
                .collect();
            if !notes.is_empty() {
                let _ = writeln!(md, "\n{}", notes.join("\n"));
            }
        }
    }

    /// What the compose tools and engines were seen doing, one row per behaviour.
    fn observations_markdown(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Observed compose tool and engine behaviour\n");
        if self.observations.is_empty() {
            let _ = writeln!(md, "Nothing recorded.");
        } else {
            let _ = writeln!(md, "| behaviour | {} | differs |", self.runtimes.join(" | "));
            let _ = writeln!(md, "|---|{}---|", "---|".repeat(self.runtimes.len()));
            for row in &self.observations {
                let cells: Vec<String> = self
                    .runtimes
                    .iter()
                    .map(|r| row.values.get(r).map(|v| md_inline(v)).unwrap_or_else(|| "—".into()))
                    .collect();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    md_inline(&row.key),
                    cells.join(" | "),
                    if row.divergent { "**yes**" } else { "" }
                );
            }
        }
    }

    /// What each runtime was: versions, compose tool, rootless, storage, extras.
    fn environment_markdown(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Environment\n");
        if self.environment.is_empty() {
            let _ = writeln!(md, "Not recorded.");
        } else {
            let heads: Vec<&str> = self.environment.iter().map(RuntimeInfo::ident).collect();
            let _ = writeln!(md, "| | {} |", heads.join(" | "));
            let _ = writeln!(md, "|---|{}", "---|".repeat(heads.len()));
            let field = |md: &mut String, label: &str, f: &dyn Fn(&RuntimeInfo) -> String| {
                let cells: Vec<String> = self.environment.iter().map(|e| md_inline(&f(e))).collect();
                let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
            };
            field(md, "engine", &|e| e.engine.clone());
            field(md, "engine version", &|e| e.engine_version.clone());
            field(md, "compose tool", &|e| {
                format!("{} {}", e.compose_tool, e.compose_version).trim().to_string()
            });
            field(md, "rootless", &|e| {
                if e.rootless {
                    "yes".into()
                } else {
                    "no".into()
                }
            });
            field(md, "storage driver", &|e| e.storage_driver.clone());
            let mut extra_keys: Vec<&String> = self.environment.iter().flat_map(|e| e.extra.keys()).collect();
            extra_keys.sort();
            extra_keys.dedup();
            for k in extra_keys {
                field(md, &md_inline(k), &|e| {
                    e.extra.get(k).cloned().unwrap_or_else(|| "—".into())
                });
            }
        }
    }

    fn check_table(&self, md: &mut String, rows: &[&CheckRow]) {
        let _ = writeln!(md, "| check | {} |", self.runtimes.join(" | "));
        let _ = writeln!(md, "|---|{}", ":---:|".repeat(self.runtimes.len()));
        for row in rows {
            let cells: Vec<&str> = self
                .runtimes
                .iter()
                .map(|r| match row.results.get(r).map(|c| c.verdict) {
                    Some(Verdict::Pass) => "pass",
                    Some(Verdict::Fail) => "**FAIL**",
                    Some(Verdict::Skip) => "skip",
                    Some(Verdict::NotEnforceable) => "not enforceable",
                    Some(Verdict::Interrupted) => "interrupted",
                    None => "—",
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} |",
                md_inline(&format!("{}::{}", row.area, row.name)),
                cells.join(" | ")
            );
        }
    }
}

/// Writes `parity.md` and `parity.json` into `dir` (created if needed); returns their paths.
pub fn write_parity(summary: &RunSummary, dir: &Path, redactor: Option<&Redactor>) -> Result<(PathBuf, PathBuf)> {
    let report = ParityReport::build(summary, redactor);
    let md = dir.join("parity.md");
    let json = dir.join("parity.json");
    write_file(&md, report.to_markdown().as_bytes())?;
    let mut text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
    text.push('\n');
    write_file(&json, text.as_bytes())?;
    Ok((md, json))
}

fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Pass => 0,
        Verdict::Skip => 1,
        Verdict::NotEnforceable => 2,
        Verdict::Interrupted => 3,
        Verdict::Fail => 4,
    }
}

/// Text safe inside a markdown table cell: one line, `|` escaped, HTML-significant characters as
/// entities (so `<redacted:X>` shows instead of vanishing as an unknown tag).
fn md_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("<br>"),
            '\t' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, outcome, SECRET};
    use super::*;
    use crate::outcome::Area;
    use rstest::rstest;

    #[test]
    fn divergences_come_first() {
        let report = ParityReport::build(&fixtures::summary(), None);
        let order: Vec<(bool, String)> = report
            .checks
            .iter()
            .map(|r| (r.divergent, format!("{}::{}", r.area, r.name)))
            .collect();
        assert_eq!(
            order,
            [
                (true, "health::db_healthy".to_string()),
                (true, "posture::api::memory_limit".to_string()),
                (true, "posture::api::seccomp".to_string()),
                (false, "dns::nginx_resolves_api".to_string()),
                (false, "persistence::db_survives_restart".to_string()),
                (false, "ports::only_nginx_published".to_string()),
            ]
        );
        assert_eq!(report.divergences(), 3);
        assert_eq!(
            report.totals["podman_rootless"],
            Counts {
                pass: 4,
                fail: 1,
                skip: 0,
                not_enforceable: 1,
                interrupted: 0,
            }
        );
    }

    #[rstest]
    #[case::all_pass(&[Verdict::Pass, Verdict::Pass, Verdict::Pass], false)]
    #[case::all_fail(&[Verdict::Fail, Verdict::Fail, Verdict::Fail], false)]
    #[case::one_skip(&[Verdict::Pass, Verdict::Skip, Verdict::Pass], true)]
    #[case::not_enforceable(&[Verdict::Pass, Verdict::Pass, Verdict::NotEnforceable], true)]
    #[case::missing_under_one_runtime(&[Verdict::Pass, Verdict::Pass], true)]
    fn divergence(#[case] verdicts: &[Verdict], #[case] divergent: bool) {
        let mut outcomes: Vec<_> = fixtures::TARGETS
            .iter()
            .zip(verdicts)
            .map(|(&rt, &v)| outcome(rt, Area::Dns, "x", v))
            .collect();
        // Every runtime has some result, so a missing `dns::x` is visible.
        outcomes.extend(
            fixtures::TARGETS
                .iter()
                .map(|&rt| outcome(rt, Area::Ports, "y", Verdict::Pass)),
        );
        let report = ParityReport::build(
            &RunSummary {
                outcomes,
                ..Default::default()
            },
            None,
        );
        let row = report.checks.iter().find(|r| r.name == "x").unwrap();
        assert_eq!(row.divergent, divergent);
    }

    #[test]
    fn observations_are_grouped_by_key_and_flagged() {
        let report = ParityReport::build(&fixtures::summary(), None);
        let dep = &report.observations[0];
        assert_eq!(dep.key, "depends_on.service_healthy");
        assert!(dep.divergent);
        assert_eq!(dep.values["docker"], "honoured");
        assert_eq!(dep.values["podman_rootless"], "ignored");
        // podman_rootless did not report the health driver: that is a difference too.
        assert!(report.observations[1].divergent);
    }

    #[test]
    fn markdown_has_sections_in_order_and_is_redacted() {
        let md = ParityReport::build(&fixtures::summary(), Some(&fixtures::redactor())).to_markdown();
        let pos = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s:?} missing in\n{md}"));
        assert!(pos("## Divergences (3)") < pos("## Same under every runtime (3)"));
        assert!(pos("## Same under every runtime") < pos("## Observed compose tool"));
        assert!(pos("## Observed compose tool") < pos("## Environment"));
        assert!(md.contains("| health::db_healthy | pass | pass | **FAIL** |"), "{md}");
        assert!(
            md.contains("| posture::api::memory_limit | pass | pass | not enforceable |"),
            "{md}"
        );
        assert!(
            md.contains("- `health::db_healthy` under podman_rootless: db: not healthy after 60s"),
            "{md}"
        );
        assert!(md.contains("&lt;redacted:POSTGRES_PASSWORD&gt;"));
        assert!(!md.contains(SECRET), "{md}");
        assert!(md.contains("| storage driver | overlay | overlay | overlay |"), "{md}");
    }

    #[test]
    fn json_round_trips_and_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let (md, json) = write_parity(&fixtures::summary(), dir.path(), Some(&fixtures::redactor())).unwrap();
        assert!(md.ends_with("parity.md"));
        let text = std::fs::read_to_string(&json).unwrap();
        assert!(!text.contains(SECRET));
        let back: ParityReport = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            ParityReport::build(&fixtures::summary(), Some(&fixtures::redactor()))
        );
        assert!(text.contains("\"not-enforceable\""));
    }

    #[test]
    fn an_empty_run_still_writes_a_report() {
        let md = ParityReport::build(&RunSummary::default(), None).to_markdown();
        assert!(md.contains("No runtime produced any result."));
    }

    #[rstest]
    #[case("a|b", "a\\|b")]
    #[case("<redacted:X>", "&lt;redacted:X&gt;")]
    #[case("one\ntwo", "one<br>two")]
    fn markdown_cells_are_escaped(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(md_inline(input), expected);
    }
}
