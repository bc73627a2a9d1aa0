//! Receiving a file: streamed to storage under the limit of its sniffed class, hashed, then
//! recorded with its processing jobs. Used by `POST /media` and by media fetched from a
//! WhatsApp channel's provider.

use futures_util::StreamExt;
use object_store::WriteMultipart;
use sha2::{Digest, Sha256};

use super::model::{clean_file_name, MediaRow};
use super::sniff::{self, Kind, Sniffed};
use super::storage::Storage;
use super::{kinds, process, store, Class};
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{AppError, AppResult, Code};

/// What a stored file is.
pub struct Received {
    pub key: String,
    size: u64,
    sha256: String,
    pub sniffed: Sniffed,
    file_name: Option<String>,
    dimensions: Option<(u32, u32)>,
}

/// Streams a file to storage: sniffs the first bytes, counts against the limit of the sniffed
/// class and stops (removing what was written) the moment it is passed. Used by uploads and by
/// media fetched from a channel's provider.
pub async fn receive<S, E>(
    state: &AppState,
    workspace_id: &str,
    id: &str,
    file_name: Option<String>,
    mut stream: S,
    stream_error: impl Fn(E) -> AppError,
) -> AppResult<Received>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    let file_name = file_name.as_deref().and_then(clean_file_name);
    let key = Storage::original_key(workspace_id, id);
    let path = Storage::path(&key).map_err(AppError::internal)?;
    let storage = &state.media.storage;
    let upload = storage
        .store()
        .put_multipart(&path)
        .await
        .map_err(AppError::unavailable)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, storage.part_size);
    let mut head: Vec<u8> = Vec::with_capacity(sniff::HEAD);
    let mut sniffed: Option<Sniffed> = None;
    let mut limit = state.media.largest();
    let mut size = 0u64;
    let mut hasher = Sha256::new();
    let failure = loop {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => chunk,
            None => break None,
            Some(Err(e)) => break Some(stream_error(e)),
        };
        size += chunk.len() as u64;
        if sniffed.is_none() {
            let room = sniff::HEAD - head.len();
            head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if head.len() == sniff::HEAD {
                let s = sniff::sniff(&head);
                limit = state.media.limit(s.class);
                sniffed = Some(s);
            }
        }
        if size > limit {
            break Some(too_large(format!(
                "files of this type may be at most {} MiB",
                limit / (1024 * 1024)
            )));
        }
        hasher.update(&chunk);
        if let Err(e) = writer.wait_for_capacity(2).await {
            break Some(AppError::unavailable(e));
        }
        writer.put(chunk);
    };
    if failure.is_none() && size == 0 {
        let _ = writer.abort().await;
        return Err(AppError::invalid_field("file", "is empty"));
    }
    if let Some(e) = failure {
        let _ = writer.abort().await;
        return Err(e);
    }
    let sniffed = match sniffed {
        Some(s) => s,
        None => {
            let s = sniff::sniff(&head);
            if size > state.media.limit(s.class) {
                let _ = writer.abort().await;
                return Err(too_large(format!(
                    "files of this type may be at most {} MiB",
                    state.media.limit(s.class) / (1024 * 1024)
                )));
            }
            s
        }
    };
    writer.finish().await.map_err(AppError::unavailable)?;
    let dimensions = (sniffed.class == Class::Image)
        .then(|| process::image_dimensions(&head))
        .flatten();
    Ok(Received {
        key,
        size,
        sha256: hex::encode(hasher.finalize()),
        sniffed,
        file_name,
        dimensions,
    })
}

/// Writes the row and its processing jobs in one transaction.
pub async fn record(
    state: &AppState,
    t: crate::db::Tenant<'_>,
    owner: Option<&str>,
    id: &str,
    r: Received,
    kind_field: Option<&str>,
) -> AppResult<MediaRow> {
    let kind = match kind_field {
        Some(k) => Kind::parse(k).ok_or_else(|| {
            AppError::invalid_field(
                "kind",
                "must be image, sticker, audio, voice, video or document",
            )
        })?,
        None => Kind::default_for(&r.sniffed),
    };
    if !kind.accepts(r.sniffed.class, r.sniffed.content_type) {
        return Err(AppError::invalid_field(
            "kind",
            format!(
                "the file is {}, which cannot be sent as {}",
                r.sniffed.content_type,
                kind.as_str()
            ),
        ));
    }
    let transcription = state.config.media.transcription.is_some();
    let text_source = super::text_source(&state.media, r.sniffed.content_type, kind, transcription);
    let text_state = if text_source.is_some() {
        "pending"
    } else {
        "unavailable"
    };
    let row = MediaRow {
        id: id.to_owned(),
        workspace_id: t.workspace_id().to_owned(),
        owner_id: owner.map(str::to_owned),
        kind: kind.as_str().to_owned(),
        content_type: r.sniffed.content_type.to_owned(),
        size: r.size as i64,
        sha256: r.sha256,
        file_name: r.file_name,
        storage_key: r.key,
        width: r.dimensions.map(|d| i64::from(d.0)),
        height: r.dimensions.map(|d| i64::from(d.1)),
        duration_ms: None,
        pages: None,
        thumbnail_key: None,
        analyzed_at: None,
        text_state: text_state.to_owned(),
        text_source: None,
        text: None,
        created_at: now_ms(),
    };
    let mut tx = state.db.begin().await?;
    store::insert(
        &mut tx,
        t,
        store::NewMedia {
            id,
            owner_id: row.owner_id.as_deref(),
            kind: &row.kind,
            content_type: &row.content_type,
            size: row.size,
            sha256: &row.sha256,
            file_name: row.file_name.as_deref(),
            storage_key: &row.storage_key,
            width: row.width,
            height: row.height,
            text_state,
            created_at: row.created_at,
        },
    )
    .await?;
    crate::jobs::enqueue(&mut tx, kinds::ANALYZE, id).await?;
    if text_source.is_some() {
        crate::jobs::enqueue(&mut tx, kinds::EXTRACT_TEXT, id).await?;
    }
    tx.commit().await?;
    state.db.wake_jobs();
    metrics::counter!("media_uploads_total", "kind" => kind.as_str()).increment(1);
    metrics::counter!("media_upload_bytes_total").increment(row.size as u64);
    Ok(row)
}

pub(super) fn too_large(detail: impl Into<String>) -> AppError {
    AppError::new(Code::PayloadTooLarge, detail)
}
