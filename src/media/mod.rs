//! Media: uploads, storage, background processing and protected downloads.
//!
//! - `POST /media` streams the file to storage (memory bounded whatever its size), sniffs its
//!   type from the first bytes ([`sniff`]), enforces the per-class size limit while it streams
//!   and hashes it; the row and its processing jobs are written in one transaction.
//! - Jobs ([`jobs`], run by [`crate::jobs`]) work out dimensions, duration, pages and a
//!   thumbnail, and the text (PDF text always; OCR with tesseract and transcription with an
//!   OpenAI-compatible API when available). When they finish, messages that carry the media get
//!   a `message:updated`.
//! - Downloads check access in one query ([`store::readable`]) and answer 404 to everyone else.
//! - Uploads that nothing references are deleted after a day ([`sweep`]).

pub mod jobs;
pub mod model;
pub mod process;
pub mod routes;
pub mod sniff;
pub mod storage;
pub mod store;
pub mod upload;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, MediaLimits};
use crate::db::{Tenant, Tx};
use crate::error::{AppError, AppResult};
use model::MediaRow;
use sniff::{Class, Kind};
use storage::Storage;

/// The kinds of background job media queues (run by `jobs.rs`).
pub mod kinds {
    /// Dimensions, duration, pages and thumbnail. Payload: the media id.
    pub const ANALYZE: &str = "media.analyze";
    /// PDF text, OCR or transcription. Payload: the media id.
    pub const EXTRACT_TEXT: &str = "media.text";
    /// Deletes stored objects. Payload: a JSON array of keys.
    pub const DELETE_OBJECTS: &str = "media.delete";
}

/// Media storage, limits and the tools this node found.
pub struct Media {
    pub storage: Storage,
    pub limits: MediaLimits,
    /// The tesseract program, when OCR is available.
    pub tesseract: Option<String>,
    pub tesseract_lang: String,
    /// The pdftoppm program, when PDF thumbnails are available.
    pub pdftoppm: Option<String>,
    /// The program that reads PDFs in a process of its own (`pdf-info`).
    pub pdf_reader: PathBuf,
    /// The outbound client for the transcription API and the Graph API (long timeout).
    pub http: crate::outbound::Outbound,
    /// Local copies of uploads being processed.
    pub scratch: PathBuf,
}

impl Media {
    pub async fn open(config: &Config) -> anyhow::Result<Media> {
        let storage = Storage::open(&config.media.store)?;
        let scratch = config.data_dir.join("tmp");
        crate::config::create_private_dir(&scratch)?;
        // Leftovers of a crash: their jobs run again and make new copies.
        if let Ok(entries) = std::fs::read_dir(&scratch) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // Both programs are looked for at once (start-up time).
        let (tesseract, pdftoppm) = tokio::join!(
            find_tool(
                &config.media.tesseract,
                "--version",
                "OCR of images is unavailable"
            ),
            find_tool(&config.media.pdftoppm, "-v", "PDFs get no thumbnail"),
        );
        let http = crate::outbound::Outbound::new(
            std::sync::Arc::new(crate::outbound::Allow::parse(&config.outbound_allow)?),
            Duration::from_secs(300),
        )?;
        Ok(Media {
            storage,
            limits: config.media.limits,
            tesseract,
            tesseract_lang: config.media.tesseract_lang.clone(),
            pdftoppm,
            pdf_reader: config.media.pdf_reader.clone(),
            http,
            scratch,
        })
    }

    /// The size limit of a class, in bytes.
    pub fn limit(&self, class: Class) -> u64 {
        match class {
            Class::Image => self.limits.image,
            Class::Audio => self.limits.audio,
            Class::Video => self.limits.video,
            Class::File => self.limits.file,
        }
    }

    /// The largest upload any class allows.
    pub fn largest(&self) -> u64 {
        let l = self.limits;
        l.image.max(l.audio).max(l.video).max(l.file)
    }
}

