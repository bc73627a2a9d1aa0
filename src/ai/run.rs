//! The job that carries out a run: reads the conversation, analyses it (with the workspace's
//! provider, else the server's, else the offline analyzer), stores the insight and tells the
//! workspace's agents (`insight:new`). Provider calls are checked against the monthly budget
//! before they are made and recorded, with what was sent, whatever comes of them.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::insights::{self, InsightBody, Made};
use super::keys::{self, Chosen};
use super::prompt::{self, Entry};
use super::provider;
use super::usage::{self, CallRecord};
use crate::app::AppState;
use crate::conversations::model::ConversationRow;
use crate::db::{now_ms, Tenant};
use crate::error::{AppResult, Code};
use crate::events;
use crate::jobs::{Job, JobError, JobResult};
use crate::workspaces::AiSettings;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunPayload {
    run_id: String,
}

/// The job of a run. A workspace that opted out since ends the run failed, having sent
/// nothing anywhere.
pub async fn run_job(state: AppState, job: Arc<Job>) -> JobResult {
    let p: RunPayload = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    carry_out(&state, &p.run_id).await.map_err(JobError::retry)
}

/// A run whose job gave up (the database kept failing) ends `failed`, so that it neither shows
/// as queued for ever nor keeps the idle trigger from the conversation.
pub async fn gave_up(state: &AppState, job: &Job, error: &str) -> AppResult<()> {
    let Ok(p) = serde_json::from_str::<RunPayload>(&job.payload) else {
        return Ok(());
    };
    let Some((workspace, ..)) = insights::queued(&state.db, &p.run_id).await? else {
        return Ok(());
    };
    let t = Tenant::new(&state.db, &workspace);
    insights::fail(
        t,
        &p.run_id,
        &format!("the analysis could not be carried out: {error}"),
        None,
    )
    .await
}

async fn carry_out(state: &AppState, run_id: &str) -> AppResult<()> {
    let Some((workspace, conversation_id, trigger, by)) =
        insights::queued(&state.db, run_id).await?
    else {
        return Ok(());
    };
    let t = Tenant::new(&state.db, &workspace);
    let Some(c) = crate::conversations::store::find(t, &conversation_id).await? else {
        return Ok(());
    };
    let ai = match insights::enabled(t).await {
        Ok(ai) => ai,
        Err(e) if e.code() == Code::AiNotEnabled => {
            return insights::fail(t, run_id, "AI analysis was turned off", None).await;
        }
        Err(e) => return Err(e),
    };
    let entries = insights::transcript(&state.db, &c).await?;
    let made = match keys::choose(t, &state.secret, &state.config.ai).await? {
        None => {
            let cx = crate::inbox::canned::context(t, &c, by.as_deref()).await?;
            let canned = crate::inbox::canned::list(t, None).await?;
            let made = insights::offline_analysis(&entries, &canned, &cx);
            insights::complete(t, run_id, &c, &trigger, &made, None).await?
        }
        Some(chosen) => by_provider(state, t, run_id, &c, &trigger, &ai, &entries, chosen).await?,
    };
    let Some(id) = made else {
        return Ok(());
    };
    if let Some(insight) = insights::find_insight(&state.db, &id).await? {
        let agents = crate::inbox::conversations::candidates(t).await?;
        let to = agents.into_iter().map(|a| a.user_id).collect();
        let data = serde_json::json!({"conversationId": conversation_id, "insight": insight});
        state.emit_event(to, events::INSIGHT_NEW, &data);
    }
    Ok(())
}

