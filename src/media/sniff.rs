//! What an upload is, from its first bytes. The client's file name and Content-Type are never
//! consulted: a `.jpg` that is really HTML is stored and served as `application/octet-stream`.
//!
//! Only types on the lists below keep their own content type; everything else is a generic
//! file. Nothing here can make a download render as a page (no HTML, SVG, XML or script types).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How many leading bytes the sniffer looks at (office formats are ZIP or OLE containers whose
/// telling entries sit near the start).
pub const HEAD: usize = 64 * 1024;

/// The broad class that decides the size limit and the processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Image,
    Audio,
    Video,
    /// PDFs, office documents, archives and anything else.
    File,
}

/// What a media item is used as; the `kind` of an upload and of the message that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MediaKind)]
pub enum Kind {
    Image,
    Sticker,
    Audio,
    /// A voice note: audio that is transcribed when transcription is configured.
    Voice,
    Video,
    Document,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Sticker => "sticker",
            Kind::Audio => "audio",
            Kind::Voice => "voice",
            Kind::Video => "video",
            Kind::Document => "document",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// The kind an upload gets when the client names none.
    pub fn default_for(sniffed: &Sniffed) -> Kind {
        match sniffed.class {
            Class::Image => Kind::Image,
            // WhatsApp's voice notes are Ogg/Opus.
            Class::Audio if sniffed.opus => Kind::Voice,
            Class::Audio => Kind::Audio,
            Class::Video => Kind::Video,
            Class::File => Kind::Document,
        }
    }

    /// Whether bytes of this class can be used as this kind (anything can be a document).
    pub fn accepts(self, class: Class, content_type: &str) -> bool {
        match self {
            Kind::Image => class == Class::Image,
            Kind::Sticker => matches!(content_type, "image/webp" | "image/png"),
            Kind::Audio | Kind::Voice => class == Class::Audio,
            Kind::Video => class == Class::Video,
            Kind::Document => true,
        }
    }
}

/// The verdict on an upload's first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub content_type: &'static str,
    pub class: Class,
    /// Ogg with an Opus stream (a voice note).
    pub opus: bool,
}

const IMAGES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heif",
    "image/avif",
    "image/bmp",
    "image/tiff",
];
const AUDIO: &[&str] = &[
    "audio/mpeg",
    "audio/ogg",
    "audio/x-flac",
    "audio/x-wav",
    "audio/aac",
    "audio/m4a",
    "audio/x-m4a",
    "audio/amr",
    "audio/x-aiff",
    "audio/opus",
    "audio/webm",
];
const VIDEO: &[&str] = &[
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/3gpp",
    "video/x-msvideo",
    "video/mpeg",
    "video/x-m4v",
    "video/ogg",
];
const FILES: &[&str] = &[
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/rtf",
    "application/epub+zip",
    "application/zip",
    "application/gzip",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-tar",
];

/// The content type of anything not recognised.
pub const GENERIC: &str = "application/octet-stream";

