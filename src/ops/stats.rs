//! `GET /api/v1/stats`: counts for a workspace's admins.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::db::{Backend, Tenant};
use crate::error::{AppError, AppResult};
use crate::http::Query;
use crate::http::{Json, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_stats))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Members of the workspace.
    pub users: i64,
    /// Conversations by kind.
    pub conversations: std::collections::BTreeMap<String, i64>,
    /// Messages by type (deleted ones included, as tombstones).
    pub messages_by_type: std::collections::BTreeMap<String, i64>,
    /// Messages per UTC day within the range, oldest first.
    pub messages_by_day: Vec<DayCount>,
    /// Per WhatsApp channel: its messages by provider status (`received` for the customers'),
    /// and per UTC day within the range, inbound and outbound.
    pub channels: Vec<ChannelStats>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStats {
    pub channel_id: String,
    pub phone_number_id: String,
    pub messages_by_status: std::collections::BTreeMap<String, i64>,
    pub messages_by_day: Vec<ChannelDay>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// From customers.
    pub inbound: i64,
    /// To customers.
    pub outbound: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub count: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// First day (`YYYY-MM-DD`, UTC); default 30 days before `to`.
    pub from: Option<String>,
    /// Last day (`YYYY-MM-DD`, UTC); default today.
    pub to: Option<String>,
}

fn day(
    raw: &Option<String>,
    field: &str,
    default: chrono::NaiveDate,
) -> AppResult<chrono::NaiveDate> {
    match raw {
        None => Ok(default),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| AppError::invalid_field(field, "must be a date, YYYY-MM-DD")),
    }
}

/// GET /api/v1/stats — users, conversations and messages of the workspace (owners and admins).
#[utoipa::path(get, path = "/stats", tag = "operations", security(("bearer" = [])), params(StatsQuery),
    responses((status = 200, body = Stats), (status = 403, body = crate::error::Problem)))]
async fn get_stats(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<StatsQuery>,
) -> AppResult<Json<Stats>> {
    scope.require_admin("may read its statistics")?;
    let to = day(&q.to, "to", chrono::Utc::now().date_naive())?;
    let from = day(&q.from, "from", to - chrono::Duration::days(30))?;
    if from > to || (to - from).num_days() > 366 {
        return Err(AppError::invalid_field(
            "from",
            "must be on or before `to`, at most a year earlier",
        ));
    }
    let start = from
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis();
    let end = (to + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis();
    Ok(Json(stats(scope.tenant(&state.db), start, end).await?))
}

async fn stats(t: Tenant<'_>, start: i64, end: i64) -> AppResult<Stats> {
    let db = t.db().reader();
    let ws = t.workspace_id();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE workspace_id = $1")
        .bind(ws)
        .fetch_one(db)
        .await?;
    let pairs =
        |rows: Vec<sqlx::any::AnyRow>| -> AppResult<std::collections::BTreeMap<String, i64>> {
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        };
    let conversations = pairs(
        sqlx::query(
            "SELECT kind, COUNT(*) FROM conversations WHERE workspace_id = $1 GROUP BY kind",
        )
        .bind(ws)
        .fetch_all(db)
        .await?,
    )?;
    let messages_by_type = pairs(
        sqlx::query("SELECT m.type, COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.workspace_id = $1 GROUP BY m.type")
            .bind(ws)
            .fetch_all(db)
            .await?,
    )?;
    let day_expr = match t.db().backend() {
        Backend::Sqlite => "strftime('%Y-%m-%d', m.created_at / 1000, 'unixepoch')",
        Backend::Postgres => {
            "to_char(to_timestamp(m.created_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    };
    let by_day = pairs(
        sqlx::query(&format!(
            "SELECT {day_expr} AS day, COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.workspace_id = $1 AND m.created_at >= $2 AND m.created_at < $3 GROUP BY day ORDER BY day"
        ))
        .bind(ws)
        .bind(start)
        .bind(end)
        .fetch_all(db)
        .await?,
    )?;
    let mut channels = Vec::new();
    let list: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, phone_number_id FROM channels WHERE workspace_id = $1 ORDER BY id",
    )
    .bind(ws)
    .fetch_all(db)
    .await?;
    for (channel_id, phone_number_id) in list {
        let messages_by_status = pairs(
            sqlx::query(
                "SELECT m.external_status, COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE c.channel_id = $1 AND m.external_status IS NOT NULL GROUP BY m.external_status",
            )
            .bind(&channel_id)
            .fetch_all(db)
            .await?,
        )?;
        let rows = sqlx::query(&format!(
            "SELECT {day_expr} AS day, \
               SUM(CASE WHEN m.sender_type = 'lead' THEN 1 ELSE 0 END), \
               SUM(CASE WHEN m.sender_type = 'lead' THEN 0 ELSE 1 END) \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.channel_id = $1 AND m.external_status IS NOT NULL AND m.created_at >= $2 AND m.created_at < $3 \
             GROUP BY day ORDER BY day"
        ))
        .bind(&channel_id)
        .bind(start)
        .bind(end)
        .fetch_all(db)
        .await?;
        let messages_by_day = rows
            .iter()
            .map(|r| {
                Ok(ChannelDay {
                    day: r.try_get(0)?,
                    inbound: r.try_get::<Option<i64>, _>(1)?.unwrap_or(0),
                    outbound: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        channels.push(ChannelStats {
            channel_id,
            phone_number_id,
            messages_by_status,
            messages_by_day,
        });
    }
    Ok(Stats {
        channels,
        users,
        conversations,
        messages_by_type,
        messages_by_day: by_day
            .into_iter()
            .map(|(day, count)| DayCount { day, count })
            .collect(),
    })
}
