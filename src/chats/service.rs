//! The conversation rules: who may see and change what, and the system messages and change-log
//! rows every membership change writes in the same transaction.

use std::collections::HashMap;

use super::model::*;
use crate::changes;
use crate::conversations::access::{access, Access};
use crate::conversations::desk::TeamFace;
use crate::conversations::model::*;
use crate::conversations::store::{self, NewConversation, SettingsChange};
use crate::db::{Db, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};
use crate::messages::{views, write};
use crate::users::store as users;

/// Builds the views of conversations for one member, with three batched queries (members,
/// last messages with their reactions and replies, names for direct titles).
pub async fn views(
    db: &Db,
    viewer: &str,
    items: Vec<(ConversationRow, MemberRow, i64)>,
) -> AppResult<Vec<ConversationView>> {
    let ids: Vec<String> = items.iter().map(|(c, _, _)| c.id.clone()).collect();
    let mut members: HashMap<String, Vec<MemberRow>> = HashMap::new();
    for m in store::current_members(db, &ids).await? {
        members
            .entry(m.conversation_id.clone())
            .or_default()
            .push(m);
    }
    let customers: HashMap<&str, &str> = items
        .iter()
        .filter(|(c, _, _)| c.kind() == Kind::Support)
        .filter_map(|(c, _, _)| Some((c.id.as_str(), c.created_by.as_deref()?)))
        .collect();
    let floors: HashMap<String, (i64, i64)> = members
        .iter()
        .map(|(id, ms)| {
            let customer = customers.get(id.as_str()).copied();
            (id.clone(), views::floor_of(ms, customer))
        })
        .collect();
    let last_keys: Vec<(String, i64)> = items
        .iter()
        .map(|(c, m, _)| (c.id.clone(), m.visible_until(c.last_seq)))
        .collect();
    let last_rows = crate::messages::store::last_messages(db, &last_keys).await?;
    // Where the viewer is a support desk's customer and the desk hides its agents.
    let customer_of: Vec<String> = items
        .iter()
        .filter(|(c, _, _)| c.is_customer(viewer))
        .map(|(c, _, _)| c.id.clone())
        .collect();
    let faces = store::team_faces(db, &customer_of).await?;
    let mut last: HashMap<String, crate::messages::model::MessageView> =
        views::build_views(db, last_rows, &floors)
            .await?
            .into_iter()
            .map(|mut v| {
                if let Some(face) = faces.get(&v.conversation_id) {
                    views::disguise(&mut v, face);
                }
                (v.conversation_id.clone(), v)
            })
            .collect();
    let others: Vec<String> = items
        .iter()
        .filter(|(c, _, _)| c.kind() == Kind::Direct)
        .filter_map(|(c, _, _)| {
            members
                .get(&c.id)?
                .iter()
                .find(|m| m.user_id != viewer)
                .map(|m| m.user_id.clone())
        })
        .collect();
    let names: HashMap<String, String> = store::display_names(db, &others)
        .await?
        .into_iter()
        .collect();
    let (channels, leads) = channel_and_lead_refs(db, &items).await?;

    Ok(items
        .into_iter()
        .map(|(c, me, unread)| {
            let current = members.remove(&c.id).unwrap_or_default();
            let agent_side = c.kind().is_inbox() && !c.is_customer(viewer);
            // The customer of a desk that hides its agents sees themselves and the team.
            let team = faces
                .get(&c.id)
                .map(|face| team_members(&current, face, c.created_at));
            let title = match c.kind() {
                Kind::Direct => current
                    .iter()
                    .find(|m| m.user_id != viewer)
                    .and_then(|m| names.get(&m.user_id).cloned()),
                // Agents see the customer's name; the customer, the workspace's.
                Kind::Support if agent_side => c
                    .lead_id
                    .as_ref()
                    .and_then(|id| leads.get(id))
                    .and_then(|l| l.name.clone())
                    .or_else(|| c.title.clone()),
                _ => c.title.clone(),
            };
            ConversationView {
                kind: Kind::from_db(&c.kind),
                title,
                description: c.description.clone(),
                avatar: c.avatar_media_id.clone(),
                created_at: Timestamp(c.created_at),
                last_activity_at: Timestamp(c.last_activity_at),
                last_message: last.remove(&c.id),
                unread_count: unread,
                member_count: team.as_ref().map_or(current.len(), Vec::len) as i64,
                members: team.unwrap_or_else(|| {
                    let inline = current.iter().take(MEMBERS_INLINE);
                    inline.map(MemberView::of).collect()
                }),
                request_state: me.request_state(),
                settings: Settings {
                    muted_until: me.muted_until.map(Timestamp),
                    archived: me.archived != 0,
                    pinned: me.pinned != 0,
                },
                channel: c
                    .channel_id
                    .as_ref()
                    .and_then(|id| channels.get(id).cloned()),
                // The support desk's customer sees none of the inbox's internal fields.
                lead: agent_side
                    .then(|| c.lead_id.as_ref().and_then(|id| leads.get(id).cloned()))
                    .flatten(),
                channel_id: c.channel_id.clone(),
                lead_id: agent_side.then(|| c.lead_id.clone()).flatten(),
                status: agent_side.then(|| c.inbox_status.clone()).flatten(),
                assignee_id: agent_side.then(|| c.assignee_id.clone()),
                snoozed_until: agent_side.then(|| c.snoozed_until.map(Timestamp)),
                window_expires_at: (c.kind() == Kind::Channel).then(|| {
                    c.last_inbound_at
                        .map(|at| at + WINDOW_MS)
                        .filter(|until| *until > crate::db::now_ms())
                        .map(Timestamp)
                }),
                id: c.id,
            }
        })
        .collect())
}

