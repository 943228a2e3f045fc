//! The benches' HTTP load generator: a fixed number of keep-alive connections on tokio (hyper's
//! HTTP/1.1 client, one connection per task, wrk-style closed loop), stopped after a fixed
//! duration or request count. Returns counts, requests per second and latency percentiles
//! (HdrHistogram). Targets must be loopback addresses: load is only ever sent to the stack the
//! harness started on this machine.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// Highest latency the histogram tracks (larger values are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Deadline for one request (connect or response) before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a load run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target url cannot be used.
    #[error("invalid target url '{url}': {reason}")]
    Url {
        /// The url as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The load settings are not usable (the message says which).
    #[error("invalid load settings: {0}")]
    Settings(String),
    /// The tokio runtime for the run could not be built.
    #[error("cannot start the load generator's runtime")]
    Runtime(#[source] std::io::Error),
}

/// An HTTP target: a loopback socket address, the Host header and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

impl Target {
    /// Parses `http://HOST:PORT/PATH` (no TLS). HOST must resolve to a loopback address.
    pub fn parse(url: &str) -> Result<Self, LoadError> {
        let bad = |reason: &str| LoadError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// urls are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| bad("host has no address"))?;
        if !addr.ip().is_loopback() {
            return Err(bad("not a loopback address (load is only sent to 127.0.0.0/8 or ::1)"));
        }
        Ok(Self {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// A target from its parts (a loopback IP is required).
    pub fn new(ip: IpAddr, port: u16, path: &str) -> Result<Self, LoadError> {
        let host = match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        Self::parse(&format!("http://{host}{path}"))
    }

    /// The socket address connections go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port/path`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Stop sending after this long (requests in flight complete).
    Duration(Duration),
    /// Stop after this many requests in total.
    Requests(u64),
}

/// What to run: the target, how many connections (each with one request in flight), the limit.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where requests go.
    pub target: Target,
    /// Number of keep-alive connections (at least 1).
    pub connections: usize,
    /// When the run stops.
    pub limit: Limit,
    /// Worker threads of the runtime; `None` uses the number of cores.
    pub threads: Option<usize>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Highest latency recorded.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

/// The outcome of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The target, as `http://host:port/path`.
    pub url: String,
    /// Connections used.
    pub connections: usize,
    /// Responses received (any status).
    pub requests: u64,
    /// Responses with a status other than 2xx/3xx.
    pub non_success: u64,
    /// Connect, I/O and timeout errors.
    pub transport_errors: u64,
    /// Wall time from the first request to the last response.
    pub elapsed_secs: f64,
    /// Responses per second.
    pub rps: f64,
    /// Latency of the responses received (any status).
    pub latency: Percentiles,
}

impl LoadReport {
    /// Errors of any kind (transport errors and non-success statuses).
    pub fn errors(&self) -> u64 {
        self.non_success + self.transport_errors
    }

    /// One line for terminals: `1234 req in 2.00s, 617.0 req/s, p50 1.2ms p90 ... errors 0`.
    pub fn summary(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{} requests in {:.2}s over {} connections: {:.1} req/s, latency p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms max {:.2}ms, errors {} (non-2xx/3xx {}, transport {})",
            self.requests,
            self.elapsed_secs,
            self.connections,
            self.rps,
            ms(self.latency.p50_us),
            ms(self.latency.p90_us),
            ms(self.latency.p99_us),
            ms(self.latency.max_us),
            self.errors(),
            self.non_success,
            self.transport_errors
        )
    }
}

/// Runs `spec` on a runtime of its own (for synchronous callers such as benches and the CLI).
pub fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    let threads = spec
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    rt.block_on(run_async(spec))
}

/// Runs `spec` on the current tokio runtime.
pub async fn run_async(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    if spec.connections == 0 {
        return Err(LoadError::Settings("connections must be at least 1".into()));
    }
    match spec.limit {
        Limit::Duration(d) if d.is_zero() => return Err(LoadError::Settings("duration must be positive".into())),
        Limit::Requests(0) => return Err(LoadError::Settings("request count must be positive".into())),
        _ => {}
    }
    let budget = Arc::new(Budget::new(spec.limit));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let target = spec.target.clone();
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move { worker(target, budget).await }));
    }
    let mut total = WorkerStats::new();
    for t in tasks {
        match t.await {
            Ok(stats) => total.merge(&stats),
            Err(_) => total.transport_errors += 1,
        }
    }
    let elapsed = total
        .last_response
        .map(|t| t.duration_since(started))
        .unwrap_or_else(|| started.elapsed());
    Ok(total.report(&spec.target, spec.connections, elapsed))
}

