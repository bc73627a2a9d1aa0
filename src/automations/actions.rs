//! A rule's actions, each carried out in the job's transaction. An action that cannot be done
//! (a text outside WhatsApp's window, an agent who left, a stage that no longer exists) fails
//! with a 4xx error: the run stops there and records why; what earlier actions did stays.

use serde_json::json;

use super::model::Action;
use super::store::Rule;
use super::webhook;
use crate::audit::{self, actions as audited};
use crate::changes;
use crate::conversations::facts;
use crate::conversations::model::ConversationRow;
use crate::db::{now_ms, Tenant, Tx};
use crate::error::{AppError, AppResult};
use crate::inbox::conversations::{choose_agent, name_of};
use crate::inbox::{canned, catalog, leads, notes};
use crate::messages::model::{Content, MessageType, TemplateSend};

/// What every rule of one event shares.
pub struct Context<'a> {
    pub state: &'a crate::app::AppState,
    pub t: Tenant<'a>,
    pub fired: &'a crate::conversations::triggers::Fired,
    pub hours: Option<crate::workspaces::hours::BusinessHours>,
    /// Agents a round-robin may choose (read before the transaction: who is online).
    pub eligible: Vec<crate::inbox::conversations::Candidate>,
}

/// What the transaction's commit should be followed by: the agents told of new notes.
#[derive(Default)]
pub struct Effects {
    notes: Vec<(String, String)>,
    jobs: bool,
}

impl Effects {
    pub async fn announce(self, state: &crate::app::AppState, t: Tenant<'_>) -> AppResult<()> {
        if self.jobs {
            state.db.wake_jobs();
        }
        for (conversation, note) in self.notes {
            crate::inbox::desk_routes::tell_agents(state, t, &conversation, &[note]).await?;
        }
        Ok(())
    }
}

pub fn is_round_robin(a: &Action) -> bool {
    matches!(
        a,
        Action::Assign {
            round_robin: Some(true),
            ..
        }
    )
}

fn refused(message: impl Into<String>) -> AppError {
    AppError::new(crate::error::Code::ValidationFailed, message)
}

pub async fn apply(
    tx: &mut Tx,
    cx: &Context<'_>,
    (rule, run_id): (&Rule, &str),
    c: &ConversationRow,
    action: &Action,
    effects: &mut Effects,
) -> AppResult<()> {
    let t = cx.t;
    let by = json!({"automationId": rule.id, "automation": rule.name});
    let d = Doing {
        t,
        rule,
        c,
        by: by.clone(),
        depth: cx.fired.depth + 1,
    };
    match action {
        Action::SendText { text } => {
            let cx = canned::context(t, c, None).await?;
            let (text, _) = canned::render(text, &cx);
            let content = Content {
                kind: MessageType::Text,
                text: Some(text),
                media_id: None,
                payload: None,
            };
            crate::messages::write::insert_automated(tx, t, c, content).await?;
            effects.jobs = true;
        }
        Action::SendTemplate {
            template_id,
            parameters,
        } => {
            let template = crate::messages::templates::find(t, template_id)
                .await?
                .ok_or_else(|| refused("the template no longer exists"))?;
            let cx = canned::context(t, c, None).await?;
            let parameters = parameters
                .iter()
                .map(|p| canned::render(p, &cx).0)
                .collect();
            let send = TemplateSend {
                name: template.name,
                language: template.language,
                parameters,
            };
            let content = Content {
                kind: MessageType::Template,
                text: None,
                media_id: None,
                payload: Some(serde_json::to_string(&send).map_err(AppError::internal)?),
            };
            crate::messages::write::insert_automated(tx, t, c, content).await?;
            effects.jobs = true;
        }
        Action::Assign {
            assignee_id,
            round_robin,
        } => {
            let to = (assignee_id.as_deref(), *round_robin == Some(true));
            assign(tx, cx, &d, to, effects).await?
        }
        Action::AddTag { tag } => tagging(tx, &d, tag, true).await?,
        Action::RemoveTag { tag } => tagging(tx, &d, tag, false).await?,
        Action::SetStage { stage } => set_stage(tx, &d, stage).await?,
        Action::SetStatus { status } => set_status(tx, &d, status, effects).await?,
        Action::AddNote { text } => {
            let cxt = canned::context(t, c, None).await?;
            let text = canned::render(text, &cxt).0;
            note(tx, t, c, &text, &[], by, effects).await?;
        }
        Action::Notify { user_ids, text } => {
            let mut mentions = Vec::new();
            for u in user_ids {
                // Someone who left the workspace is not told; the others are.
                if t.role_of(u).await?.is_some_and(|r| r.works_inbox()) {
                    mentions.push(u.clone());
                }
            }
            if mentions.is_empty() {
                return Err(refused(
                    "none of the agents to notify works this inbox any more",
                ));
            }
            let text = text
                .clone()
                .unwrap_or_else(|| format!("The rule “{}” asks for your attention", rule.name));
            note(tx, t, c, &text, &mentions, by, effects).await?;
        }
        Action::Webhook { url, secret } => {
            let sealed = secret.as_deref().unwrap_or_default();
            webhook::queue(tx, t, (rule, run_id), c, url, sealed).await?;
            effects.jobs = true;
        }
    }
    Ok(())
}

