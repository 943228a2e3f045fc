//! PostgreSQL persistence through the published port: a deterministic data set keeps its checksum
//! across `down`/`up` without removing volumes and across a forced recreation of the db container;
//! after `kill -9` during a stream of single-row commits every acknowledged row is still there; and
//! the recreated db can still write its volume (the rootless case).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Announce, Area, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::compose::Action;
use crate::outcome::Verdict;
use crate::runtime::{exec, Interrupt};
use crate::spec::{Persistence, Spec};
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
    .map(|n| CheckId::new(Area::Persistence, n))
    .collect()
}

/// The persistence area (destructive: restarts, recreates and kills the database; runs last).
pub struct PersistenceChecks {
    /// The planned checks, in the order they run; empty when the spec has no persistence probe.
    pub ids: Vec<CheckId>,
}

impl CheckArea for PersistenceChecks {
    fn plan(spec: &Spec, _compose: &ComposeFile) -> Self {
        Self {
            ids: plan(&spec.persistence),
        }
    }

    fn announce(&self) -> Announce {
        Announce::Always("persistence")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.ids.clone()
    }

    fn run(&self, stack: &Stack, spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        run(stack, &spec.persistence, selected, rec)
    }
}

/// The table holding the data set whose survival the checks prove.
const DATA_TABLE: &str = "hydra_persistence";

/// What reading the data set found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSet {
    /// `count` rows with this checksum of their contents.
    Rows {
        /// Rows in the table.
        count: i64,
        /// MD5 over every row's id and payload, in id order.
        checksum: String,
    },
    /// The table is not there at all: the volume did not keep it.
    TableMissing,
}

/// What the data set had to survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// `down` then `up`, keeping volumes.
    DownUp,
    /// A forced recreation of the database container.
    ForceRecreate,
}

impl Disruption {
    /// (what came before, what came after, the whole operation) in the stack's terms.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Disruption::DownUp => ("down", "up", "down and up without removing volumes"),
            Disruption::ForceRecreate => (
                "the forced recreation",
                "the container was recreated",
                "a forced recreation of the container",
            ),
        }
    }
}

/// Judges whether the data set written before `disruption` is still there after it (pure): a
/// missing table, a different row count and different contents each get their own wording,
/// naming the service and its volume.
pub fn judge_survival(
    disruption: Disruption,
    service: &str,
    volume: &str,
    before: &(i64, String),
    after: &DataSet,
) -> Result<String, String> {
    let (pre, post, what) = disruption.words();
    let (rows, sum) = before;
    let (count, checksum) = match after {
        DataSet::TableMissing => {
            return Err(format!(
                "{service}: the rows written before {pre} are gone after {post}: table {DATA_TABLE} no longer exists, volume {volume} did not keep the data"
            ))
        }
        DataSet::Rows { count, checksum } => (*count, checksum),
    };
    if count < *rows {
        Err(format!(
            "{service}: {} of the {rows} rows written before {pre} are missing after {post} (volume {volume})",
            rows - count
        ))
    } else if count > *rows {
        Err(format!(
            "{service}: {count} rows after {post} where {rows} were written before {pre} (volume {volume})"
        ))
    } else if checksum != sum {
        Err(format!(
            "{service}: the {rows} rows written before {pre} are there after {post} but their contents changed (checksum {sum} before, {checksum} after; volume {volume})"
        ))
    } else {
        Ok(format!(
            "{count} rows, checksum {} unchanged after {what}",
            &checksum[..checksum.len().min(12)]
        ))
    }
}

/// A PostgreSQL client for the persistence probe's database, over its published port.
pub(crate) struct Db<'a> {
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

