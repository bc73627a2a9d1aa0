//! The queries analytics reads: the facts `conversations::facts` keeps. Counts are summed by
//! the database per slice of the range (the report's local days, passed as their first
//! instants) and per channel or agent, each slice one range of an index; only durations come
//! back row by row, for exact medians.

use crate::db::{Backend, Tenant};
use crate::error::AppResult;

/// What a report splits its counts by, besides the slices of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Nothing,
    Channel,
    Agent,
}

impl By {
    /// The column of events this splits by (`''`: none; PostgreSQL refuses to group by a
    /// text constant, so [`By::group`] leaves it out).
    fn events(self) -> &'static str {
        match self {
            By::Nothing => "''",
            By::Channel => "COALESCE(e.channel_id, '')",
            By::Agent => "COALESCE(e.agent_id, '')",
        }
    }

    fn group(self, column: &str) -> String {
        match self {
            By::Nothing => String::new(),
            _ => format!(", {column}"),
        }
    }
}

/// `WITH d (i, a, b)`: slice `i` is `[bounds[i], bounds[i + 1])`, its bounds `$2`….
fn slices(bounds: &[i64]) -> String {
    let rows: Vec<String> = (0..bounds.len().saturating_sub(1))
        .map(|i| format!("({i}, ${}, ${})", i + 2, i + 3))
        .collect();
    format!("WITH d (i, a, b) AS (VALUES {})", rows.join(", "))
}

fn bind_all<'q>(
    mut q: sqlx::query::QueryAs<'q, sqlx::Any, Count, sqlx::any::AnyArguments<'q>>,
    workspace: &'q str,
    bounds: &'q [i64],
) -> sqlx::query::QueryAs<'q, sqlx::Any, Count, sqlx::any::AnyArguments<'q>> {
    q = q.bind(workspace);
    for b in bounds {
        q = q.bind(*b);
    }
    q
}

/// A count of a slice: events of a kind, or messages of a direction, by channel or agent.
#[derive(Debug, sqlx::FromRow)]
pub struct Count {
    pub slice: i64,
    pub kind: String,
    pub key: String,
    pub n: i64,
}

/// The kinds of events that are counted.
const COUNTED: [&str; 4] = ["opened", "reopened", "closed", "assigned"];

/// Openings, reopenings, closings and assignments per slice (and `by`). Per slice alone, each
/// count is its own index range (no sort); split by channel or agent, one grouped scan.
pub async fn events(t: Tenant<'_>, bounds: &[i64], by: By) -> AppResult<Vec<Count>> {
    let sql = if by == By::Nothing {
        let counts: Vec<String> = COUNTED
            .iter()
            .map(|kind| {
                format!(
                    "SELECT CAST(d.i AS BIGINT) AS slice, '{kind}' AS kind, '' AS key, \
                     (SELECT CAST(COUNT(*) AS BIGINT) FROM inbox_events e WHERE e.workspace_id = $1 \
                     AND e.kind = '{kind}' AND e.first = 0 AND e.at >= d.a AND e.at < d.b) AS n FROM d"
                )
            })
            .collect();
        format!("{} {}", slices(bounds), counts.join(" UNION ALL "))
    } else {
        format!(
            "{} SELECT CAST(d.i AS BIGINT) AS slice, e.kind AS kind, {} AS key, CAST(COUNT(*) AS BIGINT) AS n \
             FROM d JOIN inbox_events e ON e.workspace_id = $1 \
             AND e.kind IN ('opened', 'reopened', 'closed', 'assigned') AND e.first = 0 \
             AND e.at >= d.a AND e.at < d.b GROUP BY d.i, e.kind{}",
            slices(bounds),
            by.events(),
            by.group(by.events())
        )
    };
    let q = bind_all(sqlx::query_as(&sql), t.workspace_id(), bounds);
    Ok(q.fetch_all(t.db().reader()).await?)
}

/// Messages per slice and direction (`kind`: `in` or `out`), each sum its own index range;
/// split by channel, one grouped scan; by agent, the agents' messages (`kind`: `out`).
pub async fn traffic(t: Tenant<'_>, bounds: &[i64], by: By) -> AppResult<Vec<Count>> {
    let sql = match by {
        By::Nothing => {
            let sums: Vec<String> = ["in", "out"]
                .iter()
                .map(|direction| {
                    format!(
                        "SELECT CAST(d.i AS BIGINT) AS slice, '{direction}' AS kind, '' AS key, \
                         (SELECT CAST(COALESCE(SUM(t.messages), 0) AS BIGINT) FROM inbox_traffic t \
                         WHERE t.workspace_id = $1 AND t.bucket >= d.a AND t.bucket < d.b \
                         AND t.direction = '{direction}') AS n FROM d"
                    )
                })
                .collect();
            format!("{} {}", slices(bounds), sums.join(" UNION ALL "))
        }
        By::Channel => format!(
            "{} SELECT CAST(d.i AS BIGINT) AS slice, t.direction AS kind, t.channel_id AS key, \
             CAST(SUM(t.messages) AS BIGINT) AS n \
             FROM d JOIN inbox_traffic t ON t.workspace_id = $1 AND t.bucket >= d.a AND t.bucket < d.b \
             GROUP BY d.i, t.direction, t.channel_id",
            slices(bounds)
        ),
        By::Agent => format!(
            "{} SELECT CAST(d.i AS BIGINT) AS slice, 'out' AS kind, r.agent_id AS key, \
             CAST(SUM(r.messages) AS BIGINT) AS n \
             FROM d JOIN inbox_replies r ON r.workspace_id = $1 AND r.bucket >= d.a AND r.bucket < d.b \
             GROUP BY d.i, r.agent_id",
            slices(bounds)
        ),
    };
    let q = bind_all(sqlx::query_as(&sql), t.workspace_id(), bounds);
    Ok(q.fetch_all(t.db().reader()).await?)
}

