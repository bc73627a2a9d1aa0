use std::collections::HashSet;

use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{assert_replayed_as_history, drain, drain_until, TestApp};

dual_test!(sync_pages_every_change_once_in_order);
dual_test!(small_pages_across_conversations_match_one_large_page);
async fn sync_pages_every_change_once_in_order(app: &TestApp) {
    let a = app.signup("sa@example.com", "Sa").await;
    let b = app.signup("sb@example.com", "Sb").await;
    let c = app.signup("sc@example.com", "Sc").await;
    // B's device takes a snapshot, then goes offline.
    let snap = app.get("/api/v1/sync", &b.token).await;
    assert_eq!(snap.body["events"], json!([]));
    assert_eq!(snap.body["conversations"], json!([]));
    let start = snap.body["cursor"].as_str().unwrap().to_owned();

    let g = app.group(&a, "Offline test", &[&b, &c]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.say(&a, &g, &format!("while away {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.patch(
        &format!("/api/v1/messages/{}", ids[0]),
        &a.token,
        json!({"text": "edited while away"}),
    )
    .await
    .assert_ok();
    app.delete(
        &format!("/api/v1/messages/{}?for=everyone", ids[1]),
        &a.token,
    )
    .await
    .assert_ok();
    app.put(
        &format!("/api/v1/messages/{}/reactions", ids[2]),
        &c.token,
        json!({"emoji": "👍"}),
    )
    .await
    .assert_ok();
    app.post(
        &format!("/api/v1/conversations/{g}/read"),
        Some(&c.token),
        json!({"seq": 6}),
    )
    .await
    .assert_ok();
    // A conversation B is not in: nothing of it reaches B.
    let private = app.direct(&a, &c).await;
    app.say(&a, &private, "not for b").await;

    let complete = |e: &[Value]| {
        e.iter().filter(|e| e["type"] == "message:new").count() == 6
            && e.iter().filter(|e| e["type"] == "message:updated").count() == 3
            && e.iter().any(|e| e["type"] == "message:status")
    };
    let (events, end) = drain_until(app, &b, start.clone(), 3, complete).await;
    let cursors: Vec<&str> = events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(
        cursors.iter().collect::<HashSet<_>>().len(),
        cursors.len(),
        "no duplicates"
    );
    assert!(!events.iter().any(|e| e.to_string().contains("not for b")));
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let new_seqs: Vec<i64> = events
        .iter()
        .filter(|e| e["type"] == "message:new")
        .map(|e| e["data"]["message"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(new_seqs, [1, 2, 3, 4, 5, 6], "every message, in seq order");
    assert_eq!(
        kinds.iter().filter(|k| **k == "message:updated").count(),
        3,
        "edit, deletion, reaction"
    );
    assert!(kinds.contains(&"conversation:updated"));
    let status = events
        .iter()
        .find(|e| e["type"] == "message:status" && e["data"]["userId"] == c.id.as_str())
        .expect("c's read receipt");
    assert_eq!(status["data"]["userId"], c.id.as_str());
    assert_eq!(
        (
            status["data"]["status"].clone(),
            status["data"]["upToSeq"].clone()
        ),
        (json!("read"), json!(6))
    );
    // Replays show messages as they are now: the edit, the tombstone.
    let shown = |id: &str| {
        events
            .iter()
            .rfind(|e| e["data"]["message"]["id"] == id)
            .unwrap()["data"]["message"]
            .clone()
    };
    assert_eq!(shown(&ids[0])["text"], "edited while away");
    assert_eq!(shown(&ids[1])["text"], Value::Null);
    assert!(shown(&ids[1])["deletedAt"].is_string());
    // Every event's data carries its cursor.
    assert!(events
        .iter()
        .filter(|e| e["type"] != "message:status")
        .all(|e| e["data"]["cursor"] == e["cursor"]));

    // Caught up: nothing more; new changes continue from the end cursor, and the whole stream
    // read in one page equals the paged one.
    let (more, _) = drain(app, &b, end.clone(), 500).await;
    assert!(more.is_empty());
    app.say(&c, &g, "welcome back").await;
    let (next, _) = drain_until(app, &b, end, 500, |e| !e.is_empty()).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["data"]["message"]["text"], "welcome back");
    let expected = events.len() + 1;
    let (once, _) = drain_until(app, &b, start, 500, |e| e.len() >= expected).await;
    assert_eq!(once.len(), expected);
    // Plain, edited, deleted and reacted messages replay as the history shows them.
    assert_replayed_as_history(app, &b, &once).await;
}

dual_test!(replays_show_reactions_and_leave_out_what_the_reader_hid);
/// A page reads each change's message in the same statement as the change: a message the
/// reader deleted for themselves is not replayed (its later edit neither), a reacted message
/// replays with its reactions, a message named twice in a page is the same view twice.
async fn replays_show_reactions_and_leave_out_what_the_reader_hid(app: &TestApp) {
    let a = app.signup("ha@example.com", "Ha").await;
    let b = app.signup("hb@example.com", "Hb").await;
    let conv = app.direct(&a, &b).await;
    let start = app.sync_start(&b).await;
    let hidden = app.say(&a, &conv, "hidden from b").await;
    let liked = app.say(&a, &conv, "liked by a").await;
    let id = |m: &Value| m["id"].as_str().unwrap().to_owned();
    let r = app
        .delete(
            &format!("/api/v1/messages/{}?for=me", id(&hidden)),
            &b.token,
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::NO_CONTENT);
    app.patch(
        &format!("/api/v1/messages/{}", id(&hidden)),
        &a.token,
        json!({"text": "edited, still hidden from b"}),
    )
    .await
    .assert_ok();
    app.put(
        &format!("/api/v1/messages/{}/reactions", id(&liked)),
        &a.token,
        json!({"emoji": "👍"}),
    )
    .await
    .assert_ok();
    let liked_twice = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["data"]["message"]["id"] == id(&liked))
            .count()
            == 2
    };
    for limit in [1, 500] {
        // On PostgreSQL a change joins the stream once older writers have finished: wait for
        // the last one (the reaction); the earlier ones are visible by then.
        let (events, _) = drain_until(app, &b, start.clone(), limit, liked_twice).await;
        assert!(
            !events
                .iter()
                .any(|e| e["data"]["message"]["id"] == id(&hidden)),
            "limit {limit}: {events:?}"
        );
        let liked_events: Vec<&Value> = events
            .iter()
            .filter(|e| e["data"]["message"]["id"] == id(&liked))
            .collect();
        assert_eq!(liked_events.len(), 2, "new and updated (the reaction)");
        for e in liked_events {
            assert_eq!(
                e["data"]["message"]["reactions"],
                json!([{"emoji": "👍", "by": {"type": "user", "id": a.id}}])
            );
        }
    }
    // A reply and a location (messages that need more than their row) between plain ones.
    let reply = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&a.token),
            json!({"clientMsgId": "sync-reply", "type": "text", "text": "to the liked one",
                   "replyToId": id(&liked)}),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.text);
    let place = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&b.token),
            json!({"clientMsgId": "sync-place", "type": "location",
                   "location": {"latitude": 52.52, "longitude": 13.405, "name": "Berlin"}}),
        )
        .await;
    assert_eq!(place.status, reqwest::StatusCode::CREATED, "{}", place.text);
    app.say(&b, &conv, "plain after them").await;
    let placed = |events: &[Value]| {
        events
            .iter()
            .any(|e| e["data"]["message"]["text"] == "plain after them")
    };
    for limit in [2, 500] {
        let (events, _) = drain_until(app, &b, start.clone(), limit, placed).await;
        assert_replayed_as_history(app, &b, &events).await;
    }
    // A's own replay still has both.
    let (mine, _) = drain_until(app, &a, start, 500, liked_twice).await;
    assert!(mine
        .iter()
        .any(|e| e["data"]["message"]["text"] == "edited, still hidden from b"));
}

