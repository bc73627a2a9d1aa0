//! The facts the inbox's analytics read, written in the transaction of the change they
//! record, so that they hold exactly what the data holds: a rolled-back change leaves no fact,
//! a committed one its fact. `inbox_events` keeps one row per opening, reopening, closing,
//! assignment and answered wait; `inbox_traffic` the messages per quarter hour, channel and
//! direction, `inbox_replies` the agents' per quarter hour and agent (a message is counted by
//! the statement that writes it, and messages are never taken back: deleting one for everyone
//! keeps its row). Read by `analytics`.

use crate::db::Tx;
use crate::error::AppResult;

/// The length of a traffic bucket: every timezone's day is a whole number of them.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// What the facts need of a conversation.
#[derive(sqlx::FromRow)]
struct Facts {
    workspace_id: String,
    channel_id: Option<String>,
    assignee_id: Option<String>,
    opened_at: Option<i64>,
    waiting_since: Option<i64>,
    answered: i64,
}

async fn facts(tx: &mut Tx, id: &str) -> AppResult<Option<Facts>> {
    Ok(sqlx::query_as(
        "SELECT workspace_id, channel_id, assignee_id, opened_at, waiting_since, answered \
         FROM conversations WHERE id = $1 AND kind IN ('channel', 'support')",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// One row of `inbox_events`.
struct Fact<'a> {
    kind: &'a str,
    agent_id: Option<&'a str>,
    at: i64,
    since: Option<i64>,
    first: bool,
}

async fn record(tx: &mut Tx, id: &str, c: &Facts, f: Fact<'_>) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO inbox_events (workspace_id, conversation_id, channel_id, kind, agent_id, at, since, first) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&c.workspace_id)
    .bind(id)
    .bind(&c.channel_id)
    .bind(f.kind)
    .bind(f.agent_id)
    .bind(f.at)
    .bind(f.since)
    .bind(i64::from(f.first))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An inbox conversation's status moved from `from` (`None`: it was just made) to `to` at
/// `at`. Out of closed (or new) into open or pending is an opening — `opened` the first time,
/// `reopened` after; into closed is a closing, counted from its opening and credited to the
/// assignee, and ends any wait (an answer after a reopening counts from the new message).
pub async fn status_moved(
    tx: &mut Tx,
    id: &str,
    from: Option<&str>,
    to: &str,
    at: i64,
) -> AppResult<()> {
    let closed_before = from.is_none_or(|s| s == "closed");
    let opening = closed_before && to != "closed";
    let closing = !closed_before && to == "closed";
    if !opening && !closing {
        return Ok(());
    }
    let Some(c) = facts(tx, id).await? else {
        return Ok(());
    };
    if opening {
        let kind = if c.opened_at.is_some() {
            "reopened"
        } else {
            "opened"
        };
        let fact = Fact {
            kind,
            agent_id: None,
            at,
            since: None,
            first: false,
        };
        record(tx, id, &c, fact).await?;
        sqlx::query("UPDATE conversations SET opened_at = $1, answered = 0 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    } else {
        let fact = Fact {
            kind: "closed",
            agent_id: c.assignee_id.as_deref(),
            at,
            since: c.opened_at,
            first: false,
        };
        record(tx, id, &c, fact).await?;
        sqlx::query("UPDATE conversations SET waiting_since = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The conversation was given to `agent` at `at`.
pub async fn assigned(tx: &mut Tx, id: &str, agent: &str, at: i64) -> AppResult<()> {
    let Some(c) = facts(tx, id).await? else {
        return Ok(());
    };
    let fact = Fact {
        kind: "assigned",
        agent_id: Some(agent),
        at,
        since: None,
        first: false,
    };
    record(tx, id, &c, fact).await
}

/// Who wrote messages in an inbox conversation.
#[derive(Debug, Clone, Copy)]
pub enum Writer<'a> {
    /// The customer (a WhatsApp lead or the support desk's customer): starts a wait.
    Customer,
    /// An agent: answers the wait, if any.
    Agent(&'a str),
    /// An automation's or a campaign's send, or the business's own from its WhatsApp app:
    /// answers nothing.
    Automated,
}

/// `count` messages written at `at` in conversation `id` (not an inbox one: nothing).
pub async fn wrote(
    tx: &mut Tx,
    id: &str,
    writer: Writer<'_>,
    at: i64,
    count: i64,
) -> AppResult<()> {
    let Some(c) = facts(tx, id).await? else {
        return Ok(());
    };
    let direction = match writer {
        Writer::Customer => "in",
        Writer::Agent(_) | Writer::Automated => "out",
    };
    let bucket = at - at.rem_euclid(BUCKET_MS);
    sqlx::query(
        "INSERT INTO inbox_traffic (workspace_id, bucket, channel_id, direction, messages) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, bucket, channel_id, direction) \
         DO UPDATE SET messages = inbox_traffic.messages + excluded.messages",
    )
    .bind(&c.workspace_id)
    .bind(bucket)
    .bind(c.channel_id.as_deref().unwrap_or(""))
    .bind(direction)
    .bind(count)
    .execute(&mut **tx)
    .await?;
    if let Writer::Agent(agent) = writer {
        sqlx::query(
            "INSERT INTO inbox_replies (workspace_id, bucket, agent_id, messages) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id, bucket, agent_id) \
             DO UPDATE SET messages = inbox_replies.messages + excluded.messages",
        )
        .bind(&c.workspace_id)
        .bind(bucket)
        .bind(agent)
        .bind(count)
        .execute(&mut **tx)
        .await?;
    }
    match writer {
        Writer::Customer if c.waiting_since.is_none() => {
            sqlx::query("UPDATE conversations SET waiting_since = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        Writer::Agent(agent) if c.waiting_since.is_some() => {
            let fact = Fact {
                kind: "response",
                agent_id: Some(agent),
                at,
                since: c.waiting_since,
                first: c.answered == 0,
            };
            record(tx, id, &c, fact).await?;
            sqlx::query(
                "UPDATE conversations SET waiting_since = NULL, answered = 1 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
