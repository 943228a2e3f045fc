//! `compose ps` output. Compose v2 prints NDJSON (one object per line) since 2.21 and one JSON
//! array before; both are accepted. Used for reporting what the tool claims, never as the truth.

use serde::Deserialize;

use crate::error::{HarnessError, Result};

/// One container as `docker compose ps --format json` describes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PsEntry {
    /// The container's id.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The container's name (`<project>-<service>-<n>`).
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The compose service it belongs to.
    #[serde(rename = "Service", default)]
    pub service: String,
    /// Its state as the tool reports it (`running`, `exited`, ...).
    #[serde(rename = "State", default)]
    pub state: String,
    /// Its health (`healthy`, `starting`, ...); empty without a healthcheck.
    #[serde(rename = "Health", default)]
    pub health: String,
}

/// Parses compose v2 `ps --format json` in either its array or its NDJSON form.
pub fn parse_v2(text: &str) -> Result<Vec<PsEntry>> {
    let trimmed = text.trim();
    let err = |e: serde_json::Error| HarnessError::Parse {
        what: "docker compose ps".into(),
        reason: e.to_string(),
    };
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).map_err(err);
    }
    trimmed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(err))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn fixture(name: &str) -> String {
        crate::test_support::fixture("compose-ps", name)
    }

    #[rstest]
    #[case::ndjson("v2-ndjson.txt")]
    #[case::array("v2-array.json")]
    fn both_v2_forms_give_the_same_entries(#[case] file: &str) {
        let entries = parse_v2(&fixture(file)).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].service, "db");
        assert_eq!(entries[0].health, "healthy");
        assert_eq!(entries[1].name, "hydra-docker-1a2b3c4d-nginx-1");
        assert_eq!(entries[1].state, "running");
    }

    #[test]
    fn empty_output_is_no_containers() {
        assert!(parse_v2("\n").unwrap().is_empty());
    }

    #[test]
    fn v20_word_json_is_rejected_clearly() {
        // Docker 20.10's `ps --format json` prints the word json (pitfall 14).
        let err = parse_v2("json\njson\n").unwrap_err();
        assert!(err.to_string().contains("docker compose ps"));
    }
}
