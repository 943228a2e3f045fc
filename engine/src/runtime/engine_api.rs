//! Read-only queries to rootful Podman over its standing API socket, where one answers.
//!
//! Each `podman` CLI query is a process that sets up the engine's state afresh: about 30 ms of
//! CPU here, so the six listings a teardown verifies with took 130 ms on two CPUs, and the
//! readiness loop's inspect 58 ms a round. The same reads from a warm `podman system service`
//! take 1-2 ms and return the same JSON (the CLI prints the same libpod types). Only reads go
//! this way; everything that changes state stays with the CLI, and any failure here falls back
//! to it for good (the caller never sees a difference but speed).
//!
//! Trust: only the engine's well-known root socket is used, and only when the process serving
//! it runs as root (checked with `SO_PEERCRED` on every connection); `HYDRA_ENGINE_API=cli`
//! turns it off.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// Where rootful Podman's API service listens when started the standard way (setup does).
pub const ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";

/// Environment variable that turns the API reads off (`cli`) for every query of this process.
pub const SWITCH_ENV: &str = "HYDRA_ENGINE_API";

/// Deadline for one request: a service this slow is no faster than the CLI.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer accepted (a listing of thousands of containers is a few MB).
const MAX_BODY: u64 = 64 << 20;

/// A root-owned Podman API service answering on a local socket.
#[derive(Debug)]
pub struct EngineApi {
    socket: PathBuf,
    /// Who must serve it (root for the rootful engine).
    owner_uid: u32,
    /// Set after the first failed request: the CLI answers from then on.
    broken: AtomicBool,
}

/// What a GET came back with.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx with its body.
    Found(String),
    /// 404: no such object.
    Missing,
}

impl EngineApi {
    /// The rootful Podman service on [`ROOTFUL_SOCKET`] if it answers now and is served by root,
    /// unless [`SWITCH_ENV`] says `cli`.
    pub fn rootful() -> Option<Self> {
        if std::env::var(SWITCH_ENV).is_ok_and(|v| v == "cli") {
            return None;
        }
        Self::at(Path::new(ROOTFUL_SOCKET), 0)
    }

    /// The service on `socket`, if one answers `/_ping` there and runs as `owner_uid`.
    pub fn at(socket: &Path, owner_uid: u32) -> Option<Self> {
        let api = Self {
            socket: socket.to_path_buf(),
            owner_uid,
            broken: AtomicBool::new(false),
        };
        match api.get("/_ping") {
            Some(Answer::Found(_)) => Some(api),
            _ => {
                tracing::debug!("no usable Podman API service on {}: the CLI answers", socket.display());
                None
            }
        }
    }

    /// `GET /v4.0.0/libpod/<path>`: `None` when the service failed (this one and every later
    /// call: the caller asks the CLI instead).
    pub fn libpod(&self, path: &str) -> Option<Answer> {
        self.get(&format!("/v4.0.0/libpod/{path}"))
    }

    fn get(&self, path: &str) -> Option<Answer> {
        if self.broken.load(Ordering::Relaxed) {
            return None;
        }
        let started = Instant::now();
        match request(&self.socket, self.owner_uid, path) {
            Ok(answer) => {
                tracing::debug!(path, ms = started.elapsed().as_millis() as u64, "engine API");
                Some(answer)
            }
            Err(e) => {
                tracing::warn!(
                    "Podman API service on {} failed ({e}); asking the CLI from now on",
                    self.socket.display()
                );
                self.broken.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

/// One HTTP/1.0 GET (the service closes the connection after the answer, so the body is
/// everything up to EOF, never chunked).
fn request(socket: &Path, owner_uid: u32, path: &str) -> Result<Answer> {
    let fail = |reason: String| HarnessError::Parse {
        what: format!("Podman API GET {path}"),
        reason,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| fail(format!("connect: {e}")))?;
    match peer_uid(&stream) {
        Some(uid) if uid == owner_uid => {}
        other => return Err(fail(format!("socket served by uid {other:?}, not {owner_uid}"))),
    }
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: d\r\n\r\n").as_bytes())
        .map_err(|e| fail(format!("write: {e}")))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if Instant::now() > deadline {
            return Err(fail(format!("no complete answer within {REQUEST_TIMEOUT:?}")));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(fail(format!("read: {e}"))),
        }
        if raw.len() as u64 > MAX_BODY {
            return Err(fail(format!("answer larger than {MAX_BODY} bytes")));
        }
    }
    parse_response(&raw).map_err(fail)
}

/// Status and body of a complete HTTP/1.x response. Pure.
fn parse_response(raw: &[u8]) -> std::result::Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => {
            code.parse().map_err(|_| format!("bad status line {status_line:?}"))?
        }
        _ => return Err(format!("bad status line {status_line:?}")),
    };
    if lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && !v.trim().eq_ignore_ascii_case("identity")
        })
    }) {
        return Err("encoded body (the service should answer HTTP/1.0 plainly)".into());
    }
    let body = String::from_utf8(raw[split + 4..].to_vec()).map_err(|_| "body is not UTF-8")?;
    match status {
        200..=299 => Ok(Answer::Found(body)),
        404 => Ok(Answer::Missing),
        _ => Err(format!("status {status}: {}", body.trim())),
    }
}

