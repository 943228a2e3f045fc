//! PostgreSQL persistence through the published port: a deterministic data set keeps its checksum
//! across `down`/`up` without removing volumes and across a forced recreation of the db container;
//! after `kill -9` during a stream of single-row commits every acknowledged row is still there; and
//! the recreated db can still write its volume (the rootless case).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{CheckId, Recorder};
use crate::compose::Action;
use crate::outcome::Verdict;
use crate::runtime::{exec, Interrupt};
use crate::spec::Persistence;
use crate::stack::Stack;

const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The persistence checks, in the order they run.
pub fn plan(p: &Option<Persistence>) -> Vec<CheckId> {
    if p.is_none() {
        return Vec::new();
    }
    [
        "down_up_keeps_data",
        "force_recreate_keeps_data",
        "recreated_db_writes_its_volume",
        "kill_9_keeps_acknowledged_rows",
    ]
    .into_iter()
    .map(|n| CheckId::new("persistence", n))
    .collect()
}

struct Db<'a> {
    stack: &'a Stack,
    spec: &'a Persistence,
    password: String,
    rt: tokio::runtime::Runtime,
}

/// Resolves once the run is cancelled (SIGINT/SIGTERM), checking every [`exec::POLL`].
async fn cancelled() {
    while !exec::is_cancelled() {
        tokio::time::sleep(exec::POLL).await;
    }
}

impl Db<'_> {
    /// Runs `fut` to completion, or stops within [`exec::POLL`] of a cancellation: a PostgreSQL
    /// wait (connect, query, the commit stream) never delays teardown.
    fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output, String> {
        self.rt.block_on(async {
            tokio::select! {
                out = fut => Ok(out),
                _ = cancelled() => Err(format!("{}: interrupted", self.spec.service)),
            }
        })
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        let containers = self.stack.containers().map_err(|e| e.to_string())?;
        let c = containers
            .get(&self.spec.service)
            .ok_or_else(|| format!("service {} has no container", self.spec.service))?;
        let bind = self.stack.bind_ip();
        c.published()
            .into_iter()
            .find(|p| p.container_port == self.spec.port && p.host_ip.parse().ok() == Some(bind))
            .map(|p| SocketAddr::new(bind, p.host_port))
            .ok_or_else(|| {
                format!(
                    "{} port {} is not published on {bind}",
                    self.spec.service, self.spec.port
                )
            })
    }

    /// Connects, retrying until `deadline` (the server may still be starting).
    fn connect(&self, deadline: Duration) -> Result<tokio_postgres::Client, String> {
        let addr = self.addr()?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(addr.ip().to_string())
            .port(addr.port())
            .user(&self.spec.user)
            .password(&self.password)
            .dbname(&self.spec.database)
            .connect_timeout(Duration::from_secs(5));
        let start = Instant::now();
        loop {
            let attempt = self.block_on(async {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok::<_, tokio_postgres::Error>(client)
            })?;
            match attempt {
                Ok(c) => return Ok(c),
                Err(e) if start.elapsed() >= deadline => {
                    return Err(format!("cannot connect to {} at {addr}: {e}", self.spec.service))
                }
                Err(_) => exec::sleep(Duration::from_millis(500))
                    .map_err(|e| format!("connecting to {} at {addr}: {e}", self.spec.service))?,
            }
        }
    }

    fn checksum(&self) -> Result<(i64, String), String> {
        let c = self.connect(Duration::from_secs(60))?;
        self.block_on(c.query_one("SELECT count(*), coalesce(md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)), '') FROM hydra_persistence", &[]))?
            .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
            .map_err(|e| format!("checksum query: {e}"))
    }

    fn seed(&self) -> Result<(i64, String), String> {
        let c = self.connect(Duration::from_secs(60))?;
        let sql = format!(
            "DROP TABLE IF EXISTS hydra_persistence, hydra_acks; \
             CREATE TABLE hydra_persistence (id int PRIMARY KEY, payload text NOT NULL); \
             CREATE TABLE hydra_acks (id bigint PRIMARY KEY); \
             INSERT INTO hydra_persistence SELECT g, md5('hydra-' || g) FROM generate_series(1, {}) g;",
            self.spec.rows
        );
        self.block_on(c.batch_execute(&sql))?
            .map_err(|e| format!("seeding the data set: {e}"))?;
        self.checksum()
    }
}

