//! The media jobs. Each is repeatable: it recomputes and overwrites what it produces.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::app::AppState;
use crate::changes;
use crate::db::now_ms;
use crate::jobs::{Job, JobError, JobResult};

use super::model::MediaRow;
use super::storage::Storage;
use super::{class_of, process, store, Class};

pub use super::kinds::{ANALYZE, DELETE_OBJECTS, EXTRACT_TEXT};

/// A local copy of an upload, deleted when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copies an object to the scratch dir, streaming.
async fn fetch(state: &AppState, key: &str, job: &Job) -> Result<Scratch, JobError> {
    let media = &state.media;
    let path = Storage::path(key).map_err(JobError::permanent)?;
    let got = match media.storage.store().get(&path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(JobError::permanent("the stored object is missing"))
        }
        Err(e) => return Err(JobError::retry(e)),
    };
    let scratch = Scratch(media.scratch.join(&job.id));
    let mut file = tokio::fs::File::create(&scratch.0)
        .await
        .map_err(JobError::retry)?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk.map_err(JobError::retry)?)
            .await
            .map_err(JobError::retry)?;
    }
    file.flush().await.map_err(JobError::retry)?;
    Ok(scratch)
}

/// CPU-heavy media work (decoding, OCR, rendering) runs at most one per core at a time,
/// however many jobs run: the job workers also serve light, I/O-bound jobs (webhooks, sends),
/// and a burst of uploads must neither take every core nor hold many decoded images in memory.
async fn cpu_slot() -> tokio::sync::SemaphorePermit<'static> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS
        .get_or_init(|| {
            tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
        })
        .acquire()
        .await
        .expect("the semaphore stays open")
}

/// Runs CPU-bound work on the blocking pool, in a CPU slot; a panic in it (a decoder meeting
/// hostile bytes) fails the job instead of the worker.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<anyhow::Result<T>, JobError> {
    let _slot = cpu_slot().await;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::permanent(format!("processing panicked: {e}")))
}

pub async fn analyze(state: &AppState, job: &Job) -> JobResult {
    let Some(m) = store::find(&state.db, &job.payload).await? else {
        return Ok(()); // deleted meanwhile
    };
    let mut found = store::Analysis::default();
    let class = class_of(&m.content_type);
    let worth_a_copy = matches!(class, Class::Image | Class::Audio | Class::Video)
        || m.content_type == "application/pdf";
    if worth_a_copy {
        let local = fetch(state, &m.storage_key, job).await?;
        let thumbnail = match class {
            Class::Image => image(&local.0, &mut found).await?,
            Class::Audio | Class::Video => {
                let path = local.0.clone();
                match blocking(move || process::duration_ms(&path)).await? {
                    Ok(ms) => found.duration_ms = ms,
                    Err(e) => tracing::info!(media = %m.id, error = %e, "no duration"),
                }
                None
            }
            Class::File => pdf(state, &m, &local.0, &mut found).await?,
        };
        if let Some(jpeg) = thumbnail {
            let key = Storage::thumbnail_key(&m.workspace_id, &m.id);
            let path = Storage::path(&key).map_err(JobError::permanent)?;
            state
                .media
                .storage
                .store()
                .put(&path, jpeg.into())
                .await
                .map_err(JobError::retry)?;
            found.thumbnail_key = Some(key);
        }
    }
    let mut tx = state.db.begin().await?;
    if !store::set_analysis(&mut tx, &m.id, &found, now_ms()).await? {
        return Ok(());
    }
    // Whoever already has a message with this media hears that it changed.
    let messages = store::messages_with(&mut tx, &m.id).await?;
    for (message_id, conversation_id, seq) in &messages {
        changes::message_updated(&mut tx, conversation_id, message_id, *seq).await?;
    }
    state.db.commit(tx).await?;
    Ok(())
}

/// Dimensions and a thumbnail; bytes that do not decode keep the header's dimensions and get
/// no thumbnail (HEIC, say), which is not a failure of the job.
async fn image(path: &Path, found: &mut store::Analysis) -> Result<Option<Vec<u8>>, JobError> {
    let path = path.to_owned();
    match blocking(move || process::image_thumbnail(&path)).await? {
        Ok((w, h, jpeg)) => {
            found.width = Some(i64::from(w));
            found.height = Some(i64::from(h));
            Ok(Some(jpeg))
        }
        Err(e) => {
            tracing::info!(error = %e, "image without thumbnail");
            Ok(None)
        }
    }
}

