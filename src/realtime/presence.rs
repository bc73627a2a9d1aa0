//! Presence: a user is online while one of their devices is connected. When the first device
//! comes or the last one goes (then `lastSeenAt` is stored), a `presence` event goes to the
//! users who share an accepted conversation with them or have their number, unless a block
//! stands between them or their privacy setting says otherwise (`contacts`: only people in
//! their address book; `nobody`: no one).
//!
//! Device counting lives in the [`super::Hub`] of this node; cluster mode will count across
//! nodes behind the same two calls.

use serde_json::json;

use super::{events, protocol};
use crate::app::AppState;
use crate::db::{now_ms, Timestamp};
use crate::users::model::LastSeenPrivacy;

/// Who may learn of `user_id`'s presence, per their privacy and blocks.
async fn audience(state: &AppState, user_id: &str) -> crate::error::AppResult<Vec<String>> {
    let db = &state.db;
    let Some(user) = crate::users::store::find_by_id(db, user_id).await? else {
        return Ok(Vec::new());
    };
    let privacy = LastSeenPrivacy::from_db(&user.privacy_last_seen);
    if privacy == LastSeenPrivacy::Nobody {
        return Ok(Vec::new());
    }
    let mut people: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT other.user_id FROM conversation_members me \
         JOIN conversation_members other ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id \
         WHERE me.user_id = $1 AND me.left_at IS NULL AND other.left_at IS NULL \
         AND me.request_state = 'accepted' AND other.request_state = 'accepted' \
         UNION SELECT a.owner_id FROM address_book a WHERE a.phone = $2 AND a.owner_id <> $1",
    )
    .bind(user_id)
    .bind(user.phone.as_deref().unwrap_or(""))
    .fetch_all(db.reader())
    .await?;
    people.retain(|p| state.hub.is_online(p));
    let mut allowed = Vec::with_capacity(people.len());
    for p in people {
        if crate::users::store::blocked_either_way(db, user_id, &p).await? {
            continue;
        }
        if privacy == LastSeenPrivacy::Contacts {
            let their_phone = crate::users::store::find_by_id(db, &p)
                .await?
                .and_then(|u| u.phone);
            let known = match their_phone {
                Some(phone) => {
                    crate::users::store::has_in_address_book(db, user_id, &phone).await?
                }
                None => false,
            };
            if !known {
                continue;
            }
        }
        allowed.push(p);
    }
    Ok(allowed)
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
        if state.hub.is_online(&user_id) != online {
            return Ok(());
        }
        let packet: engineioxide::Str = protocol::event(
            events::PRESENCE,
            &json!({"userId": user_id, "online": online, "lastSeenAt": last_seen}),
        )
        .into();
        for p in audience(&state, &user_id).await? {
            state.hub.send(&p, &packet, None);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "announcing presence failed");
    }
}
