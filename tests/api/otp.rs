use reqwest::StatusCode;
use serde_json::json;

use crate::dual_test;
use crate::helpers::{spawn, Backend, Capture, TestApp};

/// A server whose SMS sender posts codes to a capture endpoint.
async fn with_sms(
    backend: Backend,
    configure: impl FnOnce(&mut palaver::config::Settings),
) -> Option<(TestApp, Capture)> {
    let sms = Capture::start().await;
    let url = sms.url.clone();
    let app = spawn(backend, |s| {
        s.sms_sender = Some(palaver::config::SmsSenderKind::Webhook);
        s.sms_webhook_url = Some(url);
        configure(s);
    })
    .await?;
    Some((app, sms))
}

dual_test!(a_phone_signs_in_with_the_texted_code, custom);
async fn a_phone_signs_in_with_the_texted_code(backend: Backend) {
    let Some((app, mut sms)) = with_sms(backend, |_| {}).await else {
        return;
    };
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+1 415 555 0100"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body, json!({"expiresIn": 300, "retryAfter": 60}));
    let sent = sms.next().await;
    assert_eq!(sent["phone"], "+14155550100");
    assert_eq!(sent["expiresIn"], 300);
    let code = sent["code"].as_str().unwrap().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+14155550100", "code": wrong, "deviceId": "d1"}),
        )
        .await;
    r.assert_problem(401, "invalid_code");

    let r = app
        .post("/api/v1/auth/otp/verify", None, json!({"phone": "+14155550100", "code": code, "deviceId": "d1", "displayName": "Olive"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["phone"], "+14155550100");
    assert_eq!(r.body["user"]["displayName"], "Olive");
    let user_id = r.body["user"]["id"].clone();
    // Used codes do not work twice.
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+14155550100", "code": code, "deviceId": "d2"}),
        )
        .await;
    r.assert_problem(401, "invalid_code");

    // The next sign-in of the same phone finds the same account.
    sqlx::query("UPDATE otp_challenges SET resend_after = 0")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+14155550100"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let code = sms.next().await["code"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+14155550100", "code": code, "deviceId": "d2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["user"]["id"], user_id);
    app.stop().await;
}

dual_test!(three_wrong_tries_kill_the_code, custom);
async fn three_wrong_tries_kill_the_code(backend: Backend) {
    let Some((app, mut sms)) = with_sms(backend, |_| {}).await else {
        return;
    };
    app.post(
        "/api/v1/auth/otp/request",
        None,
        json!({"phone": "+447700900123"}),
    )
    .await
    .assert_ok();
    let code = sms.next().await["code"].as_str().unwrap().to_owned();
    let wrong = if code == "123456" { "654321" } else { "123456" };
    for _ in 0..3 {
        let r = app
            .post(
                "/api/v1/auth/otp/verify",
                None,
                json!({"phone": "+447700900123", "code": wrong, "deviceId": "d"}),
            )
            .await;
        r.assert_problem(401, "invalid_code");
    }
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+447700900123", "code": code, "deviceId": "d"}),
        )
        .await;
    r.assert_problem(401, "invalid_code");
    app.stop().await;
}

dual_test!(an_expired_code_is_refused, custom);
async fn an_expired_code_is_refused(backend: Backend) {
    let Some((app, mut sms)) = with_sms(backend, |_| {}).await else {
        return;
    };
    app.post(
        "/api/v1/auth/otp/request",
        None,
        json!({"phone": "+33612345678"}),
    )
    .await
    .assert_ok();
    let code = sms.next().await["code"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE otp_challenges SET expires_at = 1")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+33612345678", "code": code, "deviceId": "d"}),
        )
        .await;
    r.assert_problem(401, "invalid_code");
    app.stop().await;
}

dual_test!(the_resend_cooldown_holds_even_with_rate_limits_off, custom);
async fn the_resend_cooldown_holds_even_with_rate_limits_off(backend: Backend) {
    let Some((app, mut sms)) = with_sms(backend, |s| {
        s.rate_limits = Some(palaver::config::OnOff::Off)
    })
    .await
    else {
        return;
    };
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+4915112345678"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    sms.next().await;
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+4915112345678"}),
        )
        .await;
    r.assert_problem(429, "otp_cooldown");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(
        sms.try_next().is_none(),
        "no second SMS during the cooldown"
    );
    app.stop().await;
}

dual_test!(codes_per_phone_are_limited_per_hour, custom);
async fn codes_per_phone_are_limited_per_hour(backend: Backend) {
    let Some((app, mut sms)) = with_sms(backend, |_| {}).await else {
        return;
    };
    let mut limited = false;
    for _ in 0..6 {
        let r = app
            .post(
                "/api/v1/auth/otp/request",
                None,
                json!({"phone": "+14155550199"}),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS && r.body["code"] == "rate_limited" {
            limited = true;
            break;
        }
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        sms.next().await;
        // Skip the 60 s cooldown; the hourly limit is what is tested here.
        sqlx::query("UPDATE otp_challenges SET resend_after = 0")
            .execute(app.state.db.writer())
            .await
            .unwrap();
    }
    assert!(limited, "the sixth code within an hour is refused");
    // The webhook is called before the server answers, so a sent code would be here already.
    assert!(sms.try_next().is_none(), "no SMS for a refused request");
    app.stop().await;
}

dual_test!(a_failing_sms_sender_is_a_503_and_leaves_no_code, custom);
async fn a_failing_sms_sender_is_a_503_and_leaves_no_code(backend: Backend) {
    // Nothing listens on port 9 of loopback.
    let Some(app) = spawn(backend, |s| {
        s.sms_sender = Some(palaver::config::SmsSenderKind::Webhook);
        s.sms_webhook_url = Some("http://127.0.0.1:9/".into());
    })
    .await
    else {
        return;
    };
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+14155550111"}),
        )
        .await;
    r.assert_problem(503, "sms_delivery_failed");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM otp_challenges")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(n, 0);
    // No cooldown was started by the failed send.
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+14155550111"}),
        )
        .await;
    r.assert_problem(503, "sms_delivery_failed");
    app.stop().await;
}

dual_test!(invalid_otp_inputs_are_422);
async fn invalid_otp_inputs_are_422(app: &TestApp) {
    app.post("/api/v1/auth/otp/request", None, json!({"phone": "0123"}))
        .await
        .assert_problem(422, "validation_failed");
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+14155550100", "code": "12ab", "deviceId": ""}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    app.post(
        "/api/v1/auth/otp/verify",
        None,
        json!({"phone": "+14155550100", "code": "123456"}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

dual_test!(concurrent_requests_for_one_phone_send_one_code, custom);
async fn concurrent_requests_for_one_phone_send_one_code(backend: Backend) {
    let Some((app, mut sms)) = with_sms(backend, |_| {}).await else {
        return;
    };
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/auth/otp/request"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"phone": "+14155550123"}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let sent = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(sent, 1, "exactly one request wins");
    // The others are refused by the cooldown, or (six requests against a limit of five an
    // hour) by the per-phone limit: a 429 either way.
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        assert_eq!(status.as_u16(), 429);
        assert!(
            matches!(body["code"].as_str(), Some("otp_cooldown" | "rate_limited")),
            "{body}"
        );
    }
    sms.next().await;
    assert!(sms.try_next().is_none(), "one SMS");
    app.stop().await;
}
