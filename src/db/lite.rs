//! Hot reads on SQLite without sqlx.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each row across a
//! channel, copying every column into a value of its own on the way (and the `Any` driver
//! copies it once more): about 14 µs for a message row, where SQLite itself takes 2. The reads
//! that page through many rows — sync pages, the real-time dispatcher's views, conversation
//! lists, history pages — and the access check of every request run here instead: a few
//! read-only connections used directly on Tokio's blocking pool, one hop per query rather than
//! one per row. They see what sqlx's readers see: every committed write (WAL).
//!
//! Store functions do not call this module: they call [`Db::rows`](super::Db::rows) with SQL in
//! the dialect both engines share (`?` or `$N` parameters) and one parameter list, and `Db`
//! picks these readers on SQLite and sqlx on PostgreSQL.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

/// Prepared statements kept per connection, least recently used dropped first (generated
/// statements of one shape, e.g. a page's 500-id list, are reused too).
const STATEMENT_CACHE: usize = 64;

pub struct Readers {
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One permit per connection: a permit holder always finds one idle.
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Opens `count` connections to the database file (which the writer has created).
    pub fn open(path: &Path, count: usize) -> anyhow::Result<Readers> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            // A 16 MiB page cache (SQLite's default is 2 MiB): a catch-up of 10,000 messages
            // reads ~5 MiB of pages, which at 2 MiB were read again through `pread` on every
            // catch-up (P4's server CPU per catch-up −12%, BENCHMARKS.md step 7).
            conn.execute_batch(
                "PRAGMA query_only = ON; PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY; \
                 PRAGMA cache_size = -16384;",
            )?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            idle.push(conn);
        }
        Ok(Readers {
            permits: Arc::new(Semaphore::new(idle.len())),
            idle: Arc::new(Mutex::new(idle)),
        })
    }

    /// The rows of one statement, each made by `f`.
    pub async fn rows<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<Value>,
        f: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> AppResult<Vec<T>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            bind(&mut stmt, &params)?;
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(f(row)?);
            }
            Ok(out)
        })
        .await
    }

    /// Runs `f` on an idle connection, on the blocking pool. The blocking task takes the
    /// connection and gives it back itself, so a caller that stops waiting (a cancelled
    /// request) or a panic in `f` never loses one.
    pub async fn read<T, F>(&self, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(AppError::unavailable)?;
        let idle = self.idle.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&conn)));
            idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            Some(result)
        })
        .await
        .map_err(AppError::internal)?;
        match outcome {
            None => Err(AppError::internal(anyhow::anyhow!("no idle SQLite reader"))),
            Some(Err(_)) => Err(AppError::internal(anyhow::anyhow!(
                "a SQLite read panicked"
            ))),
            Some(Ok(result)) => result.map_err(AppError::from),
        }
    }
}

/// The SQLite write connection used directly, for the batched message sends: their
/// statements are prepared once and kept, and a batch is one hop to a blocking thread instead
/// of a round trip to sqlx's connection thread per statement. It writes only while it holds
/// the group commit's writer ([`super::group::Exclusive`]), so it and the grouped transactions
/// take turns instead of waiting on SQLite's lock (the few single statements that bypass the
/// group wait for it through `busy_timeout`, as they did for the group's open batch).
pub struct Writer {
    conn: Arc<Mutex<Connection>>,
}

impl Writer {
    pub fn open(path: &Path) -> anyhow::Result<Writer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(super::SQLITE_PRAGMAS)?;
        // The pages a batch touches (the indexes' leaves across every active conversation and
        // sender) outgrow SQLite's 2 MiB default, which then rereads them and spills dirty
        // pages before the commit.
        conn.execute_batch("PRAGMA cache_size = -32768")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Writer {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in a transaction and commits it if `f` succeeds (rolls it back if not); returns
    /// once the commit is durable. The blocking task keeps `exclusive` until the transaction
    /// has ended, even if the caller stops waiting.
    pub(super) async fn write<T, F>(&self, exclusive: super::group::Exclusive, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> AppResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let _exclusive = exclusive;
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            if !conn.is_autocommit() {
                // A rollback that failed left a transaction open: end it before the next.
                conn.execute_batch("ROLLBACK")?;
            }
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(&tx))) {
                Ok(Ok(value)) => {
                    let started = std::time::Instant::now();
                    tx.commit()?;
                    metrics::histogram!("db_group_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("db_group_commits_total").increment(1);
                    Ok(value)
                }
                // Dropping the transaction rolls it back.
                Ok(Err(e)) => Err(e),
                Err(_) => Err(AppError::internal(anyhow::anyhow!(
                    "a SQLite write panicked"
                ))),
            }
        })
        .await
        .map_err(AppError::internal)?
    }
}

