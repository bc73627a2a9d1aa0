//! Writing rules: every part checked (the trigger against its type, conditions against the
//! fields they test, actions against the workspace: its agents, stages, templates, a webhook's
//! address), webhook secrets sealed, an audit entry in the same transaction.

use serde_json::json;

use super::actions::parse_status;
use super::model::{Action, Condition, Trigger, MAX_ACTIONS, MAX_CONDITIONS};
use super::store::{self, RuleFields, RuleView};
use crate::app::AppState;
use crate::audit::{self, actions as audited};
use crate::db::Tenant;
use crate::error::{AppError, AppResult, FieldError};
use crate::inbox::model::{parse_stage, parse_tag};

/// A rule's parts as a request gives them; `None` leaves a part as it is.
#[derive(Debug, Default)]
pub struct Parts {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub position: Option<i64>,
    pub trigger: Option<Trigger>,
    pub conditions: Option<Vec<Condition>>,
    pub actions: Option<Vec<Action>>,
    pub cooldown_minutes: Option<i64>,
}

fn invalid((field, message): (String, String)) -> FieldError {
    FieldError::new(field, message)
}

pub fn parse_rule_name(raw: &str) -> Result<String, String> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err("a name is 1 to 100 characters".into());
    }
    Ok(n.to_owned())
}

/// Checks every part given; all failures at once.
async fn check(state: &AppState, t: Tenant<'_>, p: Parts) -> AppResult<RuleFields> {
    let mut errors = Vec::new();
    let mut f = RuleFields {
        enabled: p.enabled,
        ..Default::default()
    };
    if let Some(n) = &p.name {
        match parse_rule_name(n) {
            Ok(n) => f.name = Some(n),
            Err(m) => errors.push(FieldError::new("name", m)),
        }
    }
    if let Some(pos) = p.position {
        if !(0..=1_000_000).contains(&pos) {
            errors.push(FieldError::new("position", "0 to 1000000"));
        }
        f.position = Some(pos);
    }
    if let Some(c) = p.cooldown_minutes {
        if !(0..=525_600).contains(&c) {
            errors.push(FieldError::new("cooldownMinutes", "0 to 525600 (a year)"));
        }
        f.cooldown_minutes = Some(c);
    }
    if let Some(trigger) = p.trigger {
        match trigger.check() {
            Ok(t) => f.trigger = Some(t),
            Err(e) => errors.push(invalid(e)),
        }
    }
    if let Some(conditions) = p.conditions {
        if conditions.len() > MAX_CONDITIONS {
            errors.push(FieldError::new("conditions", "at most 20"));
        }
        let mut ok = Vec::new();
        for (i, c) in conditions.into_iter().enumerate() {
            match c.check(i) {
                Ok(c) => ok.push(c),
                Err(e) => errors.push(invalid(e)),
            }
        }
        f.conditions = Some(ok);
    }
    if let Some(actions) = p.actions {
        if actions.is_empty() || actions.len() > MAX_ACTIONS {
            errors.push(FieldError::new("actions", "1 to 20 actions"));
        }
        let mut ok = Vec::new();
        for (i, a) in actions.into_iter().enumerate() {
            match check_action(state, t, a).await? {
                Ok(a) => ok.push(a),
                Err((field, m)) => errors.push(FieldError::new(format!("actions[{i}].{field}"), m)),
            }
        }
        f.actions = Some(ok);
    }
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(f)
}