/// The members of a support conversation as its customer sees them where the desk hides its
/// agents: themselves and the team (named by the workspace's id, a member since the
/// conversation began), in `userId` order.
pub fn team_members(current: &[MemberRow], face: &TeamFace, since: i64) -> Vec<MemberView> {
    let mut out: Vec<MemberView> = current
        .iter()
        .filter(|m| !face.hides(&m.user_id))
        .map(MemberView::of)
        .collect();
    if current.iter().any(|m| face.hides(&m.user_id)) {
        out.push(MemberView {
            user_id: face.team.clone(),
            role: MemberRole::Member,
            joined_at: Timestamp(since),
        });
    }
    out.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    out
}

/// A page of the current members after `after` (`limit + 1` of them, in `userId` order), as
/// the caller sees them (the support desk's customer: see [`team_members`]).
pub async fn members_page(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<MemberView>> {
    let db = t.db();
    let a = access(t, conversation_id, me, false).await?;
    let Some(face) = store::team_face(db, &a.conversation, me).await? else {
        let rows = store::list_members(db, conversation_id, after, limit).await?;
        return Ok(rows.iter().map(MemberView::of).collect());
    };
    let current = store::current_members(db, std::slice::from_ref(&a.conversation.id)).await?;
    let mut seen = team_members(&current, &face, a.conversation.created_at);
    seen.retain(|m| after.is_none_or(|after| m.user_id.as_str() > after));
    seen.truncate(limit as usize + 1);
    Ok(seen)
}

/// The channels and leads that the channel conversations among `items` name, by id.
async fn channel_and_lead_refs(
    db: &Db,
    items: &[(ConversationRow, MemberRow, i64)],
) -> AppResult<(HashMap<String, ChannelRef>, HashMap<String, LeadRef>)> {
    let mut channel_ids: Vec<String> = items
        .iter()
        .filter_map(|(c, _, _)| c.channel_id.clone())
        .collect();
    let mut lead_ids: Vec<String> = items
        .iter()
        .filter_map(|(c, _, _)| c.lead_id.clone())
        .collect();
    channel_ids.sort();
    channel_ids.dedup();
    lead_ids.sort();
    lead_ids.dedup();
    let channels = store::channel_refs(db, &channel_ids)
        .await?
        .into_iter()
        .map(|(id, phone_number_id)| {
            (
                id.clone(),
                ChannelRef {
                    id,
                    phone_number_id,
                },
            )
        })
        .collect();
    let leads = store::lead_refs(db, &lead_ids)
        .await?
        .into_iter()
        .map(|(id, wa_id, user_id, name)| {
            let lead = LeadRef {
                id: id.clone(),
                wa_id,
                user_id,
                name,
            };
            (id, lead)
        })
        .collect();
    Ok((channels, leads))
}

/// One conversation as `viewer` sees it.
pub async fn view(db: &Db, viewer: &str, access: Access) -> AppResult<ConversationView> {
    let unread = unread_count(db, &access.conversation, &access.me).await?;
    let mut v = views(db, viewer, vec![(access.conversation, access.me, unread)]).await?;
    Ok(v.remove(0))
}

pub async fn unread_count(db: &Db, c: &ConversationRow, me: &MemberRow) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq > $3 AND seq <= $4 \
         AND (sender_id IS NULL OR sender_id <> $5)",
    )
    .bind(&c.id)
    .bind(me.read_seq)
    .bind(me.joined_seq)
    .bind(me.visible_until(c.last_seq))
    .bind(&me.user_id)
    .fetch_one(db.reader())
    .await?)
}

