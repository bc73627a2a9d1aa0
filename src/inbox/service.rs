//! The inbox's rules for leads and the catalog: checks against the workspace's pipeline and
//! attribute definitions, the write, and its audit entry, in one transaction.

use super::catalog;
use super::leads::{self, LeadRow, Rules};
use super::model::{AttributeDefinition, LeadFields, LeadView};
use crate::audit::{self, actions};
use crate::db::Tenant;
use crate::error::{AppError, AppResult};

/// 422 on `field` unless `user_id` works the workspace's inbox (owner, admin or agent).
pub async fn require_agent_user(t: Tenant<'_>, user_id: &str, field: &str) -> AppResult<()> {
    match t.role_of(user_id).await? {
        Some(role) if role.works_inbox() => Ok(()),
        _ => Err(AppError::invalid_field(
            field,
            "is not an agent, admin or owner of this workspace",
        )),
    }
}

async fn check(t: Tenant<'_>, f: &LeadFields) -> AppResult<()> {
    Rules::load(t)
        .await?
        .check(f)
        .map_err(|(field, m)| AppError::invalid_field(field, m))?;
    if let Some(Some(a)) = &f.assignee_id {
        require_agent_user(t, a, "assigneeId").await?;
    }
    Ok(())
}

pub async fn view(t: Tenant<'_>, row: LeadRow) -> AppResult<LeadView> {
    let mut v = leads::views(t.db(), vec![row]).await?;
    v.pop().ok_or_else(AppError::not_found)
}

pub async fn create_lead(t: Tenant<'_>, actor: &str, f: LeadFields) -> AppResult<LeadView> {
    check(t, &f).await?;
    let mut tx = t.db().begin().await?;
    let lead = leads::insert(&mut tx, t, &f).await?;
    audit::record(
        &mut tx,
        t,
        Some(actor),
        actions::LEAD_CREATED,
        ("lead", &lead.id),
        serde_json::json!({"name": lead.name}),
    )
    .await?;
    t.db().commit(tx).await?;
    view(t, lead).await
}

/// The names of the fields a change sets (for the audit entry).
fn changed(f: &LeadFields) -> Vec<&'static str> {
    [
        ("name", f.name.is_some()),
        ("phone", f.phone.is_some()),
        ("email", f.email.is_some()),
        ("stage", f.stage.is_some()),
        ("tags", f.tags.is_some()),
        ("optIn", f.opt_in.is_some()),
        ("assigneeId", f.assignee_id.is_some()),
        ("attributes", f.attributes.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

pub async fn update_lead(
    t: Tenant<'_>,
    actor: &str,
    id: &str,
    f: LeadFields,
) -> AppResult<LeadView> {
    check(t, &f).await?;
    let mut tx = t.db().begin().await?;
    let before = leads::find_in_tx(&mut tx, t, id).await?;
    let tags_before = leads::tag_names_in_tx(&mut tx, id).await?;
    let lead = leads::update(&mut tx, t, &before, &f).await?;
    let added: Vec<&String> = match &f.tags {
        Some(tags) => tags.iter().filter(|n| !tags_before.contains(n)).collect(),
        None => Vec::new(),
    };
    lead_events(&mut tx, t, id, (&before.stage, &lead.stage), &added, 0).await?;
    let mut details = serde_json::json!({"fields": changed(&f)});
    if before.stage != lead.stage {
        details["stage"] = serde_json::json!({"from": before.stage, "to": lead.stage});
    }
    if before.assignee_id != lead.assignee_id {
        details["assigneeId"] =
            serde_json::json!({"from": before.assignee_id, "to": lead.assignee_id});
    }
    audit::record(
        &mut tx,
        t,
        Some(actor),
        actions::LEAD_UPDATED,
        ("lead", id),
        details,
    )
    .await?;
    t.db().commit(tx).await?;
    view(t, lead).await
}

/// The events of a lead's change for the automation rules: its stage moved, tags were added.
pub async fn lead_events(
    tx: &mut crate::db::Tx,
    t: Tenant<'_>,
    lead_id: &str,
    (from, to): (&str, &str),
    added: &[&String],
    depth: i64,
) -> AppResult<()> {
    use crate::conversations::triggers::{emit, Event};
    let on = (None, Some(lead_id));
    let ws = t.workspace_id();
    if from != to {
        let event = Event::StageChanged {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        emit(tx, ws, on, event, depth).await?;
    }
    for tag in added {
        let event = Event::TagAdded {
            tag: (*tag).clone(),
        };
        emit(tx, ws, on, event, depth).await?;
    }
    Ok(())
}

pub async fn delete_lead(t: Tenant<'_>, actor: &str, id: &str) -> AppResult<()> {
    let mut tx = t.db().begin().await?;
    let lead = leads::find_in_tx(&mut tx, t, id).await?;
    leads::delete(&mut tx, t, id).await?;
    audit::record(
        &mut tx,
        t,
        Some(actor),
        actions::LEAD_DELETED,
        ("lead", id),
        serde_json::json!({"name": lead.name, "waId": lead.wa_id}),
    )
    .await?;
    t.db().commit(tx).await?;
    Ok(())
}

pub async fn set_stages(t: Tenant<'_>, actor: &str, stages: Vec<String>) -> AppResult<Vec<String>> {
    let mut tx = t.db().begin().await?;
    catalog::set_stages(&mut tx, t, &stages).await?;
    audit::record(
        &mut tx,
        t,
        Some(actor),
        actions::STAGES_CHANGED,
        ("workspace", t.workspace_id()),
        serde_json::json!({"stages": stages}),
    )
    .await?;
    t.db().commit(tx).await?;
    catalog::stages(t).await
}

pub async fn set_attributes(
    t: Tenant<'_>,
    actor: &str,
    defs: Vec<AttributeDefinition>,
) -> AppResult<Vec<AttributeDefinition>> {
    let mut tx = t.db().begin().await?;
    catalog::set_attributes(&mut tx, t, &defs).await?;
    let keys: Vec<&str> = defs.iter().map(|d| d.key.as_str()).collect();
    audit::record(
        &mut tx,
        t,
        Some(actor),
        actions::ATTRIBUTES_CHANGED,
        ("workspace", t.workspace_id()),
        serde_json::json!({"keys": keys}),
    )
    .await?;
    t.db().commit(tx).await?;
    catalog::attributes(t).await
}
