//! Follows the change log and pushes each committed change to the connected devices allowed
//! to see it, in log order: per conversation that is `seq` order. Message events are encoded
//! once and the same bytes go to every device; conversation events differ per member (unread
//! count, settings) and are encoded per member.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use engineioxide::Str;
use futures_util::StreamExt;

use super::protocol;
use crate::app::AppState;
use crate::chats::model::ConversationView;
use crate::http::pagination::encode_cursor;
use crate::sync::kinds;
use crate::sync::store::{self, ChangeRow, Position};

const BATCH: i64 = 500;
/// Conversation views built at once for one pass.
const RELOADS_AT_ONCE: usize = 8;
/// How long a message's push may wait for its sender's ack (the ack normally follows the
/// commit within milliseconds).
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Runs until the task is dropped.
pub async fn run(state: AppState) {
    let mut cursor = loop {
        match store::current_position(&state.db).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!(error = %e, "real-time dispatcher: cannot read the change log yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        // Woken by commits on this node (which the other nodes hear of) and, in a cluster, by
        // other nodes' commits; the timeout picks up anything else (another process on the
        // same database, PostgreSQL's visibility horizon moving, Redis being away).
        let elsewhere = async {
            match &state.cluster {
                Some(c) => c.changes_elsewhere().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = state.db.changes_committed() => {
                if let Some(c) = &state.cluster {
                    c.changes_committed();
                }
            }
            _ = elsewhere => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        loop {
            let rows = match store::all_changes_after(&state.db, cursor, BATCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "real-time dispatcher: reading the change log failed");
                    break;
                }
            };
            let Some((last, _)) = rows.last() else { break };
            let next = last.position();
            if let Err(e) = deliver(&state, &rows).await {
                tracing::warn!(error = %e, "real-time dispatcher: building events failed");
            }
            for user in state.hub.take_went_offline() {
                if state.presence.device_gone(&user, true).await {
                    tokio::spawn(super::presence::announce(state.clone(), user, false));
                }
            }
            cursor = next;
            if (rows.len() as i64) < BATCH {
                break;
            }
        }
    }
}

#[derive(sqlx::FromRow)]
struct Recipient {
    conversation_id: String,
    user_id: String,
    joined_seq: i64,
    left_pos: Option<i64>,
    request_state: String,
}

crate::db::lite::lite_row!(Recipient {
    conversation_id,
    user_id,
    joined_seq,
    left_pos,
    request_state
});

/// A message event's data.
#[derive(serde::Serialize)]
struct MessageEvent<'a> {
    message: &'a crate::messages::model::MessageView,
    cursor: &'a str,
}