/// Runs the persistence checks that `selected` keeps. They restart and kill the db, so they run
/// last and leave the stack healthy again.
pub fn run(stack: &Stack, spec: &Option<Persistence>, selected: &dyn Fn(&CheckId) -> bool, rec: &mut Recorder) {
    let Some(p) = spec else { return };
    let ids = plan(spec);
    if !ids.iter().any(selected) {
        return;
    }
    let setup = (|| -> Result<Db<'_>, String> {
        let password = p.password().map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Db {
            stack,
            spec: p,
            password,
            rt,
        })
    })();
    let db = match setup {
        Ok(db) => db,
        Err(e) => {
            for id in ids.iter().filter(|i| selected(i)) {
                rec.push(id, Some(&p.service), Verdict::Fail, e.clone(), 0.0);
            }
            return;
        }
    };
    let svc = Some(p.service.as_str());
    if exec::is_cancelled() {
        return;
    }
    let baseline = db.seed();

    if selected(&ids[0]) {
        rec.check(&ids[0], svc, || {
            let before = baseline.clone()?;
            stack
                .restart_keeping_volumes(READY_TIMEOUT)
                .map_err(|e| format!("down/up keeping volumes failed: {e}"))?;
            let after = db.checksum()?;
            compare(
                "down and up without removing volumes",
                &p.service,
                &p.volume,
                &before,
                &after,
            )
        });
    }
    // Checks not reached are marked interrupted by the caller.
    if exec::is_cancelled() {
        return;
    }
    if selected(&ids[1]) || selected(&ids[2]) {
        let recreate = (|| -> Result<(), String> {
            let old = stack
                .containers()
                .map_err(|e| e.to_string())?
                .get(&p.service)
                .map(|c| c.id.clone());
            let out = stack
                .compose_run(&Action::Recreate {
                    service: p.service.clone(),
                })
                .map_err(|e| e.to_string())?;
            let new = stack
                .containers()
                .map_err(|e| e.to_string())?
                .get(&p.service)
                .map(|c| c.id.clone());
            if new.is_none() || new == old {
                return Err(format!(
                    "compose did not recreate the {} container (exit {:?}: {})",
                    p.service,
                    out.status,
                    exec::tail(&out.stderr, 5)
                ));
            }
            stack.wait_ready(READY_TIMEOUT).map_err(|e| e.to_string())?;
            Ok(())
        })();
        if selected(&ids[1]) {
            rec.check(&ids[1], svc, || {
                let before = baseline.clone()?;
                recreate.clone().map_err(|e| format!("force-recreate failed: {e}"))?;
                compare(
                    "a forced recreation of the container",
                    &p.service,
                    &p.volume,
                    &before,
                    &db.checksum()?,
                )
            });
        }
        if selected(&ids[2]) {
            rec.check(&ids[2], svc, || {
                recreate.clone().map_err(|e| format!("force-recreate failed: {e}"))?;
                let c = db.connect(Duration::from_secs(60))?;
                db.block_on(c.batch_execute("CREATE TABLE IF NOT EXISTS hydra_write_probe (at timestamptz); INSERT INTO hydra_write_probe VALUES (now()); CHECKPOINT;"))?
                    .map(|_| format!("the recreated {} container wrote and checkpointed to volume {}", p.service, p.volume))
                    .map_err(|e| format!("the recreated {} container cannot write volume {}: {e}", p.service, p.volume))
            });
        }
    }
    if selected(&ids[3]) && !exec::is_cancelled() {
        rec.check(&ids[3], svc, || kill_during_commits(&db));
    }
}

fn compare(
    what: &str,
    service: &str,
    volume: &str,
    before: &(i64, String),
    after: &(i64, String),
) -> Result<String, String> {
    if before == after {
        Ok(format!(
            "{} rows, checksum {} unchanged after {what}",
            after.0,
            &after.1[..after.1.len().min(12)]
        ))
    } else {
        Err(format!(
            "{service}: data in volume {volume} changed after {what}: {} rows/{} before, {} rows/{} after",
            before.0, before.1, after.0, after.1
        ))
    }
}

