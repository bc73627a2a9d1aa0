//! The `presence` event: who may learn that a user came online or went offline (their
//! privacy, blocks, shared conversations, address books), and storing `lastSeenAt`.

use serde_json::json;

use super::protocol;
use crate::app::AppState;
use crate::db::{now_ms, Timestamp};
use crate::events;
use crate::users::model::LastSeenPrivacy;

/// Shutdown: every user connected here is going; the `lastSeenAt` of those with no device on
/// another node becomes now, in one write, before the database closes. No events: on one
/// node their peers' sockets are closing too; in a cluster the devices reconnect to another
/// node within seconds.
pub async fn stopping(state: &AppState, users: &[String]) {
    state.presence.stop();
    let gone;
    let users = match &state.cluster {
        Some(c) => {
            gone = c.deregister(users).await;
            &gone[..]
        }
        None => users,
    };
    let now = now_ms();
    for chunk in users.chunks(500) {
        let mut slots = state.db.slots();
        let sql = format!(
            "UPDATE users SET last_seen_at = {} WHERE id IN ({})",
            slots.take(),
            slots.list(chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in chunk {
            q = q.bind(id);
        }
        if let Err(e) = q.execute(state.db.writer()).await {
            tracing::warn!(error = %e, "storing lastSeenAt at shutdown failed");
        }
    }
}

/// Who may learn of `user_id`'s presence, per their privacy and blocks. A support
/// conversation carries its customer's presence to the agents, never an agent's to the
/// customer (who writes to a team, not to a person).
async fn audience(state: &AppState, user_id: &str) -> crate::error::AppResult<Vec<String>> {
    let db = &state.db;
    let Some(user) = crate::users::store::find_by_id(db, user_id).await? else {
        return Ok(Vec::new());
    };
    if LastSeenPrivacy::from_db(&user.privacy_last_seen) == LastSeenPrivacy::Nobody {
        return Ok(Vec::new());
    }
    let people: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT other.user_id FROM conversation_members me \
         JOIN conversation_members other ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id \
         JOIN conversations c ON c.id = me.conversation_id \
         WHERE me.user_id = $1 AND me.left_at IS NULL AND other.left_at IS NULL \
         AND me.request_state = 'accepted' AND other.request_state = 'accepted' \
         AND NOT (c.kind = 'support' AND c.created_by = other.user_id) \
         UNION SELECT a.owner_id FROM address_book a WHERE a.phone = $2 AND a.owner_id <> $1",
    )
    .bind(user_id)
    .bind(user.phone.as_deref().unwrap_or(""))
    .fetch_all(db.reader())
    .await?;
    // Only people online now can be told.
    let people = state.presence.online_among(&state.hub, people).await;
    let mut allowed = Vec::with_capacity(people.len());
    for p in people {
        if may_see(db, &user, &p).await? {
            allowed.push(p);
        }
    }
    Ok(allowed)
}

/// May `viewer` learn of `subject`'s presence: their privacy, and no block either way?
async fn may_see(
    db: &crate::db::Db,
    subject: &crate::users::model::UserRow,
    viewer: &str,
) -> crate::error::AppResult<bool> {
    let privacy = LastSeenPrivacy::from_db(&subject.privacy_last_seen);
    if privacy == LastSeenPrivacy::Nobody
        || crate::users::store::blocked_either_way(db, &subject.id, viewer).await?
    {
        return Ok(false);
    }
    if privacy == LastSeenPrivacy::Contacts {
        let phone = crate::users::store::find_by_id(db, viewer)
            .await?
            .and_then(|u| u.phone);
        return match phone {
            Some(phone) => crate::users::store::has_in_address_book(db, &subject.id, &phone).await,
            None => Ok(false),
        };
    }
    Ok(true)
}

/// A device that connects learns who of its people (those it shares an accepted conversation
/// with, and those in its address book) is online now, each as a `presence` event, as far as
/// their privacy and blocks allow; the changes follow as they happen.
pub async fn snapshot(state: AppState, session: super::hub::Session) {
    let result: crate::error::AppResult<()> = async {
        let db = &state.db;
        let people: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT other.user_id FROM conversation_members me \
             JOIN conversation_members other ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id \
             JOIN conversations c ON c.id = me.conversation_id \
             WHERE me.user_id = $1 AND me.left_at IS NULL AND other.left_at IS NULL \
             AND me.request_state = 'accepted' AND other.request_state = 'accepted' \
             AND NOT (c.kind = 'support' AND c.created_by = me.user_id) \
             UNION SELECT u.id FROM address_book a JOIN users u ON u.phone = a.phone \
             WHERE a.owner_id = $1 AND u.id <> $1",
        )
        .bind(&session.user_id)
        .fetch_all(db.reader())
        .await?;
        for p in state.presence.online_among(&state.hub, people).await {
            let Some(subject) = crate::users::store::find_by_id(db, &p).await? else {
                continue;
            };
            if may_see(db, &subject, &session.user_id).await? {
                let packet = protocol::event(
                    events::PRESENCE,
                    &json!({"userId": p, "online": true, "lastSeenAt": null}),
                );
                let only = crate::cluster::Devices::Only(session.session_id.clone());
                state.emit_to(&session.user_id, only, packet);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "presence snapshot for a device that connected");
    }
}

/// Announces that the user came online or went offline (storing `lastSeenAt` then).
pub async fn announce(state: AppState, user_id: String, online: bool) {
    let result: crate::error::AppResult<()> = async {
        let last_seen = if online {
            None
        } else {
            let now = now_ms();
            sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
                .bind(&user_id)
                .bind(now)
                .execute(state.db.writer())
                .await?;
            Some(Timestamp(now))
        };
        // Still the same state (a device may have come back meanwhile)?
        if state.presence.is_online(&state.hub, &user_id).await != online {
            return Ok(());
        }
        let packet: crate::engineio::Str = protocol::event(
            events::PRESENCE,
            &json!({"userId": user_id, "online": online, "lastSeenAt": last_seen}),
        );
        state.emit(audience(&state, &user_id).await?, packet);
        Ok(())
    }
    .await;
    match result {
        Err(e) if state.presence.is_stopping() => {
            tracing::debug!(error = %e, "presence not announced: shutting down");
        }
        Err(e) => tracing::warn!(error = %e, "announcing presence failed"),
        Ok(()) => {}
    }
}