async fn deliver(
    state: &AppState,
    rows: &[(ChangeRow, Option<String>)],
) -> crate::error::AppResult<()> {
    let db = &state.db;
    let mut conversation_ids: Vec<&str> = rows
        .iter()
        .map(|(r, _)| r.conversation_id.as_str())
        .collect();
    conversation_ids.sort();
    conversation_ids.dedup();
    let mut params = Vec::new();
    let sql = format!(
        "SELECT conversation_id, user_id, joined_seq, left_pos, request_state FROM conversation_members \
         WHERE conversation_id IN ({})",
        db.slots().in_list(&conversation_ids, &mut params)
    );
    let mut members: HashMap<String, Vec<Recipient>> = HashMap::new();
    for r in db.rows_once(sql, params, Recipient::from_lite).await? {
        if state.hub.is_online(&r.user_id) {
            members
                .entry(r.conversation_id.clone())
                .or_default()
                .push(r);
        }
    }
    // Who gets each change: worked out once per change, used by every step below.
    let recipients = |row: &ChangeRow, only: &Option<String>| -> Vec<String> {
        members
            .get(&row.conversation_id)
            .map(|list| {
                list.iter()
                    .filter(|m| m.request_state != "declined")
                    .filter(|m| only.as_ref().is_none_or(|u| *u == m.user_id))
                    .filter(|m| m.left_pos.is_none_or(|p| row.pos <= p))
                    .filter(|m| {
                        !matches!(
                            row.kind.as_str(),
                            kinds::MESSAGE_NEW | kinds::MESSAGE_UPDATED
                        ) || row.seq.unwrap_or(0) > m.joined_seq
                    })
                    .map(|m| m.user_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let to_of: Vec<Vec<String>> = rows.iter().map(|(r, only)| recipients(r, only)).collect();

    // Messages with someone online to see them, viewed once.
    let wanted: HashSet<String> = rows
        .iter()
        .zip(&to_of)
        .filter(|(_, to)| !to.is_empty())
        .filter_map(|((r, _), _)| r.message_id.clone())
        .collect();
    let messages =
        crate::messages::store::find_many(db, &wanted.into_iter().collect::<Vec<_>>()).await?;
    let mut in_conversations: Vec<String> =
        messages.iter().map(|m| m.conversation_id.clone()).collect();
    in_conversations.sort();
    in_conversations.dedup();
    let floors = crate::messages::store::receipt_floors(db, &in_conversations).await?;
    let views: HashMap<String, crate::messages::model::MessageView> =
        crate::messages::service::build_views(db, messages, &floors)
            .await?
            .into_iter()
            .map(|v| (v.id.clone(), v))
            .collect();

    // Conversation changes: each member sees their own view (unread count, settings), several
    // queries apiece. Built together, a few at a time, before anything is sent: one after
    // another in the loop below they held back every later event of the pass (a pass with the
    // first messages of 200 conversations took ~190 ms).
    let mut reload: Vec<(String, String)> = rows
        .iter()
        .zip(&to_of)
        .filter(|((r, _), _)| r.kind == kinds::CONVERSATION_UPDATED)
        .flat_map(|((r, _), to)| to.iter().map(|u| (r.conversation_id.clone(), u.clone())))
        .collect();
    reload.sort();
    reload.dedup();
    let conversation_views: HashMap<(String, String), ConversationView> =
        futures_util::stream::iter(reload)
            .map(|(conversation_id, user)| async move {
                let view = conversation_view(db, &conversation_id, &user).await;
                view.map(|v| ((conversation_id, user), v))
            })
            .buffer_unordered(RELOADS_AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await;

    for ((row, _), to) in rows.iter().zip(to_of) {
        if to.is_empty() {
            continue;
        }
        let cursor = encode_cursor(&Position(row.txid, row.pos));
        match row.kind.as_str() {
            kinds::MESSAGE_NEW | kinds::MESSAGE_UPDATED => {
                let Some(view) = row.message_id.as_ref().and_then(|id| views.get(id)) else {
                    continue;
                };
                let origin = match (row.kind.as_str(), &view.sender.id, &view.client_msg_id) {
                    (kinds::MESSAGE_NEW, Some(sender), Some(cid)) => state
                        .hub
                        .origin(sender, cid)
                        .map(|o| (sender.clone(), cid.clone(), o)),
                    _ => None,
                };
                // The sending device hears first, through its ack; the others right after.
                let except = match origin {
                    Some((sender, cid, (sid, acked))) => {
                        acked.wait(ACK_WAIT).await;
                        state.hub.forget_origin(&sender, &cid);
                        Some(sid)
                    }
                    None => None,
                };
                let packet: Str = protocol::event(
                    &row.kind,
                    &MessageEvent {
                        message: view,
                        cursor: &cursor,
                    },
                )
                .into();
                fan_out(state, &to, &row.kind, &packet, except);
            }
            kinds::MESSAGE_STATUS => {
                let data = serde_json::json!({
                    "conversationId": row.conversation_id, "userId": row.actor_id, "status": row.status,
                    "upToSeq": row.seq, "at": crate::db::Timestamp(row.created_at), "cursor": cursor,
                });
                let packet: Str = protocol::event(kinds::MESSAGE_STATUS, &data).into();
                // The reader's own devices need no news of their own receipt.
                let others: Vec<String> = to
                    .into_iter()
                    .filter(|u| Some(u) != row.actor_id.as_ref())
                    .collect();
                fan_out(state, &others, kinds::MESSAGE_STATUS, &packet, None);
            }
            kinds::CONVERSATION_UPDATED => {
                for user in to {
                    // A removed member no longer sees the conversation (no view), which is right.
                    let key = (row.conversation_id.clone(), user);
                    let Some(view) = conversation_views.get(&key) else {
                        continue;
                    };
                    let packet: Str = protocol::event(
                        kinds::CONVERSATION_UPDATED,
                        &serde_json::json!({"conversation": view, "cursor": cursor}),
                    )
                    .into();
                    fan_out(
                        state,
                        std::slice::from_ref(&key.1),
                        kinds::CONVERSATION_UPDATED,
                        &packet,
                        None,
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn fan_out(
    state: &AppState,
    users: &[String],
    kind: &str,
    packet: &Str,
    except: Option<engineioxide::sid::Sid>,
) {
    let mut sent = 0;
    for u in users {
        sent += state.hub.send(u, packet, except);
    }
    let label = match kind {
        kinds::MESSAGE_NEW => kinds::MESSAGE_NEW,
        kinds::MESSAGE_UPDATED => kinds::MESSAGE_UPDATED,
        kinds::MESSAGE_STATUS => kinds::MESSAGE_STATUS,
        _ => kinds::CONVERSATION_UPDATED,
    };
    metrics::counter!("realtime_events_out_total", "event" => label).increment(sent as u64);
}

/// The conversation as `user` sees it now; `None` if they may no longer see it.
async fn conversation_view(
    db: &crate::db::Db,
    conversation_id: &str,
    user: &str,
) -> Option<ConversationView> {
    let workspace: String =
        sqlx::query_scalar("SELECT workspace_id FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .fetch_optional(db.reader())
            .await
            .ok()
            .flatten()?;
    let t = crate::db::Tenant::new(db, &workspace);
    crate::chats::service::reload(t, conversation_id, user)
        .await
        .ok()
}
