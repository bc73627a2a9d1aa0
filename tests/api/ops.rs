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