async fn pdf(
    state: &AppState,
    m: &MediaRow,
    path: &Path,
    found: &mut store::Analysis,
) -> Result<Option<Vec<u8>>, JobError> {
    let slot = cpu_slot().await;
    let read = process::pdf_info(&state.media.pdf_reader, path, false).await;
    drop(slot);
    match read {
        Ok((pages, _)) => found.pages = Some(pages),
        Err(e) => {
            tracing::info!(media = %m.id, error = %e, "unreadable PDF");
            return Ok(None);
        }
    }
    let Some(pdftoppm) = &state.media.pdftoppm else {
        return Ok(None);
    };
    let slot = cpu_slot().await;
    let rendered = process::pdf_thumbnail(pdftoppm, path, path).await;
    drop(slot);
    match rendered {
        Ok(jpeg) => Ok(Some(jpeg)),
        Err(e) => {
            tracing::info!(media = %m.id, error = %e, "no PDF thumbnail");
            Ok(None)
        }
    }
}

pub async fn extract_text(state: &AppState, job: &Job) -> JobResult {
    let Some(m) = store::find(&state.db, &job.payload).await? else {
        return Ok(());
    };
    let transcription = state.config.media.transcription.is_some();
    let Some(source) = super::text_source(&state.media, &m.content_type, m.kind(), transcription)
    else {
        // The tool went away since the upload (uninstalled, configuration changed).
        store::set_text(&state.db, &m.id, "unavailable", None, None).await?;
        return Ok(());
    };
    let local = fetch(state, &m.storage_key, job).await?;
    let text = match source {
        "pdf" => {
            let _slot = cpu_slot().await;
            match process::pdf_info(&state.media.pdf_reader, &local.0, true).await {
                Ok((_, text)) => text.unwrap_or_default(),
                Err(e) => return Err(JobError::permanent(e)),
            }
        }
        "ocr" => {
            let tesseract = state.media.tesseract.as_deref().unwrap_or("tesseract");
            let _slot = cpu_slot().await;
            process::ocr(tesseract, &state.media.tesseract_lang, &local.0)
                .await
                .map_err(JobError::permanent)?
        }
        _ => transcribe(state, &m, &local.0).await?,
    };
    store::set_text(&state.db, &m.id, "done", Some(source), Some(&text)).await?;
    Ok(())
}

/// Marks a media item's text as failed (its job gave up).
pub async fn text_failed(state: &AppState, job: &Job) -> crate::error::AppResult<()> {
    store::set_text(&state.db, &job.payload, "failed", None, None).await
}

/// Sends a voice note to an OpenAI-compatible `/audio/transcriptions` endpoint.
async fn transcribe(state: &AppState, m: &MediaRow, path: &Path) -> Result<String, JobError> {
    let Some(api) = &state.config.media.transcription else {
        return Err(JobError::permanent("transcription is not configured"));
    };
    let bytes = tokio::fs::read(path).await.map_err(JobError::retry)?;
    let ext = m.content_type.split('/').nth(1).unwrap_or("bin");
    let ext = ext
        .trim_start_matches("x-")
        .split(';')
        .next()
        .unwrap_or("bin");
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(format!("{}.{ext}", m.id))
        .mime_str(&m.content_type)
        .map_err(JobError::permanent)?;
    let form = reqwest::multipart::Form::new()
        .text("model", api.model.clone())
        .text("response_format", "json")
        .part("file", part);
    let mut req = state
        .media
        .http
        .post(&format!("{}/audio/transcriptions", api.url))?
        .multipart(form);
    if let Some(key) = &api.api_key {
        req = req.bearer_auth(key.expose());
    }
    let resp = req.send().await.map_err(crate::jobs::request_error)?;
    let status = resp.status();
    if status.is_success() {
        #[derive(serde::Deserialize)]
        struct Answer {
            text: String,
        }
        let a: Answer = serde_json::from_value(crate::outbound::json_capped(resp).await?)
            .map_err(|e| JobError::permanent(format!("unexpected transcription answer: {e}")))?;
        return Ok(process::tidy(&a.text));
    }
    let after = crate::jobs::retry_after(resp.headers());
    let body = crate::outbound::text_excerpt(resp).await;
    Err(crate::jobs::provider_error(
        status,
        after,
        format!("transcription API answered {status}: {body}"),
    ))
}

pub async fn delete_objects(state: &AppState, job: &Job) -> JobResult {
    let keys: Vec<String> = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    for key in keys {
        state
            .media
            .storage
            .delete(&key)
            .await
            .map_err(JobError::retry)?;
    }
    Ok(())
}