/// The conversation as its current member `user_id` sees it. Former members get a 404: what
/// the conversation became after they left is not theirs to see (their messages stay readable
/// through the history endpoints).
pub async fn reload(
    t: Tenant<'_>,
    conversation_id: &str,
    user_id: &str,
) -> AppResult<ConversationView> {
    let a = access(t, conversation_id, user_id, false).await?;
    view(t.db(), user_id, a).await
}

fn direct_key(workspace_id: &str, a: &str, b: &str) -> String {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    format!("{workspace_id}:{lo}:{hi}")
}

/// Finds or creates the direct conversation of the caller and `other`; `true` if created.
/// Two users creating it at the same instant end with one row (a unique key on the pair).
pub async fn open_direct(
    t: Tenant<'_>,
    me: &str,
    other: &str,
) -> AppResult<(ConversationView, bool)> {
    if me == other {
        return Err(AppError::invalid_field(
            "userId",
            "a direct conversation needs another user",
        ));
    }
    let peer = users::find_member(t, other)
        .await?
        .ok_or_else(|| AppError::invalid_field("userId", "no such user"))?;
    let key = direct_key(t.workspace_id(), me, other);
    if let Some(c) = store::find_direct(t, &key).await? {
        return Ok((reload(t, &c.id, me).await?, false));
    }
    // The recipient sees a message request unless the caller is in their address book.
    let me_row = users::find_by_id(t.db(), me)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    let known = match &me_row.phone {
        Some(phone) => users::has_in_address_book(t.db(), &peer.id, phone).await?,
        None => false,
    };
    let mut tx = t.db().begin().await?;
    let created = store::insert(
        &mut tx,
        t,
        NewConversation {
            kind: Kind::Direct.as_str(),
            title: None,
            description: None,
            created_by: me,
            direct_key: Some(&key),
        },
    )
    .await?;
    let Some(id) = created else {
        // Opened concurrently by the other side: answer theirs once it is durable.
        drop(tx);
        t.db().settle_writes().await?;
        let c = store::find_direct(t, &key)
            .await?
            .ok_or_else(AppError::not_found)?;
        return Ok((reload(t, &c.id, me).await?, false));
    };
    store::upsert_member(
        &mut tx,
        &id,
        me,
        MemberRole::Member,
        0,
        RequestState::Accepted,
    )
    .await?;
    let state = if known {
        RequestState::Accepted
    } else {
        RequestState::Pending
    };
    store::upsert_member(&mut tx, &id, other, MemberRole::Member, 0, state).await?;
    changes::conversation_updated(&mut tx, &id, Some(me)).await?;
    t.db().commit(tx).await?;
    Ok((reload(t, &id, me).await?, true))
}

/// Checks that every user is a member of the workspace and has not blocked `actor`.
async fn check_invitees(t: Tenant<'_>, actor: &str, user_ids: &[String]) -> AppResult<()> {
    for (i, id) in user_ids.iter().enumerate() {
        if users::find_member(t, id).await?.is_none() {
            return Err(AppError::invalid_field(
                &format!("memberIds[{i}]"),
                "no such user",
            ));
        }
        if users::blocked_either_way(t.db(), actor, id).await? {
            return Err(AppError::new(
                Code::Blocked,
                "a block between you and one of these users forbids adding them",
            ));
        }
    }
    Ok(())
}

