use reqwest::{Method, StatusCode};

use crate::dual_test;
use crate::helpers::TestApp;

dual_test!(health_readiness_and_metrics_answer);
async fn health_readiness_and_metrics_answer(app: &TestApp) {
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["database"], "ok");
    app.signup("mo@example.com", "Mo").await;
    let m = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.text.contains("http_requests_total{"), "{}", m.text);
    assert!(m.text.contains("route=\"/api/v1/auth/signup\""));
    assert!(m.text.contains("http_request_duration_seconds_bucket"));
    assert!(m.text.contains("db_pool_connections{pool=\"write\"}"));
}

dual_test!(readiness_fails_when_the_database_is_gone);
async fn readiness_fails_when_the_database_is_gone(app: &TestApp) {
    app.state.db.close().await;
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            serde_json::json!({"email": "a@example.com", "password": "whatever1"}),
        )
        .await;
    r.assert_problem(503, "unavailable");
    assert!(r.header("retry-after").is_some());
}

dual_test!(the_openapi_document_and_docs_page_describe_the_api);
async fn the_openapi_document_and_docs_page_describe_the_api(app: &TestApp) {
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/otp/request",
        "/api/v1/auth/otp/verify",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/logout-all",
        "/api/v1/auth/password/forgot",
        "/api/v1/auth/password/reset",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/users/me",
        "/api/v1/users/{id}",
        "/api/v1/users/search",
        "/api/v1/contacts/sync",
        "/api/v1/contacts",
        "/api/v1/blocks/{userId}",
        "/api/v1/workspaces",
        "/api/v1/workspaces/{id}",
        "/api/v1/workspaces/{id}/members",
        "/api/v1/workspaces/{id}/members/{userId}",
        "/api/v1/conversations",
        "/api/v1/conversations/direct",
        "/api/v1/conversations/groups",
        "/api/v1/conversations/{id}",
        "/api/v1/conversations/{id}/members",
        "/api/v1/conversations/{id}/members/{userId}",
        "/api/v1/conversations/{id}/settings",
        "/api/v1/conversations/{id}/delivered",
        "/api/v1/conversations/{id}/read",
        "/api/v1/conversations/{id}/accept",
        "/api/v1/conversations/{id}/decline",
        "/api/v1/conversations/{id}/messages",
        "/api/v1/messages/{id}",
        "/api/v1/messages/{id}/reactions",
        "/api/v1/messages/{id}/forward",
        "/api/v1/messages/{id}/receipts",
        "/api/v1/search/messages",
        "/api/v1/sync",
        "/api/v1/stats",
    ] {
        assert!(paths.contains_key(p), "{p} is documented");
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());

    let docs = app.call(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(docs.text.contains("/api/v1/auth/signup"));
    assert!(docs.text.contains("id=\"error-invalid_code\""));
    // Works offline: nothing is loaded from elsewhere.
    assert!(!docs.text.contains("<script"));
    assert!(!docs.text.contains("src=\"http"));
    assert!(!docs.text.contains("<link"));
}

dual_test!(the_jwks_verifies_issued_tokens);
async fn the_jwks_verifies_issued_tokens(app: &TestApp) {
    let u = app.signup("kid@example.com", "Kid").await;
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let key = &jwks.body["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["alg"], "EdDSA");
    let header = jsonwebtoken::decode_header(&u.token).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_issuer(&["palaver"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&u.token, &decoding, &v).unwrap();
    assert_eq!(data.claims["sub"], u.id.as_str());
    assert!(
        jwks.body.to_string().find("\"d\"").is_none(),
        "no private part"
    );
}

dual_test!(keys_survive_a_restart, custom);
async fn keys_survive_a_restart(backend: crate::helpers::Backend) {
    // Two servers on one data dir: the second reads the key the first generated.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let Some(first) = crate::helpers::spawn(backend, |s| s.data_dir = Some(path.clone())).await
    else {
        return;
    };
    let jwks1 = first
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    first.stop().await;
    let second = crate::helpers::spawn(backend, |s| s.data_dir = Some(path.clone()))
        .await
        .unwrap();
    let jwks2 = second
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    assert_eq!(jwks1, jwks2);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(path.join("jwt-ed25519.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    second.stop().await;
}

dual_test!(data_files_are_private_and_metrics_can_be_protected, custom);
async fn data_files_are_private_and_metrics_can_be_protected(backend: crate::helpers::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh").join("data");
    let Some(app) = crate::helpers::spawn(backend, |s| {
        s.data_dir = Some(data.clone());
        s.metrics_token = Some("metrics-secret".into());
    })
    .await
    else {
        return;
    };
    app.signup("perm@example.com", "Perm").await;
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "the data dir");
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files += 1;
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        } else {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
        }
    }
    assert!(
        files >= 2,
        "the keys (and on SQLite the database) are there"
    );
    // /metrics wants its token.
    let m = app.call(Method::GET, "/metrics", None, None).await;
    m.assert_problem(401, "unauthorized");
    let m = app.call(Method::GET, "/metrics", Some("wrong"), None).await;
    assert_eq!(m.status, StatusCode::UNAUTHORIZED);
    let m = app
        .call(Method::GET, "/metrics", Some("metrics-secret"), None)
        .await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.text.contains("http_requests_total{"));
    app.stop().await;
}

dual_test!(security_headers_are_on_every_answer);
async fn security_headers_are_on_every_answer(app: &TestApp) {
    let polling = app
        .client
        .get(app.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    let polling = crate::helpers::Resp::from_response(polling).await;
    for r in [
        app.call(Method::GET, "/healthz", None, None).await,
        app.call(Method::GET, "/no/such/route", None, None).await,
        app.call(Method::GET, "/api/v1/users/me", None, None).await,
        polling,
    ] {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{}",
            r.text
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{}", r.text);
        assert_eq!(
            r.header("referrer-policy"),
            Some("no-referrer"),
            "{}",
            r.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_writes_nothing() {
    let app = crate::helpers::spawn(crate::helpers::Backend::Sqlite, |s| {
        s.rate_limits = Some(palaver::config::OnOff::Off)
    })
    .await
    .unwrap();
    app.signup("first@example.com", "First").await;
    // The database may not grow by a page more (SQLite's answer is what a full disk gives).
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(app.state.db.writer())
        .await
        .unwrap();
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let mut refused = None;
    for i in 0..500 {
        let r = app
            .post(
                "/api/v1/auth/signup",
                None,
                serde_json::json!({"email": format!("u{i}@example.com"), "password": crate::helpers::PASSWORD,
                       "displayName": "x".repeat(60)}),
            )
            .await;
        if r.status != StatusCode::CREATED {
            refused = Some((i, r));
            break;
        }
    }
    let (i, r) = refused.expect("the database filled up");
    r.assert_problem(503, "unavailable");
    assert!(r.header("retry-after").is_some(), "{}", r.text);
    // Nothing of the refused signup was written.
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
        .bind(format!("u{i}@example.com"))
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(users, 0);
    app.stop().await;
}

dual_test!(a_slow_request_head_is_cut_off);
async fn a_slow_request_head_is_cut_off(app: &TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Half a request head, and then nothing: the server closes the connection after its
    // header read timeout (10 s) instead of waiting for ever.
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue, // a 408 answer, then the close
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was left open");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "closed too soon: {:?}",
        started.elapsed()
    );
    // Meanwhile everyone else is served.
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
}
