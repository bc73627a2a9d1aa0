use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::dual_test;
use crate::helpers::{Capture, TestApp, PASSWORD};

dual_test!(signup_returns_tokens_user_and_session);
async fn signup_returns_tokens_user_and_session(app: &TestApp) {
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "Alice@Example.com", "password": PASSWORD, "displayName": "Alice", "deviceId": "phone-1", "deviceName": "Pixel"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["user"]["email"], "alice@example.com");
    assert_eq!(b["user"]["displayName"], "Alice");
    assert_eq!(b["expiresIn"], 900);
    assert_eq!(b["session"]["deviceId"], "phone-1");
    assert_eq!(b["session"]["deviceName"], "Pixel");
    assert_eq!(b["session"]["current"], true);
    assert!(b["user"].get("passwordHash").is_none() && !r.text.contains("argon2"));
    let me = app
        .get("/api/v1/users/me", b["accessToken"].as_str().unwrap())
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], b["user"]["id"]);
}

dual_test!(a_taken_email_is_a_conflict);
async fn a_taken_email_is_a_conflict(app: &TestApp) {
    app.signup("bob@example.com", "Bob").await;
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "BOB@example.com", "password": PASSWORD, "displayName": "Bobby"}),
        )
        .await;
    r.assert_problem(409, "email_taken");
}

dual_test!(signup_reports_every_invalid_field);
async fn signup_reports_every_invalid_field(app: &TestApp) {
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "nope", "password": "short", "displayName": ""}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let mut fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["displayName", "email", "password"]);
}

