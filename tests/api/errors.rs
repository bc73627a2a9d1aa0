use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::dual_test;
use crate::helpers::TestApp;

dual_test!(every_failure_is_problem_json);
async fn every_failure_is_problem_json(app: &TestApp) {
    let u = app.signup("pat@example.com", "Pat").await;
    app.call(Method::GET, "/api/v1/nowhere", None, None)
        .await
        .assert_problem(404, "not_found");
    app.call(Method::GET, "/nowhere", None, None)
        .await
        .assert_problem(404, "not_found");
    let r = app
        .call(Method::DELETE, "/api/v1/auth/login", None, None)
        .await;
    r.assert_problem(405, "method_not_allowed");
    assert!(r.header("allow").is_some());

    let raw = |ct: &'static str, body: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = raw("application/json", "{\"email\": ").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "malformed_json");
    let r = raw("text/plain", "{}").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type at all"
    );

    let big = format!("{{\"email\":\"{}\"}}", "a".repeat(1024 * 1024 + 10));
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");

    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": ["a"], "password": 7}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .post("/api/v1/auth/login", None, json!({"password": "x"}))
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "email");
    let r = app.post("/api/v1/auth/login", None, json!([1, 2])).await;
    r.assert_problem(422, "validation_failed");

    app.get("/api/v1/workspaces?limit=abc", &u.token)
        .await
        .assert_problem(400, "bad_request");
    app.get("/api/v1/workspaces?limit=0", &u.token)
        .await
        .assert_problem(422, "validation_failed");
    let r = app.get("/api/v1/workspaces?limit=1000", &u.token).await;
    assert_eq!(r.status, StatusCode::OK, "a too-large limit is capped");

    // Unknown fields are ignored.
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"about": "ok", "isPlatformAdmin": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["isPlatformAdmin"], false);
}

dual_test!(security_headers_are_on_every_response);
async fn security_headers_are_on_every_response(app: &TestApp) {
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/nowhere"),
        (Method::POST, "/api/v1/auth/login"),
        (Method::GET, "/docs"),
    ] {
        let r = app.call(method, path, None, None).await;
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert!(r.header("x-request-id").is_some(), "{path}");
        assert!(
            r.header("strict-transport-security").is_none(),
            "no HSTS on plain http"
        );
    }
    let docs = app.call(Method::GET, "/docs", None, None).await;
    assert!(docs
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
}

dual_test!(hsts_when_the_public_url_is_https, |s| s.public_url =
    Some("https://chat.example.com".into()));
async fn hsts_when_the_public_url_is_https(app: &TestApp) {
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert!(r
        .header("strict-transport-security")
        .unwrap()
        .starts_with("max-age="));
}

dual_test!(cors_allows_only_the_configured_origins, |s| s
    .cors_origins =
    Some("https://app.example.com".into()));
async fn cors_allows_only_the_configured_origins(app: &TestApp) {
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let evil = preflight("https://evil.example.com").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

dual_test!(a_list_filter_is_honoured_or_refused);
async fn a_list_filter_is_honoured_or_refused(app: &TestApp) {
    let owner = crate::workspaces::admin(app, "filters@example.com").await;
    // Filters the lists do not have are refused, naming the parameter, never ignored.
    for (path, param) in [
        // Inbox filters: a tag or stage the workspace does not have, or outside the inbox.
        ("/api/v1/conversations?kind=channel&tag=vip", "tag"),
        ("/api/v1/conversations?kind=inbox&stage=closed-won", "stage"),
        ("/api/v1/conversations?stage=won", "kind"),
        ("/api/v1/conversations?kind=channel&color=red", "color"),
        ("/api/v1/leads?stage=closed-won", "stage"),
        ("/api/v1/sync?since=1", "since"),
        ("/api/v1/channels?limit=5&unknown=1", "unknown"),
    ] {
        let r = app.get(path, &owner.token).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], param, "{path}: {}", r.body);
    }
    // A value of the wrong form is malformed, and names its parameter.
    let r = app
        .get("/api/v1/conversations?kind=nope", &owner.token)
        .await;
    r.assert_problem(400, "bad_request");
    assert!(
        r.body["detail"].as_str().unwrap().contains("kind"),
        "{}",
        r.body
    );
    // Known filters are honoured.
    let r = app
        .get(
            "/api/v1/conversations?kind=channel&status=open&limit=5",
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
