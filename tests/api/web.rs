//! The web app's files as the binary serves them: the page (also at the mails' links), its
//! Content-Security-Policy, ETags and 304s, gzip when asked for; other paths stay 404 problems.

use reqwest::StatusCode;

use crate::helpers::{spawn, Backend};

// The files do not touch the database: SQLite alone.
#[tokio::test]
async fn the_web_app_is_served_from_the_binary() {
    let app = spawn(Backend::Sqlite, |_| {})
        .await
        .expect("a SQLite server");
    for page in ["/", "/reset-password", "/verify-email"] {
        let r = app.client.get(app.url(page)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(r
            .text()
            .await
            .unwrap()
            .contains(r#"<script type="module" src="/app.js">"#));
    }

    let js = app.client.get(app.url("/app.js")).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["cache-control"], "no-cache");
    assert!(js.headers().get("content-security-policy").is_none());
    let etag = js.headers()["etag"].clone();
    let plain = js.bytes().await.unwrap();
    let again = app
        .client
        .get(app.url("/app.js"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);

    // gzip when the client takes it (reqwest here does not unpack it: the bytes are raw).
    let packed = app
        .client
        .get(app.url("/app.js"))
        .header("accept-encoding", "br, gzip;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(packed.headers()["content-encoding"], "gzip");
    let body = packed.bytes().await.unwrap();
    assert!(body.starts_with(&[0x1f, 0x8b]) && body.len() < plain.len() / 2);

    for (path, kind) in [
        ("/sw.js", "text/javascript; charset=utf-8"),
        ("/manifest.webmanifest", "application/manifest+json"),
        ("/icon-192.png", "image/png"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            (r.status(), r.headers()["content-type"].to_str().unwrap()),
            (StatusCode::OK, kind)
        );
    }
    let r = app
        .client
        .get(app.url("/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