/// Writes a system message (next seq) recording `actor`'s action; returns its seq.
async fn system_message(
    tx: &mut Tx,
    conversation_id: &str,
    actor: &str,
    payload: serde_json::Value,
) -> AppResult<i64> {
    let row = write::insert_system(tx, conversation_id, actor, &payload).await?;
    Ok(row.seq)
}

async fn conversation_changed(tx: &mut Tx, conversation_id: &str) -> AppResult<i64> {
    changes::conversation_updated(tx, conversation_id, None).await
}

pub struct NewGroup {
    pub title: String,
    pub description: Option<String>,
    pub member_ids: Vec<String>,
    /// An image the creator uploaded (checked by the caller).
    pub avatar_media_id: Option<String>,
}

/// Creates a group; with an idempotency key, a retry answers the group made the first time
/// (`false`: nothing new was created).
pub async fn create_group(
    t: Tenant<'_>,
    me: &str,
    g: NewGroup,
    key: Option<&str>,
) -> AppResult<(ConversationView, bool)> {
    if let Some(k) = key {
        if let Some(id) = crate::http::idempotency::find(t.db(), me, "group", k).await? {
            return Ok((reload(t, &id, me).await?, false));
        }
    }
    let mut ids: Vec<String> = g.member_ids.into_iter().filter(|id| id != me).collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() || ids.len() + 1 > MAX_GROUP_MEMBERS {
        return Err(AppError::invalid_field(
            "memberIds",
            format!("a group has 2 to {MAX_GROUP_MEMBERS} members"),
        ));
    }
    check_invitees(t, me, &ids).await?;
    let mut tx = t.db().begin().await?;
    let new = NewConversation {
        kind: Kind::Group.as_str(),
        title: Some(&g.title),
        description: g.description.as_deref(),
        created_by: me,
        direct_key: None,
    };
    let id = store::insert(&mut tx, t, new)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("group id collision")))?;
    if g.avatar_media_id.is_some() {
        store::update_group(&mut tx, &id, None, None, g.avatar_media_id.as_deref()).await?;
    }
    if let Some(k) = key {
        if !crate::http::idempotency::record(&mut tx, me, "group", k, &id).await? {
            // A concurrent request with this key made the group: answer that one.
            drop(tx);
            t.db().settle_writes().await?;
            let id = crate::http::idempotency::find(t.db(), me, "group", k)
                .await?
                .ok_or_else(AppError::not_found)?;
            return Ok((reload(t, &id, me).await?, false));
        }
    }
    store::upsert_member(
        &mut tx,
        &id,
        me,
        MemberRole::Owner,
        0,
        RequestState::Accepted,
    )
    .await?;
    for user in &ids {
        store::upsert_member(
            &mut tx,
            &id,
            user,
            MemberRole::Member,
            0,
            RequestState::Accepted,
        )
        .await?;
    }
    system_message(
        &mut tx,
        &id,
        me,
        serde_json::json!({"event": "created", "actorId": me, "title": g.title}),
    )
    .await?;
    conversation_changed(&mut tx, &id).await?;
    t.db().commit(tx).await?;
    Ok((reload(t, &id, me).await?, true))
}

fn require_group(a: &Access) -> AppResult<()> {
    if a.conversation.kind() != Kind::Group {
        return Err(AppError::invalid_field(
            "id",
            "only groups have members to manage",
        ));
    }
    Ok(())
}

fn require_manager(a: &Access) -> AppResult<()> {
    if !a.me.role().manages() {
        return Err(AppError::forbidden(
            "only the group's owner and admins may do this",
        ));
    }
    Ok(())
}

