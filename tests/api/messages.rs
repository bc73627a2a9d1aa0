use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::TestApp;

dual_test!(concurrent_senders_get_gap_free_seqs, super::chats_no_limits);
async fn concurrent_senders_get_gap_free_seqs(app: &TestApp) {
    let owner = app.signup("owner@example.com", "Owner").await;
    let mut senders = vec![owner.clone()];
    for i in 0..19 {
        senders.push(
            app.signup(&format!("s{i}@example.com"), &format!("Sender {i}"))
                .await,
        );
    }
    let others: Vec<&crate::helpers::User> = senders[1..].iter().collect();
    let g = app.group(&owner, "Busy", &others).await;
    let mut tasks = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/v1/conversations/{g}/messages")),
            s.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for j in 0..50 {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"clientMsgId": format!("{i}-{j}"), "type": "text", "text": format!("{i}/{j}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                seqs.push(r.json::<Value>().await.unwrap()["seq"].as_i64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one sender's messages are ordered"
        );
        all.extend(seqs);
    }
    all.sort();
    let expected: Vec<i64> = (2..=1001).collect();
    assert_eq!(
        all, expected,
        "seq 2..=1001 (1 is the creation), no gap, no duplicate"
    );
    // The stored history agrees.
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations/{g}/messages?after=0&limit=100&cursor={c}"),
            None => format!("/api/v1/conversations/{g}/messages?after=0&limit=100"),
        };
        let page = app.get(&path, &owner.token).await;
        for m in page.body["items"].as_array().unwrap() {
            assert!(seen.insert(m["seq"].as_i64().unwrap()));
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (1..=1001).collect::<Vec<i64>>()
    );
}

pub fn chats_no_limits(s: &mut palaver::config::Settings) {
    s.rate_limits = Some(palaver::config::OnOff::Off);
}

dual_test!(
    a_retried_client_msg_id_returns_the_original,
    super::chats_no_limits
);
async fn a_retried_client_msg_id_returns_the_original(app: &TestApp) {
    let a = app.signup("ra@example.com", "Ra").await;
    let b = app.signup("rb@example.com", "Rb").await;
    let conv = app.direct(&a, &b).await;
    let body = json!({"clientMsgId": "retry-me", "type": "text", "text": "once"});
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (client, url, token, body) = (
            app.client.clone(),
            app.url(&format!("/api/v1/conversations/{conv}/messages")),
            a.token.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let (status, m) = t.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{m}"
        );
        created += (status == StatusCode::CREATED) as usize;
        ids.insert(m["id"].as_str().unwrap().to_owned());
        assert_eq!(m["seq"], 1);
        assert_eq!(m["clientMsgId"], "retry-me");
    }
    assert_eq!((ids.len(), created), (1, 1));
    let next = app.say(&a, &conv, "next").await;
    assert_eq!(
        next["seq"], 2,
        "no seq was lost to the rolled-back duplicates"
    );
    assert_eq!(app.history(&b, &conv).await.len(), 2);
    // The same id in another conversation is a conflict, not a silent duplicate.
    let c = app.signup("rc@example.com", "Rc").await;
    let other = app.direct(&a, &c).await;
    app.post(
        &format!("/api/v1/conversations/{other}/messages"),
        Some(&a.token),
        body,
    )
    .await
    .assert_problem(409, "client_msg_id_conflict");
}