/// A run by a provider: refused when the month's budget is used up; otherwise one call (with
/// its retries, and the retiring keys when the provider refuses the active one).
#[allow(clippy::too_many_arguments)]
async fn by_provider(
    state: &AppState,
    t: Tenant<'_>,
    run_id: &str,
    c: &ConversationRow,
    trigger: &str,
    ai: &AiSettings,
    entries: &[Entry],
    chosen: Chosen,
) -> AppResult<Option<String>> {
    let mut call = CallRecord {
        run_id: run_id.to_owned(),
        conversation_id: c.id.clone(),
        key_id: chosen.key_id.clone(),
        base_url: chosen.endpoint.base_url.clone(),
        model: chosen.endpoint.model.clone(),
        outcome: "refused",
        error: None,
        attempts: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        tokens_counted: false,
        latency_ms: 0,
        sent: None,
        trimmed: 0,
    };
    if let Some(refusal) = over_budget(state, t, ai).await? {
        call.error = Some(refusal.clone());
        insights::fail(t, run_id, &refusal, Some(&call)).await?;
        return Ok(None);
    }
    let config = &state.config.ai;
    let p = prompt::build(entries, ai.mask_contacts, config.context_tokens);
    if p.to_seq == 0 {
        insights::fail(
            t,
            run_id,
            "the conversation has no messages to analyse",
            None,
        )
        .await?;
        return Ok(None);
    }
    call.sent = serde_json::to_string(&p.messages).ok();
    call.trimmed = p.trimmed;
    let started = Instant::now();
    let ask = |endpoint| {
        provider::complete(
            &state.ai.http,
            &state.ai.breakers,
            endpoint,
            &p.messages,
            config.max_tokens,
            config.timeout,
        )
    };
    let mut result = ask(&chosen.endpoint).await;
    for (key_id, endpoint) in &chosen.fallbacks {
        match &result {
            Err(f) if f.unauthorized => {
                tracing::warn!(key_id = ?call.key_id, "the AI provider refused the active key; trying a retiring one");
                call.attempts += f.tries;
                call.key_id = Some(key_id.clone());
                result = ask(endpoint).await;
            }
            _ => break,
        }
    }
    call.latency_ms = started.elapsed().as_millis() as i64;
    match result {
        Ok(a) => {
            call.outcome = "ok";
            call.attempts += a.tries;
            call.prompt_tokens = a.prompt_tokens;
            call.completion_tokens = a.completion_tokens;
            call.tokens_counted = a.counted;
            let made = Made {
                body: InsightBody {
                    summary: a.insight.summary,
                    open_questions: a.insight.open_questions,
                    recommendations: a.insight.recommendations,
                    suggested_reply: a.insight.suggested_reply,
                    sentiment: a.insight.sentiment,
                    language: a.insight.language,
                },
                from_seq: p.from_seq,
                to_seq: p.to_seq,
                provider: "openai",
                model: call.model.clone(),
                prompt_tokens: a.prompt_tokens,
                completion_tokens: a.completion_tokens,
                latency_ms: call.latency_ms,
            };
            insights::complete(t, run_id, c, trigger, &made, Some(&call)).await
        }
        Err(f) => {
            call.outcome = "failed";
            call.attempts += f.tries;
            call.error = Some(f.error.clone());
            tracing::warn!(run_id, error = %f.error, "an AI provider call failed");
            insights::fail(t, run_id, &f.error, Some(&call)).await?;
            Ok(None)
        }
    }
}

/// The refusal when the workspace's tokens this month reached its budget; the first refusal
/// of a month tells the owners and admins (an event and an audit entry).
async fn over_budget(
    state: &AppState,
    t: Tenant<'_>,
    ai: &AiSettings,
) -> AppResult<Option<String>> {
    let Some(budget) = ai.monthly_token_budget else {
        return Ok(None);
    };
    let (since, month) = usage::month(now_ms());
    let used = usage::used_since(t, since).await?;
    if used < budget {
        return Ok(None);
    }
    let mut tx = state.db.begin().await?;
    let first = usage::first_notice(&mut tx, t, &month).await?;
    if first {
        let details = serde_json::json!({"month": month, "budget": budget, "used": used});
        crate::audit::record(
            &mut tx,
            t,
            None,
            crate::audit::actions::AI_BUDGET_EXHAUSTED,
            ("workspace", t.workspace_id()),
            details,
        )
        .await?;
    }
    state.db.commit(tx).await?;
    if first {
        let admins = crate::workspaces::store::admins(t).await?;
        let data = serde_json::json!({"workspaceId": t.workspace_id(), "month": month,
            "budget": budget, "used": used});
        state.emit_event(admins, events::AI_BUDGET_EXHAUSTED, &data);
    }
    Ok(Some(format!(
        "the workspace's monthly token budget ({budget}) is used up ({used} this month)"
    )))
}