pub async fn add_members(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    user_ids: Vec<String>,
) -> AppResult<ConversationView> {
    let a = access(t, conversation_id, me, false).await?;
    require_group(&a)?;
    require_manager(&a)?;
    let mut ids = user_ids;
    ids.sort();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_GROUP_MEMBERS {
        return Err(AppError::invalid_field("userIds", "give 1 to 1024 users"));
    }
    check_invitees(t, me, &ids).await?;
    let mut tx = t.db().begin().await?;
    store::lock(&mut tx, conversation_id).await?;
    let mut new = Vec::new();
    for id in ids {
        if !store::find_member_in_tx(&mut tx, conversation_id, &id)
            .await?
            .is_some_and(|m| m.is_current())
        {
            new.push(id);
        }
    }
    if new.is_empty() {
        drop(tx);
        return reload(t, conversation_id, me).await;
    }
    if store::count_current_members(&mut tx, conversation_id).await? + new.len() as i64
        > MAX_GROUP_MEMBERS as i64
    {
        return Err(AppError::invalid_field(
            "userIds",
            format!("a group has at most {MAX_GROUP_MEMBERS} members"),
        ));
    }
    let seq = system_message(
        &mut tx,
        conversation_id,
        me,
        serde_json::json!({"event": "member_added", "actorId": me, "userIds": new}),
    )
    .await?;
    for id in &new {
        // New members see history from the message that announces them.
        store::upsert_member(
            &mut tx,
            conversation_id,
            id,
            MemberRole::Member,
            seq - 1,
            RequestState::Accepted,
        )
        .await?;
    }
    conversation_changed(&mut tx, conversation_id).await?;
    t.db().commit(tx).await?;
    reload(t, conversation_id, me).await
}

/// Removes a member (owner/admins), or the caller leaves. An owner who leaves hands the group to
/// the longest-standing admin, else the longest-standing member.
pub async fn remove_member(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    user_id: &str,
) -> AppResult<()> {
    let a = access(t, conversation_id, me, false).await?;
    require_group(&a)?;
    let leaving = user_id == me;
    if !leaving {
        require_manager(&a)?;
    }
    let mut tx = t.db().begin().await?;
    store::lock(&mut tx, conversation_id).await?;
    let target = store::find_member_in_tx(&mut tx, conversation_id, user_id)
        .await?
        .filter(|m| m.is_current())
        .ok_or_else(AppError::not_found)?;
    if !leaving && target.role() == MemberRole::Owner {
        return Err(AppError::forbidden("the owner cannot be removed"));
    }
    let event = if leaving {
        "member_left"
    } else {
        "member_removed"
    };
    let seq = system_message(
        &mut tx,
        conversation_id,
        me,
        serde_json::json!({"event": event, "actorId": me, "userId": user_id}),
    )
    .await?;
    let pos = conversation_changed(&mut tx, conversation_id).await?;
    store::set_member_left(&mut tx, conversation_id, user_id, seq, pos).await?;
    if target.role() == MemberRole::Owner {
        hand_over(&mut tx, conversation_id).await?;
    }
    t.db().commit(tx).await?;
    Ok(())
}

/// A group whose owner left goes to the longest-standing admin, else member.
async fn hand_over(tx: &mut Tx, conversation_id: &str) -> AppResult<()> {
    let heir: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 AND left_at IS NULL \
         ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(heir) = heir {
        store::set_member_role(tx, conversation_id, &heir, MemberRole::Owner).await?;
    }
    Ok(())
}

/// Takes `user_id` out of the workspace's conversations (`inbox_only`: only the inbox
/// conversations they are in as an agent), as a removed member: they keep what they could see
/// up to now and get nothing after. Each conversation records the change (its members
/// changed), and that change is the last the user gets of it, live or by sync. Used when a
/// member leaves the workspace (every conversation) and when an agent is demoted (the inbox;
/// their own support conversation, as its customer, stays).
pub async fn leave_workspace_conversations(
    tx: &mut Tx,
    workspace_id: &str,
    user_id: &str,
    inbox_only: bool,
) -> AppResult<usize> {
    let sql = format!(
        "SELECT c.id, c.last_seq, m.role FROM conversations c \
         JOIN conversation_members m ON m.conversation_id = c.id \
         WHERE c.workspace_id = $1 AND m.user_id = $2 AND m.left_at IS NULL{}",
        if inbox_only {
            " AND c.kind IN ('channel', 'support') \
              AND NOT (c.kind = 'support' AND c.created_by = $2)"
        } else {
            ""
        }
    );
    let q = sqlx::query_as::<_, (String, i64, String)>(&sql)
        .bind(workspace_id)
        .bind(user_id);
    let current = q.fetch_all(&mut **tx).await?;
    for (conversation_id, last_seq, role) in &current {
        let pos = conversation_changed(tx, conversation_id).await?;
        store::set_member_left(tx, conversation_id, user_id, *last_seq, pos).await?;
        if MemberRole::from_db(role) == MemberRole::Owner {
            hand_over(tx, conversation_id).await?;
        }
    }
    Ok(current.len())
}