impl<'a> Db<'a> {
    /// A client for `spec`'s database in `stack` (connections are made on demand).
    pub(crate) fn open(stack: &'a Stack, spec: &'a Persistence) -> Result<Self, String> {
        let password = spec.password().map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Db {
            stack,
            spec,
            password,
            rt,
        })
    }

    /// Runs `fut` to completion, or stops within [`exec::POLL`] of a cancellation: a PostgreSQL
    /// wait (connect, query, the commit stream) never delays teardown.
    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output, String> {
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
    pub(crate) fn connect(&self, deadline: Duration) -> Result<tokio_postgres::Client, String> {
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

    /// Reads the data set's row count and checksum; a missing table is an observation, not an
    /// error.
    fn data_set(&self) -> Result<DataSet, String> {
        let c = self.connect(Duration::from_secs(60))?;
        let sql = format!("SELECT count(*), coalesce(md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)), '') FROM {DATA_TABLE}");
        match self.block_on(c.query_one(&sql, &[]))? {
            Ok(r) => Ok(DataSet::Rows {
                count: r.get(0),
                checksum: r.get(1),
            }),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(DataSet::TableMissing),
            Err(e) => Err(format!(
                "{}: reading the data set (table {DATA_TABLE}) failed: {}",
                self.spec.service,
                db_error(&e)
            )),
        }
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
            .map_err(|e| format!("{}: seeding the data set: {}", self.spec.service, db_error(&e)))?;
        match self.data_set()? {
            DataSet::Rows { count, checksum } => Ok((count, checksum)),
            DataSet::TableMissing => Err(format!(
                "{}: table {DATA_TABLE} is missing right after it was created",
                self.spec.service
            )),
        }
    }
}

/// A database error with the server's message (the driver's `Display` says only `db error`).
pub(crate) fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Runs the persistence checks that `selected` keeps. They restart and kill the db, so they run
/// last and leave the stack healthy again.
pub fn run(stack: &Stack, spec: &Option<Persistence>, selected: Selected<'_>, rec: &mut Recorder) {
    let Some(p) = spec else { return };
    let ids = plan(spec);
    if !ids.iter().any(selected) {
        return;
    }
    let db = match Db::open(stack, p) {
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
            let after = db.data_set()?;
            judge_survival(Disruption::DownUp, &p.service, &p.volume, &before, &after)
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
                judge_survival(
                    Disruption::ForceRecreate,
                    &p.service,
                    &p.volume,
                    &before,
                    &db.data_set()?,
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

    fn rows(count: i64, checksum: &str) -> DataSet {
        DataSet::Rows {
            count,
            checksum: checksum.into(),
        }
    }

    #[test]
    fn unchanged_data_passes_with_count_and_checksum() {
        let ok = judge_survival(Disruption::DownUp, "db", "db_data", &(5, "abc".into()), &rows(5, "abc")).unwrap();
        assert_eq!(
            ok,
            "5 rows, checksum abc unchanged after down and up without removing volumes"
        );
    }

    #[rstest::rstest]
    #[case::down_up(
        Disruption::DownUp,
        "db: the rows written before down are gone after up: table hydra_persistence no longer exists"
    )]
    #[case::force_recreate(
        Disruption::ForceRecreate,
        "db: the rows written before the forced recreation are gone after the container was recreated"
    )]
    fn a_missing_table_says_the_rows_are_gone(#[case] disruption: Disruption, #[case] start: &str) {
        let e = judge_survival(
            disruption,
            "db",
            "db_data",
            &(1000, "abc".into()),
            &DataSet::TableMissing,
        )
        .unwrap_err();
        assert!(e.starts_with(start), "{e}");
        assert!(e.contains("volume db_data"), "{e}");
    }

    #[test]
    fn fewer_or_more_rows_are_counted() {
        let e = judge_survival(Disruption::DownUp, "db", "db_data", &(1000, "abc".into()), &rows(0, "")).unwrap_err();
        assert_eq!(
            e,
            "db: 1000 of the 1000 rows written before down are missing after up (volume db_data)"
        );
        let e = judge_survival(Disruption::DownUp, "db", "db_data", &(10, "abc".into()), &rows(12, "x")).unwrap_err();
        assert_eq!(
            e,
            "db: 12 rows after up where 10 were written before down (volume db_data)"
        );
    }

    #[test]
    fn changed_contents_show_both_checksums() {
        let e = judge_survival(
            Disruption::DownUp,
            "db",
            "db_data",
            &(10, "abc".into()),
            &rows(10, "def"),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "db: the 10 rows written before down are there after up but their contents changed (checksum abc before, def after; volume db_data)"
        );
    }

    #[test]
    fn no_persistence_spec_no_checks() {
        assert!(plan(&None).is_empty());
    }
}
