//! Prometheus's HTTP API (`/api/v1/query`, `/api/v1/targets`, `/-/ready`), answers parsed into
//! typed structs. Every request has a deadline and is abandoned when the run is cancelled.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::runtime::exec;

/// A Prometheus server's API on the host.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: reqwest::blocking::Client,
}

/// One scrape target as `/api/v1/targets` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Its labels after relabelling (`job`, `instance`).
    pub labels: BTreeMap<String, String>,
    /// The URL it is scraped at.
    pub scrape_url: String,
    /// The last scrape's error, empty when it succeeded.
    pub last_error: String,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: String,
}

impl Target {
    /// The job (one per monitored service).
    pub fn job(&self) -> &str {
        self.labels.get("job").map(String::as_str).unwrap_or("")
    }
}

/// One sample of an instant vector.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    /// Its labels.
    pub metric: BTreeMap<String, String>,
    /// Timestamp and value (a string: `"1"`, `"NaN"`, `"+Inf"`).
    pub value: (f64, String),
}

impl Sample {
    /// The value as a number (`None` for what does not parse).
    pub fn number(&self) -> Option<f64> {
        self.value.1.parse().ok()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
    error_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Targets {
    active_targets: Vec<Target>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Query {
    result_type: String,
    result: serde_json::Value,
}

impl Prometheus {
    /// The API of the server listening at `addr`.
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            client: crate::checks::health::http_client(),
        }
    }

    /// Whether the server says it is ready to serve queries.
    pub fn ready(&self) -> Result<bool, String> {
        Ok(self.get("/-/ready", &[])?.0 == 200)
    }

    /// Every active scrape target.
    pub fn targets(&self) -> Result<Vec<Target>, String> {
        let (status, body) = self.get("/api/v1/targets", &[("state", "active")])?;
        parse_targets(status, &body)
    }

    /// The instant vector `query` evaluates to now.
    pub fn query(&self, query: &str) -> Result<Vec<Sample>, String> {
        let (status, body) = self.get("/api/v1/query", &[("query", query)])?;
        parse_vector(status, &body).map_err(|e| format!("query `{query}`: {e}"))
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.base);
        let request = self.client.get(&url).query(params);
        exec::interruptible(move || {
            let resp = request.send().map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            Ok((status, resp.text().unwrap_or_default()))
        })
        .map_err(|e| format!("GET {url}: {e}"))?
        .map_err(|e: String| format!("GET {url}: {e}"))
    }
}

fn parse_envelope<T: serde::de::DeserializeOwned>(status: u16, body: &str) -> Result<T, String> {
    let env: Envelope<T> = serde_json::from_str(body)
        .map_err(|e| format!("HTTP {status}, not a Prometheus API answer ({e}): {}", clip(body)))?;
    match (env.status.as_str(), env.data) {
        ("success", Some(data)) => Ok(data),
        _ => Err(format!(
            "Prometheus answered {} ({}): {}",
            env.status,
            env.error_type.unwrap_or_default(),
            env.error.unwrap_or_default()
        )),
    }
}

/// A query answer that must be an instant vector.
pub fn parse_vector(status: u16, body: &str) -> Result<Vec<Sample>, String> {
    let q: Query = parse_envelope(status, body)?;
    if q.result_type != "vector" {
        return Err(format!("a {} instead of an instant vector", q.result_type));
    }
    serde_json::from_value(q.result).map_err(|e| format!("unreadable vector: {e}"))
}

/// The targets of a `/api/v1/targets` answer.
pub fn parse_targets(status: u16, body: &str) -> Result<Vec<Target>, String> {
    Ok(parse_envelope::<Targets>(status, body)?.active_targets)
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}