pub async fn set_role(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    user_id: &str,
    role: MemberRole,
) -> AppResult<ConversationView> {
    let a = access(t, conversation_id, me, false).await?;
    require_group(&a)?;
    require_manager(&a)?;
    if role == MemberRole::Owner {
        return Err(AppError::invalid_field("role", "must be admin or member"));
    }
    let mut tx = t.db().begin().await?;
    store::lock(&mut tx, conversation_id).await?;
    let target = store::find_member_in_tx(&mut tx, conversation_id, user_id)
        .await?
        .filter(|m| m.is_current())
        .ok_or_else(AppError::not_found)?;
    if target.role() == MemberRole::Owner {
        return Err(AppError::forbidden("the owner's role cannot be changed"));
    }
    if target.role() != role {
        store::set_member_role(&mut tx, conversation_id, user_id, role).await?;
        conversation_changed(&mut tx, conversation_id).await?;
    }
    t.db().commit(tx).await?;
    reload(t, conversation_id, me).await
}

pub async fn update_group(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    title: Option<String>,
    description: Option<String>,
    avatar_media_id: Option<String>,
) -> AppResult<ConversationView> {
    let a = access(t, conversation_id, me, false).await?;
    require_group(&a)?;
    require_manager(&a)?;
    let mut tx = t.db().begin().await?;
    store::lock(&mut tx, conversation_id).await?;
    store::update_group(
        &mut tx,
        conversation_id,
        title.as_deref(),
        description.as_deref(),
        avatar_media_id.as_deref(),
    )
    .await?;
    if let Some(title) = title.filter(|t| Some(t) != a.conversation.title.as_ref()) {
        system_message(
            &mut tx,
            conversation_id,
            me,
            serde_json::json!({"event": "title_changed", "actorId": me, "title": title}),
        )
        .await?;
    }
    conversation_changed(&mut tx, conversation_id).await?;
    t.db().commit(tx).await?;
    reload(t, conversation_id, me).await
}

pub async fn update_settings(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    change: SettingsChange,
) -> AppResult<ConversationView> {
    access(t, conversation_id, me, false).await?;
    let mut tx = t.db().begin().await?;
    store::update_settings(&mut tx, conversation_id, me, &change).await?;
    changes::conversation_updated(&mut tx, conversation_id, Some(me)).await?;
    t.db().commit(tx).await?;
    reload(t, conversation_id, me).await
}

/// Accepts or declines a message request.
pub async fn answer_request(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    accept: bool,
) -> AppResult<Option<ConversationView>> {
    let a = access(t, conversation_id, me, false).await?;
    if a.conversation.kind() != Kind::Direct {
        return Err(AppError::invalid_field(
            "id",
            "only direct conversations have message requests",
        ));
    }
    let state = if accept {
        RequestState::Accepted
    } else {
        RequestState::Declined
    };
    let mut tx = t.db().begin().await?;
    store::set_request_state(&mut tx, conversation_id, me, state).await?;
    changes::conversation_updated(&mut tx, conversation_id, Some(me)).await?;
    // Reads made while the request was pending were kept private: accepting tells them.
    let untold_read = a.me.read_seq;
    if accept && untold_read > 0 && a.me.request_state() == RequestState::Pending {
        changes::message_status(&mut tx, conversation_id, Some(me), "read", untold_read).await?;
    }
    t.db().commit(tx).await?;
    if accept {
        Ok(Some(reload(t, conversation_id, me).await?))
    } else {
        Ok(None)
    }
}