/// Rows read by position: `lite_row!(Type { field, field = "column", … })` implements
/// `Type::from_lite` (and `from_lite_at`), which takes the fields from the row's columns in
/// that order. The column names are checked against the fields in debug builds, so a statement
/// whose column list does not match fails every test that reads through it.
///
/// `lite_row!(with_any Type { … })` also implements `Type::from_any_at`, the same by position
/// from an engine-neutral row (PostgreSQL's side of a join whose column names repeat, which
/// sqlx's by-name `FromRow` cannot tell apart).
macro_rules! lite_row {
    (with_any $ty:ident { $($field:ident $(= $column:literal)?),+ $(,)? }) => {
        $crate::db::lite::lite_row!($ty { $($field $(= $column)?),+ });

        impl $ty {
            /// From the row's columns starting at `at`, by position.
            pub fn from_any_at(row: &sqlx::any::AnyRow, at: usize) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                let mut _i = at;
                Ok($ty {
                    $($field: {
                        let v = row.try_get(_i)?;
                        _i += 1;
                        v
                    },)+
                })
            }
        }
    };
    ($ty:ident { $($field:ident $(= $column:literal)?),+ $(,)? }) => {
        impl $ty {
            /// How many columns the row takes.
            #[allow(dead_code)]
            pub const LITE_COLUMNS: usize = [$(stringify!($field)),+].len();

            pub fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Self::from_lite_at(row, 0)
            }

            /// From the row's columns starting at `at` (rows that join several tables).
            pub fn from_lite_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
                let mut _i = at;
                Ok($ty {
                    $($field: {
                        let name = $crate::db::lite::column!($field $(= $column)?);
                        debug_assert_eq!(
                            row.as_ref().column_name(_i).ok(),
                            Some(name),
                            concat!("column order of ", stringify!($ty))
                        );
                        let v = row.get(_i)?;
                        _i += 1;
                        v
                    },)+
                })
            }
        }
    };
}

macro_rules! column {
    ($field:ident = $column:literal) => {
        $column
    };
    ($field:ident) => {
        stringify!($field)
    };
}

pub(crate) use {column, lite_row};

/// Binds parameters the way sqlx does on SQLite: `$N` and `?N` take the N-th value, a bare
/// `?` the next one.
pub fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> rusqlite::Result<()> {
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name.get(1..)?.parse::<usize>().ok())
            .unwrap_or(i);
        let value = params
            .get(n.wrapping_sub(1))
            .ok_or(rusqlite::Error::InvalidParameterCount(n, params.len()))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    Ok(())
}

/// A text parameter.
pub fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// Text parameters.
pub fn texts<S: AsRef<str>>(items: &[S]) -> Vec<Value> {
    items.iter().map(|s| text(s.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        name: String,
        n: i64,
    }
    lite_row!(Pair { name, n = "number" });

    /// A database file made by `sql`, in a directory that lives as long as the answer's first half.
    fn database(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, path)
    }

    /// `.cargo/config.toml` builds SQLite without its two process-wide mutexes (the shared
    /// page-cache group and the allocator's statistics); a build that lost the setting would
    /// serialize every connection's page fetches again, silently.
    #[test]
    fn sqlite_is_built_without_its_process_wide_mutexes() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
    }

    #[tokio::test]
    async fn parameters_bind_like_sqlx_and_rows_check_their_columns() {
        let (_dir, path) = database(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT, number INTEGER); \
             INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3);",
        );
        let readers = Readers::open(&path, 2).unwrap();

        // `$N` takes the N-th value wherever it stands and however often it is used.
        let rows = readers
            .rows(
                "SELECT name, number FROM t WHERE number >= $2 AND name <> $1 AND number <> $2 + 5 ORDER BY number".into(),
                vec![text("c"), Value::Integer(2)],
                Pair::from_lite,
            )
            .await
            .unwrap();
        assert_eq!(
            rows.iter()
                .map(|p| (p.name.as_str(), p.n))
                .collect::<Vec<_>>(),
            [("b", 2)]
        );
        // Bare `?`: in order.
        let rows = readers
            .rows(
                "SELECT name, number FROM t WHERE name IN (?, ?) ORDER BY name".into(),
                texts(&["c", "a"]),
                Pair::from_lite,
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "a");
        // Too few values is an error, not a panic; so is writing.
        assert!(readers
            .rows("SELECT ?, ?".into(), vec![text("x")], |r| r
                .get::<_, String>(0))
            .await
            .is_err());
        assert!(readers
            .read(|c| c.execute("DELETE FROM t", []))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_panic_or_a_caller_that_stops_waiting_loses_no_connection() {
        let (_dir, path) = database("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);");
        let readers = Readers::open(&path, 1).unwrap();
        let seven = || async {
            readers
                .rows("SELECT x FROM t".into(), vec![], |r| r.get::<_, i64>(0))
                .await
        };

        let panicked = readers.read(|_| -> rusqlite::Result<()> { panic!("boom") });
        assert!(panicked.await.is_err());
        assert_eq!(seven().await.unwrap(), [7]);

        // The caller gives up while the read runs; the read finishes and hands back the
        // connection by itself.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        {
            let read = readers.read(move |c| {
                let _ = started_tx.send(());
                let _ = go_rx.recv();
                c.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0))
            });
            tokio::pin!(read);
            tokio::select! {
                _ = &mut read => panic!("the read cannot end before it is let go"),
                _ = started_rx => {}
            }
        }
        go_tx.send(()).unwrap();
        assert_eq!(seven().await.unwrap(), [7]);
    }

    #[tokio::test]
    #[should_panic(expected = "column order of Pair")]
    async fn a_column_list_that_does_not_match_the_fields_is_caught() {
        let (_dir, path) =
            database("CREATE TABLE t (name TEXT, number INTEGER); INSERT INTO t VALUES ('a', 1);");
        let c = Connection::open(&path).unwrap();
        let mut stmt = c.prepare("SELECT name, number AS n FROM t").unwrap();
        let _ = stmt.query_row([], Pair::from_lite);
    }
}
