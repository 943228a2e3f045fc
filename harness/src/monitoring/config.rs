//! The scrape configuration Prometheus runs with: one job per monitored service, named after it,
//! scraping `<service>:<port><path>` by its name on the stack's network.

use serde::Serialize;

use crate::spec::Monitoring;

/// How often every target is scraped: short, so a check waits seconds, not minutes.
pub const SCRAPE_INTERVAL_SECS: u64 = 1;

#[derive(Serialize)]
struct Config {
    global: Global,
    scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Serialize)]
struct Global {
    scrape_interval: String,
    scrape_timeout: String,
    evaluation_interval: String,
}

#[derive(Serialize)]
struct ScrapeConfig {
    job_name: String,
    metrics_path: String,
    static_configs: Vec<StaticConfig>,
}

#[derive(Serialize)]
struct StaticConfig {
    targets: Vec<String>,
}

/// The configuration file's text (YAML) for `monitoring`.
pub fn scrape_config(monitoring: &Monitoring) -> String {
    let every = format!("{SCRAPE_INTERVAL_SECS}s");
    let config = Config {
        global: Global {
            scrape_interval: every.clone(),
            scrape_timeout: every,
            evaluation_interval: "1m".into(),
        },
        scrape_configs: monitoring
            .services
            .iter()
            .map(|m| ScrapeConfig {
                job_name: m.service.clone(),
                metrics_path: m.path.clone(),
                static_configs: vec![StaticConfig {
                    targets: vec![format!("{}:{}", m.service, m.port)],
                }],
            })
            .collect(),
    };
    serde_yaml::to_string(&config).expect("a scrape configuration serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Monitored;

    #[test]
    fn one_job_per_service_by_its_name() {
        let m = Monitoring {
            up_within_secs: 60,
            services: vec![Monitored {
                service: "gap-detector".into(),
                port: 5000,
                path: "/metrics".into(),
                counter: "c".into(),
                traffic: "/p".into(),
                requests: 5,
            }],
        };
        let text = scrape_config(&m);
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["global"]["scrape_interval"], "1s");
        let job = &v["scrape_configs"][0];
        assert_eq!(job["job_name"], "gap-detector");
        assert_eq!(job["metrics_path"], "/metrics");
        assert_eq!(job["static_configs"][0]["targets"][0], "gap-detector:5000");
    }
}