pub fn sniff(head: &[u8]) -> Sniffed {
    let found = infer::get(head).map(|t| t.mime_type());
    let listed = |list: &[&'static str]| found.and_then(|m| list.iter().copied().find(|&l| l == m));
    if head.starts_with(b"OggS") {
        return ogg(head);
    }
    if found == Some("video/webm") {
        return webm(head);
    }
    if let Some(content_type) = listed(IMAGES) {
        return Sniffed {
            content_type,
            class: Class::Image,
            opus: false,
        };
    }
    if let Some(content_type) = listed(AUDIO) {
        return Sniffed {
            content_type,
            class: Class::Audio,
            opus: content_type == "audio/opus",
        };
    }
    if let Some(content_type) = listed(VIDEO) {
        return Sniffed {
            content_type,
            class: Class::Video,
            opus: false,
        };
    }
    if let Some(content_type) = listed(FILES) {
        return Sniffed {
            content_type,
            class: Class::File,
            opus: false,
        };
    }
    let content_type = if found.is_none() && is_text(head) {
        "text/plain; charset=utf-8"
    } else {
        GENERIC
    };
    Sniffed {
        content_type,
        class: Class::File,
        opus: false,
    }
}

/// Ogg is a container: its first packet says whether it holds Opus, Vorbis or a video codec.
fn ogg(head: &[u8]) -> Sniffed {
    let first_page = &head[..head.len().min(256)];
    let has = |needle: &[u8]| first_page.windows(needle.len()).any(|w| w == needle);
    if has(b"OpusHead") {
        Sniffed {
            content_type: "audio/ogg",
            class: Class::Audio,
            opus: true,
        }
    } else if has(b"\x01vorbis") || has(b"\x7fFLAC") || has(b"Speex") {
        Sniffed {
            content_type: "audio/ogg",
            class: Class::Audio,
            opus: false,
        }
    } else if has(b"\x80theora") {
        Sniffed {
            content_type: "video/ogg",
            class: Class::Video,
            opus: false,
        }
    } else {
        Sniffed {
            content_type: GENERIC,
            class: Class::File,
            opus: false,
        }
    }
}

/// WebM is Matroska: its track entries name their codecs (`V_VP8`, `A_OPUS`…) near the start.
/// Without a video track it is audio — a browser's recorded voice note is WebM with Opus.
fn webm(head: &[u8]) -> Sniffed {
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    let video = [
        &b"V_VP8"[..],
        b"V_VP9",
        b"V_AV1",
        b"V_MPEG4",
        b"V_MPEGH",
        b"V_THEORA",
    ];
    if video.iter().any(|codec| has(codec)) || !has(b"A_") {
        return Sniffed {
            content_type: "video/webm",
            class: Class::Video,
            opus: false,
        };
    }
    Sniffed {
        content_type: "audio/webm",
        class: Class::Audio,
        opus: has(b"A_OPUS"),
    }
}

/// UTF-8 (a character cut at the end of the head is fine) without NUL or other binary controls.
fn is_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && !valid
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_decide_not_the_name() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png).content_type, "image/png");
        assert_eq!(sniff(png).class, Class::Image);
        assert_eq!(sniff(b"%PDF-1.4\n").content_type, "application/pdf");
        // HTML is never served as HTML.
        let html = sniff(b"<!DOCTYPE html><html><script>alert(1)</script>");
        assert_eq!(html.class, Class::File);
        assert!(!html.content_type.contains("html"));
        assert_eq!(
            sniff(b"plain words\n").content_type,
            "text/plain; charset=utf-8"
        );
        assert_eq!(sniff(b"\0\x01\x02binary").content_type, GENERIC);
        assert_eq!(sniff(b"").content_type, GENERIC);
    }

    #[test]
    fn ogg_opus_is_a_voice_note() {
        let mut page = b"OggS\0\x02".to_vec();
        page.extend_from_slice(&[0; 22]);
        page.extend_from_slice(b"OpusHead\x01\x01");
        let s = sniff(&page);
        assert_eq!(
            (s.content_type, s.class, s.opus),
            ("audio/ogg", Class::Audio, true)
        );
        assert_eq!(Kind::default_for(&s), Kind::Voice);
    }

    #[test]
    fn webm_without_video_is_audio() {
        // The EBML header of a WebM file, then a track entry's codec.
        let mut head = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02".to_vec();
        let padding = vec![0xec; 300]; // a Void element's body: files are longer than their head
        let audio = [head.clone(), b"\x86\x86A_OPUS".to_vec(), padding.clone()].concat();
        let s = sniff(&audio);
        assert_eq!(
            (s.content_type, s.class, s.opus),
            ("audio/webm", Class::Audio, true)
        );
        assert_eq!(Kind::default_for(&s), Kind::Voice);
        head.extend_from_slice(b"\x86\x85V_VP8\x86\x86A_OPUS");
        head.extend_from_slice(&padding);
        assert_eq!(sniff(&head).class, Class::Video);
    }

    #[test]
    fn kinds_accept_matching_classes() {
        assert!(Kind::Image.accepts(Class::Image, "image/png"));
        assert!(!Kind::Image.accepts(Class::File, "application/pdf"));
        assert!(Kind::Document.accepts(Class::Image, "image/png"));
        assert!(!Kind::Sticker.accepts(Class::Image, "image/jpeg"));
        assert!(Kind::Voice.accepts(Class::Audio, "audio/ogg"));
        assert_eq!(Kind::parse("voice"), Some(Kind::Voice));
        assert_eq!(Kind::parse("../etc"), None);
    }
}
