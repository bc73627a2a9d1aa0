//! The call's state machine. Each function checks who asks, makes one guarded move, and answers
//! with the signals to send (see the module doc for the states).
//!
//! Who gets what: `call:incoming` rings every device of the callee; `call:accepted` goes to
//! the caller's device that invited; `call:ice` to the other party's device in the call (every
//! ringing device of the callee before an answer); `call:ended` to the devices that took part
//! or rang — the caller's device, and the callee's answering device, or all of them while it
//! rang (none for `busy`: they never rang).

use std::time::Duration;

use serde_json::{json, Value};

use super::kinds;
use super::model::STATE_RINGING;
use super::model::{CallRow, Media, Outcome, Reason, Signal, STATE_ACTIVE, STATE_ENDED};
use super::store::{self, NewCall};
use crate::cluster::Devices;
use crate::conversations::model::{Kind, RequestState};
use crate::db::{new_id, now_ms, Db, Tenant};
use crate::error::{AppError, AppResult, Code};
use crate::events;

/// A device taking part in calls: who, signed in with which session, connected to which node.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub workspace_id: &'a str,
    pub node: &'a str,
}

/// What a call event answers: the call's id for the ack, and the signals to send.
#[derive(Debug)]
pub struct Answer {
    pub call_id: String,
    pub signals: Vec<Signal>,
}

fn not_allowed(why: &str) -> AppError {
    AppError::new(Code::CallNotAllowed, why)
}

fn over() -> AppError {
    AppError::new(Code::NotFound, "no such call, or it is over")
}

/// The callee of a call from `me` in this conversation: its other member, if a call may ring
/// them (a direct conversation, both accepted, no block).
async fn callee(t: Tenant<'_>, me: &str, conversation_id: &str) -> AppResult<String> {
    let access = crate::conversations::access::access(t, conversation_id, me, false).await?;
    if access.conversation.kind() != Kind::Direct {
        return Err(not_allowed(
            "calls are between the two members of a direct conversation",
        ));
    }
    let members = crate::conversations::store::current_members(
        t.db(),
        std::slice::from_ref(&access.conversation.id),
    )
    .await?;
    let other = members
        .iter()
        .find(|m| m.user_id != me)
        .ok_or_else(|| not_allowed("nobody else is in this conversation"))?;
    if members
        .iter()
        .any(|m| m.request_state() != RequestState::Accepted)
    {
        return Err(not_allowed(
            "a message request stands between you: it must be accepted before a call",
        ));
    }
    if crate::users::store::blocked_either_way(t.db(), me, &other.user_id).await? {
        return Err(not_allowed("a block stands between you"));
    }
    Ok(other.user_id.clone())
}

/// `call:invite`: rings every device of the other member, or ends at once as `busy` when
/// either of them is on another call. Rings for `ring` at most (a durable job ends it).
pub async fn invite(
    db: &Db,
    me: Device<'_>,
    conversation_id: &str,
    media: Media,
    sdp: &str,
    ring: Duration,
) -> AppResult<Answer> {
    let t = Tenant::new(db, me.workspace_id);
    let callee_id = callee(t, me.user_id, conversation_id).await?;
    let caller = crate::users::store::find_by_id(db, me.user_id)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    let id = new_id();
    let now = now_ms();
    let mut tx = db.begin().await?;
    store::insert(
        &mut tx,
        &NewCall {
            id: &id,
            workspace_id: me.workspace_id,
            conversation_id,
            caller_id: me.user_id,
            callee_id: &callee_id,
            media: media.as_str(),
            offer: sdp,
            caller_session: me.session_id,
            caller_node: me.node,
            started_at: now,
        },
    )
    .await?;
    let free = store::take_line(&mut tx, me.user_id, &id).await?
        && store::take_line(&mut tx, &callee_id, &id).await?;
    if !free {
        let ended = store::finish(&mut tx, &id, STATE_RINGING, Outcome::Busy, now)
            .await?
            .ok_or_else(over)?;
        record(&mut tx, &ended).await?;
        db.commit(tx).await?;
        return Ok(Answer {
            call_id: id,
            signals: ended_signals(&ended, Reason::Busy),
        });
    }
    let ring_until = now + ring.as_millis() as i64;
    crate::jobs::enqueue_at(&mut tx, kinds::RING_TIMEOUT, &id, ring_until).await?;
    db.commit(tx).await?;
    let incoming = incoming_payload(
        &id,
        conversation_id,
        &caller.id,
        &caller.display_name,
        media,
        sdp,
    );
    Ok(Answer {
        signals: vec![signal(
            &callee_id,
            Devices::All,
            events::CALL_INCOMING,
            incoming,
        )],
        call_id: id,
    })
}

