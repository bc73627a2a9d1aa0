//! Follows the change log and pushes each committed change to the connected devices allowed
//! to see it, in log order: per conversation that is `seq` order. Message events are encoded
//! once and the same bytes go to every device; conversation events differ per member (unread
//! count, settings) and are encoded per member.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::engineio::Str;
use futures_util::StreamExt;

use super::protocol;
use crate::app::AppState;
use crate::changes::kinds;
use crate::changes::{self, ChangeRow};
use crate::chats::model::ConversationView;
use crate::conversations::desk::TeamFace;
use crate::messages::model::MessageView;
use crate::sync::envelope;

const BATCH: i64 = 500;
/// Conversation views built at once for one pass.
const RELOADS_AT_ONCE: usize = 8;
/// How long a message's push may wait for its sender's ack (the ack normally follows the
/// commit within milliseconds).
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Runs until the task is dropped.
pub async fn run(state: AppState) {
    let mut cursor = loop {
        match changes::current_position(&state.db).await {
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
            let rows = match changes::all_changes_after(&state.db, cursor, BATCH).await {
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
                    tokio::spawn(super::announce::announce(state.clone(), user, false));
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
    /// 1: the customer of a support conversation.
    customer: i64,
}

crate::db::lite::lite_row!(Recipient {
    conversation_id,
    user_id,
    joined_seq,
    left_pos,
    request_state,
    customer
});

/// Pushes a pass of changes to the devices connected here: who gets each change is worked
/// out once, the views they name are built in batches, then the events go out in log order.
async fn deliver(
    state: &AppState,
    rows: &[(ChangeRow, Option<String>)],
) -> crate::error::AppResult<()> {
    let members = online_members(state, rows).await?;
    let to_of: Vec<Vec<String>> = rows
        .iter()
        .map(|(r, only)| recipients(&members, r, only))
        .collect();
    let messages = message_views(&state.db, rows, &to_of).await?;
    let conversations = conversation_views(&state.db, rows, &to_of).await;
    // Support conversations whose customer is here: where the desk hides its agents, the
    // customer gets events of their own (the team as one party).
    let with_customers: Vec<String> = members
        .iter()
        .filter(|(_, ms)| ms.iter().any(|m| m.customer != 0))
        .map(|(id, _)| id.clone())
        .collect();
    let faces = crate::conversations::store::team_faces(&state.db, &with_customers).await?;
    let views = Views {
        messages,
        conversations,
        faces,
    };
    for ((row, _), to) in rows.iter().zip(to_of) {
        if !to.is_empty() {
            push(state, row, to, &views).await;
        }
    }
    Ok(())
}

/// The members of the pass's conversations who have a device connected here.
async fn online_members(
    state: &AppState,
    rows: &[(ChangeRow, Option<String>)],
) -> crate::error::AppResult<HashMap<String, Vec<Recipient>>> {
    let db = &state.db;
    let mut conversation_ids: Vec<&str> = rows
        .iter()
        .map(|(r, _)| r.conversation_id.as_str())
        .collect();
    conversation_ids.sort();
    conversation_ids.dedup();
    let mut params = Vec::new();
    let sql = format!(
        "SELECT m.conversation_id, m.user_id, m.joined_seq, m.left_pos, m.request_state, \
         CASE WHEN c.kind = 'support' AND c.created_by = m.user_id THEN 1 ELSE 0 END AS customer \
         FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.conversation_id IN ({})",
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
    Ok(members)
}

/// Who gets a change: members who may see it (not declined, there when it happened, and for a
/// message, joined before it), or only the member it is for.
fn recipients(
    members: &HashMap<String, Vec<Recipient>>,
    row: &ChangeRow,
    only: &Option<String>,
) -> Vec<String> {
    let Some(list) = members.get(&row.conversation_id) else {
        return Vec::new();
    };
    let is_message = matches!(
        row.kind.as_str(),
        kinds::MESSAGE_NEW | kinds::MESSAGE_UPDATED
    );
    list.iter()
        .filter(|m| m.request_state != "declined")
        .filter(|m| only.as_ref().is_none_or(|u| *u == m.user_id))
        .filter(|m| m.left_pos.is_none_or(|p| row.pos <= p))
        .filter(|m| !is_message || row.seq.unwrap_or(0) > m.joined_seq)
        .map(|m| m.user_id.clone())
        .collect()
}

/// The messages with someone here to see them, viewed once each.
async fn message_views(
    db: &crate::db::Db,
    rows: &[(ChangeRow, Option<String>)],
    to_of: &[Vec<String>],
) -> crate::error::AppResult<HashMap<String, Arc<MessageView>>> {
    let wanted: HashSet<String> = rows
        .iter()
        .zip(to_of)
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
    Ok(crate::messages::views::build_views(db, messages, &floors)
        .await?
        .into_iter()
        .map(|v| (v.id.clone(), Arc::new(v)))
        .collect())
}

/// Conversation changes: each member sees their own view (unread count, settings), several
/// queries apiece. Built together, a few at a time, before anything is sent: one after
/// another while pushing they held back every later event of the pass (a pass with the first
/// messages of 200 conversations took ~190 ms).
async fn conversation_views(
    db: &crate::db::Db,
    rows: &[(ChangeRow, Option<String>)],
    to_of: &[Vec<String>],
) -> HashMap<(String, String), Arc<ConversationView>> {
    let mut reload: Vec<(String, String)> = rows
        .iter()
        .zip(to_of)
        .filter(|((r, _), _)| r.kind == kinds::CONVERSATION_UPDATED)
        .flat_map(|((r, _), to)| to.iter().map(|u| (r.conversation_id.clone(), u.clone())))
        .collect();
    reload.sort();
    reload.dedup();
    futures_util::stream::iter(reload)
        .map(|(conversation_id, user)| async move {
            let view = conversation_view(db, &conversation_id, &user).await;
            view.map(|v| ((conversation_id, user), Arc::new(v)))
        })
        .buffer_unordered(RELOADS_AT_ONCE)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// What a pass's events are built from.
struct Views {
    messages: HashMap<String, Arc<MessageView>>,
    conversations: HashMap<(String, String), Arc<ConversationView>>,
    /// The team's face, for support conversations whose customer is here and whose desk
    /// hides its agents.
    faces: HashMap<String, TeamFace>,
}

/// Sends one change's event to `to`, encoded once (a conversation's once per member, and a
/// message's or receipt's once more for a customer who sees the team as one party).
async fn push(state: &AppState, row: &ChangeRow, to: Vec<String>, views: &Views) {
    let cursor = envelope::cursor_after(row);
    match row.kind.as_str() {
        kinds::MESSAGE_NEW | kinds::MESSAGE_UPDATED => {
            let Some(view) = row
                .message_id
                .as_ref()
                .and_then(|id| views.messages.get(id))
            else {
                return;
            };
            let except = after_the_senders_ack(state, &row.kind, view).await;
            let Some(data) = envelope::data(row, &cursor, Some(view), None) else {
                return;
            };
            fan_out_as_seen(state, row, &to, &data, except, views);
        }
        kinds::MESSAGE_STATUS => {
            let Some(data) = envelope::data(row, &cursor, None, None) else {
                return;
            };
            // The reader's own devices need no news of their own receipt.
            let others: Vec<String> = to
                .into_iter()
                .filter(|u| Some(u) != row.actor_id.as_ref())
                .collect();
            fan_out_as_seen(state, row, &others, &data, None, views);
        }
        kinds::CONVERSATION_UPDATED => {
            for user in to {
                // A removed member no longer sees the conversation (no view), which is right.
                let key = (row.conversation_id.clone(), user);
                let Some(view) = views.conversations.get(&key) else {
                    continue;
                };
                let Some(data) = envelope::data(row, &cursor, None, Some(view)) else {
                    continue;
                };
                let packet: Str = protocol::event(kinds::CONVERSATION_UPDATED, &data);
                let kind = kinds::CONVERSATION_UPDATED;
                fan_out(state, std::slice::from_ref(&key.1), kind, &packet, None);
            }
        }
        _ => {}
    }
}

/// Sends `data` to `to`, encoded once, and to the customer among them who sees the team as
/// one party, encoded as they see it.
fn fan_out_as_seen(
    state: &AppState,
    row: &ChangeRow,
    to: &[String],
    data: &envelope::EventData,
    except: Option<crate::engineio::Sid>,
    views: &Views,
) {
    let face = views
        .faces
        .get(&row.conversation_id)
        .filter(|f| to.contains(&f.customer));
    let Some(face) = face else {
        let packet: Str = protocol::event(&row.kind, data);
        fan_out(state, to, &row.kind, &packet, except);
        return;
    };
    let team: Vec<String> = to.iter().filter(|u| face.hides(u)).cloned().collect();
    let packet: Str = protocol::event(&row.kind, data);
    fan_out(state, &team, &row.kind, &packet, except);
    let packet: Str = protocol::event(&row.kind, &data.disguised(face));
    fan_out(
        state,
        std::slice::from_ref(&face.customer),
        &row.kind,
        &packet,
        except,
    );
}

/// The sending device hears of a new message first, through its ack; the others right
/// after. Waits for that ack (a bounded time) and names the device to leave out.
async fn after_the_senders_ack(
    state: &AppState,
    kind: &str,
    view: &MessageView,
) -> Option<crate::engineio::Sid> {
    if kind != kinds::MESSAGE_NEW {
        return None;
    }
    let (Some(sender), Some(cid)) = (&view.sender.id, &view.client_msg_id) else {
        return None;
    };
    let (sid, acked) = state.hub.origin(sender, cid)?;
    acked.wait(ACK_WAIT).await;
    state.hub.forget_origin(sender, cid);
    Some(sid)
}

fn fan_out(
    state: &AppState,
    users: &[String],
    kind: &str,
    packet: &Str,
    except: Option<crate::engineio::Sid>,
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