dual_test!(message_types_are_validated);
async fn message_types_are_validated(app: &TestApp) {
    let a = app.signup("ta@example.com", "Ta").await;
    let b = app.signup("tb@example.com", "Tb").await;
    let conv = app.direct(&a, &b).await;
    let send = |body: Value| {
        let path = format!("/api/v1/conversations/{conv}/messages");
        let token = a.token.clone();
        async move { app.post(&path, Some(&token), body).await }
    };
    let r = send(json!({"clientMsgId": "l1", "type": "location", "location": {"latitude": 48.8584, "longitude": 2.2945, "name": "Tour Eiffel"}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["location"]["name"], "Tour Eiffel");
    let r = send(json!({"clientMsgId": "c1", "type": "contact", "contact": {"name": "Dr. Who", "phones": ["+441632960000"]}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["contact"]["phones"][0], "+441632960000");
    let reply = send(json!({"clientMsgId": "t1", "type": "text", "text": "nice place", "replyToId": r.body["id"]})).await;
    assert_eq!(reply.body["replyTo"]["seq"], 2);
    for (body, field) in [
        (json!({"clientMsgId": "x", "type": "text"}), "text"),
        (
            json!({"clientMsgId": "x", "type": "text", "text": "   "}),
            "text",
        ),
        (
            json!({"clientMsgId": "x", "type": "image", "mediaId": "nope"}),
            "mediaId",
        ),
        (
            json!({"clientMsgId": "x", "type": "location", "location": {"latitude": 100, "longitude": 0}}),
            "location",
        ),
        (json!({"clientMsgId": "x", "type": "system"}), "type"),
        (json!({"clientMsgId": "x", "type": "selfie"}), "type"),
        (
            json!({"clientMsgId": "", "type": "text", "text": "x"}),
            "clientMsgId",
        ),
        (
            json!({"clientMsgId": "x", "type": "text", "text": "x", "replyToId": "nope"}),
            "replyToId",
        ),
    ] {
        let r = send(body).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], field, "{}", r.text);
    }
}

dual_test!(history_pages_by_seq_in_both_directions);
async fn history_pages_by_seq_in_both_directions(app: &TestApp) {
    let a = app.signup("ha@example.com", "Ha").await;
    let b = app.signup("hb@example.com", "Hb").await;
    let conv = app.direct(&a, &b).await;
    for i in 1..=7 {
        app.say(&a, &conv, &format!("m{i}")).await;
    }
    let seqs = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let latest = app
        .get(
            &format!("/api/v1/conversations/{conv}/messages?limit=3"),
            &b.token,
        )
        .await;
    assert_eq!(seqs(&latest.body), [5, 6, 7]);
    let older = app
        .get(
            &format!(
                "/api/v1/conversations/{conv}/messages?limit=3&cursor={}",
                latest.body["nextCursor"].as_str().unwrap()
            ),
            &b.token,
        )
        .await;
    assert_eq!(seqs(&older.body), [2, 3, 4]);
    let oldest = app
        .get(
            &format!(
                "/api/v1/conversations/{conv}/messages?limit=3&cursor={}",
                older.body["nextCursor"].as_str().unwrap()
            ),
            &b.token,
        )
        .await;
    assert_eq!(seqs(&oldest.body), [1]);
    assert_eq!(oldest.body["nextCursor"], Value::Null);
    let before = app
        .get(
            &format!("/api/v1/conversations/{conv}/messages?before=4&limit=2"),
            &b.token,
        )
        .await;
    assert_eq!(seqs(&before.body), [2, 3]);
    let after = app
        .get(
            &format!("/api/v1/conversations/{conv}/messages?after=4&limit=2"),
            &b.token,
        )
        .await;
    assert_eq!(seqs(&after.body), [5, 6]);
    let rest = app
        .get(
            &format!(
                "/api/v1/conversations/{conv}/messages?limit=2&cursor={}",
                after.body["nextCursor"].as_str().unwrap()
            ),
            &b.token,
        )
        .await;
    assert_eq!(seqs(&rest.body), [7]);
    assert_eq!(rest.body["nextCursor"], Value::Null);
    app.get(
        &format!("/api/v1/conversations/{conv}/messages?before=4&after=2"),
        &b.token,
    )
    .await
    .assert_problem(422, "validation_failed");
}

dual_test!(edits_are_the_senders_for_fifteen_minutes);
async fn edits_are_the_senders_for_fifteen_minutes(app: &TestApp) {
    let a = app.signup("ea@example.com", "Ea").await;
    let b = app.signup("eb@example.com", "Eb").await;
    let conv = app.direct(&a, &b).await;
    let m = app.say(&a, &conv, "teh typo").await;
    let path = format!("/api/v1/messages/{}", m["id"].as_str().unwrap());
    let r = app
        .patch(&path, &a.token, json!({"text": "the typo"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["text"], "the typo");
    assert!(r.body["editedAt"].is_string());
    app.patch(&path, &b.token, json!({"text": "hijack"}))
        .await
        .assert_problem(403, "forbidden");
    sqlx::query("UPDATE messages SET created_at = created_at - 16 * 60 * 1000")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.patch(&path, &a.token, json!({"text": "too late"}))
        .await
        .assert_problem(403, "edit_window_closed");
}

dual_test!(deleting_for_everyone_leaves_only_a_tombstone);
async fn deleting_for_everyone_leaves_only_a_tombstone(app: &TestApp) {
    let a = app.signup("da@example.com", "Da").await;
    let b = app.signup("db@example.com", "Db").await;
    let conv = app.direct(&a, &b).await;
    let m = app.say(&a, &conv, "regrettable words").await;
    let id = m["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/api/v1/messages/{id}"),
        &a.token,
        json!({"text": "still regrettable"}),
    )
    .await
    .assert_ok();
    app.put(
        &format!("/api/v1/messages/{id}/reactions"),
        &b.token,
        json!({"emoji": "😮"}),
    )
    .await
    .assert_ok();
    let reply = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&b.token),
            json!({"clientMsgId": "q", "type": "text", "text": "what?", "replyToId": id}),
        )
        .await;
    app.delete(&format!("/api/v1/messages/{id}?for=everyone"), &b.token)
        .await
        .assert_problem(403, "forbidden");
    let r = app
        .delete(&format!("/api/v1/messages/{id}?for=everyone"), &a.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for viewer in [&a, &b] {
        let h = app.history(viewer, &conv).await;
        let t = h.iter().find(|m| m["id"] == id.as_str()).unwrap();
        assert_eq!(
            (t["seq"].clone(), t["sender"]["id"].clone()),
            (json!(1), json!(a.id))
        );
        assert!(t["deletedAt"].is_string());
        assert_eq!(t["text"], Value::Null);
        assert_eq!(t["reactions"], json!([]));
        assert_eq!(t["editedAt"], Value::Null);
        let quoted = h.iter().find(|m| m["id"] == reply.body["id"]).unwrap();
        assert_eq!(quoted["replyTo"]["deleted"], true);
        assert_eq!(quoted["replyTo"]["text"], Value::Null);
    }
    let edits: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message_edits")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(edits, 0, "the edit history is gone too");
    // The change stream replays the tombstone, never the words.
    let all = app
        .get(
            &format!("/api/v1/sync?cursor={}", palaver_cursor_zero()),
            &b.token,
        )
        .await;
    assert!(!all.text.contains("regrettable"), "{}", all.text);
    app.put(
        &format!("/api/v1/messages/{id}/reactions"),
        &b.token,
        json!({"emoji": "👍"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    // After 48 hours nobody can delete for everyone.
    let old = app.say(&a, &conv, "old news").await;
    sqlx::query("UPDATE messages SET created_at = created_at - 49 * 3600 * 1000 WHERE id = $1")
        .bind(old["id"].as_str().unwrap())
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let r = app
        .delete(
            &format!(
                "/api/v1/messages/{}?for=everyone",
                old["id"].as_str().unwrap()
            ),
            &a.token,
        )
        .await;
    r.assert_problem(403, "delete_window_closed");
}

/// The cursor before every change (position 0).
pub fn palaver_cursor_zero() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("[0,0]")
}

dual_test!(deleting_for_me_hides_it_from_me_only);
async fn deleting_for_me_hides_it_from_me_only(app: &TestApp) {
    let a = app.signup("ma@example.com", "Ma").await;
    let b = app.signup("mb@example.com", "Mb").await;
    let conv = app.direct(&a, &b).await;
    let m = app.say(&a, &conv, "mine to hide").await;
    let r = app
        .delete(
            &format!("/api/v1/messages/{}?for=me", m["id"].as_str().unwrap()),
            &b.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(app.history(&b, &conv).await.is_empty());
    assert_eq!(app.history(&a, &conv).await.len(), 1);
    app.delete(
        &format!("/api/v1/messages/{}?for=nobody", m["id"].as_str().unwrap()),
        &b.token,
    )
    .await
    .assert_problem(422, "validation_failed");
}

dual_test!(one_reaction_per_user_per_message);
async fn one_reaction_per_user_per_message(app: &TestApp) {
    let a = app.signup("xa@example.com", "Xa").await;
    let b = app.signup("xb@example.com", "Xb").await;
    let conv = app.direct(&a, &b).await;
    let m = app.say(&a, &conv, "react to me").await;
    let path = format!("/api/v1/messages/{}/reactions", m["id"].as_str().unwrap());
    app.put(&path, &b.token, json!({"emoji": "👍"}))
        .await
        .assert_ok();
    let r = app.put(&path, &b.token, json!({"emoji": "❤️"})).await;
    assert_eq!(
        r.body["reactions"],
        json!([{"emoji": "❤️", "by": {"type": "user", "id": b.id}}])
    );
    let r = app.put(&path, &a.token, json!({"emoji": "🎉"})).await;
    assert_eq!(r.body["reactions"].as_array().unwrap().len(), 2);
    let r = app.delete(&path, &b.token).await;
    assert_eq!(
        r.body["reactions"],
        json!([{"emoji": "🎉", "by": {"type": "user", "id": a.id}}])
    );
    app.put(&path, &b.token, json!({"emoji": "nice"}))
        .await
        .assert_problem(422, "validation_failed");
}

dual_test!(receipts_only_move_forward_and_derive_the_status);
async fn receipts_only_move_forward_and_derive_the_status(app: &TestApp) {
    let a = app.signup("pa@example.com", "Pa").await;
    let b = app.signup("pb@example.com", "Pb").await;
    let c = app.signup("pc@example.com", "Pc").await;
    let g = app.group(&a, "Receipts", &[&b, &c]).await;
    let mut last = Value::Null;
    for i in 0..4 {
        last = app.say(&a, &g, &format!("r{i}")).await;
    }
    assert_eq!(last["seq"], 5);
    assert_eq!(last["status"], "sent");
    let mark = |u: &crate::helpers::User, what: &str, seq: i64| {
        let (path, token) = (format!("/api/v1/conversations/{g}/{what}"), u.token.clone());
        async move { app.post(&path, Some(&token), json!({"seq": seq})).await }
    };
    mark(&b, "delivered", 5).await;
    assert_eq!(
        app.history(&a, &g).await.last().unwrap()["status"],
        "sent",
        "one of two members got it"
    );
    mark(&c, "read", 3).await;
    let h = app.history(&a, &g).await;
    assert_eq!(
        h[2]["status"], "delivered",
        "seq 3: delivered to both, read by one"
    );
    assert_eq!(h[4]["status"], "sent");
    mark(&b, "read", 5).await;
    mark(&c, "read", 5).await;
    assert_eq!(app.history(&a, &g).await.last().unwrap()["status"], "read");
    // Never backwards; read implies delivered; nothing beyond the last message.
    let r = mark(&c, "read", 2).await;
    assert_eq!(
        (r.body["readSeq"].clone(), r.body["deliveredSeq"].clone()),
        (json!(5), json!(5))
    );
    let r = mark(&c, "delivered", 1).await;
    assert_eq!(r.body["deliveredSeq"], 5);
    mark(&c, "read", 99)
        .await
        .assert_problem(422, "validation_failed");
    mark(&c, "read", -1)
        .await
        .assert_problem(422, "validation_failed");
    // Per-member receipts with times.
    let receipts = app
        .get(
            &format!("/api/v1/messages/{}/receipts", last["id"].as_str().unwrap()),
            &a.token,
        )
        .await;
    let items = receipts.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the other members, not the sender");
    assert!(items
        .iter()
        .all(|r| r["deliveredAt"].is_string() && r["readAt"].is_string()));
    let invariant: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM conversation_members WHERE delivered_seq < read_seq",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap();
    assert_eq!(invariant, 0);
}

dual_test!(blocked_users_cannot_message);
async fn blocked_users_cannot_message(app: &TestApp) {
    let a = app.signup("ba@example.com", "Ba").await;
    let b = app.signup("bb@example.com", "Bb").await;
    let conv = app.direct(&a, &b).await;
    app.say(&a, &conv, "hello").await;
    app.call(
        Method::PUT,
        &format!("/api/v1/blocks/{}", a.id),
        Some(&b.token),
        None,
    )
    .await
    .assert_ok();
    for (from, id) in [(&a, "b1"), (&b, "b2")] {
        let r = app
            .post(
                &format!("/api/v1/conversations/{conv}/messages"),
                Some(&from.token),
                json!({"clientMsgId": id, "type": "text", "text": "x"}),
            )
            .await;
        r.assert_problem(403, "blocked");
    }
    app.delete(&format!("/api/v1/blocks/{}", a.id), &b.token)
        .await
        .assert_ok();
    app.say(&a, &conv, "hello again").await;
}

/// What became of one send of a sender racing a removal or a block.
struct Raced {
    /// Begun after the removal or block was answered.
    after: bool,
    status: StatusCode,
    seq: Option<i64>,
}

/// `senders` tasks send as `from` into `conversation` one message after another; once `go`
/// tells them the removal or block was answered they each send three more. `started` is told
/// when the first five sends have landed.
async fn race_sends(
    app: &TestApp,
    from: &crate::helpers::User,
    conversation: &str,
    senders: usize,
    started: std::sync::Arc<tokio::sync::Notify>,
    go: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<Raced>>> {
    let landed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (0..senders)
        .map(|i| {
            let (client, url, token) = (
                app.client.clone(),
                app.url(&format!("/api/v1/conversations/{conversation}/messages")),
                from.token.clone(),
            );
            let (landed, started, mut go) = (landed.clone(), started.clone(), go.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut after_sends = 0;
                for j in 0.. {
                    let mut after = *go.borrow();
                    if !after && j >= 20 {
                        // Enough before it: the history stays one page.
                        go.wait_for(|v| *v).await.unwrap();
                        after = true;
                    }
                    if after {
                        if after_sends == 3 {
                            break;
                        }
                        after_sends += 1;
                    }
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"clientMsgId": format!("race-{i}-{j}"), "type": "text", "text": "x"}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let seq = r.json::<Value>().await.unwrap()["seq"].as_i64();
                    if status == StatusCode::CREATED
                        && landed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 4
                    {
                        started.notify_one();
                    }
                    out.push(Raced { after, status, seq });
                }
                out
            })
        })
        .collect()
}

dual_test!(
    sends_racing_a_removal_or_a_block_never_land_after_it,
    super::chats_no_limits
);
async fn sends_racing_a_removal_or_a_block_never_land_after_it(app: &TestApp) {
    // A removal: every send lands before the removal's system message or is refused, and
    // every send begun after the removal was answered is refused.
    let owner = app.signup("rown@example.com", "Owner").await;
    let b = app.signup("rb@example.com", "Rb").await;
    let g = app.group(&owner, "Racing", &[&b]).await;
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let (go, gone) = tokio::sync::watch::channel(false);
    let tasks = race_sends(app, &b, &g, 4, started.clone(), gone).await;
    started.notified().await;
    app.delete(
        &format!("/api/v1/conversations/{g}/members/{}", b.id),
        &owner.token,
    )
    .await
    .assert_ok();
    go.send(true).unwrap();
    let landed = landed_seqs(tasks, StatusCode::NOT_FOUND).await;
    let history = app.history(&owner, &g).await;
    let removal = history
        .iter()
        .find(|m| m["payload"]["event"] == "member_removed")
        .expect("the removal's system message")["seq"]
        .as_i64()
        .unwrap();
    assert!(landed.len() >= 5);
    assert!(
        landed.iter().all(|s| *s < removal),
        "nothing lands after the removal"
    );
    assert_eq!(sent_by(&history, &b), landed, "what landed, and only that");

    // A block: every send of the blocked user begun after the block was answered is refused.
    let c = app.signup("rc@example.com", "Rc").await;
    let d = app.direct(&owner, &c).await;
    app.say(&c, &d, "hello").await;
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let (go, gone) = tokio::sync::watch::channel(false);
    let tasks = race_sends(app, &owner, &d, 4, started.clone(), gone).await;
    started.notified().await;
    app.call(
        Method::PUT,
        &format!("/api/v1/blocks/{}", owner.id),
        Some(&c.token),
        None,
    )
    .await
    .assert_ok();
    go.send(true).unwrap();
    let landed = landed_seqs(tasks, StatusCode::FORBIDDEN).await;
    let history = app.history(&owner, &d).await;
    assert_eq!(
        sent_by(&history, &owner),
        landed,
        "what landed, and only that"
    );
}

/// The seqs of the racing sends that landed; every other send was `refused`, and none begun
/// after the removal or block landed.
async fn landed_seqs(
    tasks: Vec<tokio::task::JoinHandle<Vec<Raced>>>,
    refused: StatusCode,
) -> BTreeSet<i64> {
    let mut landed = BTreeSet::new();
    for t in tasks {
        for r in t.await.unwrap() {
            if r.status == StatusCode::CREATED {
                assert!(!r.after, "a send begun after the removal or block landed");
                landed.insert(r.seq.unwrap());
            } else {
                assert_eq!(r.status, refused, "a racing send's refusal");
            }
        }
    }
    landed
}

/// The seqs of `user`'s messages in a history page.
fn sent_by(history: &[Value], user: &crate::helpers::User) -> BTreeSet<i64> {
    history
        .iter()
        .filter(|m| m["sender"]["id"] == user.id.as_str())
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

dual_test!(forwarding_copies_a_message_once_per_key);
async fn forwarding_copies_a_message_once_per_key(app: &TestApp) {
    let a = app.signup("fa@example.com", "Fa").await;
    let b = app.signup("fb@example.com", "Fb").await;
    let c = app.signup("fc@example.com", "Fc").await;
    let ab = app.direct(&a, &b).await;
    let ac = app.direct(&a, &c).await;
    let g = app.group(&a, "Fwd", &[&b, &c]).await;
    let m = app.say(&b, &ab, "worth sharing").await;
    let path = format!("/api/v1/messages/{}/forward", m["id"].as_str().unwrap());
    let body = json!({"conversationIds": [ac, g]});
    let first = app
        .call_with(
            Method::POST,
            &path,
            Some(&a.token),
            Some(body.clone()),
            &[("idempotency-key", "k1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let copies = first.body["items"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|c| c["forwarded"] == true
        && c["text"] == "worth sharing"
        && c["sender"]["id"] == a.id.as_str()));
    let again = app
        .call_with(
            Method::POST,
            &path,
            Some(&a.token),
            Some(body),
            &[("idempotency-key", "k1")],
        )
        .await;
    let ids = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        ids(&first.body),
        ids(&again.body),
        "a retry with the key makes no new copies"
    );
    assert_eq!(app.history(&c, &ac).await.len(), 1);
    // Not into a conversation of someone else, not what one cannot see.
    let bc = app.direct(&b, &c).await;
    app.post(&path, Some(&a.token), json!({"conversationIds": [bc]}))
        .await
        .assert_problem(404, "not_found");
    let private = app.say(&b, &bc, "between b and c").await;
    app.post(
        &format!(
            "/api/v1/messages/{}/forward",
            private["id"].as_str().unwrap()
        ),
        Some(&a.token),
        json!({"conversationIds": [ac]}),
    )
    .await
    .assert_problem(404, "not_found");
    app.post(&path, Some(&a.token), json!({"conversationIds": []}))
        .await
        .assert_problem(422, "validation_failed");
}

dual_test!(workspace_admins_read_the_statistics);
async fn workspace_admins_read_the_statistics(app: &TestApp) {
    let admin = crate::workspaces::admin(app, "stats@example.com").await;
    let a = app.signup("qa@example.com", "Qa").await;
    let b = app.signup("qb@example.com", "Qb").await;
    let ab = app.direct(&a, &b).await;
    app.say(&a, &ab, "one").await;
    app.say(&b, &ab, "two").await;
    app.group(&a, "G", &[&b]).await;
    app.get("/api/v1/stats", &a.token)
        .await
        .assert_problem(403, "forbidden");
    let r = app.get("/api/v1/stats", &admin.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["users"], 3);
    assert_eq!(r.body["conversations"], json!({"direct": 1, "group": 1}));
    assert_eq!(r.body["messagesByType"], json!({"system": 1, "text": 2}));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(r.body["messagesByDay"], json!([{"day": today, "count": 3}]));
    app.get("/api/v1/stats?from=2020-13-01", &admin.token)
        .await
        .assert_problem(422, "validation_failed");
    let old = app
        .get("/api/v1/stats?from=2020-01-01&to=2020-01-31", &admin.token)
        .await;
    assert_eq!(old.body["messagesByDay"], json!([]));
}
