use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{TestApp, User};

async fn found(app: &TestApp, user: &User, q: &str) -> Vec<String> {
    let r = app
        .get(
            &format!(
                "/api/v1/search/messages?q={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            ),
            &user.token,
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"]["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

dual_test!(search_finds_words_in_the_callers_conversations_only);
async fn search_finds_words_in_the_callers_conversations_only(app: &TestApp) {
    let a = app.signup("sa@example.com", "Sa").await;
    let b = app.signup("sb@example.com", "Sb").await;
    let c = app.signup("sc@example.com", "Sc").await;
    let ab = app.direct(&a, &b).await;
    let ac = app.direct(&a, &c).await;
    app.say(&a, &ab, "The prescription is ready for pickup")
        .await;
    app.say(&b, &ab, "Thanks! Picking up the prescription tomorrow")
        .await;
    app.say(&a, &ac, "Your prescription refill was approved")
        .await;
    app.say(&a, &ab, "unrelated chatter").await;

    let mut hits = found(app, &b, "prescription").await;
    hits.sort();
    assert_eq!(
        hits,
        [
            "Thanks! Picking up the prescription tomorrow",
            "The prescription is ready for pickup"
        ]
    );
    assert_eq!(
        found(app, &c, "prescription").await,
        ["Your prescription refill was approved"]
    );
    assert_eq!(found(app, &a, "prescription").await.len(), 3);
    // Every word must match; the last one also as a prefix.
    assert_eq!(
        found(app, &b, "prescription tomorrow").await,
        ["Thanks! Picking up the prescription tomorrow"]
    );
    assert_eq!(found(app, &b, "pick").await.len(), 2, "pickup and Picking");
    // One conversation only.
    let r = app
        .get(
            &format!("/api/v1/search/messages?q=prescription&conversationId={ac}"),
            &a.token,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["items"][0]["conversation"]["id"], ac.as_str());
    assert_eq!(r.body["items"][0]["message"]["conversationId"], ac.as_str());
    // A stranger finds nothing; a query without words is refused.
    let d = app.signup("sd@example.com", "Sd").await;
    assert!(found(app, &d, "prescription").await.is_empty());
    let r = app
        .get(
            &format!("/api/v1/search/messages?q=prescription&conversationId={ab}"),
            &d.token,
        )
        .await;
    assert_eq!(r.body["items"], json!([]));
    app.get("/api/v1/search/messages?q=%22%27%29%28*", &d.token)
        .await
        .assert_problem(422, "validation_failed");
}

dual_test!(deleted_and_edited_words_are_not_found);
async fn deleted_and_edited_words_are_not_found(app: &TestApp) {
    let a = app.signup("da@example.com", "Da").await;
    let b = app.signup("db@example.com", "Db").await;
    let ab = app.direct(&a, &b).await;
    let gone = app.say(&a, &ab, "my password is swordfish").await;
    let edited = app.say(&a, &ab, "meet at the harbour").await;
    let hidden = app.say(&a, &ab, "the harbour ferry leaves at noon").await;
    app.delete(
        &format!(
            "/api/v1/messages/{}?for=everyone",
            gone["id"].as_str().unwrap()
        ),
        &a.token,
    )
    .await
    .assert_ok();
    app.patch(
        &format!("/api/v1/messages/{}", edited["id"].as_str().unwrap()),
        &a.token,
        json!({"text": "meet at the station"}),
    )
    .await
    .assert_ok();
    app.delete(
        &format!("/api/v1/messages/{}?for=me", hidden["id"].as_str().unwrap()),
        &b.token,
    )
    .await
    .assert_ok();
    for u in [&a, &b] {
        assert!(
            found(app, u, "swordfish").await.is_empty(),
            "deleted content is never found"
        );
        assert_eq!(found(app, u, "station").await, ["meet at the station"]);
    }
    assert_eq!(
        found(app, &a, "harbour").await,
        ["the harbour ferry leaves at noon"],
        "the old text is gone from the index"
    );
    assert!(found(app, &b, "harbour").await.is_empty(), "hidden for b");
}

dual_test!(a_removed_member_searches_nothing_of_the_group);
async fn a_removed_member_searches_nothing_of_the_group(app: &TestApp) {
    let a = app.signup("ra@example.com", "Ra").await;
    let b = app.signup("rb@example.com", "Rb").await;
    let g = app.group(&a, "Plans", &[&b]).await;
    app.say(&a, &g, "quarterly numbers look good").await;
    // Found while a member, so that finding nothing afterwards means something.
    assert_eq!(
        found(app, &b, "quarterly").await,
        ["quarterly numbers look good"]
    );
    app.delete(
        &format!("/api/v1/conversations/{g}/members/{}", b.id),
        &a.token,
    )
    .await
    .assert_ok();
    app.say(&a, &g, "quarterly bonus decided").await;
    let hits: Vec<Value> = app
        .get("/api/v1/search/messages?q=quarterly", &b.token)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(hits.is_empty());
}