/// Shared stop condition of all connections.
struct Budget {
    deadline: Option<Instant>,
    remaining: Option<AtomicU64>,
}

impl Budget {
    fn new(limit: Limit) -> Self {
        match limit {
            Limit::Duration(d) => Self {
                deadline: Some(Instant::now() + d),
                remaining: None,
            },
            Limit::Requests(n) => Self {
                deadline: None,
                remaining: Some(AtomicU64::new(n)),
            },
        }
    }

    /// Takes one request from the budget; `false` when the run is over.
    fn take(&self) -> bool {
        if let Some(deadline) = self.deadline {
            return Instant::now() < deadline;
        }
        let remaining = self.remaining.as_ref().expect("a request budget");
        remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn time_left(&self) -> bool {
        self.deadline.map(|d| Instant::now() < d).unwrap_or(true)
    }
}

struct WorkerStats {
    hist: Histogram<u64>,
    requests: u64,
    non_success: u64,
    transport_errors: u64,
    last_response: Option<Instant>,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            requests: 0,
            non_success: 0,
            transport_errors: 0,
            last_response: None,
        }
    }

    fn merge(&mut self, other: &WorkerStats) {
        let _ = self.hist.add(&other.hist);
        self.requests += other.requests;
        self.non_success += other.non_success;
        self.transport_errors += other.transport_errors;
        self.last_response = self.last_response.max(other.last_response);
    }

    fn report(&self, target: &Target, connections: usize, elapsed: Duration) -> LoadReport {
        let secs = elapsed.as_secs_f64();
        let h = &self.hist;
        let latency = if h.is_empty() {
            Percentiles::default()
        } else {
            Percentiles {
                p50_us: h.value_at_quantile(0.50),
                p90_us: h.value_at_quantile(0.90),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
                mean_us: h.mean(),
            }
        };
        LoadReport {
            url: target.url(),
            connections,
            requests: self.requests,
            non_success: self.non_success,
            transport_errors: self.transport_errors,
            elapsed_secs: secs,
            rps: if secs > 0.0 { self.requests as f64 / secs } else { 0.0 },
            latency,
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(target: &Target) -> Option<Sender> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(target.addr))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

/// One connection's closed loop: send, read the whole body, record, repeat; reconnect when the
/// server closes the connection.
async fn worker(target: Target, budget: Arc<Budget>) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut sender: Option<Sender> = None;
    while budget.take() {
        if sender.as_ref().map(|s| s.is_closed()).unwrap_or(true) {
            sender = connect(&target).await;
            if sender.is_none() {
                stats.transport_errors += 1;
                // Do not spin on a refused port.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let s = sender.as_mut().expect("connected");
        if s.ready().await.is_err() {
            stats.transport_errors += 1;
            sender = None;
            continue;
        }
        let req = hyper::Request::get(target.path.as_str())
            .header(hyper::header::HOST, target.host.as_str())
            .header(hyper::header::USER_AGENT, "hydra-load/1")
            .body(Empty::<Bytes>::new())
            .expect("valid request");
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await;
        let now = Instant::now();
        match outcome {
            Ok(Ok(status)) => {
                let us = (now - t0).as_micros().clamp(1, MAX_LATENCY_US as u128) as u64;
                let _ = stats.hist.record(us);
                stats.requests += 1;
                stats.last_response = Some(now);
                if !(status.is_success() || status.is_redirection()) {
                    stats.non_success += 1;
                }
            }
            _ => {
                stats.transport_errors += 1;
                sender = None;
            }
        }
        if !budget.time_left() {
            break;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A tiny keep-alive HTTP/1.1 server: answers `/ok` with 200, anything else with 503; closes
    /// every connection after `close_after` responses. Returns its port and the number of
    /// connections accepted.
    async fn server(close_after: usize) -> (u16, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut served = 0;
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            served += 1;
                            let close = served >= close_after;
                            let (status, body) = if head.starts_with("GET /ok ") {
                                ("200 OK", "ok\n")
                            } else {
                                ("503 Service Unavailable", "no\n")
                            };
                            let resp = format!(
                                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{}\r\n{body}",
                                body.len(),
                                if close { "Connection: close\r\n" } else { "" }
                            );
                            if sock.write_all(resp.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn spec(port: u16, path: &str, connections: usize, limit: Limit) -> LoadSpec {
        LoadSpec {
            target: Target::new(IpAddr::from([127, 0, 0, 1]), port, path).unwrap(),
            connections,
            limit,
            threads: Some(1),
        }
    }

    #[tokio::test]
    async fn request_budget_is_exact_and_connections_are_kept_alive() {
        let (port, accepted) = server(usize::MAX).await;
        let report = run_async(&spec(port, "/ok", 4, Limit::Requests(400))).await.unwrap();
        assert_eq!(report.requests, 400);
        assert_eq!(report.errors(), 0);
        assert_eq!(accepted.load(Ordering::Relaxed), 4, "one connection per worker, reused");
        assert!(report.rps > 0.0);
        let l = report.latency;
        assert!(
            l.p50_us >= 1 && l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.max_us,
            "{l:?}"
        );
    }

    #[tokio::test]
    async fn duration_limit_stops_the_run() {
        let (port, _) = server(usize::MAX).await;
        let t = Instant::now();
        let report = run_async(&spec(port, "/ok", 2, Limit::Duration(Duration::from_millis(300))))
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(report.requests > 0);
        assert!(
            report.elapsed_secs >= 0.25 && report.elapsed_secs < 3.0,
            "{}",
            report.elapsed_secs
        );
    }

    #[tokio::test]
    async fn server_closing_connections_means_reconnects_not_errors() {
        let (port, accepted) = server(5).await;
        let report = run_async(&spec(port, "/ok", 2, Limit::Requests(50))).await.unwrap();
        assert_eq!(report.requests, 50);
        assert_eq!(report.transport_errors, 0, "{}", report.summary());
        assert!(accepted.load(Ordering::Relaxed) >= 10);
    }

    #[tokio::test]
    async fn non_success_statuses_are_counted() {
        let (port, _) = server(usize::MAX).await;
        let report = run_async(&spec(port, "/fail", 1, Limit::Requests(10))).await.unwrap();
        assert_eq!(report.requests, 10);
        assert_eq!(report.non_success, 10);
    }

    #[tokio::test]
    async fn refused_port_gives_transport_errors() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let report = run_async(&spec(port, "/ok", 1, Limit::Requests(3))).await.unwrap();
        assert_eq!(report.requests, 0);
        assert_eq!(report.transport_errors, 3);
    }

    #[test]
    fn sync_run_builds_its_own_runtime() {
        let err = run(&LoadSpec {
            connections: 0,
            ..spec(1, "/", 1, Limit::Requests(1))
        })
        .unwrap_err();
        assert!(err.to_string().contains("connections"));
    }

    #[test]
    fn targets_parse_and_must_be_loopback() {
        let t = Target::parse("http://127.0.0.1:8080/analysis/summary").unwrap();
        assert_eq!(t.addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/analysis/summary");
        assert_eq!(t.url(), "http://127.0.0.1:8080/analysis/summary");
        assert_eq!(Target::parse("http://127.0.0.2:9").unwrap().path, "/");
        assert_eq!(Target::parse("http://localhost:9/x").unwrap().addr().port(), 9);
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:80/",
            "http://10.0.0.1:80/",
            "http://:80/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert!(Target::parse("http://10.0.0.1:80/")
            .unwrap_err()
            .to_string()
            .contains("loopback"));
    }
}
