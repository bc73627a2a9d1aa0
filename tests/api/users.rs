use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::dual_test;
use crate::helpers::{TestApp, User};

/// Signs a phone in with the fixed development code.
pub async fn phone_user(app: &TestApp, phone: &str, name: &str) -> User {
    let r = app
        .post("/api/v1/auth/otp/request", None, json!({"phone": phone}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": phone, "code": "123456", "deviceId": "phone", "displayName": name}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    User::from(&r.body)
}

fn dev_code(s: &mut palaver::config::Settings) {
    s.otp_dev_code = Some("123456".into());
}

dual_test!(the_profile_is_read_and_changed_field_by_field);
async fn the_profile_is_read_and_changed_field_by_field(app: &TestApp) {
    let u = app.signup("nina@example.com", "Nina").await;
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"about": "Hi there", "privacy": {"lastSeen": "contacts"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["about"], "Hi there");
    assert_eq!(r.body["displayName"], "Nina");
    assert_eq!(r.body["privacy"]["lastSeen"], "contacts");
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"displayName": "Nina S."}),
        )
        .await;
    assert_eq!(r.body["displayName"], "Nina S.");
    assert_eq!(r.body["about"], "Hi there");

    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"privacy": {"lastSeen": "friends"}}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "privacy.lastSeen");
    let r = app
        .patch("/api/v1/users/me", &u.token, json!({"about": 42}))
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"about": "x".repeat(141)}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"avatarMediaId": "nope"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    app.signup("taken@example.com", "T").await;
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"email": "Taken@example.com", "currentPassword": crate::helpers::PASSWORD}),
        )
        .await;
    r.assert_problem(409, "email_taken");
    // The phone is read-only: unknown/immutable fields are ignored.
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.token,
            json!({"phone": "+14155550100"}),
        )
        .await;
    assert_eq!(r.body["phone"], serde_json::Value::Null);
}

dual_test!(
    search_finds_by_exact_phone_email_or_name_never_everyone,
    super::dev_code
);
async fn search_finds_by_exact_phone_email_or_name_never_everyone(app: &TestApp) {
    let me = app.signup("oscar@example.com", "Oscar").await;
    let pam = phone_user(app, "+14155550101", "Pam Beesly").await;
    let jim = app.signup("jim@example.com", "Jim Halpert").await;

    let r = app
        .get("/api/v1/users/search?q=%2B1%20415%20555%200101", &me.token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r.body), vec![pam.id.clone()]);
    let r = app
        .get("/api/v1/users/search?q=JIM@example.com", &me.token)
        .await;
    assert_eq!(ids(&r.body), vec![jim.id.clone()]);
    let r = app.get("/api/v1/users/search?q=halp", &me.token).await;
    assert_eq!(ids(&r.body), vec![jim.id.clone()]);
    let r = app.get("/api/v1/users/search?q=be", &me.token).await;
    assert_eq!(ids(&r.body), vec![pam.id.clone()]);
    // Partial phones and emails do not enumerate users; one letter is not a search.
    assert!(ids(&app
        .get("/api/v1/users/search?q=%2B1415", &me.token)
        .await
        .body)
    .is_empty());
    assert!(ids(&app
        .get("/api/v1/users/search?q=example.com", &me.token)
        .await
        .body)
    .is_empty());
    app.get("/api/v1/users/search?q=a", &me.token)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/api/v1/users/search", &me.token)
        .await
        .assert_problem(400, "bad_request");
    // The caller is not in their own results.
    assert!(ids(&app
        .get("/api/v1/users/search?q=oscar", &me.token)
        .await
        .body)
    .is_empty());
    // Phones show only to those who have the number.
    let r = app
        .get(&format!("/api/v1/users/{}", pam.id), &me.token)
        .await;
    assert_eq!(r.body["phone"], serde_json::Value::Null);
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