dual_test!(unknown_email_and_wrong_password_get_the_same_401);
async fn unknown_email_and_wrong_password_get_the_same_401(app: &TestApp) {
    app.signup("carol@example.com", "Carol").await;
    let wrong = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "carol@example.com", "password": "wrong password"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    wrong.assert_problem(401, "invalid_credentials");
    unknown.assert_problem(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
    let ok = app.login("carol@example.com", "laptop").await;
    assert_eq!(
        app.get("/api/v1/users/me", &ok.token).await.status,
        StatusCode::OK
    );
}

dual_test!(refresh_rotates_and_reuse_revokes_the_family);
async fn refresh_rotates_and_reuse_revokes_the_family(app: &TestApp) {
    let u = app.signup("dave@example.com", "Dave").await;
    let first = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": u.refresh}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let new_refresh = first.body["refreshToken"].as_str().unwrap().to_owned();
    let new_access = first.body["accessToken"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, u.refresh);
    assert_eq!(
        app.get("/api/v1/users/me", &new_access).await.status,
        StatusCode::OK
    );

    // The old token again: theft detected, the whole session is revoked.
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refreshToken": u.refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refreshToken": new_refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
    app.get("/api/v1/users/me", &new_access)
        .await
        .assert_problem(401, "unauthorized");
    app.get("/api/v1/users/me", &u.token)
        .await
        .assert_problem(401, "unauthorized");
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refreshToken": "made-up"}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
}

dual_test!(an_expired_refresh_token_is_refused);
async fn an_expired_refresh_token_is_refused(app: &TestApp) {
    let u = app.signup("erin@example.com", "Erin").await;
    sqlx::query("UPDATE refresh_tokens SET expires_at = 0")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refreshToken": u.refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
}

dual_test!(logout_revokes_the_session_at_once);
async fn logout_revokes_the_session_at_once(app: &TestApp) {
    let u = app.signup("frank@example.com", "Frank").await;
    let other = app.login("frank@example.com", "tablet").await;
    assert_eq!(
        app.get("/api/v1/users/me", &u.token).await.status,
        StatusCode::OK
    );
    let r = app
        .call(Method::POST, "/api/v1/auth/logout", Some(&u.token), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/users/me", &u.token)
        .await
        .assert_problem(401, "unauthorized");
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refreshToken": u.refresh}),
    )
    .await
    .assert_problem(401, "invalid_refresh_token");
    assert_eq!(
        app.get("/api/v1/users/me", &other.token).await.status,
        StatusCode::OK
    );

    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/logout-all",
            Some(&other.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/users/me", &other.token)
        .await
        .assert_problem(401, "unauthorized");
}

dual_test!(sessions_are_listed_and_revoked_per_device);
async fn sessions_are_listed_and_revoked_per_device(app: &TestApp) {
    let phone = app.signup("gina@example.com", "Gina").await;
    let laptop = app.login("gina@example.com", "laptop").await;
    let list = app.get("/api/v1/sessions", &phone.token).await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let current: Vec<_> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], phone.session.as_str());

    let r = app
        .delete(
            &format!("/api/v1/sessions/{}", laptop.session),
            &phone.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/users/me", &laptop.token)
        .await
        .assert_problem(401, "unauthorized");
    // Not one's own (or already revoked) session: 404.
    let stranger = app.signup("hank@example.com", "Hank").await;
    app.delete(
        &format!("/api/v1/sessions/{}", stranger.session),
        &phone.token,
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.get("/api/v1/users/me", &stranger.token).await.status,
        StatusCode::OK
    );
}

dual_test!(signing_in_again_on_a_device_replaces_its_session);
async fn signing_in_again_on_a_device_replaces_its_session(app: &TestApp) {
    app.signup("ivy@example.com", "Ivy").await;
    let first = app.login("ivy@example.com", "phone").await;
    let second = app.login("ivy@example.com", "phone").await;
    app.get("/api/v1/users/me", &first.token)
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(
        app.get("/api/v1/users/me", &second.token).await.status,
        StatusCode::OK
    );
}

dual_test!(tampered_foreign_unsigned_and_expired_tokens_are_refused);
async fn tampered_foreign_unsigned_and_expired_tokens_are_refused(app: &TestApp) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let u = app.signup("jack@example.com", "Jack").await;
    let victim = app.signup("kate@example.com", "Kate").await;
    let parts: Vec<&str> = u.token.split('.').collect();

    // Payload swapped for another user, original signature kept.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = victim.id.clone().into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    app.get("/api/v1/users/me", &forged)
        .await
        .assert_problem(401, "unauthorized");

    // alg: none.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    app.get("/api/v1/users/me", &format!("{none_header}.{}.", parts[1]))
        .await
        .assert_problem(401, "unauthorized");

    // HS256 with the public key as secret (the classic confusion attack).
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let x = jwks.body["keys"][0]["x"].as_str().unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    app.get("/api/v1/users/me", &hs)
        .await
        .assert_problem(401, "unauthorized");

    // Signed with another Ed25519 key.
    let rng = ring::rand::SystemRandom::new();
    let other = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(other.as_ref()),
    )
    .unwrap();
    app.get("/api/v1/users/me", &foreign)
        .await
        .assert_problem(401, "unauthorized");

    // Expired (signed by the server's own key an hour ago).
    let now = chrono::Utc::now().timestamp();
    let expired = app
        .state
        .keys
        .sign(&u.id, &u.session, now - 3600, 60)
        .unwrap();
    app.get("/api/v1/users/me", &expired)
        .await
        .assert_problem(401, "token_expired");

    // No token, a malformed header.
    app.call(Method::GET, "/api/v1/users/me", None, None)
        .await
        .assert_problem(401, "unauthorized");
    app.call_with(
        Method::GET,
        "/api/v1/users/me",
        None,
        None,
        &[("authorization", "Basic abc")],
    )
    .await
    .assert_problem(401, "unauthorized");
    assert_eq!(
        app.get("/api/v1/users/me", &u.token).await.status,
        StatusCode::OK
    );
}

dual_test!(login_is_rate_limited_per_account_with_retry_after);
async fn login_is_rate_limited_per_account_with_retry_after(app: &TestApp) {
    app.signup("liam@example.com", "Liam").await;
    let mut limited = None;
    for _ in 0..12 {
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "liam@example.com", "password": "wrong password"}),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        r.assert_problem(401, "invalid_credentials");
    }
    let r = limited.expect("the 11th attempt within a minute is limited");
    r.assert_problem(429, "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
}

dual_test!(signup_closed_refuses_new_accounts, |s| s.signup =
    Some(palaver::config::SignupMode::Closed));
async fn signup_closed_refuses_new_accounts(app: &TestApp) {
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "new@example.com", "password": PASSWORD, "displayName": "New"}),
        )
        .await;
    r.assert_problem(403, "signup_closed");
}

dual_test!(signup_by_invitation_only, |s| s.signup =
    Some(palaver::config::SignupMode::Invite));