/// A configured program, if it starts (`None` when turned off or missing, said in the log).
async fn find_tool(program: &Option<String>, version_flag: &str, without: &str) -> Option<String> {
    let p = program.as_ref()?;
    if process::tool_present(p, version_flag).await {
        Some(p.clone())
    } else {
        tracing::info!(program = %p, "{p} not found: {without}");
        None
    }
}

/// Checks that `user` may put `media_id` in a message of type `kind`: they can read it (their
/// own upload, or media they received, as when forwarding) and its bytes fit the type.
pub async fn usable_in_message(
    t: Tenant<'_>,
    user: &str,
    media_id: &str,
    kind: Kind,
) -> AppResult<MediaRow> {
    let m = store::readable(t, user, media_id)
        .await?
        .ok_or_else(|| AppError::invalid_field("mediaId", "no such media"))?;
    let class = class_of(&m.content_type);
    if !kind.accepts(class, &m.content_type) {
        return Err(AppError::invalid_field(
            "mediaId",
            format!(
                "a {} file cannot be sent as {}",
                m.content_type,
                kind.as_str()
            ),
        ));
    }
    Ok(m)
}

/// Checks that `user` may use `media_id` as an avatar: their own upload, and an image.
pub async fn usable_as_avatar(db: &crate::db::Db, user: &str, media_id: &str) -> AppResult<()> {
    match store::find(db, media_id).await? {
        Some(m) if m.owner_id.as_deref() == Some(user) => {
            if class_of(&m.content_type) == Class::Image {
                Ok(())
            } else {
                Err(AppError::invalid_field("avatarMediaId", "must be an image"))
            }
        }
        _ => Err(AppError::invalid_field("avatarMediaId", "no such media")),
    }
}

/// The class of a stored (sniffed) content type.
pub fn class_of(content_type: &str) -> Class {
    match content_type.split('/').next() {
        Some("image") => Class::Image,
        Some("audio") => Class::Audio,
        Some("video") => Class::Video,
        _ => Class::File,
    }
}

/// Where an upload's text will come from, if anywhere on this server.
pub fn text_source(
    media: &Media,
    content_type: &str,
    kind: Kind,
    transcription: bool,
) -> Option<&'static str> {
    match class_of(content_type) {
        _ if content_type == "application/pdf" => Some("pdf"),
        Class::Image if media.tesseract.is_some() && kind != Kind::Sticker => Some("ocr"),
        Class::Audio if kind == Kind::Voice && transcription => Some("transcription"),
        _ => None,
    }
}

/// The lease of the sweep of unreferenced uploads.
pub const SWEEP_LEASE: &str = "media-sweep";

/// Deletes uploads that nothing referenced for the configured time, in rounds, until stopped;
/// on the one node that holds the sweep's lease.
pub async fn sweep(db: crate::db::Db, holder: String, ttl: Duration) {
    let every = (ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(600));
    crate::jobs::lease::scheduled(db.clone(), holder, SWEEP_LEASE, every, || {
        sweep_once(&db, ttl)
    })
    .await
}

async fn sweep_once(db: &crate::db::Db, ttl: Duration) -> AppResult<()> {
    let before = crate::db::now_ms() - ttl.as_millis() as i64;
    loop {
        let found = store::unreferenced(db, before, 200).await?;
        if found.is_empty() {
            return Ok(());
        }
        let mut tx = db.begin().await?;
        let mut keys = Vec::new();
        for (id, key, thumb) in &found {
            if store::delete_if_unreferenced(&mut tx, id).await? {
                keys.push(key.clone());
                keys.extend(thumb.clone());
            }
        }
        let deleted = keys.len();
        delete_objects_later(&mut tx, keys).await?;
        tx.commit().await?;
        db.wake_jobs();
        tracing::info!(
            uploads = found.len(),
            objects = deleted,
            "deleted unreferenced uploads"
        );
        if found.len() < 200 {
            return Ok(());
        }
    }
}

/// Queues the deletion of stored objects whose rows this transaction deletes.
pub async fn delete_objects_later(tx: &mut Tx, keys: Vec<String>) -> AppResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let payload = serde_json::to_string(&keys).map_err(AppError::internal)?;
    crate::jobs::enqueue(tx, kinds::DELETE_OBJECTS, &payload).await
}