dual_test!(a_removed_member_stops_receiving_changes);
async fn a_removed_member_stops_receiving_changes(app: &TestApp) {
    let a = app.signup("ra@example.com", "Ra").await;
    let b = app.signup("rb@example.com", "Rb").await;
    let start = app.sync_start(&b).await;
    let g = app.group(&a, "Soon without b", &[&b]).await;
    app.say(&a, &g, "b sees this").await;
    app.delete(
        &format!("/api/v1/conversations/{g}/members/{}", b.id),
        &a.token,
    )
    .await
    .assert_ok();
    app.say(&a, &g, "b never sees this").await;
    app.patch(
        &format!("/api/v1/conversations/{g}"),
        &a.token,
        json!({"title": "renamed later"}),
    )
    .await
    .assert_ok();
    let removed = |e: &[Value]| {
        e.iter()
            .any(|e| e["data"]["message"]["payload"]["event"] == "member_removed")
    };
    let (events, _) = drain_until(app, &b, start, 100, removed).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(text.contains("b sees this"));
    assert!(!text.contains("b never sees this"));
    assert!(!text.contains("renamed later"));
    assert!(
        events
            .iter()
            .any(|e| e["data"]["message"]["payload"]["event"] == "member_removed"),
        "b learns of the removal"
    );
}

dual_test!(a_garbage_cursor_is_refused);
async fn a_garbage_cursor_is_refused(app: &TestApp) {
    let a = app.signup("ga@example.com", "Ga").await;
    app.get("/api/v1/sync?cursor=%%%", &a.token)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/api/v1/sync?limit=0", &a.token)
        .await
        .assert_problem(422, "validation_failed");
}

