//! Typing indicators: `typing:start` / `typing:stop` become `typing {conversationId, userId,
//! typing}` for the other members' devices. A start without a stop ends by itself after 6 s
//! (the server sends `typing: false`); a device going away stops its user's typing. Not shared
//! in a pending message request, nor across a block.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::{protocol, Session};
use crate::app::AppState;
use crate::conversations::desk::TeamFace;
use crate::conversations::model::{Kind, RequestState};
use crate::error::AppResult;
use crate::events;

const EXPIRY: Duration = Duration::from_secs(6);

/// Who to tell of someone's typing in a conversation.
struct Audience {
    to: Vec<String>,
    /// A support conversation whose desk hides its agents: its customer hears of the team
    /// typing, not of an agent.
    face: Option<TeamFace>,
}

/// The users to tell of `session`'s typing in a conversation; `None` while typing may not be
/// shared there (a pending or declined request).
async fn audience(
    state: &AppState,
    session: &Session,
    conversation_id: &str,
) -> AppResult<Option<Audience>> {
    let t = crate::db::Tenant::new(&state.db, &session.workspace_id);
    let access =
        crate::conversations::access::access(t, conversation_id, &session.user_id, false).await?;
    let c = &access.conversation;
    let members =
        crate::conversations::store::current_members(&state.db, std::slice::from_ref(&c.id))
            .await?;
    if members
        .iter()
        .any(|m| m.request_state() != RequestState::Accepted)
    {
        return Ok(None);
    }
    let mut to = Vec::with_capacity(members.len());
    for m in members.iter().filter(|m| m.user_id != session.user_id) {
        if c.kind() == Kind::Direct
            && crate::users::store::blocked_either_way(&state.db, &session.user_id, &m.user_id)
                .await?
        {
            continue;
        }
        to.push(m.user_id.clone());
    }
    let face = match c.kind() {
        Kind::Support => {
            let ids = std::slice::from_ref(&c.id);
            crate::conversations::store::team_faces(&state.db, ids)
                .await?
                .remove(&c.id)
        }
        _ => None,
    };
    Ok(Some(Audience { to, face }))
}

fn emit(state: &AppState, session: &Session, conversation_id: &str, a: Audience, typing: bool) {
    let event = |user_id: &str| -> crate::engineio::Str {
        protocol::event(
            events::TYPING,
            &json!({"conversationId": conversation_id, "userId": user_id, "typing": typing}),
        )
    };
    let me = session.user_id.as_str();
    match a.face.filter(|f| f.hides(me)) {
        Some(face) => {
            let (customer, team): (Vec<String>, Vec<String>) =
                a.to.into_iter().partition(|u| *u == face.customer);
            state.emit(team, event(me));
            state.emit(customer, event(&face.team));
        }
        None => state.emit(a.to, event(me)),
    }
}

/// Sends `typing` to the other members' devices, if typing may be shared there.
async fn tell(
    state: &AppState,
    session: &Session,
    conversation_id: &str,
    typing: bool,
) -> AppResult<()> {
    if let Some(a) = audience(state, session, conversation_id).await? {
        emit(state, session, conversation_id, a, typing);
    }
    Ok(())
}

/// A start is remembered only where typing is shared: one made while a request was pending
/// leaves nothing behind (no "repeat" to swallow after acceptance, no expiry to send).
pub async fn start(state: &AppState, session: &Session, conversation_id: &str) -> AppResult<()> {
    let key = (session.user_id.clone(), conversation_id.to_owned());
    let Some(a) = audience(state, session, conversation_id).await? else {
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
        emit(state, session, conversation_id, a, true);
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
    let a = audience(state, session, conversation_id).await?;
    let key = (session.user_id.clone(), conversation_id.to_owned());
    let was_typing = active(state).remove(&key).is_some();
    if let (true, Some(a)) = (was_typing, a) {
        emit(state, session, conversation_id, a, false);
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
