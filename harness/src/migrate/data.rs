//! The drill's data in PostgreSQL: rows written before and after the switch, and a logical
//! snapshot of every table (row count and a digest of the rows in key order) to compare across
//! engines. The stack's services keep writing once they run again, so a table with an integer
//! primary key is compared up to the largest key the source had: rows the target added later do
//! not count, a row the move lost or changed does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::checks::persistence::{db_error, Db};

/// The drill's own table: nothing but the drill writes it.
pub const DRILL_TABLE: &str = "hydra_migration";

/// One table's logical state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSum {
    /// Rows read (for a keyed table read against the source's snapshot, only up to its largest key).
    pub rows: i64,
    /// md5 of the rows' text in key order (in text order without an integer key).
    pub digest: String,
    /// The integer primary key's column and largest value, when the table has one.
    pub key: Option<(String, i64)>,
}

/// Every table of the database's `public` schema.
pub type Snapshot = BTreeMap<String, TableSum>;

const CONNECT: Duration = Duration::from_secs(90);

fn exec(db: &Db<'_>, sql: &str, what: &str) -> Result<(), String> {
    let c = db.connect(CONNECT)?;
    db.block_on(c.batch_execute(sql))?
        .map_err(|e| format!("{what}: {}", db_error(&e)))
}

/// Writes `rows` rows tagged `phase` after the ones already there (creating the table).
pub(crate) fn write_rows(db: &Db<'_>, phase: &str, rows: u32) -> Result<(), String> {
    if !phase.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("phase tag '{phase}' is not a plain word"));
    }
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {DRILL_TABLE} (id int PRIMARY KEY, phase text NOT NULL, payload text NOT NULL); \
         INSERT INTO {DRILL_TABLE} SELECT n + g, '{phase}', md5('{phase}-' || (n + g)) \
         FROM (SELECT coalesce(max(id), 0) AS n FROM {DRILL_TABLE}) m, generate_series(1, {rows}) g;"
    );
    exec(db, &sql, &format!("writing {rows} rows tagged {phase}"))
}

/// How many of the drill's rows carry each phase tag.
pub(crate) fn rows_by_phase(db: &Db<'_>) -> Result<BTreeMap<String, i64>, String> {
    let c = db.connect(CONNECT)?;
    let sql = format!("SELECT phase, count(*) FROM {DRILL_TABLE} GROUP BY phase");
    let rows = db
        .block_on(c.query(&sql, &[]))?
        .map_err(|e| format!("reading {DRILL_TABLE}: {}", db_error(&e)))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect())
}

/// `"name"` with embedded quotes doubled: table and column names come from the database.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The logical snapshot; with `upto` (the source's snapshot), keyed tables are read only up to
/// the source's largest key.
pub(crate) fn snapshot(db: &Db<'_>, upto: Option<&Snapshot>) -> Result<Snapshot, String> {
    let c = db.connect(CONNECT)?;
    let keys_sql = "SELECT c.relname::text, a.attname::text FROM pg_index i \
        JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
        WHERE i.indisprimary AND i.indnatts = 1 AND n.nspname = 'public' \
        AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)";
    let keys: BTreeMap<String, String> = db
        .block_on(c.query(keys_sql, &[]))?
        .map_err(|e| format!("listing primary keys: {}", db_error(&e)))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let tables: Vec<String> = db
        .block_on(c.query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        ))?
        .map_err(|e| format!("listing tables: {}", db_error(&e)))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Snapshot::new();
    for table in tables {
        let t = ident(&table);
        // Keyed tables: in key order, up to the other side's largest key; others in text order.
        let (order, limit, max) = match keys.get(&table) {
            Some(key) => {
                let k = ident(key);
                let limit = upto
                    .and_then(|s| s.get(&table))
                    .and_then(|s| s.key.as_ref())
                    .map(|(_, max)| format!(" WHERE t.{k} <= {max}"))
                    .unwrap_or_default();
                (format!("t.{k}"), limit, format!("coalesce(max(t.{k})::bigint, 0)"))
            }
            None => ("t::text".to_string(), String::new(), "0::bigint".to_string()),
        };
        let sql = format!(
            "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY {order})), ''), {max} FROM {t} t{limit}"
        );
        let r = db
            .block_on(c.query_one(&sql, &[]))?
            .map_err(|e| format!("reading table {table}: {}", db_error(&e)))?;
        let sum = TableSum {
            rows: r.get(0),
            digest: r.get(1),
            key: keys.get(&table).map(|key| (key.clone(), r.get(2))),
        };
        out.insert(table, sum);
    }
    Ok(out)
}

/// What differs between the source's snapshot and the target's (read with `upto` = source):
/// each missing table, or table whose rows differ, named. Empty when the data arrived whole.
pub fn differences(source: &Snapshot, target: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (table, s) in source {
        match target.get(table) {
            None => out.push(format!("table {table} is missing")),
            Some(t) if t.rows != s.rows => {
                out.push(format!("table {table}: {} rows, the source had {}", t.rows, s.rows))
            }
            Some(t) if t.digest != s.digest => out.push(format!(
                "table {table}: same {} rows, different contents (digest {} vs {})",
                s.rows,
                short(&t.digest),
                short(&s.digest)
            )),
            Some(_) => {}
        }
    }
    out
}

fn short(d: &str) -> &str {
    &d[..d.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(rows: i64, digest: &str) -> TableSum {
        TableSum {
            rows,
            digest: digest.into(),
            key: Some(("id".into(), rows)),
        }
    }

    #[test]
    fn identical_snapshots_have_no_differences() {
        let s = Snapshot::from([
            ("runs".to_string(), sum(3, "abc")),
            ("hydra_migration".into(), sum(500, "d")),
        ]);
        assert!(differences(&s, &s.clone()).is_empty());
    }

    #[test]
    fn each_kind_of_loss_is_named() {
        let source = Snapshot::from([
            ("a".to_string(), sum(3, "x")),
            ("b".to_string(), sum(3, "x")),
            ("c".to_string(), sum(3, "x")),
        ]);
        let target = Snapshot::from([("b".to_string(), sum(2, "x")), ("c".to_string(), sum(3, "y"))]);
        assert_eq!(
            differences(&source, &target),
            [
                "table a is missing",
                "table b: 2 rows, the source had 3",
                "table c: same 3 rows, different contents (digest y vs x)"
            ]
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("runs"), "\"runs\"");
        assert_eq!(ident("a\"b; DROP"), "\"a\"\"b; DROP\"");
    }
}
