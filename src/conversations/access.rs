//! Who may see a conversation: decided here, in one place, for every transport.

use super::model::{ConversationRow, MemberRow};
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