/// Streams single-row commits, `kill -9`s the db mid-stream, restarts it and checks every
/// acknowledged row survived.
fn kill_during_commits(db: &Db<'_>) -> Result<String, String> {
    let stack = db.stack;
    let service = &db.spec.service;
    let client = db.connect(Duration::from_secs(60))?;
    db.block_on(
        client.batch_execute("CREATE TABLE IF NOT EXISTS hydra_acks (id bigint PRIMARY KEY); TRUNCATE hydra_acks;"),
    )?
    .map_err(|e| format!("{service}: preparing the commit stream: {e}"))?;
    let id = stack
        .containers()
        .map_err(|e| e.to_string())?
        .get(service)
        .map(|c| c.id.clone())
        .ok_or("no db container")?;
    let (acked, write_error) = db.block_on(async {
        let writer = async {
            let mut acked: Vec<i64> = Vec::new();
            for i in 1..=1_000_000i64 {
                match client.execute("INSERT INTO hydra_acks (id) VALUES ($1)", &[&i]).await {
                    Ok(_) => acked.push(i),
                    Err(e) => return (acked, Some(e.to_string())),
                }
            }
            (acked, None)
        };
        let killer = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let spec = stack.runtime().engine().args(["kill", "--signal", "KILL", &id]);
            tokio::task::spawn_blocking(move || exec::run(&spec, Duration::from_secs(30), Interrupt::Allowed)).await
        };
        let ((acked, err), kill) = tokio::join!(
            async {
                tokio::time::timeout(Duration::from_secs(60), writer)
                    .await
                    .unwrap_or((Vec::new(), Some("writer timed out".into())))
            },
            killer
        );
        let kill_ok = matches!(kill, Ok(Ok(ref o)) if o.success());
        (
            acked,
            if kill_ok {
                err
            } else {
                Some(format!("kill failed: {kill:?}"))
            },
        )
    })?;
    let write_error =
        write_error.ok_or_else(|| format!("{service}: the writer never saw the db die: kill -9 had no effect"))?;
    if write_error.starts_with("kill failed") {
        return Err(format!("{service}: {write_error}"));
    }
    if acked.is_empty() {
        return Err(format!(
            "{service}: no commit was acknowledged before the kill ({write_error}): the check proves nothing"
        ));
    }
    // The restart policy may already have restarted it; `start` makes sure either way.
    let _ = stack.compose_run(&Action::Start {
        service: service.clone(),
    });
    stack
        .wait_ready(READY_TIMEOUT)
        .map_err(|e| format!("{service} did not come back after kill -9: {e}"))?;
    let c = db.connect(Duration::from_secs(60))?;
    let max = *acked.last().expect("non-empty");
    let present: i64 = match db.block_on(c.query_one("SELECT count(*) FROM hydra_acks WHERE id <= $1", &[&max]))? {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => 0,
        Err(e) => return Err(format!("{service}: counting acknowledged rows after restart: {e}")),
    };
    if present == acked.len() as i64 {
        Ok(format!(
            "all {} acknowledged commits survived kill -9 (writer stopped with: {})",
            acked.len(),
            write_error.lines().next().unwrap_or("")
        ))
    } else {
        Err(format!(
            "{service}: {} of {} acknowledged commits are missing after kill -9 and restart",
            acked.len() as i64 - present,
            acked.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_service_volume_and_both_checksums() {
        assert!(compare("x", "db", "db_data", &(5, "a".into()), &(5, "a".into())).is_ok());
        let e = compare("down and up", "db", "db_data", &(5, "abc".into()), &(0, "".into())).unwrap_err();
        assert!(
            e.contains("db: data in volume db_data changed after down and up") && e.contains("abc"),
            "{e}"
        );
    }

    #[test]
    fn no_persistence_spec_no_checks() {
        assert!(plan(&None).is_empty());
    }
}
