//! The `call:*` client events, and the signals of `calls::service` sent to devices. The ack
//! (`{ok: true, callId}` or `{ok: false, error}`) goes first, then the signals, so a caller
//! learns the call's id before any `call:ended` for it.

use serde::Deserialize;
use serde_json::{json, Value};

use super::handlers::{failure, payload};
use super::{protocol, Session};
use crate::app::AppState;
use crate::calls::model::{Media, Signal};
use crate::calls::service::{self, Answer, Device};
use crate::error::{AppError, AppResult};
use crate::events;
use crate::jobs::{Job, JobError, JobResult};

/// An SDP offer or answer is a few kilobytes; this leaves room for many tracks and codecs.
const MAX_SDP_BYTES: usize = 100_000;
/// An ICE candidate (RTCIceCandidateInit) is a line of text and two small fields.
const MAX_CANDIDATE_BYTES: usize = 4_096;

pub(super) fn is_call_event(name: &str) -> bool {
    matches!(
        name,
        events::CALL_INVITE
            | events::CALL_ACCEPT
            | events::CALL_ICE
            | events::CALL_REJECT
            | events::CALL_END
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invite {
    conversation_id: String,
    media: String,
    sdp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accept {
    call_id: String,
    sdp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ice {
    call_id: String,
    candidate: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallId {
    call_id: String,
}

fn sdp(raw: &str) -> AppResult<&str> {
    if raw.trim().is_empty() || raw.len() > MAX_SDP_BYTES {
        return Err(AppError::invalid_field(
            "sdp",
            format!("must be the SDP text, 1 to {MAX_SDP_BYTES} bytes"),
        ));
    }
    Ok(raw)
}

fn candidate(raw: Value) -> AppResult<Value> {
    let size = serde_json::to_vec(&raw).map_or(usize::MAX, |b| b.len());
    if !raw.is_object() || size > MAX_CANDIDATE_BYTES {
        return Err(AppError::invalid_field(
            "candidate",
            format!("must be an RTCIceCandidateInit object of at most {MAX_CANDIDATE_BYTES} bytes"),
        ));
    }
    Ok(raw)
}

/// One `call:*` event: its ack, and the signals to [`send`] once the ack is out.
pub(super) async fn handle(
    state: &AppState,
    session: &Session,
    name: &str,
    data: Value,
) -> (Value, Vec<Signal>) {
    let me = Device {
        user_id: &session.user_id,
        session_id: &session.session_id,
        workspace_id: &session.workspace_id,
        node: &state.node_id,
    };
    match answer(state, me, name, data).await {
        Ok(a) => (json!({"ok": true, "callId": a.call_id}), a.signals),
        Err(e) => (failure(&e), Vec::new()),
    }
}

async fn answer(state: &AppState, me: Device<'_>, name: &str, data: Value) -> AppResult<Answer> {
    let db = &state.db;
    match name {
        events::CALL_INVITE => {
            let p: Invite = payload(data)?;
            let media = Media::parse(&p.media).map_err(|m| AppError::invalid_field("media", m))?;
            let ring = state.config.calls.ring_timeout;
            let a = service::invite(db, me, &p.conversation_id, media, sdp(&p.sdp)?, ring).await?;
            if let Some(ring) = a.signals.iter().find(|s| s.event == events::CALL_INCOMING) {
                push_if_away(state, ring).await;
            }
            Ok(a)
        }
        events::CALL_ACCEPT => {
            let p: Accept = payload(data)?;
            service::accept(db, me, &p.call_id, sdp(&p.sdp)?).await
        }
        events::CALL_ICE => {
            let p: Ice = payload(data)?;
            service::ice(db, me, &p.call_id, candidate(p.candidate)?).await
        }
        _ => {
            let p: CallId = payload(data)?;
            service::hang_up(db, me, &p.call_id).await
        }
    }
}

/// An incoming call for a callee with no device connected goes out as a push notification
/// (without the SDP, which a device gets when it connects while the call rings).
async fn push_if_away(state: &AppState, ring: &Signal) {
    if state.presence.is_online(&state.hub, &ring.user_id).await {
        return;
    }
    let mut notification = ring.data.clone();
    if let Some(o) = notification.as_object_mut() {
        o.remove("sdp");
        o.insert("type".into(), "call".into());
    }
    if let Err(e) = crate::push::send::queue_call(&state.db, &ring.user_id, &notification).await {
        tracing::warn!(error = %e, "queuing the push of an incoming call");
    }
}

/// Sends each signal to the devices it names, on every node.
pub fn send(state: &AppState, signals: Vec<Signal>) {
    for s in signals {
        let packet = protocol::event(s.event, &s.data);
        state.emit_to(&s.user_id, s.devices, packet);
    }
}

/// The ring timeout's job: a call still ringing ends as missed.
pub async fn ring_timeout(state: AppState, job: std::sync::Arc<Job>) -> JobResult {
    let signals = service::ring_out(&state.db, &job.payload)
        .await
        .map_err(JobError::retry)?;
    send(&state, signals);
    Ok(())
}

/// A device connected: a call ringing for its user rings there too.
pub async fn ring_here(state: AppState, session: Session) {
    match service::ringing(&state.db, &session.user_id, &session.session_id).await {
        Ok(signals) => send(&state, signals),
        Err(e) => tracing::warn!(error = %e, "ringing a device that connected"),
    }
}

/// A device's last socket on this node closed: a call it was in ends.
pub async fn device_gone(state: AppState, session: Session) {
    match service::device_gone(&state.db, &session.user_id, &session.session_id).await {
        Ok(signals) => send(&state, signals),
        Err(e) => tracing::warn!(error = %e, "ending the call of a device that went away"),
    }
}

/// A node went away (reaped by this one, or this one stopping): the calls of its devices end.
pub async fn node_gone(state: AppState, node: String) {
    match service::node_gone(&state.db, &node).await {
        Ok(signals) => send(&state, signals),
        Err(e) => tracing::warn!(error = %e, node, "ending the calls of a node that went away"),
    }
}

/// At the start of a node that runs alone: calls answered before are over.
pub async fn ended_by_restart(state: &AppState) {
    match service::ended_by_restart(&state.db, &state.node_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            calls = n,
            "calls answered before this start ended as failed"
        ),
        Err(e) => tracing::warn!(error = %e, "ending the calls of the previous start"),
    }
}
