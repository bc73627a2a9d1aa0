//! Media rows and how the API shows them.

use serde::Serialize;
use utoipa::ToSchema;

use super::sniff::Kind;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaRow {
    pub id: String,
    pub workspace_id: String,
    pub owner_id: Option<String>,
    pub kind: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub file_name: Option<String>,
    pub storage_key: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub duration_ms: Option<i64>,
    pub pages: Option<i64>,
    pub thumbnail_key: Option<String>,
    pub analyzed_at: Option<i64>,
    pub text_state: String,
    pub text_source: Option<String>,
    pub text: Option<String>,
    pub created_at: i64,
}

pub const MEDIA_COLUMNS: &str = "m.id, m.workspace_id, m.owner_id, m.kind, m.content_type, \
    CAST(m.size AS BIGINT) AS size, m.sha256, m.file_name, m.storage_key, \
    CAST(m.width AS BIGINT) AS width, CAST(m.height AS BIGINT) AS height, \
    CAST(m.duration_ms AS BIGINT) AS duration_ms, CAST(m.pages AS BIGINT) AS pages, \
    m.thumbnail_key, m.analyzed_at, m.text_state, m.text_source, m.text, m.created_at";

crate::db::lite::lite_row!(MediaRow {
    id,
    workspace_id,
    owner_id,
    kind,
    content_type,
    size,
    sha256,
    file_name,
    storage_key,
    width,
    height,
    duration_ms,
    pages,
    thumbnail_key,
    analyzed_at,
    text_state,
    text_source,
    text,
    created_at
});

impl MediaRow {
    pub fn kind(&self) -> Kind {
        Kind::parse(&self.kind).unwrap_or(Kind::Document)
    }

    pub fn view(&self) -> MediaView {
        MediaView {
            id: self.id.clone(),
            kind: self.kind(),
            content_type: self.content_type.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            file_name: self.file_name.clone(),
            width: self.width,
            height: self.height,
            duration_ms: self.duration_ms,
            pages: self.pages,
            url: format!("/api/v1/media/{}", self.id),
            thumbnail_url: self
                .thumbnail_key
                .as_ref()
                .map(|_| format!("/api/v1/media/{}/thumbnail", self.id)),
            processed: self.analyzed_at.is_some(),
        }
    }
}

/// An upload as the API shows it: in the upload's answer and as a media message's `media`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaView {
    pub id: String,
    pub kind: Kind,
    /// Sniffed from the bytes.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Hex SHA-256 of the bytes (also the download's ETag).
    pub sha256: String,
    /// The uploader's file name, for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Images: pixels, as displayed (EXIF orientation applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Audio, voice and video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// PDFs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<i64>,
    /// Path of the bytes on this server (`GET`, with `Range`).
    pub url: String,
    /// Path of a JPEG thumbnail, once made (images; PDFs when pdftoppm is installed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// False until the background analysis (dimensions, duration, pages, thumbnail) finished.
    pub processed: bool,
}

/// `GET /media/{id}/text`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaText {
    /// `pending`, `done`, `unavailable` (no text source for this media, or the tool is not
    /// installed/configured) or `failed`.
    pub state: String,
    /// `pdf`, `ocr` or `transcription`.
    pub source: Option<String>,
    pub text: Option<String>,
}

/// Cleans a client's file name for display and Content-Disposition: its last path component,
/// without control characters, at most 200 characters. Never used as a path.
pub fn clean_file_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_controls() {
        assert_eq!(
            clean_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            clean_file_name("C:\\x\\report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(clean_file_name("a\r\nb\".txt").as_deref(), Some("ab.txt"));
        assert_eq!(clean_file_name("..").as_deref(), None);
        assert_eq!(clean_file_name("").as_deref(), None);
    }
}
