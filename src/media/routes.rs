//! Media endpoints: upload, download (with Range), thumbnail, extracted text.

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use object_store::{GetOptions, GetRange};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{MediaText, MediaView};
use super::sniff::Kind;
use super::storage::Storage;
use super::upload::{receive, record, too_large, Received};
use super::{store, Class};
use crate::app::AppState;
use crate::db::new_id;
use crate::error::{AppError, AppResult, Code};
use crate::http::{Json, Scope};
use crate::ratelimit::limits;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        // Uploads stream to storage under their own per-type limits.
        .layer(DefaultBodyLimit::disable())
        .routes(routes!(download))
        .routes(routes!(thumbnail))
        .routes(routes!(text))
}

/// The multipart form of an upload.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct UploadForm {
    /// The file. Its type is sniffed from its bytes; the file name is kept for display only.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// What it will be sent as: image, sticker, audio, voice, video or document (default: from
    /// the sniffed type; Ogg/Opus audio is a voice note).
    kind: Option<Kind>,
}

/// Multipart overhead allowed above the largest file.
const FORM_SLACK: u64 = 1024 * 1024;

/// POST /api/v1/media — uploads a file: streamed to storage, type sniffed from the bytes, size-limited per type.
#[utoipa::path(post, path = "/media", tag = "media", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", content = inline(UploadForm)),
    responses((status = 201, body = MediaView),
        (status = 413, description = "payload_too_large: beyond the limit of the sniffed type; nothing was stored", body = crate::error::Problem),
        (status = 415, description = "unsupported_media_type: not multipart/form-data", body = crate::error::Problem)))]
async fn upload(
    State(state): State<AppState>,
    scope: Scope,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<(StatusCode, Json<MediaView>)> {
    if let Err(retry) = state
        .limiter
        .check(&limits::UPLOADS_PER_USER, &scope.user_id)
        .await
    {
        return Err(AppError::rate_limited(Code::RateLimited, retry));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.media.largest() + FORM_SLACK) {
        return Err(too_large("the upload is larger than any file type allows"));
    }
    let mut multipart = multipart.map_err(|e| match e {
        MultipartRejection::InvalidBoundary(_) => AppError::new(
            Code::UnsupportedMediaType,
            "send the file as multipart/form-data with a `file` field",
        ),
        other => AppError::new(Code::BadRequest, other.body_text()),
    })?;
    let id = new_id();
    let mut kind_field: Option<String> = None;
    let mut received: Option<Received> = None;
    let outcome: AppResult<()> = async {
        while let Some(field) = multipart.next_field().await.map_err(bad_form)? {
            match field.name() {
                Some("file") if received.is_none() => {
                    let name = field.file_name().map(str::to_owned);
                    received = Some(
                        receive(&state, &scope.workspace_id, &id, name, field, bad_form).await?,
                    );
                }
                Some("file") => {
                    return Err(AppError::invalid_field("file", "send one file per upload"))
                }
                Some("kind") => kind_field = Some(small_text(field).await?),
                // As the document says (and as JSON bodies do): only `file` and `kind`.
                other => {
                    let name = other.unwrap_or_default().to_owned();
                    return Err(AppError::invalid_field(
                        &name,
                        "is not a field of an upload (file, kind)",
                    ));
                }
            }
        }
        Ok(())
    }
    .await;
    let stored_key = received.as_ref().map(|r| r.key.clone());
    let answer = match outcome {
        Ok(()) => {
            let r = received.ok_or_else(|| AppError::invalid_field("file", "is required"))?;
            let t = scope.tenant(&state.db);
            record(
                &state,
                t,
                Some(&scope.user_id),
                &id,
                r,
                kind_field.as_deref(),
            )
            .await
            .map(|row| row.view())
        }
        Err(e) => Err(e),
    };
    if answer.is_err() {
        // Nothing half-written: a stored file without its row goes again.
        if let Some(key) = stored_key {
            if let Err(e) = state.media.storage.delete(&key).await {
                tracing::warn!(error = %e, "deleting an upload that was refused");
            }
        }
    }
    answer.map(|view| (StatusCode::CREATED, Json(view)))
}

fn bad_form(e: axum::extract::multipart::MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(e.body_text());
    }
    AppError::new(
        Code::BadRequest,
        format!("malformed multipart body: {}", e.body_text()),
    )
}

/// A short text field (at most 64 bytes).
async fn small_text(mut field: Field<'_>) -> AppResult<String> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > 64 {
            return Err(AppError::invalid_field(&name, "is too long"));
        }
    }
    String::from_utf8(bytes).map_err(|_| AppError::invalid_field(&name, "must be text"))
}

/// GET /api/v1/media/{id} — the bytes, with Range, ETag and Content-Disposition; for the uploader and members of a conversation that carries it.
#[utoipa::path(get, path = "/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path), ("Range" = Option<String>, Header, description = "bytes=START-END, bytes=START- or bytes=-SUFFIX (one range)")),
    responses((status = 200, description = "the whole file, as its sniffed content type", content_type = "*/*"),
        (status = 206, description = "the requested range, with Content-Range", content_type = "*/*"),
        (status = 304, description = "If-None-Match matched the ETag"),
        (status = 416, description = "range_not_satisfiable", body = crate::error::Problem)))]
