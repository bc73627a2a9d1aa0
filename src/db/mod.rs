//! The data-access layer: one [`Db`] over SQLite or PostgreSQL, migrations, ids and time.
//!
//! SQL is written once, in the dialect both engines share (`$1` parameters, `RETURNING`,
//! `ON CONFLICT`), and runs through sqlx's `Any` driver. Ids are TEXT (UUIDv7), times are
//! BIGINT milliseconds since the Unix epoch, flags are 0/1 integers: the types both engines map
//! the same way. Where the engines truly differ (full-text search, locking), a store function
//! branches on [`Db::backend`]; callers never see the dialect.
//!
//! SQLite gets one writer connection and a pool of readers. Every write goes through the
//! single writer, so writers queue instead of fighting over SQLite's lock: no "database is
//! locked", no deadlock between two deferred transactions upgrading to writers. Write
//! transactions are committed in groups, one fsync for all that queued meanwhile (`group.rs`).
//! Readers see committed data through WAL; the reads of many rows skip sqlx and use a few
//! SQLite connections directly (`lite.rs`), and so do the batched message sends, on a second
//! write connection that takes turns with sqlx's writer. PostgreSQL uses one pool for both.
//!
//! Tenant data (anything that belongs to a workspace) is reached only through [`Tenant`], which
//! carries the workspace id and can only be made from an authenticated scope; see `tenant.rs`.

mod group;
pub mod lite;
mod tenant;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use tenant::{default_membership, find_membership_by_ref, Role, Tenant};

