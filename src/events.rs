//! Every Socket.IO event name (realtime.md), defined once. The change-log kinds
//! (`changes::kinds`) are the server-to-client events a change replays.

pub const MESSAGE_SEND: &str = "message:send";
pub const MESSAGE_DELIVERED: &str = "message:delivered";
pub const MESSAGE_READ: &str = "message:read";
pub const MESSAGE_EDIT: &str = "message:edit";
pub const MESSAGE_DELETE: &str = "message:delete";
pub const MESSAGE_REACT: &str = "message:react";
pub const SYNC_REQUEST: &str = "sync:request";
pub const TYPING_START: &str = "typing:start";
pub const TYPING_STOP: &str = "typing:stop";

// Server to client: the changes of the log, replayed by sync with the same names.
pub const MESSAGE_NEW: &str = "message:new";
pub const MESSAGE_UPDATED: &str = "message:updated";
pub const MESSAGE_STATUS: &str = "message:status";
pub const CONVERSATION_UPDATED: &str = "conversation:updated";

// Server to client, outside the log.
pub const TYPING: &str = "typing";
pub const PRESENCE: &str = "presence";
/// Sent just before the server disconnects a device: `{reason, workspaceId?}` with reason
/// `token_expired`, `session_revoked` or `removed_from_workspace`.
pub const SESSION_ENDED: &str = "session:ended";

// The team inbox, server to client (agents only): a note or an activity line.
pub const NOTE_NEW: &str = "note:new";
// An agent's inbox settings changed (availability, capacity, auto-assignment): the agent as
// `GET /inbox/agents` shows them, to the workspace's agents.
pub const AGENT_UPDATED: &str = "agent:updated";

// AI analysis (inbox-ai-calls.md), server to client: `{conversationId, insight}` to the
// workspace's owners, admins and agents.
pub const INSIGHT_NEW: &str = "insight:new";
// Server to client, once a month at most: `{workspaceId, month, budget, used}` to the
// workspace's owners and admins when AI calls are refused for its monthly token budget.
pub const AI_BUDGET_EXHAUSTED: &str = "ai:budget_exhausted";

// Calls (inbox-ai-calls.md): client to server, each acked.
pub const CALL_INVITE: &str = "call:invite";
pub const CALL_ACCEPT: &str = "call:accept";
pub const CALL_REJECT: &str = "call:reject";
pub const CALL_END: &str = "call:end";
/// Both ways: a device's ICE candidate, relayed to the other party's device.
pub const CALL_ICE: &str = "call:ice";
// Server to client.
pub const CALL_INCOMING: &str = "call:incoming";
pub const CALL_ACCEPTED: &str = "call:accepted";
pub const CALL_ENDED: &str = "call:ended";