async fn signup_by_invitation_only(app: &TestApp) {
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "stranger@example.com", "password": PASSWORD, "displayName": "S"}),
        )
        .await;
    r.assert_problem(403, "signup_closed");

    // An admin (created the way `palaver admin create` does) invites by email.
    let admin = crate::workspaces::admin(app, "admin@example.com").await;
    let inv = app
        .post(
            "/api/v1/workspaces/default/members",
            Some(&admin.token),
            json!({"email": "invitee@example.com", "role": "agent"}),
        )
        .await;
    assert_eq!(inv.status, StatusCode::CREATED, "{}", inv.text);
    assert_eq!(inv.body["invited"], true);
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "invitee@example.com", "password": PASSWORD, "displayName": "Invitee"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["user"]["id"], inv.body["userId"]);
    // Claimed once: a second signup with that email is a conflict.
    let again = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "invitee@example.com", "password": PASSWORD, "displayName": "X"}),
        )
        .await;
    again.assert_problem(409, "email_taken");
}

dual_test!(password_reset_mails_a_link_and_revokes_sessions, custom);
async fn password_reset_mails_a_link_and_revokes_sessions(backend: crate::helpers::Backend) {
    let mut mail = Capture::start().await;
    let url = mail.url.clone();
    let Some(app) = crate::helpers::spawn(backend, |s| {
        s.mail_sender = Some(palaver::config::MailSenderKind::Webhook);
        s.mail_webhook_url = Some(url);
        s.public_url = Some("https://chat.example.com".into());
    })
    .await
    else {
        return;
    };
    let u = app.signup("mona@example.com", "Mona").await;
    // Unknown address first, then the real one: both 202, only the real one gets a mail.
    let r = app
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "mona@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let sent = mail.next_link("/reset-password").await;
    assert_eq!(sent["to"], "mona@example.com");
    let link = sent["link"].as_str().unwrap();
    let token = link
        .strip_prefix("https://chat.example.com/reset-password?token=")
        .expect("link shape");
    assert!(sent["text"].as_str().unwrap().contains(link));

    let r = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    app.get("/api/v1/users/me", &u.token)
        .await
        .assert_problem(401, "unauthorized");
    let again = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "another new password"}),
        )
        .await;
    again.assert_problem(401, "invalid_reset_token");
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"email": "mona@example.com", "password": PASSWORD}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "mona@example.com", "password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    while let Some(m) = mail.try_next() {
        assert_ne!(
            m["to"], "ghost@example.com",
            "no mail for the unknown address"
        );
    }
    app.stop().await;
}

dual_test!(concurrent_writers_never_see_a_locked_database, |s| s
    .rate_limits =
    Some(palaver::config::OnOff::Off));