/// A duration's fact: a closing (`since`: its opening) or an answer (`since`: the wait's start).
#[derive(Debug)]
pub struct Took {
    pub kind: String,
    pub first: i64,
    pub channel_id: Option<String>,
    pub agent_id: Option<String>,
    pub at: i64,
    pub since: i64,
}

/// Durations as the database packs them: one row per kind, first flag, channel and agent,
/// with its `since:at` pairs joined by commas.
#[derive(sqlx::FromRow)]
struct Packed {
    kind: String,
    first: i64,
    channel_id: Option<String>,
    agent_id: Option<String>,
    pairs: Option<String>,
}

/// Closings and first answers in `[from, to)`; with `every_answer`, every answer.
///
/// The database packs each group's pairs into one string: sqlx's SQLite driver hands every
/// row from its worker thread over a channel, a few µs a row, and packing took the 30-day
/// overview on a million messages (40,000 durations) from 250 ms to 182 ms (BENCHMARKS.md).
pub async fn durations(
    t: Tenant<'_>,
    (from, to): (i64, i64),
    every_answer: bool,
    by: By,
) -> AppResult<Vec<Took>> {
    let answers = if every_answer {
        " AND first IN (0, 1)"
    } else {
        " AND first = 1"
    };
    let pairs = match t.db().backend() {
        Backend::Sqlite => "group_concat(since || ':' || at, ',')",
        Backend::Postgres => "string_agg(CAST(since AS TEXT) || ':' || CAST(at AS TEXT), ',')",
    };
    // Grouped in the index's order (no sort) unless split by channel or agent.
    let (columns, group) = match by {
        By::Nothing => (
            "NULL AS channel_id, NULL AS agent_id",
            "GROUP BY kind, first",
        ),
        By::Channel => (
            "channel_id, NULL AS agent_id",
            "GROUP BY kind, first, channel_id",
        ),
        By::Agent => (
            "NULL AS channel_id, agent_id",
            "GROUP BY kind, first, agent_id",
        ),
    };
    let select = format!(
        "SELECT kind, first, {columns}, {pairs} AS pairs FROM inbox_events \
         WHERE workspace_id = $1 AND at >= $2 AND at < $3 AND since IS NOT NULL"
    );
    let sql = format!(
        "{select} AND kind = 'closed' AND first = 0 {group} \
         UNION ALL {select} AND kind = 'response'{answers} {group}"
    );
    let packed: Vec<Packed> = sqlx::query_as(&sql)
        .bind(t.workspace_id())
        .bind(from)
        .bind(to)
        .fetch_all(t.db().reader())
        .await?;
    let mut took = Vec::new();
    for p in packed {
        for pair in p.pairs.as_deref().unwrap_or_default().split(',') {
            let Some((since, at)) = pair.split_once(':') else {
                continue;
            };
            let (Ok(since), Ok(at)) = (since.parse::<i64>(), at.parse::<i64>()) else {
                continue;
            };
            took.push(Took {
                kind: p.kind.clone(),
                first: p.first,
                channel_id: p.channel_id.clone(),
                agent_id: p.agent_id.clone(),
                at,
                // A customer's message carries WhatsApp's clock, an answer the server's: a
                // wait never counts as less than nothing.
                since: since.min(at),
            });
        }
    }
    Ok(took)
}

/// The workspace's owners, admins and agents: id, name, role.
pub async fn agents(t: Tenant<'_>) -> AppResult<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.workspace_id = $1 AND m.role IN ('owner', 'admin', 'agent') ORDER BY u.display_name, m.user_id",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

/// The workspace's channels: id and name.
pub async fn channels(t: Tenant<'_>) -> AppResult<Vec<(String, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT id, name FROM channels WHERE workspace_id = $1 ORDER BY created_at, id",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

/// The campaigns that started in `[from, to)`, the first 200: id, name, status, start.
pub async fn campaigns(
    t: Tenant<'_>,
    from: i64,
    to: i64,
) -> AppResult<Vec<(String, String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, name, status, started_at FROM campaigns \
         WHERE workspace_id = $1 AND started_at >= $2 AND started_at < $3 ORDER BY started_at, id LIMIT 200",
    )
    .bind(t.workspace_id())
    .bind(from)
    .bind(to)
    .fetch_all(t.db().reader())
    .await?)
}