async fn download(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let m = store::readable(scope.tenant(&state.db), &scope.user_id, &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    let object = Object {
        key: &m.storage_key,
        content_type: &m.content_type,
        size: Some(m.size as u64),
        etag: format!("\"{}\"", m.sha256),
        file_name: m
            .file_name
            .clone()
            .unwrap_or_else(|| format!("{}.{}", m.kind, extension(&m.content_type))),
    };
    serve(&state, object, &headers).await
}

/// GET /api/v1/media/{id}/thumbnail — a JPEG thumbnail (images; PDFs when pdftoppm is installed); 404 until made.
#[utoipa::path(get, path = "/media/{id}/thumbnail", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "JPEG, at most 320 pixels on its longer side", content_type = "image/jpeg"),
        (status = 304, description = "If-None-Match matched the ETag")))]
async fn thumbnail(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let m = store::readable(scope.tenant(&state.db), &scope.user_id, &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    let key = m
        .thumbnail_key
        .as_deref()
        .ok_or_else(|| AppError::new(Code::NotFound, "this media has no thumbnail (yet)"))?;
    let object = Object {
        key,
        content_type: "image/jpeg",
        size: None,
        etag: format!("\"{}-thumbnail\"", m.sha256),
        file_name: format!("{}-thumbnail.jpg", m.id),
    };
    serve(&state, object, &headers).await
}

/// GET /api/v1/media/{id}/text — text extracted from the media (PDF text, OCR, transcription) and its state.
#[utoipa::path(get, path = "/media/{id}/text", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = MediaText)))]
async fn text(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<MediaText>> {
    let m = store::readable(scope.tenant(&state.db), &scope.user_id, &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(MediaText {
        state: m.text_state,
        source: m.text_source,
        text: m.text,
    }))
}

struct Object<'a> {
    key: &'a str,
    content_type: &'a str,
    /// Known from the row for originals; thumbnails are asked for theirs.
    size: Option<u64>,
    etag: String,
    file_name: String,
}

/// Streams a stored object with conditional and Range support.
async fn serve(state: &AppState, o: Object<'_>, headers: &HeaderMap) -> AppResult<Response> {
    let store = state.media.storage.store();
    let path = Storage::path(o.key).map_err(AppError::internal)?;
    let size = match o.size {
        Some(size) => size,
        None => store.head(&path).await.map_err(storage_error)?.size as u64,
    };
    let etag = HeaderValue::from_str(&o.etag).map_err(AppError::internal)?;
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, etag);
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    // Even if a browser opened it directly, nothing in it could run.
    common.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| {
            t.trim() == o.etag || t.trim() == "*" || t.trim().trim_start_matches("W/") == o.etag
        }) {
            return Ok((StatusCode::NOT_MODIFIED, common).into_response());
        }
    }
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == o.etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if if_range_ok => match parse_range(r, size) {
            RangeAsk::Whole => None,
            RangeAsk::Part(start, end) => Some((start, end)),
            RangeAsk::Unsatisfiable => {
                let mut resp = AppError::new(
                    Code::RangeNotSatisfiable,
                    format!("the file has {size} bytes"),
                )
                .into_response();
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}"))
                        .map_err(AppError::internal)?,
                );
                return Ok(resp);
            }
        },
        _ => None,
    };
    let opts = GetOptions {
        range: range.map(|(s, e)| GetRange::Bounded(s..e + 1)),
        ..Default::default()
    };
    let got = store.get_opts(&path, opts).await.map_err(storage_error)?;
    let body = Body::from_stream(got.into_stream().map(|r| r.map_err(std::io::Error::other)));
    let mut resp = Response::new(body);
    *resp.headers_mut() = common;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(o.content_type).map_err(AppError::internal)?,
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(o.content_type, &o.file_name),
    );
    match range {
        Some((start, end)) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
                    .map_err(AppError::internal)?,
            );
        }
        None => {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    Ok(resp)
}

fn storage_error(e: object_store::Error) -> AppError {
    match e {
        object_store::Error::NotFound { .. } => {
            AppError::new(Code::NotFound, "the stored file is gone")
        }
        other => AppError::unavailable(other),
    }
}

#[derive(Debug, PartialEq)]
enum RangeAsk {
    /// No usable single range: send everything (allowed for multiple or malformed ranges).
    Whole,
    /// Inclusive byte positions.
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(size - n.min(size), size - 1)
            }
        }
        (Ok(start), Err(_)) if b.is_empty() => {
            if start >= size {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(start, size - 1)
            }
        }
        (Ok(start), Ok(end)) if start <= end => {
            if start >= size {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(start, end.min(size - 1))
            }
        }
        _ => RangeAsk::Whole,
    }
}

/// Inline for media a client shows (pictures, sound, video); a download for everything else.
fn disposition(content_type: &str, file_name: &str) -> HeaderValue {
    let inline = matches!(
        super::class_of(content_type),
        Class::Image | Class::Audio | Class::Video
    );
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| !matches!(c, '"' | '\\' | ';'))
        .collect();
    let mut encoded = String::new();
    for b in file_name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// A file extension for a sniffed type (download names of files uploaded without one).
fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/x-wav" => "wav",
        "audio/webm" | "video/webm" => "webm",
        "video/mp4" => "mp4",
        "application/pdf" => "pdf",
        t if t.starts_with("text/plain") => "txt",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), RangeAsk::Part(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeAsk::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Whole);
    }

    #[test]
    fn dispositions_are_safe_headers() {
        let d = disposition("application/pdf", "Rapport été \"final\".pdf");
        let s = d.to_str().unwrap();
        assert!(
            s.starts_with("attachment; filename=\"Rapport _t_ final.pdf\""),
            "{s}"
        );
        assert!(
            s.contains("filename*=UTF-8''Rapport%20%C3%A9t%C3%A9%20%22final%22.pdf"),
            "{s}"
        );
        assert!(disposition("image/png", "a.png")
            .to_str()
            .unwrap()
            .starts_with("inline"));
    }
}