/// What every action of one rule's run knows.
struct Doing<'a> {
    t: Tenant<'a>,
    rule: &'a Rule,
    c: &'a ConversationRow,
    /// The rule, as audit entries and activity lines name it.
    by: serde_json::Value,
    /// The depth of the events the action causes.
    depth: i64,
}

async fn assign(
    tx: &mut Tx,
    cx: &Context<'_>,
    d: &Doing<'_>,
    (assignee_id, round_robin): (Option<&str>, bool),
    effects: &mut Effects,
) -> AppResult<()> {
    let (t, c, rule, by) = (d.t, d.c, d.rule, &d.by);
    let agent = match (assignee_id, round_robin) {
        (Some(a), _) => {
            crate::inbox::service::require_agent_user(t, a, "assigneeId").await?;
            a.to_owned()
        }
        (None, true) => choose_agent(tx, t, &cx.eligible)
            .await?
            .ok_or_else(|| refused("no agent is online, available and under capacity"))?,
        _ => return Err(refused("neither an assignee nor round-robin")),
    };
    if c.assignee_id.as_deref() != Some(agent.as_str()) {
        sqlx::query("UPDATE conversations SET assignee_id = $1 WHERE id = $2")
            .bind(&agent)
            .bind(&c.id)
            .execute(&mut **tx)
            .await?;
        facts::assigned(tx, &c.id, &agent, now_ms()).await?;
        let text = format!(
            "Assigned to {} by the rule “{}”",
            name_of(tx, &agent).await?,
            rule.name
        );
        let details = json!({"event": "assigned", "from": c.assignee_id, "to": agent, "by": by});
        let action = audited::CONVERSATION_ASSIGNED;
        line(tx, t, c, action, &text, details, effects).await?;
    }
    Ok(())
}

/// Adds (`adding`) or removes a tag of the conversation's lead.
async fn tagging(tx: &mut Tx, d: &Doing<'_>, tag: &String, adding: bool) -> AppResult<()> {
    let (t, c, by, depth) = (d.t, d.c, &d.by, d.depth);
    let lead = c
        .lead_id
        .as_deref()
        .ok_or_else(|| refused("the conversation has no lead"))?;
    let have = leads::tag_names_in_tx(tx, lead).await?;
    let mut names: Vec<String> = have.iter().filter(|n| *n != tag).cloned().collect();
    if adding {
        names.push(tag.clone());
    }
    if adding != have.contains(tag) {
        leads::set_tags(tx, t, lead, &names).await?;
        let added: Vec<&String> = if adding { vec![tag] } else { Vec::new() };
        let stage = leads::find_in_tx(tx, t, lead).await?.stage;
        let details = json!({"fields": ["tags"], "tag": tag, "added": adding, "by": by});
        audit::record(tx, t, None, audited::LEAD_UPDATED, ("lead", lead), details).await?;
        let moved = (stage.as_str(), stage.as_str());
        crate::inbox::service::lead_events(tx, t, lead, moved, &added, depth).await?;
    }
    Ok(())
}

