//! Inbound media: webhooks name media by id; a job asks the Graph API for its URL, downloads it
//! with the channel's token (only from the channel's Graph host or the configured media hosts:
//! a URL in a provider's answer is never followed anywhere else), stores it like an upload and
//! attaches it to the message.

use serde::Deserialize;

use crate::app::AppState;
use crate::changes;
use crate::db::{new_id, Tenant};
use crate::error::AppError;
use crate::jobs::{Job, JobError, JobResult};
use crate::media::sniff::Kind;

use super::channels;

/// Payload: `{messageId, channelId, mediaId, mimeType?, fileName?, voice}`.
pub const FETCH: &str = "whatsapp.media";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fetch {
    message_id: String,
    channel_id: String,
    media_id: String,
    file_name: Option<String>,
    #[serde(default)]
    voice: bool,
}

#[derive(Deserialize)]
struct MediaUrl {
    url: String,
}

/// Whether a download URL is on a host this channel may fetch from: the channel's Graph host
/// (same scheme and port), or one of `media_hosts` over HTTPS.
pub fn allowed(media_hosts: &[String], graph_base_url: &str, url: &str) -> bool {
    let Ok(target) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(target.scheme(), "https" | "http") {
        return false;
    }
    let Some(host) = target.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let graph = url::Url::parse(graph_base_url).ok();
    let same_as_graph = graph.as_ref().is_some_and(|g| {
        g.host_str().map(str::to_ascii_lowercase).as_deref() == Some(host.as_str())
            && g.port_or_known_default() == target.port_or_known_default()
            && g.scheme() == target.scheme()
    });
    same_as_graph || (target.scheme() == "https" && media_hosts.contains(&host))
}

pub async fn fetch(state: &AppState, job: &Job) -> JobResult {
    let f: Fetch = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    let Some(channel) = channels::find_any(&state.db, &f.channel_id).await? else {
        return Err(JobError::permanent("the channel is gone"));
    };
    let Some(token) = channel.access_token(&state.secret) else {
        return Err(JobError::permanent("the channel has no access token"));
    };
    let Some(message) = crate::messages::store::find(&state.db, &f.message_id).await? else {
        return Ok(()); // erased meanwhile
    };
    if message.media_id.is_some() || message.deleted_at.is_some() {
        return Ok(()); // done before (a repeated job), or deleted
    }
    let http = &state.media.http;
    let info = http
        .get(&format!("{}/{}", channel.graph(), f.media_id))?
        .bearer_auth(&token)
        .send()
        .await
        .map_err(crate::jobs::request_error)?;
    if !info.status().is_success() {
        let after = crate::jobs::retry_after(info.headers());
        let status = info.status();
        let body = crate::outbound::text_excerpt(info).await;
        return Err(crate::jobs::provider_error(
            status,
            after,
            format!("media lookup answered {status}: {body}"),
        ));
    }
    let info: MediaUrl = serde_json::from_value(crate::outbound::json_capped(info).await?)
        .map_err(JobError::permanent)?;
    if !allowed(
        &state.config.whatsapp.media_hosts,
        &channel.graph_base_url,
        &info.url,
    ) {
        return Err(JobError::permanent(format!(
            "the media URL's host is not allowed (PALAVER_WHATSAPP_MEDIA_HOSTS): {}",
            url::Url::parse(&info.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    let download = http
        .get(&info.url)?
        .bearer_auth(&token)
        .send()
        .await
        .map_err(crate::jobs::request_error)?;
    if !download.status().is_success() {
        let after = crate::jobs::retry_after(download.headers());
        let status = download.status();
        return Err(crate::jobs::provider_error(
            status,
            after,
            format!("media download answered {status}"),
        ));
    }
    let id = new_id();
    let t = Tenant::new(&state.db, &channel.workspace_id);
    let received = crate::media::upload::receive(
        state,
        &channel.workspace_id,
        &id,
        f.file_name.clone(),
        download.bytes_stream(),
        AppError::unavailable,
    )
    .await
    .map_err(|e| match e.status().as_u16() {
        413 | 422 => JobError::permanent(e),
        _ => JobError::retry(e),
    })?;
    let key = received.key.clone();
    let kind = match message.message_type().media_kind() {
        Some(Kind::Voice) | None if f.voice => Some("voice"),
        Some(k) if k.accepts(received.sniffed.class, received.sniffed.content_type) => {
            Some(k.as_str())
        }
        _ => None,
    };
    let stored = crate::media::upload::record(state, t, None, &id, received, kind).await;
    let row = match stored {
        Ok(row) => row,
        Err(e) => {
            let _ = state.media.storage.delete(&key).await;
            return Err(JobError::retry(e));
        }
    };
    let mut tx = state.db.begin().await?;
    let attached = sqlx::query("UPDATE messages SET media_id = $1 WHERE id = $2 AND media_id IS NULL AND deleted_at IS NULL")
        .bind(&row.id)
        .bind(&message.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if attached {
        changes::message_updated(&mut tx, &message.conversation_id, &message.id, message.seq)
            .await?;
    }
    state.db.commit(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn media_is_fetched_only_from_the_graph_host_or_listed_hosts() {
        let hosts = vec!["lookaside.fbsbx.com".to_string()];
        let graph = "https://graph.facebook.com";
        assert!(allowed(
            &hosts,
            graph,
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"
        ));
        assert!(allowed(
            &hosts,
            graph,
            "https://graph.facebook.com/v21.0/123"
        ));
        assert!(
            !allowed(&hosts, graph, "http://lookaside.fbsbx.com/x"),
            "listed hosts only over HTTPS"
        );
        assert!(!allowed(
            &hosts,
            graph,
            "https://169.254.169.254/latest/meta-data"
        ));
        assert!(!allowed(
            &hosts,
            graph,
            "https://lookaside.fbsbx.com.evil.example/x"
        ));
        assert!(
            !allowed(&hosts, graph, "https://graph.facebook.com:8443/x"),
            "another port"
        );
        assert!(!allowed(&hosts, graph, "file:///etc/passwd"));
        assert!(!allowed(&hosts, graph, "not a url"));
        assert!(allowed(
            &hosts,
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/download/1"
        ));
        assert!(!allowed(
            &hosts,
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9001/download/1"
        ));
    }
}
