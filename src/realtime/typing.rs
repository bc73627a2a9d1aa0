//! Typing indicators: `typing:start` / `typing:stop` become `typing {conversationId, userId,
//! typing}` for the other members' devices. A start without a stop ends by itself after 6 s
//! (the server sends `typing: false`); a device going away stops its user's typing. Not shared
//! in a pending message request, nor across a block.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::{protocol, Session};
use crate::app::AppState;
use crate::conversations::model::{Kind, RequestState};
use crate::error::AppResult;
use crate::events;

const EXPIRY: Duration = Duration::from_secs(6);

/// The users to tell of `session`'s typing in a conversation; `None` while typing may not be
/// shared there (a pending or declined request).
async fn audience(
    state: &AppState,
    session: &Session,
    conversation_id: &str,
) -> AppResult<Option<Vec<String>>> {
    let t = crate::db::Tenant::new(&state.db, &session.workspace_id);
    let access =
        crate::conversations::access::access(t, conversation_id, &session.user_id, false).await?;
    let members = crate::conversations::store::current_members(
        &state.db,
        std::slice::from_ref(&access.conversation.id),
    )
    .await?;
    if members
        .iter()
        .any(|m| m.request_state() != RequestState::Accepted)
    {
        return Ok(None);
    }
    let mut to = Vec::with_capacity(members.len());
    for m in members.iter().filter(|m| m.user_id != session.user_id) {
        if access.conversation.kind() == Kind::Direct
            && crate::users::store::blocked_either_way(&state.db, &session.user_id, &m.user_id)
                .await?
        {
            continue;
        }
        to.push(m.user_id.clone());
    }
    Ok(Some(to))
}

fn emit(state: &AppState, session: &Session, conversation_id: &str, to: Vec<String>, typing: bool) {
    let packet: engineioxide::Str = protocol::event(
        events::TYPING,
        &json!({"conversationId": conversation_id, "userId": session.user_id, "typing": typing}),
    )
    .into();
    state.emit(to, packet);
}

/// Sends `typing` to the other members' devices, if typing may be shared there.
async fn tell(
    state: &AppState,
    session: &Session,
    conversation_id: &str,
    typing: bool,
) -> AppResult<()> {
    if let Some(to) = audience(state, session, conversation_id).await? {
        emit(state, session, conversation_id, to, typing);
    }
    Ok(())
}

/// A start is remembered only where typing is shared: one made while a request was pending
/// leaves nothing behind (no "repeat" to swallow after acceptance, no expiry to send).
pub async fn start(state: &AppState, session: &Session, conversation_id: &str) -> AppResult<()> {
    let key = (session.user_id.clone(), conversation_id.to_owned());
    let Some(to) = audience(state, session, conversation_id).await? else {
        active(state).remove(&key);
        return Ok(());
    };
    let generation = state
        .hub
        .typing
        .generation
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let was_typing = active(state).insert(key.clone(), generation).is_some();
    if !was_typing {
        emit(state, session, conversation_id, to, true);
    }
    let (state, session) = (state.clone(), session.clone());
    tokio::spawn(async move {
        tokio::time::sleep(EXPIRY).await;
        let expired = {
            let mut active = active(&state);
            if active.get(&key) == Some(&generation) {
                active.remove(&key);
                true
            } else {
                false
            }
        };
        if expired {
            let _ = tell(&state, &session, &key.1, false).await;
        }
    });
    Ok(())
}

fn active(state: &AppState) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
    state
        .hub
        .typing
        .active
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A stop is checked like a start (an outsider is told 404, typing or not).
pub async fn stop(state: &AppState, session: &Session, conversation_id: &str) -> AppResult<()> {
    let to = audience(state, session, conversation_id).await?;
    let key = (session.user_id.clone(), conversation_id.to_owned());
    let was_typing = active(state).remove(&key).is_some();
    if let (true, Some(to)) = (was_typing, to) {
        emit(state, session, conversation_id, to, false);
    }
    Ok(())
}

/// A device went away: its user stops typing everywhere, if it was their last device.
pub fn stop_all(state: &AppState, session: &Session) {
    if state.hub.is_online(&session.user_id) {
        return;
    }
    let conversations: Vec<String> = {
        active(state)
            .keys()
            .filter(|(u, _)| *u == session.user_id)
            .map(|(_, c)| c.clone())
            .collect()
    };
    for c in conversations {
        let (state, session) = (state.clone(), session.clone());
        tokio::spawn(async move {
            let _ = stop(&state, &session, &c).await;
        });
    }
}
