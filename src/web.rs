//! The web app at `/`: the files of `web/dist` (built from `web/src`, committed, and checked
//! against a fresh build in CI), embedded in the binary so that a machine without Node.js
//! serves them. Each answer carries an ETag (`If-None-Match` gets a 304) and, where the client
//! takes it, a gzip copy made once at the first request; the HTML carries a Content-Security-Policy
//! that allows this origin only.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Scripts, styles, images, media, sockets and workers from this origin only; images and
/// media also from `blob:` (protected downloads are fetched with the token, then shown).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
media-src 'self' blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct File {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! file {
    ($path:literal, $type:literal) => {
        File {
            path: concat!("/", $path),
            content_type: $type,
            bytes: include_bytes!(concat!("../web/dist/", $path)),
        }
    };
}

const FILES: &[File] = &[
    file!("index.html", "text/html; charset=utf-8"),
    file!("app.js", "text/javascript; charset=utf-8"),
    file!("app.css", "text/css; charset=utf-8"),
    file!("icon.svg", "image/svg+xml"),
    file!("icon-192.png", "image/png"),
    file!("icon-512.png", "image/png"),
    file!("manifest.webmanifest", "application/manifest+json"),
    file!("sw.js", "text/javascript; charset=utf-8"),
];

/// The pages the app answers itself (the links of Palaver's mails among them).
const PAGES: &[&str] = &["/", "/reset-password", "/verify-email"];

struct Prepared {
    file: &'static File,
    etag: HeaderValue,
    gzip: Option<Bytes>,
}

fn prepared() -> &'static HashMap<&'static str, Prepared> {
    static ALL: OnceLock<HashMap<&'static str, Prepared>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|file| {
                let digest = Sha256::digest(file.bytes);
                let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
                    .expect("hex is a valid header value");
                (
                    file.path,
                    Prepared {
                        file,
                        etag,
                        gzip: gzip(file.bytes),
                    },
                )
            })
            .collect()
    })
}

/// A gzip copy, when it is worth sending instead.
fn gzip(bytes: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    let packed = encoder.finish().ok()?;
    (packed.len() + 256 < bytes.len()).then(|| Bytes::from(packed))
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for page in PAGES {
        router = router.route(
            page,
            get(|headers: HeaderMap| async move { answer("/index.html", &headers) }),
        );
    }
    for file in FILES.iter().filter(|f| f.path != "/index.html") {
        router = router.route(
            file.path,
            get(|uri: Uri, headers: HeaderMap| async move { answer(uri.path(), &headers) }),
        );
    }
    router
}

fn answer(path: &str, headers: &HeaderMap) -> Response {
    let Some(p) = prepared().get(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|tag| tag.trim_ascii() == p.etag.as_bytes())
    }) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let takes_gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|e| e.split(';').next().unwrap_or("").trim() == "gzip")
            });
        match (&p.gzip, takes_gzip) {
            (Some(packed), true) => {
                // (A `Bytes` clone shares the buffer.)
                let mut r = packed.clone().into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => p.file.bytes.into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(p.file.content_type),
    );
    h.insert(header::ETAG, p.etag.clone());
    // The file names carry no hash: the browser asks again each time and mostly gets a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if p.file.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}