async fn set_stage(tx: &mut Tx, d: &Doing<'_>, stage: &String) -> AppResult<()> {
    let (t, c, by, depth) = (d.t, d.c, &d.by, d.depth);
    let lead = c
        .lead_id
        .as_deref()
        .ok_or_else(|| refused("the conversation has no lead"))?;
    if !catalog::stages(t).await?.contains(stage) {
        return Err(refused(format!(
            "{stage} is no longer a stage of this workspace"
        )));
    }
    let before = leads::find_in_tx(tx, t, lead).await?.stage;
    if before != *stage {
        sqlx::query("UPDATE leads SET stage = $1, updated_at = $2 WHERE id = $3")
            .bind(stage)
            .bind(crate::db::now_ms())
            .bind(lead)
            .execute(&mut **tx)
            .await?;
        let details =
            json!({"fields": ["stage"], "stage": {"from": before, "to": stage}, "by": by});
        audit::record(tx, t, None, audited::LEAD_UPDATED, ("lead", lead), details).await?;
        let moved = (before.as_str(), stage.as_str());
        crate::inbox::service::lead_events(tx, t, lead, moved, &[], depth).await?;
    }
    Ok(())
}

async fn set_status(
    tx: &mut Tx,
    d: &Doing<'_>,
    status: &String,
    effects: &mut Effects,
) -> AppResult<()> {
    let (t, c, rule, by) = (d.t, d.c, d.rule, &d.by);
    let before = c.inbox_status.clone().unwrap_or_else(|| "open".into());
    if before != *status || c.snoozed_until.is_some() {
        sqlx::query(
            "UPDATE conversations SET inbox_status = $1, snoozed_until = NULL WHERE id = $2",
        )
        .bind(status)
        .bind(&c.id)
        .execute(&mut **tx)
        .await?;
        facts::status_moved(tx, &c.id, Some(&before), status, now_ms()).await?;
        let text = format!(
            "The rule “{}” changed the status from {before} to {status}",
            rule.name
        );
        let details = json!({"event": "status", "from": before, "to": status, "by": by});
        let action = audited::CONVERSATION_STATUS;
        line(tx, t, c, action, &text, details, effects).await?;
    }
    Ok(())
}

/// The status names a rule may set.
pub fn parse_status(raw: &str) -> Result<String, String> {
    match raw {
        "open" | "pending" | "closed" => Ok(raw.to_owned()),
        _ => Err("is open, pending or closed".into()),
    }
}

/// An activity line for the agents with its audit entry and the conversation's change.
async fn line(
    tx: &mut Tx,
    t: Tenant<'_>,
    c: &ConversationRow,
    action: &str,
    text: &str,
    details: serde_json::Value,
    effects: &mut Effects,
) -> AppResult<()> {
    audit::record(
        tx,
        t,
        None,
        action,
        ("conversation", &c.id),
        details.clone(),
    )
    .await?;
    let id = notes::activity(tx, t, &c.id, None, text, details).await?;
    changes::conversation_updated(tx, &c.id, None).await?;
    effects.notes.push((c.id.clone(), id));
    Ok(())
}

async fn note(
    tx: &mut Tx,
    t: Tenant<'_>,
    c: &ConversationRow,
    text: &str,
    mentions: &[String],
    by: serde_json::Value,
    effects: &mut Effects,
) -> AppResult<()> {
    let n = notes::NewNote {
        conversation_id: &c.id,
        author: None,
        kind: "note",
        text,
        mentions,
        details: Some(json!({"by": by})),
    };
    let id = notes::insert(tx, t, n).await?;
    effects.notes.push((c.id.clone(), id));
    Ok(())
}
