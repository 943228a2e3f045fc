//! PostgreSQL transactions per second over the stack's published port: several tokio-postgres
//! clients, each in a closed loop of short read-write transactions on its own row of a bench
//! table (`BEGIN; UPDATE ...; SELECT ...; COMMIT`), so commits (and the volume's fsync) are
//! measured rather than lock waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::Limit;
use anyhow::Context;
use hydra::Stack;
use serde::Serialize;
use tokio_postgres::NoTls;

/// Connection settings for the stack's database.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Address to connect to (the stack's bind address).
    pub host: String,
    /// The published host port.
    pub port: u16,
    /// Database user.
    pub user: String,
    /// Database name.
    pub dbname: String,
    /// The user's password.
    pub password: String,
}

impl PgTarget {
    /// The stack's `db` service on its published port, user and database `phoenix`, the password
    /// from the env file the run used (`PHOENIX_ENV_FILE`, else `compose/phoenix.env`).
    pub fn for_stack(stack: &Stack) -> anyhow::Result<Self> {
        let port = *stack
            .ports()
            .get("PHOENIX_DB_PORT")
            .context("the stack publishes no PHOENIX_DB_PORT")?;
        let env_file = stack
            .record()
            .env
            .iter()
            .find(|(k, _)| k == "PHOENIX_ENV_FILE")
            .map(|(_, v)| std::path::PathBuf::from(v))
            .unwrap_or_else(|| hydra::workspace::root().join("compose/phoenix.env"));
        let text = std::fs::read_to_string(&env_file).with_context(|| format!("reading {}", env_file.display()))?;
        let password = hydra::envfile::value(&text, "POSTGRES_PASSWORD")
            .with_context(|| format!("no POSTGRES_PASSWORD in {}", env_file.display()))?;
        Ok(Self {
            host: stack.bind_ip().to_string(),
            port,
            user: "phoenix".into(),
            dbname: "phoenix".into(),
            password,
        })
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .password(&self.password)
            .connect_timeout(Duration::from_secs(10));
        c
    }
}

/// One run's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PgReport {
    /// Concurrent client connections.
    pub clients: usize,
    /// Transactions committed.
    pub transactions: u64,
    /// Transactions that failed.
    pub errors: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_secs: f64,
    /// Committed transactions per second.
    pub tps: f64,
}

const TABLE: &str = "hydra_bench_tps";

/// Creates the bench table with one row per client (idempotent).
pub async fn setup(target: &PgTarget, clients: usize) -> anyhow::Result<()> {
    let (client, conn) = target
        .config()
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to postgres on {}:{}", target.host, target.port))?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
             INSERT INTO {TABLE} (id) SELECT g FROM generate_series(0, {}) g ON CONFLICT DO NOTHING;",
            clients.saturating_sub(1)
        ))
        .await
        .context("creating the bench table")?;
    Ok(())
}

/// Runs `clients` connections until `limit` and counts committed transactions.
pub async fn run(target: &PgTarget, clients: usize, limit: Limit) -> anyhow::Result<PgReport> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, conn) = target
            .config()
            .connect(NoTls)
            .await
            .context("connecting a bench client")?;
        tokio::spawn(conn);
        conns.push(client);
    }
    let remaining = Arc::new(AtomicU64::new(match limit {
        Limit::Requests(n) => n,
        Limit::Duration(_) => u64::MAX,
    }));
    let deadline = match limit {
        Limit::Duration(d) => Some(Instant::now() + d),
        Limit::Requests(_) => None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (id, mut client) in conns.into_iter().enumerate() {
        let remaining = remaining.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let update = client
                .prepare(&format!("UPDATE {TABLE} SET n = n + 1 WHERE id = $1"))
                .await?;
            let select = client.prepare(&format!("SELECT n FROM {TABLE} WHERE id = $1")).await?;
            let id = id as i32;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                let tx = async {
                    let tx = client.transaction().await?;
                    tx.execute(&update, &[&id]).await?;
                    tx.query_one(&select, &[&id]).await?;
                    tx.commit().await
                };
                match tx.await {
                    Ok(()) => ok += 1,
                    Err(_) => errors += 1,
                }
            }
            Ok::<_, tokio_postgres::Error>((ok, errors))
        }));
    }
    let (mut transactions, mut errors) = (0, 0);
    for t in tasks {
        let (ok, err) = t.await.context("bench client task")?.context("preparing statements")?;
        transactions += ok;
        errors += err;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(PgReport {
        clients,
        transactions,
        errors,
        elapsed_secs: elapsed,
        tps: transactions as f64 / elapsed,
    })
}
