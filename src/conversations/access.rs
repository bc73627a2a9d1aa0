//! Who may see a conversation: decided here, in one place, for every transport.

use super::model::{ConversationRow, Kind, MemberRow, RequestState};
use super::store;
use crate::db::Tenant;
use crate::error::{AppError, AppResult};

/// A member's view of a conversation they may access.
pub struct Access {
    pub conversation: ConversationRow,
    pub me: MemberRow,
    /// In a direct conversation, the other current member.
    pub peer: Option<store::DirectPeer>,
}

/// The one access check. `history`: former members may read what they saw before leaving —
/// except in a channel conversation, whose members are the workspace's agents by their role:
/// an agent who lost the role (or the workspace) lost the inbox, history too. Otherwise only
/// current members pass. Everyone else gets the same 404.
pub async fn access(
    t: Tenant<'_>,
    conversation_id: &str,
    user_id: &str,
    history: bool,
) -> AppResult<Access> {
    let (conversation, me, peer) = store::find_with_member(t, conversation_id, user_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    // Agents are in inbox conversations by their role; the support desk's customer is not.
    let by_role = conversation.kind().is_inbox() && !conversation.is_customer(user_id);
    if !me.is_current() && (!history || by_role) {
        return Err(AppError::not_found());
    }
    Ok(Access {
        conversation,
        me,
        peer,
    })
}

/// What a batched send writes with: the sender's marks (sending delivers and reads everything
/// before their message) and whether the conversation is direct.
#[derive(Debug, Clone, Copy)]
pub struct Sendable {
    pub direct: bool,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

impl Access {
    /// Is this the batched send's case (see [`may_batch`])? Its batch checks it again, in its
    /// own transaction, before writing it.
    pub fn batchable(&self) -> bool {
        let peer = self
            .peer
            .as_ref()
            .map(|p| (p.request_state.as_str(), p.blocked));
        may_batch(
            self.conversation.kind(),
            self.me.is_current(),
            self.me.request_state(),
            peer,
        )
    }
}

/// The batched send's case of the one access rule and the send's checks: a current member who
/// accepted a direct or group conversation, with no declined request or block standing between
/// them and the other member of a direct one. Every other send (a request, the support desk, a
/// channel, a refusal) goes through [`access`] and the send's full checks, one by one, which
/// also give each refusal its answer.
fn may_batch(kind: Kind, current: bool, request: RequestState, peer: Option<(&str, bool)>) -> bool {
    matches!(kind, Kind::Direct | Kind::Group)
        && current
        && request == RequestState::Accepted
        && peer.is_none_or(|(state, blocked)| {
            !blocked && RequestState::from_db(state) != RequestState::Declined
        })
}

/// A batched send's check, read in the batch's own transaction so that nothing changes between
/// the check and the write (`messages::pipeline`): one row per sender and conversation, none
/// where the sender is no member of the conversation in that workspace.
pub struct SendCheck {
    kind: String,
    left: i64,
    request_state: String,
    delivered_seq: i64,
    read_seq: i64,
    peer_state: Option<String>,
    peer_blocks: i64,
}

crate::db::lite::lite_row!(with_any SendCheck {
    kind,
    left,
    request_state,
    delivered_seq,
    read_seq,
    peer_state,
    peer_blocks
});

impl SendCheck {
    /// The check's columns (the same as [`store::find_with_member`]'s) for the sender `user`,
    /// from `conversations` as `c` (joined to what names it).
    fn select(user: &str, conversations: &str) -> String {
        format!(
            "c.kind AS kind, CASE WHEN m.left_at IS NULL THEN 0 ELSE 1 END AS \"left\", \
             m.request_state AS request_state, m.delivered_seq AS delivered_seq, \
             m.read_seq AS read_seq, p.request_state AS peer_state, \
             (SELECT COUNT(*) FROM blocks b WHERE (b.blocker_id = {user} AND b.blocked_id = p.user_id) \
              OR (b.blocker_id = p.user_id AND b.blocked_id = {user})) AS peer_blocks \
             FROM {conversations} \
             JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = {user} \
             LEFT JOIN conversation_members p ON c.kind = 'direct' AND p.conversation_id = c.id \
              AND p.user_id <> {user} AND p.left_at IS NULL"
        )
    }

    /// One send's check; parameters: conversation, workspace, sender.
    pub fn one_sql() -> String {
        format!(
            "SELECT {} WHERE c.id = ?1 AND c.workspace_id = ?2",
            Self::select("?3", "conversations c")
        )
    }

    /// The checks of `n` sends in one statement, each row led by its conversation and sender
    /// (so the check's columns start at 2); parameters: conversation, workspace and sender of
    /// each send.
    pub fn many_sql(n: usize, slots: &mut crate::db::Slots) -> String {
        let values: Vec<String> = (0..n)
            .map(|_| {
                let (c, w, u) = (slots.take(), slots.take(), slots.take());
                format!("(CAST({c} AS TEXT), CAST({w} AS TEXT), CAST({u} AS TEXT))")
            })
            .collect();
        let from = format!(
            "(VALUES {}) AS v(c, w, u) \
             JOIN conversations c ON c.id = v.c AND c.workspace_id = v.w",
            values.join(", ")
        );
        format!("SELECT v.c, v.u, {}", Self::select("v.u", &from))
    }

    /// What the batch writes with, if it may write the send at all.
    pub fn sendable(&self) -> Option<Sendable> {
        let kind = Kind::from_db(&self.kind);
        let peer = self
            .peer_state
            .as_deref()
            .map(|s| (s, self.peer_blocks > 0));
        may_batch(
            kind,
            self.left == 0,
            RequestState::from_db(&self.request_state),
            peer,
        )
        .then_some(Sendable {
            direct: kind == Kind::Direct,
            delivered_seq: self.delivered_seq,
            read_seq: self.read_seq,
        })
    }
}