dual_test!(
    sync_during_concurrent_writes_misses_nothing,
    crate::messages::chats_no_limits
);
async fn sync_during_concurrent_writes_misses_nothing(app: &TestApp) {
    let reader = app.signup("reader@example.com", "Reader").await;
    let mut writers = Vec::new();
    for i in 0..10 {
        writers.push(
            app.signup(&format!("w{i}@example.com"), &format!("W{i}"))
                .await,
        );
    }
    let mut members: Vec<&crate::helpers::User> = writers.iter().collect();
    members.push(&reader);
    let g = app.group(&writers[0], "Firehose", &members[1..]).await;
    let mut cursor = app.sync_start(&reader).await;

    let mut tasks = Vec::new();
    for (i, w) in writers.iter().enumerate() {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/api/v1/conversations/{g}/messages")),
            w.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for j in 0..30 {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"clientMsgId": format!("{i}-{j}"), "type": "text", "text": "x"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), reqwest::StatusCode::CREATED);
            }
        }));
    }
    // Read while they write, each time from where the last page ended.
    let mut seqs = Vec::new();
    while tasks.iter().any(|t| !t.is_finished()) {
        let (events, next) = drain(app, &reader, cursor, 50).await;
        cursor = next;
        seqs.extend(
            events
                .iter()
                .filter(|e| e["type"] == "message:new")
                .map(|e| e["data"]["message"]["seq"].as_i64().unwrap()),
        );
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (rest, _) = drain_until(app, &reader, cursor, 50, |e| {
        seqs.len() + e.iter().filter(|e| e["type"] == "message:new").count() >= 300
    })
    .await;
    seqs.extend(
        rest.iter()
            .filter(|e| e["type"] == "message:new")
            .map(|e| e["data"]["message"]["seq"].as_i64().unwrap()),
    );
    // On PostgreSQL a snapshot's cursor stops below every transaction still running anywhere
    // in the cluster (another test's, say), so the group's creation (seq 1), committed just
    // before the snapshot, may come again after it: at the snapshot boundary a change may be
    // repeated, never missed. The writers' messages all come after the cursor.
    let mut sorted: Vec<i64> = seqs.iter().copied().filter(|s| *s >= 2).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        (2..=301).collect::<Vec<i64>>(),
        "every message once, none missed while writers committed"
    );
}

/// Small pages over interleaved conversations, one of them full of changes the reader may not
/// see (another member's settings), must give exactly what one large page gives (written for a
/// per-conversation bound on `changes_after`'s page, measured slower and reverted; the test
/// stays: such a bound fails it if the visibility filter is left out).
async fn small_pages_across_conversations_match_one_large_page(app: &TestApp) {
    let a = app.signup("pa@example.com", "Pa").await;
    let b = app.signup("pb@example.com", "Pb").await;
    let c = app.signup("pc@example.com", "Pc").await;
    let start = app.sync_start(&b).await;
    let x = app.group(&a, "Busy", &[&b, &c]).await;
    let y = app.direct(&c, &b).await;
    let settle = |muted: bool| json!({"mutedUntil": if muted { json!("2030-01-01T00:00:00Z") } else { Value::Null }});
    let mut said = Vec::new();
    for round in 0..4 {
        // Changes addressed to `a` alone: in `b`'s log position order, but not for `b`.
        for k in 0..3 {
            let r = app
                .patch(
                    &format!("/api/v1/conversations/{x}/settings"),
                    &a.token,
                    settle((round + k) % 2 == 0),
                )
                .await;
            assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
        }
        said.push(app.say(&c, &y, &format!("y {round}")).await["id"].clone());
        said.push(app.say(&a, &x, &format!("x {round}")).await["id"].clone());
        said.push(app.say(&c, &y, &format!("y {round} again")).await["id"].clone());
    }

    // (On PostgreSQL, changes appear once every transaction older than them has ended, which
    // other tests' transactions may delay.)
    let (all, _) = drain_until(app, &b, start.clone(), 500, |events| {
        said.iter().all(|id| {
            events
                .iter()
                .any(|e| e["type"] == "message:new" && e["data"]["message"]["id"] == *id)
        })
    })
    .await;
    // (The group's own first message comes before these.)
    let new_ids: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"] == "message:new")
        .map(|e| &e["data"]["message"]["id"])
        .filter(|id| said.contains(id))
        .collect();
    assert_eq!(
        new_ids,
        said.iter().collect::<Vec<_>>(),
        "every message once, in the order sent"
    );
    for limit in [1, 2, 3] {
        let (paged, _) = drain_until(app, &b, start.clone(), limit, |events| {
            events.len() >= all.len()
        })
        .await;
        let cursors = |events: &[Value]| -> Vec<String> {
            events
                .iter()
                .map(|e| e["cursor"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(cursors(&paged), cursors(&all), "pages of {limit}");
    }
}