/// The user ID of the process at the other end of a connected Unix socket.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// `s` as one URL path segment (object names and references: `localhost/p/db:tag`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// JSON objects joined into the array the CLI's `inspect` prints for several.
pub fn json_array(objects: &[String]) -> String {
    format!("[{}]", objects.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn reads_status_and_body() {
        let raw = b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\r\n[{\"Id\":\"a\"}]\n";
        assert_eq!(parse_response(raw), Ok(Answer::Found("[{\"Id\":\"a\"}]\n".into())));
        let raw = b"HTTP/1.1 204 No Content\r\nLibpod-Api-Version: 4.3.1\r\n\r\n";
        assert_eq!(parse_response(raw), Ok(Answer::Found(String::new())));
    }

    #[test]
    fn not_found_is_an_answer_other_errors_are_not() {
        let raw = b"HTTP/1.0 404 Not Found\r\n\r\n{\"cause\":\"no such container\",\"response\":404}";
        assert_eq!(parse_response(raw), Ok(Answer::Missing));
        let raw = b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"cause\":\"boom\"}";
        assert!(parse_response(raw).unwrap_err().contains("status 500"));
    }

    #[rstest]
    #[case(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".as_slice())]
    #[case(b"HTTP/1.0 200 OK\r\n".as_slice())]
    #[case(b"SSH-2.0-OpenSSH\r\n\r\n".as_slice())]
    fn refuses_what_it_cannot_read_plainly(#[case] raw: &[u8]) {
        assert!(parse_response(raw).is_err());
    }

    #[rstest]
    #[case("localhost/phoenix/db:h-0123", "localhost%2Fphoenix%2Fdb:h-0123")]
    #[case("hydra-podman-1_db_data", "hydra-podman-1_db_data")]
    #[case("a b?c#d&e", "a%20b%3Fc%23d%26e")]
    fn encodes_one_path_segment(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(segment(input), expected);
    }

    #[test]
    fn no_service_means_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(EngineApi::at(&dir.path().join("absent.sock"), 0).is_none());
    }

    /// A listener that answers every connection's request with `answer`, for `n` connections.
    fn fake_service(path: &Path, answer: &'static [u8], n: usize) -> std::thread::JoinHandle<()> {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for _ in 0..n {
                if let Ok((mut s, _)) = listener.accept() {
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(answer);
                }
            }
        })
    }

    #[test]
    fn answers_come_only_from_the_expected_owner() {
        let me = crate::runtime::euid();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let server = fake_service(&path, b"HTTP/1.0 200 OK\r\n\r\n[]", 3);
        // Served by someone else than expected: refused before a request is sent.
        assert!(EngineApi::at(&path, me.wrapping_add(4242)).is_none());
        let api = EngineApi::at(&path, me).expect("own listener accepted");
        assert_eq!(api.libpod("containers/json?all=true"), Some(Answer::Found("[]".into())));
        server.join().unwrap();
    }

    #[test]
    fn one_failure_sends_every_later_query_to_the_cli() {
        let me = crate::runtime::euid();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let server = fake_service(&path, b"HTTP/1.0 500 Internal Server Error\r\n\r\n{}", 1);
        let api = EngineApi {
            socket: path.clone(),
            owner_uid: me,
            broken: AtomicBool::new(false),
        };
        assert_eq!(api.libpod("volumes/json"), None);
        server.join().unwrap();
        // Nothing listens any more; the answer is the same without trying.
        assert_eq!(api.libpod("volumes/json"), None);
    }
}
