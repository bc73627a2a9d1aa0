//! The push follower: from the change log to pending notifications (see the module doc).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use super::{kinds, store};
use crate::changes::{self, kinds as change, Position};
use crate::db::{now_ms, Db};
use crate::error::AppResult;

const BATCH: i64 = 1000;
/// A notification waits this long for more messages of its burst: longer than the follower's
/// one-second look, so that a burst the follower reads in two looks is still one notification
/// (the second look finds it pending).
pub const COLLAPSE: Duration = Duration::from_secs(2);

/// Reads the change log from the stored cursor to its end, a batch at a time. `online_among`
/// answers which of some users have a device connected (on any node).
pub async fn catch_up<F, Fut>(db: &Db, online_among: F) -> AppResult<()>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    if !store::any(db).await? {
        // Nobody to notify: nothing to read. The first subscription sets the cursor to the
        // log's end (see `store::upsert`), so old messages do not come back then.
        return Ok(());
    }
    let mut cursor = match store::cursor(db).await? {
        Some((t, p)) => Position(t, p),
        // The first run starts from now: no notifications for the past.
        None => {
            let now = changes::current_position(db).await?;
            let mut tx = db.begin().await?;
            store::set_cursor(&mut tx, now.0, now.1).await?;
            tx.commit().await?;
            now
        }
    };
    let start = cursor;
    loop {
        let rows = changes::all_changes_after(db, cursor, BATCH).await?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        let next = last.position();
        let new: Vec<(String, String)> = rows
            .iter()
            .filter(|(r, only)| r.kind == change::MESSAGE_NEW && only.is_none())
            .filter_map(|(r, _)| Some((r.conversation_id.clone(), r.message_id.clone()?)))
            .collect();
        let due = notifications(db, &new, &online_among).await?;
        if !due.is_empty() {
            // What is queued and how far the log was read commit together. Not through
            // `Db::commit`: this appends nothing to the change log, so the dispatcher sleeps on.
            let mut tx = db.begin().await?;
            let run_at = now_ms() + COLLAPSE.as_millis() as i64;
            for (subscription, conversation) in &due {
                if store::mark_pending(&mut tx, subscription, conversation).await? {
                    let payload = format!("{subscription} {conversation}");
                    crate::jobs::enqueue_at(&mut tx, kinds::MESSAGE, &payload, run_at).await?;
                }
            }
            store::set_cursor(&mut tx, next.0, next.1).await?;
            tx.commit().await?;
        }
        cursor = next;
        if (rows.len() as i64) < BATCH {
            break;
        }
    }
    // A stretch with nothing to queue moves the cursor once, at the end: after a crash the
    // follower reads that stretch again and queues nothing twice that is still pending.
    if cursor != start {
        let mut tx = db.begin().await?;
        store::set_cursor(&mut tx, cursor.0, cursor.1).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// (subscription, conversation) pairs to notify of these new messages: every current member
/// but the sender (of an assigned inbox conversation: its assignee and customer only), with the
/// request accepted, the conversation not muted and no block between
/// them and the sender, who has a subscription and no device connected. Asked in that order,
/// so a log full of messages for people without subscriptions costs two queries a batch.
async fn notifications<F, Fut>(
    db: &Db,
    new: &[(String, String)],
    online_among: &F,
) -> AppResult<Vec<(String, String)>>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let mut by_conversation: HashMap<&str, Vec<&str>> = HashMap::new();
    for (c, m) in new {
        by_conversation.entry(c).or_default().push(m);
    }
    if by_conversation.is_empty() {
        return Ok(Vec::new());
    }
    let conversations: Vec<String> = by_conversation.keys().map(|c| c.to_string()).collect();
    let now = now_ms();
    let mut members = crate::conversations::store::current_members(db, &conversations).await?;
    members.retain(|m| m.request_state == "accepted" && m.muted_until.is_none_or(|t| t <= now));
    let mut users: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
    users.sort();
    users.dedup();
    let subscriptions = store::live_for_users(db, &users).await?;
    if subscriptions.is_empty() {
        return Ok(Vec::new());
    }
    // An assigned inbox conversation notifies its assignee (and the support customer), not
    // every agent; an unassigned one, all of them.
    let assigned = assignees(db, &conversations).await?;
    members.retain(|m| match assigned.get(&m.conversation_id) {
        Some((assignee, customer)) => {
            &m.user_id == assignee || customer.as_ref() == Some(&m.user_id)
        }
        None => true,
    });
    let mut subscribed: Vec<String> = subscriptions
        .iter()
        .map(|s| s.user_id.clone())
        .filter(|u| members.iter().any(|m| &m.user_id == u))
        .collect();
    subscribed.dedup();
    let online: HashSet<String> = online_among(subscribed.clone()).await.into_iter().collect();
    let away: HashSet<String> = subscribed
        .into_iter()
        .filter(|u| !online.contains(u))
        .collect();
    members.retain(|m| away.contains(&m.user_id));
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let message_ids: Vec<String> = members
        .iter()
        .flat_map(|m| {
            by_conversation[m.conversation_id.as_str()]
                .iter()
                .map(|id| id.to_string())
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let senders = senders(db, &message_ids).await?;
    let member_ids: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
    let sender_ids: Vec<String> = senders.values().flatten().cloned().collect();
    let blocked = blocks_between(db, &member_ids, &sender_ids).await?;
    let mut wanted: HashMap<&str, HashSet<&str>> = HashMap::new();
    for m in &members {
        // Someone else wrote in this batch, with no block between them.
        let told = by_conversation[m.conversation_id.as_str()]
            .iter()
            .any(|id| {
                senders.get(*id).is_some_and(|s| match s {
                    Some(s) => {
                        *s != m.user_id && !blocked.contains(&(m.user_id.clone(), s.clone()))
                    }
                    None => true,
                })
            });
        if told {
            wanted
                .entry(m.user_id.as_str())
                .or_default()
                .insert(m.conversation_id.as_str());
        }
    }
    let mut out = Vec::new();
    for s in &subscriptions {
        for conversation in wanted.get(s.user_id.as_str()).into_iter().flatten() {
            out.push((s.id.clone(), conversation.to_string()));
        }
    }
    Ok(out)
}

/// The assignee of each assigned inbox conversation among these, with its support customer.
async fn assignees(
    db: &Db,
    conversations: &[String],
) -> AppResult<HashMap<String, (String, Option<String>)>> {
    let mut params = Vec::new();
    let sql = format!(
        "SELECT id, assignee_id, CASE WHEN kind = 'support' THEN created_by END FROM conversations \
         WHERE id IN ({}) AND assignee_id IS NOT NULL AND kind IN ('channel', 'support')",
        db.slots().in_list(conversations, &mut params)
    );
    let rows: Vec<(String, String, Option<String>)> = db
        .rows_once(sql, params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .await?;
    Ok(rows.into_iter().map(|(c, a, u)| (c, (a, u))).collect())
}

async fn senders(db: &Db, message_ids: &[String]) -> AppResult<HashMap<String, Option<String>>> {
    if message_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT id, sender_id FROM messages WHERE id IN ({})",
        db.slots().in_list(message_ids, &mut params)
    );
    let rows: Vec<(String, Option<String>)> = db
        .rows_once(sql, params, |r| Ok((r.get(0)?, r.get(1)?)))
        .await?;
    Ok(rows.into_iter().collect())
}

/// (member, sender) pairs with a block between them, either way.
async fn blocks_between(
    db: &Db,
    members: &[String],
    senders: &[String],
) -> AppResult<HashSet<(String, String)>> {
    let mut out = HashSet::new();
    if members.is_empty() || senders.is_empty() {
        return Ok(out);
    }
    let mut senders = senders.to_vec();
    senders.sort();
    senders.dedup();
    let (mut params, mut slots) = (Vec::new(), db.slots());
    let sql = format!(
        "SELECT blocker_id, blocked_id FROM blocks WHERE (blocker_id IN ({}) AND blocked_id IN ({})) \
         OR (blocked_id IN ({}) AND blocker_id IN ({}))",
        slots.in_list(members, &mut params),
        slots.in_list(&senders, &mut params),
        slots.in_list(members, &mut params),
        slots.in_list(&senders, &mut params),
    );
    let rows: Vec<(String, String)> = db
        .rows_once(sql, params, |r| Ok((r.get(0)?, r.get(1)?)))
        .await?;
    for (blocker, blocked) in rows {
        out.insert((blocker.clone(), blocked.clone()));
        out.insert((blocked, blocker));
    }
    Ok(out)
}
