//! The inbox's background jobs: a conversation opened (auto-assignment and the agents'
//! activity line) and a snooze ended. Both are safe to run again: assignment and waking are
//! conditional writes, and the "reopened" line is written with the job's own end.

use std::collections::HashSet;
use std::sync::Arc;

use super::conversations::{self, OpenedPayload, WakePayload};
use super::desk_routes::tell_agents;
use crate::app::AppState;
use crate::db::Tenant;
use crate::error::AppResult;
use crate::jobs::{Job, JobError, JobResult};

pub use crate::conversations::model::INBOX_OPENED_JOB as OPENED;
pub use conversations::WAKE_JOB as WAKE;

async fn workspace_of(state: &AppState, conversation_id: &str) -> AppResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT workspace_id FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .fetch_optional(state.db.reader())
            .await?,
    )
}

pub async fn opened(state: AppState, job: Arc<Job>) -> JobResult {
    let p: OpenedPayload = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    run_opened(&state, &job, &p).await.map_err(JobError::retry)
}

async fn run_opened(state: &AppState, job: &Job, p: &OpenedPayload) -> AppResult<()> {
    let Some(ws) = workspace_of(state, &p.conversation_id).await? else {
        return Ok(());
    };
    let t = Tenant::new(&state.db, &ws);
    let agents = conversations::candidates(t).await?;
    let ids: Vec<String> = agents.iter().map(|c| c.user_id.clone()).collect();
    let online: HashSet<String> = state.online_among(ids).await.into_iter().collect();
    let mut lines = Vec::new();
    lines.extend(conversations::auto_assign(t, &p.conversation_id, agents, &online).await?);
    lines.extend(conversations::opened_line(t, p, job).await?);
    tell_agents(state, t, &p.conversation_id, &lines).await
}

pub async fn wake(state: AppState, job: Arc<Job>) -> JobResult {
    let p: WakePayload = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    let run = async {
        let Some(ws) = workspace_of(&state, &p.conversation_id).await? else {
            return Ok(());
        };
        let t = Tenant::new(&state.db, &ws);
        if let Some(line) = conversations::wake(t, &p).await? {
            state.db.wake_jobs();
            tell_agents(&state, t, &p.conversation_id, &[line]).await?;
        }
        AppResult::Ok(())
    };
    run.await.map_err(JobError::retry)
}