type Checked = Result<Action, (&'static str, String)>;

/// One action against the workspace; a webhook's secret sealed.
async fn check_action(state: &AppState, t: Tenant<'_>, a: Action) -> AppResult<Checked> {
    let text_ok = |s: &str| !s.trim().is_empty() && s.chars().count() <= 4096;
    let agent = |role: Option<crate::db::Role>| role.is_some_and(|r| r.works_inbox());
    Ok(match a {
        Action::SendText { text } if !text_ok(&text) => {
            Err(("text", "1 to 4096 characters".into()))
        }
        Action::AddNote { text } if !text_ok(&text) => Err(("text", "1 to 4096 characters".into())),
        Action::SendTemplate {
            template_id,
            parameters,
        } => match crate::messages::templates::find(t, &template_id).await? {
            None => Err(("templateId", "no such template in this workspace".into())),
            Some(tpl) => {
                let wanted = crate::messages::templates::variable_count(
                    &crate::messages::templates::body_text(&tpl),
                );
                if parameters.len() != wanted {
                    Err((
                        "parameters",
                        format!("the template expects {wanted} parameter(s)"),
                    ))
                } else {
                    Ok(Action::SendTemplate {
                        template_id,
                        parameters,
                    })
                }
            }
        },
        Action::Assign {
            assignee_id,
            round_robin,
        } => match (&assignee_id, round_robin) {
            (Some(_), Some(true)) => Err(("roundRobin", "either assigneeId or roundRobin".into())),
            (None, Some(true)) => Ok(Action::Assign {
                assignee_id,
                round_robin,
            }),
            (Some(a), _) if agent(t.role_of(a).await?) => Ok(Action::Assign {
                assignee_id,
                round_robin: None,
            }),
            (Some(_), _) => Err((
                "assigneeId",
                "is not an agent, admin or owner of this workspace".into(),
            )),
            (None, _) => Err(("assigneeId", "is required, or roundRobin: true".into())),
        },
        Action::AddTag { tag } => parse_tag(&tag)
            .map(|tag| Action::AddTag { tag })
            .map_err(|m| ("tag", m)),
        Action::RemoveTag { tag } => parse_tag(&tag)
            .map(|tag| Action::RemoveTag { tag })
            .map_err(|m| ("tag", m)),
        Action::SetStage { stage } => match parse_stage(&stage) {
            Ok(s) if crate::inbox::catalog::stages(t).await?.contains(&s) => {
                Ok(Action::SetStage { stage: s })
            }
            Ok(_) => Err(("stage", "is not a stage of this workspace".into())),
            Err(m) => Err(("stage", m)),
        },
        Action::SetStatus { status } => parse_status(&status)
            .map(|status| Action::SetStatus { status })
            .map_err(|m| ("status", m)),
        Action::Notify { user_ids, text } => {
            if user_ids.is_empty() || user_ids.len() > 50 {
                return Ok(Err(("userIds", "1 to 50 agents".into())));
            }
            if text.as_deref().is_some_and(|s| !text_ok(s)) {
                return Ok(Err(("text", "1 to 4096 characters".into())));
            }
            for u in &user_ids {
                if !agent(t.role_of(u).await?) {
                    return Ok(Err((
                        "userIds",
                        format!("{u} is not an agent, admin or owner of this workspace"),
                    )));
                }
            }
            Ok(Action::Notify { user_ids, text })
        }
        Action::Webhook { url, secret } => {
            let url = match crate::outbound::parse_target_url(state.http.allow(), &url) {
                Ok(u) => u,
                Err(m) => return Ok(Err(("url", m))),
            };
            match secret {
                Some(s) if (16..=200).contains(&s.chars().count()) => Ok(Action::Webhook {
                    url,
                    secret: Some(state.secret.seal(&s)),
                }),
                _ => Err(("secret", "is required: 16 to 200 characters (write-only; give it again when the actions change)".into())),
            }
        }
        other => Ok(other),
    })
}

pub async fn create(state: &AppState, t: Tenant<'_>, actor: &str, p: Parts) -> AppResult<RuleView> {
    let mut missing = Vec::new();
    for (name, absent) in [
        ("name", p.name.is_none()),
        ("trigger", p.trigger.is_none()),
        ("actions", p.actions.is_none()),
    ] {
        if absent {
            missing.push(FieldError::new(name, "is required"));
        }
    }
    if !missing.is_empty() {
        return Err(AppError::validation(missing));
    }
    let f = check(state, t, p).await?;
    let (Some(name), Some(trigger), Some(actions)) = (&f.name, &f.trigger, &f.actions) else {
        return Err(AppError::internal(anyhow::anyhow!(
            "checked parts went missing"
        )));
    };
    let conditions = f.conditions.clone().unwrap_or_default();
    let cooldown = f
        .cooldown_minutes
        .unwrap_or(super::model::DEFAULT_COOLDOWN_MINUTES);
    let mut tx = t.db().begin().await?;
    let head = (name.as_str(), f.enabled.unwrap_or(true), trigger);
    let id = store::insert(
        &mut tx,
        t,
        actor,
        head,
        (&conditions, actions, cooldown),
        f.position,
    )
    .await?;
    let details = json!({"name": name, "trigger": trigger.kind.as_str()});
    audit::record(
        &mut tx,
        t,
        Some(actor),
        audited::AUTOMATION_CREATED,
        ("automation", &id),
        details,
    )
    .await?;
    t.db().commit(tx).await?;
    store::find(t, &id).await?.view()
}

pub async fn update(
    state: &AppState,
    t: Tenant<'_>,
    actor: &str,
    id: &str,
    p: Parts,
) -> AppResult<RuleView> {
    let before = store::find(t, id).await?;
    let f = check(state, t, p).await?;
    let mut tx = t.db().begin().await?;
    store::update(&mut tx, t, &before, &f).await?;
    let fields: Vec<&str> = [
        ("name", f.name.is_some()),
        ("enabled", f.enabled.is_some()),
        ("position", f.position.is_some()),
        ("trigger", f.trigger.is_some()),
        ("conditions", f.conditions.is_some()),
        ("actions", f.actions.is_some()),
        ("cooldownMinutes", f.cooldown_minutes.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    let details = json!({"fields": fields, "enabled": f.enabled});
    audit::record(
        &mut tx,
        t,
        Some(actor),
        audited::AUTOMATION_UPDATED,
        ("automation", id),
        details,
    )
    .await?;
    t.db().commit(tx).await?;
    store::find(t, id).await?.view()
}

pub async fn delete(t: Tenant<'_>, actor: &str, id: &str) -> AppResult<()> {
    let before = store::find(t, id).await?;
    let mut tx = t.db().begin().await?;
    store::delete(&mut tx, t, id).await?;
    let details = json!({"name": before.name});
    audit::record(
        &mut tx,
        t,
        Some(actor),
        audited::AUTOMATION_DELETED,
        ("automation", id),
        details,
    )
    .await?;
    t.db().commit(tx).await?;
    Ok(())
}