async fn concurrent_writers_never_see_a_locked_database(app: &TestApp) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/signup");
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"email": format!("w{i}@example.com"), "password": PASSWORD, "displayName": format!("Writer {i}")}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push(body["accessToken"].as_str().unwrap().to_owned());
    }
    // Then everyone writes at once: profile updates interleaved with sign-ins.
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let client = app.client.clone();
        let patch = app.url("/api/v1/users/me");
        let login = app.url("/api/v1/auth/login");
        tasks.push(tokio::spawn(async move {
            let a = client
                .patch(patch)
                .bearer_auth(token)
                .json(&json!({"about": format!("about {i}")}))
                .send()
                .await
                .unwrap()
                .status();
            let b = client
                .post(login)
                .json(&json!({"email": format!("w{i}@example.com"), "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .status();
            (a, b)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, StatusCode::OK));
    }
}

dual_test!(an_email_is_verified_by_the_link_mailed_to_it, custom);
async fn an_email_is_verified_by_the_link_mailed_to_it(backend: crate::helpers::Backend) {
    let Some((app, mut mail)) = crate::helpers::spawn_with_mail(backend).await else {
        return;
    };
    let u = app.signup("vera@example.com", "Vera").await;
    let me = app.get("/api/v1/users/me", &u.token).await;
    assert_eq!(me.body["emailVerified"], false, "{}", me.body);
    let sent = mail.next_link("/verify-email").await;
    assert_eq!(sent["to"], "vera@example.com");
    let token = crate::helpers::token_of(&sent);
    // A made-up token does nothing; the real one verifies, once.
    app.post(
        "/api/v1/auth/email/verify",
        None,
        json!({"token": "made-up"}),
    )
    .await
    .assert_problem(401, "invalid_verification_token");
    let r = app
        .post("/api/v1/auth/email/verify", None, json!({"token": token}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        app.get("/api/v1/users/me", &u.token).await.body["emailVerified"],
        true
    );
    app.post("/api/v1/auth/email/verify", None, json!({"token": token}))
        .await
        .assert_problem(401, "invalid_verification_token");

    // Changing the address needs the password, and the new one starts unverified.
    let change = |body: serde_json::Value| app.patch("/api/v1/users/me", &u.token, body);
    let r = change(json!({"email": "vera2@example.com"})).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "currentPassword");
    change(json!({"email": "vera2@example.com", "currentPassword": "wrong password"}))
        .await
        .assert_problem(422, "validation_failed");
    let r = change(json!({"email": "vera2@example.com", "currentPassword": PASSWORD})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["email"], "vera2@example.com");
    assert_eq!(r.body["emailVerified"], false);
    let sent = mail.next_link("/verify-email").await;
    assert_eq!(sent["to"], "vera2@example.com");
    // A link for an address the account no longer has does not verify the new one.
    let r = change(json!({"email": "vera3@example.com", "currentPassword": PASSWORD})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let stale = crate::helpers::token_of(&sent);
    app.post("/api/v1/auth/email/verify", None, json!({"token": stale}))
        .await
        .assert_problem(401, "invalid_verification_token");
    assert_eq!(
        app.get("/api/v1/users/me", &u.token).await.body["emailVerified"],
        false
    );
    // Asking again mails a new link to the current address.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/email/verify/resend",
            Some(&u.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    loop {
        let sent = mail.next_link("/verify-email").await;
        if sent["to"] == "vera3@example.com" {
            break;
        }
    }
    app.stop().await;
}

dual_test!(
    an_invitation_by_email_binds_only_to_a_verified_address,
    custom
);
async fn an_invitation_by_email_binds_only_to_a_verified_address(backend: crate::helpers::Backend) {
    let Some((app, mut mail)) = crate::helpers::spawn_with_mail(backend).await else {
        return;
    };
    let admin = crate::workspaces::admin(&app, "admin@example.com").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&admin.token),
            json!({"name": "Ops", "slug": "ops"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .post(
            "/api/v1/workspaces/ops/members",
            Some(&admin.token),
            json!({"email": "boss@example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["invited"], true);
    // Whoever signs up with the address first gets nothing of the invitation yet…
    let taker = app.signup("boss@example.com", "Boss?").await;
    app.get("/api/v1/workspaces/ops", &taker.token)
        .await
        .assert_problem(404, "not_found");
    let listed = app.get("/api/v1/workspaces", &taker.token).await;
    assert!(!listed.text.contains("\"ops\""), "{}", listed.text);
    // …and the admin sees it still waiting.
    let members = app
        .get("/api/v1/workspaces/ops/members", &admin.token)
        .await;
    let boss = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "boss@example.com")
        .cloned()
        .expect("listed");
    assert_eq!(boss["invited"], true);
    // Once the address is proven, the invitation binds, with its role.
    app.verify_email(&mut mail, "boss@example.com").await;
    let r = app.get("/api/v1/workspaces/ops", &taker.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["role"], "admin");
    app.stop().await;
}

dual_test!(
    a_completed_reset_verifies_the_address_and_spends_other_links,
    custom
);
async fn a_completed_reset_verifies_the_address_and_spends_other_links(
    backend: crate::helpers::Backend,
) {
    let Some((app, mut mail)) = crate::helpers::spawn_with_mail(backend).await else {
        return;
    };
    app.signup("rita@example.com", "Rita").await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let r = app
            .post(
                "/api/v1/auth/password/forgot",
                None,
                json!({"email": "rita@example.com"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        tokens.push(mail.next_token("/reset-password").await);
    }
    let r = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": tokens[1], "password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // The other link is spent with it.
    app.post(
        "/api/v1/auth/password/reset",
        None,
        json!({"token": tokens[0], "password": "yet another password"}),
    )
    .await
    .assert_problem(401, "invalid_reset_token");
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "rita@example.com", "password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["emailVerified"], true, "{}", r.body);
    app.stop().await;
}

dual_test!(reset_mails_are_limited_per_address_apart_from_login);
async fn reset_mails_are_limited_per_address_apart_from_login(app: &TestApp) {
    app.signup("nora@example.com", "Nora").await;
    let forgot = || {
        app.post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "nora@example.com"}),
        )
    };
    for _ in 0..5 {
        assert_eq!(forgot().await.status, StatusCode::ACCEPTED);
    }
    let r = forgot().await;
    r.assert_problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // Asking for someone's reset mails does not lock them out of signing in.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nora@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