/// A write transaction. It dereferences to the connection, so queries run on `&mut **tx`.
pub enum Tx {
    /// PostgreSQL: a transaction of its own (the server groups concurrent commits itself).
    Own(sqlx::Transaction<'static, sqlx::Any>),
    /// SQLite: a savepoint in the writer's shared batch (see `group.rs`).
    Grouped(group::GroupTx),
}

impl Tx {
    /// Commits; returns once the transaction is durable.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Own(tx) => tx.commit().await,
            Tx::Grouped(tx) => tx.commit().await,
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        match self {
            Tx::Own(tx) => tx,
            Tx::Grouped(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        match self {
            Tx::Own(tx) => tx,
            Tx::Grouped(tx) => tx,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    /// SQLite: group commit of write transactions.
    group: Option<std::sync::Arc<group::Group>>,
    /// SQLite: connections for the hot reads, used without sqlx (`lite.rs`).
    lite: Option<std::sync::Arc<lite::Readers>>,
    /// SQLite: the writer used without sqlx, for the batched sends (`lite.rs`).
    direct: Option<std::sync::Arc<lite::Writer>>,
    /// Woken after a commit that appended to the change log (the real-time dispatcher waits
    /// on it).
    changed: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes the job runner after a transaction that queued jobs committed.
    jobs: std::sync::Arc<tokio::sync::Notify>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Pragmas for every SQLite connection. `synchronous=FULL` makes a commit durable against power
/// loss before it returns (the meaning of "durable" in quality.md); WAL lets readers run
/// beside the writer.
///
/// The WAL is checkpointed at 64 MiB rather than SQLite's 4 MiB: with readers always active the
/// log rarely rewinds, so at 4 MiB nearly every group COMMIT ran a checkpoint and its fsync of
/// the database file (10 of a commit's 26 ms under P1 load); a larger log copies each hot page
/// once per checkpoint instead of once per commit (P1: +25–30% delivered). `journal_size_limit`
/// gives the space back after a checkpoint that rewinds the log.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
    PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY; \
    PRAGMA wal_autocheckpoint = 16384; PRAGMA journal_size_limit = 67108864;";

type BoxFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>;

fn sqlite_pragmas<'c>(
    conn: &'c mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(SQLITE_PRAGMAS).await?;
        Ok(())
    })
}

/// The SQLite database is readable by its owner only: a new file is created 0600 before SQLite
/// opens it (its `-wal` and `-shm` files take the database file's mode), and an existing one
/// and its companions are brought to 0600.
fn private_database_files(file: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating the database {}", file.display()))
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        let path = std::path::PathBuf::from(path);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", path.display()))?;
        }
    }
    Ok(())
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .context("parsing the SQLite URL")?
                .get_filename()
                .to_owned();
            if file.to_str() != Some(":memory:") {
                private_database_files(&file)?;
            }
            let opts = AnyConnectOptions::from_str(&url)
                .context("parsing the SQLite URL")?
                .log_statements(tracing::log::LevelFilter::Trace);
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(sqlite_pragmas)
                .connect_with(opts.clone())
                .await
                .context("opening the SQLite database")?;
            let read = AnyPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(sqlite_pragmas)
                .connect_with(opts)
                .await
                .context("opening the SQLite database")?;
            let (lite, direct) = match file.to_str() {
                Some(":memory:") => (None, None),
                _ => (
                    Some(std::sync::Arc::new(
                        lite::Readers::open(&file, max_connections as usize)
                            .context("opening the SQLite database for reading")?,
                    )),
                    Some(std::sync::Arc::new(
                        lite::Writer::open(&file)
                            .context("opening the SQLite database for writing")?,
                    )),
                ),
            };
            Ok(Db {
                backend: Backend::Sqlite,
                read,
                lite,
                direct,
                group: Some(group::Group::start(write.clone())),
                write,
                changed: Default::default(),
                jobs: Default::default(),
            })
        } else {
            let opts = AnyConnectOptions::from_str(url)
                .context("parsing the PostgreSQL URL")?
                .log_statements(tracing::log::LevelFilter::Trace);
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Db {
                backend: Backend::Postgres,
                read: pool.clone(),
                write: pool,
                group: None,
                lite: None,
                direct: None,
                changed: Default::default(),
                jobs: Default::default(),
            })
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads (SQLite: many readers; PostgreSQL: the pool).
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The rows of a read: on SQLite through the direct readers (`lite.rs`), each row made by
    /// `from_lite`; on PostgreSQL through sqlx, each row by its `FromRow`. The same `params`
    /// bind to the statement's `$N` (or `?`) on both. Fixed SQL: the statement is prepared
    /// once per connection and kept.
    pub async fn rows<T>(
        &self,
        sql: String,
        params: Vec<lite::Value>,
        from_lite: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> crate::error::AppResult<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin + 'static,
    {
        self.read_rows(sql, params, from_lite, true).await
    }

    /// [`Db::rows`] for generated SQL (lists of varying length): prepared for this one use on
    /// PostgreSQL, so such statements do not crowd out the kept ones.
    pub async fn rows_once<T>(
        &self,
        sql: String,
        params: Vec<lite::Value>,
        from_lite: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> crate::error::AppResult<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin + 'static,
    {
        self.read_rows(sql, params, from_lite, false).await
    }

    async fn read_rows<T>(
        &self,
        sql: String,
        params: Vec<lite::Value>,
        from_lite: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        keep: bool,
    ) -> crate::error::AppResult<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin + 'static,
    {
        if let Some(lite) = &self.lite {
            return lite.rows(sql, params, from_lite).await;
        }
        let mut q = sqlx::query_as::<_, T>(&sql).persistent(keep);
        for p in params {
            q = match p {
                lite::Value::Null => q.bind(None::<String>),
                lite::Value::Integer(i) => q.bind(i),
                lite::Value::Real(f) => q.bind(f),
                lite::Value::Text(t) => q.bind(t),
                lite::Value::Blob(b) => q.bind(b),
            };
        }
        Ok(q.fetch_all(&self.read).await?)
    }

    /// SQLite: the direct readers, for a read that works with the connection itself (a sync
    /// page written as its rows are read). `None` on PostgreSQL.
    pub fn lite_readers(&self) -> Option<&lite::Readers> {
        self.lite.as_deref()
    }

    /// The pool for single-statement writes (SQLite: the one writer).
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// A write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match &self.group {
            Some(group) => Ok(Tx::Grouped(group.begin().await?)),
            None => Ok(Tx::Own(self.write.begin().await?)),
        }
    }

    /// Can write transactions run on SQLite directly ([`Db::write_direct`])? SQLite with a
    /// database file: yes; PostgreSQL and in-memory SQLite: no.
    pub fn writes_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Runs `f` in a write transaction on the SQLite connection used without sqlx, once the
    /// write transactions in progress are committed and while no other can start; returns when
    /// the commit is durable. For the hot batches, whose statements are kept prepared there
    /// (`lite::Writer`). Fails at once where [`Db::writes_direct`] is false.
    pub async fn write_direct<T, F>(&self, f: F) -> crate::error::AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> crate::error::AppResult<T> + Send + 'static,
    {
        let (Some(direct), Some(group)) = (&self.direct, &self.group) else {
            return Err(crate::error::AppError::internal(anyhow::anyhow!(
                "no direct SQLite writer"
            )));
        };
        direct.write(group.exclusive().await, f).await
    }

    /// Runs one statement in a write transaction of its own: on SQLite it joins the group
    /// commit (one fsync with the other writers of the moment) instead of committing alone on
    /// the writer connection.
    pub async fn write<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let mut tx = self.begin().await?;
        let done = q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Placeholders for a statement generated with a variable number of parameters.
    pub fn slots(&self) -> Slots {
        Slots {
            numbered: self.backend == Backend::Postgres,
            taken: 0,
        }
    }

    /// Waits until every write transaction committed before this call is durable (SQLite:
    /// joins the open batch, if any, and waits for its COMMIT).
    pub async fn settle_writes(&self) -> Result<(), sqlx::Error> {
        match &self.group {
            Some(_) => self.begin().await?.commit().await,
            None => Ok(()),
        }
    }

    /// Commits a transaction that appended to the change log, and wakes whoever follows it.
    pub async fn commit(&self, tx: Tx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.changes_appended();
        Ok(())
    }

    /// Call after a commit that appended to the change log by other means than
    /// [`Db::commit`] ([`Db::write_direct`]): wakes whoever follows it.
    pub fn changes_appended(&self) {
        self.changed.notify_one();
    }

    /// Call after committing a transaction that queued jobs: the runner looks at once instead
    /// of at its next poll.
    pub fn wake_jobs(&self) {
        self.jobs.notify_one();
    }

    /// Resolves after the next [`Db::wake_jobs`] (or at once if one happened since the last wait).
    pub async fn jobs_queued(&self) {
        self.jobs.notified().await;
    }

    /// Resolves after the next [`Db::commit`] (or at once if one happened since the last wait).
    pub async fn changes_committed(&self) {
        self.changed.notified().await;
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.write)
            .await
            .context("applying database migrations")
    }

    /// One cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(|_| ())
    }

    /// (connections open, idle) per pool, for metrics.
    pub fn pool_stats(&self) -> [(&'static str, u32, usize); 2] {
        [
            ("read", self.read.size(), self.read.num_idle()),
            ("write", self.write.size(), self.write.num_idle()),
        ]
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Placeholders of generated statements, in binding order: `?` on SQLite, where parameters
/// are matched by position (a `$N` costs a search through the statement's parameter names, so
/// a statement with thousands of them spends its time there), `$N` on PostgreSQL. Each value
/// is bound once per placeholder, in the order the placeholders were taken.
#[derive(Clone)]
pub struct Slots {
    numbered: bool,
    taken: usize,
}

impl Slots {
    pub fn take(&mut self) -> String {
        self.taken += 1;
        if self.numbered {
            format!("${}", self.taken)
        } else {
            "?".to_owned()
        }
    }

    /// Numbering starts again for the next statement.
    pub fn restart(&mut self) {
        self.taken = 0;
    }

    /// `p, p, …` with `n` placeholders (for `IN (…)`).
    pub fn list(&mut self, n: usize) -> String {
        let slots: Vec<String> = (0..n).map(|_| self.take()).collect();
        slots.join(", ")
    }

    /// The placeholders of an `IN (…)` list of `items`, whose values are appended to
    /// `params`. Longer lists are padded to a power of two by repeating the last item (the
    /// same set), so that lists of varying length share a few statement shapes, each prepared
    /// once per connection and kept: a sync page's message ids came in a different number
    /// every time, each a new statement of ~500 parameters to prepare (10% of a catch-up's
    /// CPU). An empty list is `NULL`, which matches nothing.
    pub fn in_list<S: AsRef<str>>(&mut self, items: &[S], params: &mut Vec<lite::Value>) -> String {
        let Some(last) = items.last() else {
            return "NULL".to_owned();
        };
        let n = if items.len() <= 8 {
            items.len()
        } else {
            items.len().next_power_of_two()
        };
        params.extend(items.iter().map(|s| lite::text(s.as_ref())));
        params.extend(std::iter::repeat_n(last, n - items.len()).map(|s| lite::text(s.as_ref())));
        self.list(n)
    }

    /// `(p, p, …)` with `n` placeholders.
    pub fn row(&mut self, n: usize) -> String {
        let slots: Vec<String> = (0..n).map(|_| self.take()).collect();
        format!("({})", slots.join(", "))
    }
}

/// Parameters of generated SQL, each bound where it is used (SQLite's `?` are positional, so
/// a value used twice is bound twice).
pub struct Binds {
    slots: Slots,
    pub params: Vec<lite::Value>,
}

impl Binds {
    pub fn new(db: &Db) -> Binds {
        Binds {
            slots: db.slots(),
            params: Vec::new(),
        }
    }
    pub fn bind(&mut self, v: lite::Value) -> String {
        self.params.push(v);
        self.slots.take()
    }
}

/// A new time-ordered id (UUIDv7, hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Is this a unique-constraint violation? Used to turn races into domain errors where the
/// query runs.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

/// An RFC 3339 UTC timestamp with milliseconds, stored as epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// [`Timestamp::rfc3339`] written over `text`'s digits, for the years 0 to 9999 (`None`
    /// for others). Every message view has one or more, and chrono's formatter with its
    /// `String` was ~6% of a catch-up's CPU.
    fn write_rfc3339(self, text: &mut [u8; 24]) -> Option<&str> {
        use chrono::{Datelike as _, Timelike as _};
        let t = chrono::DateTime::from_timestamp_millis(self.0)?;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let fields = [
            (0, 4, year),
            (5, 2, t.month()),
            (8, 2, t.day()),
            (11, 2, t.hour()),
            (14, 2, t.minute()),
            (17, 2, t.second()),
            (20, 3, t.timestamp_subsec_millis()),
        ];
        for (at, width, mut value) in fields {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        std::str::from_utf8(text).ok()
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = *b"0000-00-00T00:00:00.000Z";
        match self.write_rfc3339(&mut text) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&self.rfc3339()),
        }
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .examples([serde_json::json!("2026-01-31T12:00:00.000Z")])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_lists_are_padded_to_few_shapes_with_the_same_set() {
        let ids: Vec<String> = (0..11).map(|i| format!("id{i}")).collect();
        let mut slots = Slots {
            numbered: true,
            taken: 1,
        };
        let mut params = vec![lite::text("first")];
        let list = slots.in_list(&ids, &mut params);
        // 11 → 16 placeholders after the one already taken; the padding repeats the last id.
        assert_eq!(
            list,
            (2..=17)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(params.len(), 17);
        assert_eq!(params[1], lite::text("id0"));
        assert!(params[11..].iter().all(|p| *p == lite::text("id10")));
        // Short lists are exact, and an empty one matches nothing.
        let mut params = Vec::new();
        let mut slots = Slots {
            numbered: false,
            taken: 0,
        };
        assert_eq!(slots.in_list(&ids[..3], &mut params), "?, ?, ?");
        assert_eq!(slots.in_list::<String>(&[], &mut params), "NULL");
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(
            Timestamp(1_700_000_000_123).rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn a_timestamp_serializes_as_chrono_formats_it() {
        let mut samples = vec![
            0,
            -1,
            1_700_000_000_123,
            951_782_400_000,     // 2000-02-29
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            253_402_300_800_000, // year 10000: chrono's "+10000-…"
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // year −1
            i64::MAX,            // beyond chrono: its default
            i64::MIN,
        ];
        // And a spread across the years.
        samples.extend((0..2000).map(|i: i64| i * 126_230_400_123 - 62_167_219_200_000));
        for ms in samples {
            let t = Timestamp(ms);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.rfc3339()),
                "{ms}"
            );
        }
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = new_id();
        std::thread::sleep(Duration::from_millis(2));
        assert!(new_id() > a);
    }
}
