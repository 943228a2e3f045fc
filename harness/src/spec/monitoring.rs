//! `[monitoring]`: which services a real Prometheus scrapes during validation, and which counter
//! of each must grow when the harness sends it requests.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{HarnessError, Result};

/// The monitoring checks to run: one scrape target per service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitoring {
    /// How long a target may take to report `up == 1` once Prometheus runs.
    pub up_within_secs: u64,
    /// The scraped services, by name.
    pub services: Vec<Monitored>,
}

/// One service Prometheus scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitored {
    /// The compose service.
    pub service: String,
    /// The container port its metrics are served on (reached inside the stack's network).
    pub port: u16,
    /// The metrics path (`/metrics`).
    pub path: String,
    /// A PromQL selector of a counter only the harness's requests move (summed per target).
    pub counter: String,
    /// The path the harness requests to move that counter.
    pub traffic: String,
    /// How many requests it sends; the counter must grow by at least this much.
    pub requests: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitoring {
    #[serde(default = "default_path")]
    path: String,
    counter: Option<String>,
    traffic: Option<String>,
    #[serde(default = "default_requests")]
    requests: u32,
    #[serde(default = "default_up_within")]
    up_within_secs: u64,
    services: BTreeMap<Spanned<String>, RawMonitored>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitored {
    port: u16,
    path: Option<String>,
    counter: Option<String>,
    traffic: Option<String>,
    requests: Option<u32>,
}

fn default_path() -> String {
    "/metrics".into()
}
fn default_requests() -> u32 {
    5
}
fn default_up_within() -> u64 {
    60
}

/// Most requests a check sends to one service.
const MAX_REQUESTS: u32 = 1000;

/// Resolves the raw section; `service` checks a name against the services that run, and `error`
/// makes the spec's error for a reason.
pub(super) fn resolve(
    raw: RawMonitoring,
    service: &dyn Fn(&Spanned<String>, &str) -> Result<String>,
    error: &dyn Fn(String) -> HarnessError,
) -> Result<Monitoring> {
    if raw.services.is_empty() {
        return Err(error("monitoring: names no service".into())
            .with_hint("add `[monitoring.services]` with `<service> = { port = <metrics port> }`"));
    }
    if raw.up_within_secs == 0 {
        return Err(error("monitoring: up_within_secs must be at least 1".into()));
    }
    let mut services = Vec::new();
    for (name, m) in raw.services {
        let service = service(&name, "monitoring.services")?;
        let pick = |own: Option<String>, default: &Option<String>, key: &str| -> Result<String> {
            own.or_else(|| default.clone()).ok_or_else(|| {
                error(format!("monitoring: service '{service}' has no {key}")).with_hint(format!(
                    "set `{key}` under [monitoring] for every service, or on '{service}'"
                ))
            })
        };
        let path = m.path.unwrap_or_else(|| raw.path.clone());
        let traffic = pick(m.traffic, &raw.traffic, "traffic")?;
        let counter = pick(m.counter, &raw.counter, "counter")?;
        for (key, value) in [("path", &path), ("traffic", &traffic)] {
            if !is_request_path(value) {
                return Err(error(format!(
                    "monitoring: service '{service}': {key} '{value}' is not a request path"
                ))
                .with_hint("start it with '/' and use no spaces, quotes or control characters"));
            }
        }
        if counter.trim().is_empty() || counter.chars().any(char::is_control) {
            return Err(error(format!(
                "monitoring: service '{service}': counter '{counter}' is not a selector"
            ))
            .with_hint("name a counter, e.g. 'http_requests_total{path=\"/probe\"}'"));
        }
        let requests = m.requests.unwrap_or(raw.requests);
        if requests == 0 || requests > MAX_REQUESTS {
            return Err(error(format!(
                "monitoring: service '{service}': requests = {requests} is outside 1..={MAX_REQUESTS}"
            )));
        }
        if m.port == 0 {
            return Err(error(format!("monitoring: service '{service}': port 0")));
        }
        services.push(Monitored {
            service,
            port: m.port,
            path,
            counter: counter.trim().to_string(),
            traffic,
            requests,
        });
    }
    Ok(Monitoring {
        up_within_secs: raw.up_within_secs,
        services,
    })
}

/// An absolute request path with an optional query: printable ASCII, no spaces, quotes or `#`.
fn is_request_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 512
        && p.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '#' | '`'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/metrics", true)]
    #[case("/hydra/probe?x=1", true)]
    #[case("metrics", false)]
    #[case("/a b", false)]
    #[case("/a\"b", false)]
    #[case("/a#b", false)]
    fn request_paths(#[case] p: &str, #[case] ok: bool) {
        assert_eq!(is_request_path(p), ok, "{p}");
    }
}