dual_test!(contact_sync_answers_the_registered_numbers, super::dev_code);
async fn contact_sync_answers_the_registered_numbers(app: &TestApp) {
    let me = phone_user(app, "+14155550200", "Quinn").await;
    let rita = phone_user(app, "+14155550201", "Rita").await;
    let sam = phone_user(app, "+14155550202", "Sam").await;
    let r = app
        .post(
            "/api/v1/contacts/sync",
            Some(&me.token),
            json!({"phones": ["+1 (415) 555-0201", "+14155550202", "+14155559999", "not a number", "+14155550200"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut got = ids(&r.body);
    got.sort();
    let mut want = vec![rita.id.clone(), sam.id.clone()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(r.body["nextCursor"], serde_json::Value::Null);
    // Synced numbers show their phone to the syncer.
    assert_eq!(
        r.body["items"][0]["phone"]
            .as_str()
            .map(|p| p.starts_with("+1415555020")),
        Some(true)
    );

    // Contacts list, paged by name.
    let page1 = app.get("/api/v1/contacts?limit=1", &me.token).await;
    assert_eq!(ids(&page1.body), vec![rita.id.clone()]);
    let cursor = page1.body["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let page2 = app
        .get(
            &format!("/api/v1/contacts?limit=1&cursor={cursor}"),
            &me.token,
        )
        .await;
    assert_eq!(ids(&page2.body), vec![sam.id.clone()]);
    assert_eq!(page2.body["nextCursor"], serde_json::Value::Null);
    app.get("/api/v1/contacts?cursor=garbage", &me.token)
        .await
        .assert_problem(422, "validation_failed");

    let too_many: Vec<String> = (0..1001).map(|i| format!("+1415556{i:04}")).collect();
    app.post(
        "/api/v1/contacts/sync",
        Some(&me.token),
        json!({"phones": too_many}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

dual_test!(last_seen_follows_privacy_and_blocks, super::dev_code);
async fn last_seen_follows_privacy_and_blocks(app: &TestApp) {
    let viewer = phone_user(app, "+14155550300", "Viewer").await;
    let target = phone_user(app, "+14155550301", "Target").await;
    sqlx::query("UPDATE users SET last_seen_at = 1700000000000, about = 'busy' WHERE id = $1")
        .bind(&target.id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let path = format!("/api/v1/users/{}", target.id);
    let seen = |v: &serde_json::Value| v["lastSeenAt"].as_str().map(str::to_owned);

    assert_eq!(
        seen(&app.get(&path, &viewer.token).await.body).as_deref(),
        Some("2023-11-14T22:13:20.000Z")
    );
    let set = |p: &'static str| {
        app.patch(
            "/api/v1/users/me",
            &target.token,
            json!({"privacy": {"lastSeen": p}}),
        )
    };
    assert_eq!(set("nobody").await.status, StatusCode::OK);
    assert_eq!(seen(&app.get(&path, &viewer.token).await.body), None);
    set("contacts").await;
    assert_eq!(seen(&app.get(&path, &viewer.token).await.body), None);
    app.post(
        "/api/v1/contacts/sync",
        Some(&target.token),
        json!({"phones": ["+14155550300"]}),
    )
    .await
    .assert_ok();
    assert!(seen(&app.get(&path, &viewer.token).await.body).is_some());

    // Blocking hides last seen and the about text both ways, and hides the blocker from search.
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/blocks/{}", viewer.id),
            Some(&target.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get(&path, &viewer.token).await;
    assert_eq!(seen(&r.body), None);
    assert_eq!(r.body["about"], "");
    assert!(ids(&app
        .get("/api/v1/users/search?q=target", &viewer.token)
        .await
        .body)
    .is_empty());
    let blocks = app.get("/api/v1/blocks", &target.token).await;
    assert_eq!(ids(&blocks.body), vec![viewer.id.clone()]);
    let r = app
        .delete(&format!("/api/v1/blocks/{}", viewer.id), &target.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &viewer.token).await.body["about"], "busy");
    assert!(ids(&app.get("/api/v1/blocks", &target.token).await.body).is_empty());
}

dual_test!(blocking_checks_its_target);
async fn blocking_checks_its_target(app: &TestApp) {
    let u = app.signup("uma@example.com", "Uma").await;
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/blocks/{}", u.id),
            Some(&u.token),
            None,
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .call(
            Method::PUT,
            "/api/v1/blocks/00000000-0000-7000-8000-000000000000",
            Some(&u.token),
            None,
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .get(
            "/api/v1/users/00000000-0000-7000-8000-000000000000",
            &u.token,
        )
        .await;
    r.assert_problem(404, "not_found");
}

dual_test!(erasing_an_account_leaves_only_tombstones);
async fn erasing_an_account_leaves_only_tombstones(app: &TestApp) {
    let a = app.signup("gone@example.com", "Soon Gone").await;
    let b = app.signup("stays@example.com", "Stays").await;
    let c = app.signup("also@example.com", "Also").await;
    let ab = app.direct(&a, &b).await;
    let from_a = app.say(&a, &ab, "my secret recipe").await;
    let from_b = app.say(&b, &ab, "tell me more").await;
    app.put(
        &format!(
            "/api/v1/messages/{}/reactions",
            from_b["id"].as_str().unwrap()
        ),
        &a.token,
        json!({"emoji": "🤫"}),
    )
    .await
    .assert_ok();
    let g = app.group(&a, "Cooking", &[&b, &c]).await;
    app.say(&a, &g, "group secret sauce").await;
    let cursor = app.sync_start(&b).await;

    let r = app.delete("/api/v1/users/me", &a.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    app.get("/api/v1/users/me", &a.token)
        .await
        .assert_problem(401, "unauthorized");
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"email": "gone@example.com", "password": crate::helpers::PASSWORD}),
    )
    .await
    .assert_problem(401, "invalid_credentials");

    // Tombstones in others' conversations: same id, seq and sender, no content.
    let h = app.history(&b, &ab).await;
    let t = h.iter().find(|m| m["id"] == from_a["id"]).unwrap();
    assert_eq!(
        (t["seq"].clone(), t["sender"]["id"].clone()),
        (json!(1), json!(a.id))
    );
    assert_eq!(t["text"], serde_json::Value::Null);
    assert!(t["deletedAt"].is_string());
    assert_eq!(
        h.iter().find(|m| m["id"] == from_b["id"]).unwrap()["reactions"],
        json!([])
    );
    assert!(!app
        .get("/api/v1/search/messages?q=secret", &b.token)
        .await
        .text
        .contains("secret"));
    // The group goes on without them, with a new owner.
    let group = app.conversation(&b, &g).await;
    assert_eq!(group["memberCount"], 2);
    assert!(group["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "owner"));
    // The profile is gone.
    app.get(&format!("/api/v1/users/{}", a.id), &b.token)
        .await
        .assert_problem(404, "not_found");
    let row: (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT display_name, email, password_hash FROM users WHERE id = $1")
            .bind(&a.id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
    assert_eq!(row, ("Deleted user".to_owned(), None, None));
    // Devices that sync learn of the erasure.
    let tombstoned = |e: &[serde_json::Value]| e.iter().any(|e| e["type"] == "message:updated");
    let (events, _) = crate::helpers::drain_until(app, &b, cursor, 100, tombstoned).await;
    assert!(!serde_json::to_string(&events).unwrap().contains("secret"));
}

dual_test!(contact_syncs_are_capped_per_call_and_per_minute);
async fn contact_syncs_are_capped_per_call_and_per_minute(app: &TestApp) {
    let u = app.signup("sync-cap@example.com", "Sync").await;
    let phones: Vec<String> = (0..1001).map(|i| format!("+1415555{i:04}")).collect();
    let r = app
        .post(
            "/api/v1/contacts/sync",
            Some(&u.token),
            json!({ "phones": phones }),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    for _ in 0..10 {
        let r = app
            .post(
                "/api/v1/contacts/sync",
                Some(&u.token),
                json!({"phones": ["+14155550100"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = app
        .post(
            "/api/v1/contacts/sync",
            Some(&u.token),
            json!({"phones": ["+14155550100"]}),
        )
        .await;
    r.assert_problem(429, "rate_limited");
}