fn incoming_payload(
    call_id: &str,
    conversation_id: &str,
    caller_id: &str,
    caller_name: &str,
    media: Media,
    sdp: &str,
) -> Value {
    json!({
        "callId": call_id,
        "conversationId": conversation_id,
        "from": {"id": caller_id, "displayName": caller_name},
        "media": media,
        "sdp": sdp,
    })
}

/// A device of `user_id` connected: if a call rings for them, it rings there too (a device
/// that was away, or reconnected after a restart, can still answer).
pub async fn ringing(db: &Db, user_id: &str, session_id: &str) -> AppResult<Vec<Signal>> {
    let Some((call, offer)) = store::ringing_for(db, user_id).await? else {
        return Ok(Vec::new());
    };
    let name = crate::users::store::find_by_id(db, &call.caller_id)
        .await?
        .map(|u| u.display_name)
        .unwrap_or_default();
    let data = incoming_payload(
        &call.id,
        &call.conversation_id,
        &call.caller_id,
        &name,
        call.media(),
        &offer,
    );
    Ok(vec![signal(
        user_id,
        Devices::Only(session_id.to_owned()),
        events::CALL_INCOMING,
        data,
    )])
}

/// `call:accept` from a device of the callee: the call goes on with that device; the caller
/// gets the answer, the callee's other devices stop ringing.
pub async fn accept(db: &Db, me: Device<'_>, call_id: &str, sdp: &str) -> AppResult<Answer> {
    let call = visible(db, me, call_id).await?;
    if call.callee_id != me.user_id {
        return Err(not_allowed("only the callee answers a call"));
    }
    if !store::answer(db, call_id, me.user_id, me.session_id, me.node, now_ms()).await? {
        return Err(over());
    }
    let accepted = json!({"callId": call_id, "sdp": sdp});
    let elsewhere = ended_payload(call_id, Reason::AnsweredElsewhere, 0);
    Ok(Answer {
        call_id: call.id.clone(),
        signals: vec![
            signal(
                &call.caller_id,
                Devices::Only(call.caller_session.clone()),
                events::CALL_ACCEPTED,
                accepted,
            ),
            signal(
                &call.callee_id,
                Devices::Except(me.session_id.to_owned()),
                events::CALL_ENDED,
                elsewhere,
            ),
        ],
    })
}

/// `call:ice`: a candidate for the other party's device.
pub async fn ice(db: &Db, me: Device<'_>, call_id: &str, candidate: Value) -> AppResult<Answer> {
    let call = visible(db, me, call_id).await?;
    if call.state == STATE_ENDED {
        return Err(over());
    }
    let to = if call.caller_id == me.user_id && call.caller_session == me.session_id {
        let devices = match &call.callee_session {
            Some(s) => Devices::Only(s.clone()),
            None => Devices::All,
        };
        (call.callee_id.as_str(), devices)
    } else if call.callee_id == me.user_id
        && call
            .callee_session
            .as_deref()
            .is_none_or(|s| s == me.session_id)
    {
        (
            call.caller_id.as_str(),
            Devices::Only(call.caller_session.clone()),
        )
    } else {
        return Err(over());
    };
    let data = json!({"callId": call_id, "candidate": candidate});
    Ok(Answer {
        signals: vec![signal(to.0, to.1, events::CALL_ICE, data)],
        call_id: call.id.clone(),
    })
}

/// `call:reject` and `call:end`. While it rings, the callee's devices reject it and the
/// caller's device cancels it (`missed` for both); once answered, either device in it ends it.
/// Ending a call that has just ended is answered like the end that won.
pub async fn hang_up(db: &Db, me: Device<'_>, call_id: &str) -> AppResult<Answer> {
    let call = visible(db, me, call_id).await?;
    let is_caller = call.caller_id == me.user_id && call.caller_session == me.session_id;
    let is_callee = call.callee_id == me.user_id
        && call
            .callee_session
            .as_deref()
            .is_none_or(|s| s == me.session_id);
    if !is_caller && !is_callee {
        return Err(over());
    }
    let (outcome, reason) = match (call.state.as_str(), is_caller) {
        (STATE_RINGING, true) => (Outcome::Missed, Reason::Missed),
        (STATE_RINGING, false) => (Outcome::Rejected, Reason::Rejected),
        (STATE_ACTIVE, _) => (Outcome::Answered, Reason::Ended),
        _ => return Ok(Answer::quiet(call)),
    };
    let signals = end(db, &call, outcome, reason).await?;
    Ok(Answer {
        call_id: call.id,
        signals,
    })
}

/// The ring timeout (a job): a call still ringing ends as `missed`.
pub async fn ring_out(db: &Db, call_id: &str) -> AppResult<Vec<Signal>> {
    match store::find(db, call_id).await? {
        Some(call) if call.state == STATE_RINGING => {
            end(db, &call, Outcome::Missed, Reason::Missed).await
        }
        _ => Ok(Vec::new()),
    }
}

/// A device went away: a call it is in ends as `failed` (`answered` in the log once it was
/// answered). A callee's device that only rang leaves the others ringing.
pub async fn device_gone(db: &Db, user_id: &str, session_id: &str) -> AppResult<Vec<Signal>> {
    let Some(call) = store::on_line(db, user_id).await? else {
        return Ok(Vec::new());
    };
    let in_call = (call.caller_id == user_id && call.caller_session == session_id)
        || (call.callee_id == user_id && call.callee_session.as_deref() == Some(session_id));
    if !in_call {
        return Ok(Vec::new());
    }
    fail(db, &call).await
}

/// A node went away, or is stopping: the answered calls of its devices end as `failed`. Calls
/// still ringing ring out as `missed` (their devices come back after a restart, to another
/// node if there is one, and may yet be answered until then).
pub async fn node_gone(db: &Db, node: &str) -> AppResult<Vec<Signal>> {
    let mut signals = Vec::new();
    for call in store::active_on_node(db, node).await? {
        signals.extend(fail(db, &call).await?);
    }
    Ok(signals)
}

/// At the start of a node that runs alone: every answered call was on devices of the process
/// before it, which are gone. Calls that were ringing ring out (as `missed`) by their job.
pub async fn ended_by_restart(db: &Db, node: &str) -> AppResult<usize> {
    let calls = store::active_elsewhere(db, node).await?;
    for call in &calls {
        fail(db, call).await?;
    }
    Ok(calls.len())
}

async fn fail(db: &Db, call: &CallRow) -> AppResult<Vec<Signal>> {
    let outcome = match call.state.as_str() {
        STATE_ACTIVE => Outcome::Answered,
        _ => Outcome::Failed,
    };
    end(db, call, outcome, Reason::Failed).await
}

/// Ends the call from the state it was read in, with its `call` message, in one transaction;
/// nothing when another move got there first.
async fn end(db: &Db, call: &CallRow, outcome: Outcome, reason: Reason) -> AppResult<Vec<Signal>> {
    let mut tx = db.begin().await?;
    let Some(ended) = store::finish(&mut tx, &call.id, &call.state, outcome, now_ms()).await?
    else {
        return Ok(Vec::new());
    };
    record(&mut tx, &ended).await?;
    db.commit(tx).await?;
    Ok(ended_signals(&ended, reason))
}

/// The `call` message of an ended call, sent by the caller into the conversation.
async fn record(tx: &mut crate::db::Tx, call: &CallRow) -> AppResult<()> {
    let payload = json!({
        "callId": call.id,
        "media": call.media(),
        "outcome": call.outcome,
        "durationMs": call.duration_ms(call.ended_at.unwrap_or_default()),
    });
    crate::messages::write::insert_call(tx, &call.conversation_id, &call.caller_id, &payload)
        .await?;
    Ok(())
}

fn ended_signals(call: &CallRow, reason: Reason) -> Vec<Signal> {
    let data = ended_payload(
        &call.id,
        reason,
        call.duration_ms(call.ended_at.unwrap_or_default()),
    );
    let mut out = vec![signal(
        &call.caller_id,
        Devices::Only(call.caller_session.clone()),
        events::CALL_ENDED,
        data.clone(),
    )];
    if reason != Reason::Busy {
        let devices = match &call.callee_session {
            Some(s) => Devices::Only(s.clone()),
            None => Devices::All,
        };
        out.push(signal(&call.callee_id, devices, events::CALL_ENDED, data));
    }
    out
}

fn ended_payload(call_id: &str, reason: Reason, duration_ms: i64) -> Value {
    json!({"callId": call_id, "reason": reason.as_str(), "durationMs": duration_ms})
}

fn signal(user_id: &str, devices: Devices, event: &'static str, data: Value) -> Signal {
    Signal {
        user_id: user_id.to_owned(),
        devices,
        event,
        data,
    }
}

/// The call, if `me` is its caller or callee in this workspace; the same 404 otherwise.
async fn visible(db: &Db, me: Device<'_>, call_id: &str) -> AppResult<CallRow> {
    store::find(db, call_id)
        .await?
        .filter(|c| c.workspace_id == me.workspace_id)
        .filter(|c| c.caller_id == me.user_id || c.callee_id == me.user_id)
        .ok_or_else(over)
}

impl Answer {
    fn quiet(call: CallRow) -> Answer {
        Answer {
            call_id: call.id,
            signals: Vec::new(),
        }
    }
}
