use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::TestApp;

fn no_limits(s: &mut palaver::config::Settings) {
    s.rate_limits = Some(palaver::config::OnOff::Off);
}

dual_test!(
    two_users_opening_their_chat_at_once_get_one_conversation,
    super::no_limits
);
async fn two_users_opening_their_chat_at_once_get_one_conversation(app: &TestApp) {
    let a = app.signup("a@example.com", "Ada").await;
    let b = app.signup("b@example.com", "Bea").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (me, other) = if i % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let (client, url) = (app.client.clone(), app.url("/api/v1/conversations/direct"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(&me.token)
                .json(&json!({"userId": other.id}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::CREATED,
            "{body}"
        );
        created += (status == StatusCode::CREATED) as usize;
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one conversation");
    assert_eq!(created, 1, "created once");
    let c = app.conversation(&a, ids.iter().next().unwrap()).await;
    assert_eq!(c["kind"], "direct");
    assert_eq!(
        c["title"], "Bea",
        "a direct conversation is titled by the other member"
    );
    assert_eq!(c["memberCount"], 2);
    app.post(
        "/api/v1/conversations/direct",
        Some(&a.token),
        json!({"userId": a.id}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

dual_test!(a_stranger_starts_a_message_request);
async fn a_stranger_starts_a_message_request(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let conv = app.direct(&alice, &bob).await;
    // Nothing shows for Bob until the first message.
    let list = app
        .get("/api/v1/conversations?requests=true", &bob.token)
        .await;
    assert_eq!(list.body["items"], json!([]));
    let first = app.say(&alice, &conv, "hi bob, it's alice").await;
    assert_eq!(first["seq"], 1, "direct conversations start at seq 1");

    let requests = app
        .get("/api/v1/conversations?requests=true", &bob.token)
        .await;
    assert_eq!(requests.body["items"][0]["id"], conv.as_str());
    assert_eq!(requests.body["items"][0]["requestState"], "pending");
    assert_eq!(requests.body["items"][0]["unreadCount"], 1);
    assert_eq!(
        app.get("/api/v1/conversations", &bob.token).await.body["items"],
        json!([])
    );
    // Bob receives it, reads it: Alice sees delivered, never read, while pending.
    assert_eq!(app.history(&bob, &conv).await.len(), 1);
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/read"),
            Some(&bob.token),
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.history(&alice, &conv).await[0]["status"], "delivered");
    let before = app.get("/api/v1/sync", &alice.token).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_string();

    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/accept"),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["requestState"], "accepted");
    assert_eq!(app.history(&alice, &conv).await[0]["status"], "read");
    // The read kept private is told once accepted, in Alice's stream (on PostgreSQL a change
    // shows once every older transaction of the cluster ended: asked until it is there).
    let told = crate::helpers::eventually(std::time::Duration::from_secs(10), || {
        let (url, token, bob_id) = (
            format!("/api/v1/sync?cursor={before}"),
            alice.token.clone(),
            bob.id.clone(),
        );
        async move {
            let events = app.get(&url, &token).await.body["events"].clone();
            let reads: Vec<Value> = events
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "message:status" && e["data"]["status"] == "read")
                .cloned()
                .collect();
            match reads.as_slice() {
                [one] if one["data"]["userId"] == bob_id.as_str() => Ok(one.clone()),
                _ => Err(events.to_string()),
            }
        }
    })
    .await;
    assert_eq!(told["data"]["upToSeq"], 1);
    assert_eq!(
        app.get("/api/v1/conversations", &bob.token).await.body["items"][0]["id"],
        conv.as_str()
    );

    // A declined request refuses further messages.
    let carol = app.signup("carol@example.com", "Carol").await;
    let conv2 = app.direct(&carol, &bob).await;
    app.say(&carol, &conv2, "hello?").await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/v1/conversations/{conv2}/decline"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv2}/messages"),
            Some(&carol.token),
            json!({"clientMsgId": "x1", "type": "text", "text": "again"}),
        )
        .await;
    r.assert_problem(403, "request_declined");
    assert_eq!(
        app.get("/api/v1/conversations?requests=true", &bob.token)
            .await
            .body["items"],
        json!([])
    );
}

dual_test!(contacts_skip_the_request, |s| s.otp_dev_code =
    Some("123456".into()));
async fn contacts_skip_the_request(app: &TestApp) {
    let alice = crate::users::phone_user(app, "+14155550400", "Alice").await;
    let bob = crate::users::phone_user(app, "+14155550401", "Bob").await;
    app.post(
        "/api/v1/contacts/sync",
        Some(&bob.token),
        json!({"phones": ["+14155550400"]}),
    )
    .await
    .assert_ok();
    let conv = app.direct(&alice, &bob).await;
    app.say(&alice, &conv, "hey").await;
    let list = app.get("/api/v1/conversations", &bob.token).await;
    assert_eq!(list.body["items"][0]["requestState"], "accepted");
}

dual_test!(groups_follow_their_roles);
async fn groups_follow_their_roles(app: &TestApp) {
    let owner = app.signup("owner@example.com", "Owner").await;
    let m1 = app.signup("m1@example.com", "Member One").await;
    let m2 = app.signup("m2@example.com", "Member Two").await;
    let late = app.signup("late@example.com", "Latecomer").await;
    let g = app.group(&owner, "Book club", &[&m1, &m2]).await;
    let c = app.conversation(&m1, &g).await;
    assert_eq!(c["kind"], "group");
    assert_eq!(c["title"], "Book club");
    assert_eq!(c["memberCount"], 3);
    let roles: Vec<(String, String)> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(roles.contains(&(owner.id.clone(), "owner".into())));
    let h = app.history(&m1, &g).await;
    assert_eq!(h[0]["seq"], 1);
    assert_eq!(h[0]["type"], "system");
    assert_eq!(h[0]["payload"]["event"], "created");
    assert_eq!(h[0]["sender"]["type"], "system");

    app.say(&m1, &g, "before the latecomer").await;
    // Members cannot add; admins can.
    let add = |u: &crate::helpers::User, who: &crate::helpers::User| {
        let (path, token, body) = (
            format!("/api/v1/conversations/{g}/members"),
            u.token.clone(),
            json!({"userIds": [who.id]}),
        );
        async move { app.post(&path, Some(&token), body).await }
    };
    add(&m1, &late).await.assert_problem(403, "forbidden");
    let r = app
        .patch(
            &format!("/api/v1/conversations/{g}/members/{}", m1.id),
            &owner.token,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = add(&m1, &late).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["memberCount"], 4);
    // The latecomer sees history from the message that announces them.
    let h = app.history(&late, &g).await;
    assert_eq!(h[0]["payload"]["event"], "member_added");
    assert!(h.iter().all(|m| m["text"] != "before the latecomer"));

    // Title changes are announced.
    let r = app
        .patch(
            &format!("/api/v1/conversations/{g}"),
            &m2.token,
            json!({"title": "Mine"}),
        )
        .await;
    r.assert_problem(403, "forbidden");
    let r = app
        .patch(
            &format!("/api/v1/conversations/{g}"),
            &m1.token,
            json!({"title": "Readers"}),
        )
        .await;
    assert_eq!(r.body["title"], "Readers");
    assert_eq!(
        app.history(&m2, &g).await.last().unwrap()["payload"]["event"],
        "title_changed"
    );

    // Admins cannot remove the owner; the removed keep what they had, nothing after.
    let remove = |u: &crate::helpers::User, who: &str| {
        let (path, token) = (
            format!("/api/v1/conversations/{g}/members/{who}"),
            u.token.clone(),
        );
        async move { app.delete(&path, &token).await }
    };
    remove(&m1, &owner.id)
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(remove(&m1, &m2.id).await.status, StatusCode::NO_CONTENT);
    app.say(&owner, &g, "after m2 left").await;
    let h = app.history(&m2, &g).await;
    assert_eq!(h.last().unwrap()["payload"]["event"], "member_removed");
    assert!(h.iter().all(|m| m["text"] != "after m2 left"));
    let r = app
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            Some(&m2.token),
            json!({"clientMsgId": "r1", "type": "text", "text": "let me in"}),
        )
        .await;
    r.assert_problem(404, "not_found");

    // The owner leaves: the admin inherits the group.
    assert_eq!(
        remove(&owner, &owner.id).await.status,
        StatusCode::NO_CONTENT
    );
    let c = app.conversation(&m1, &g).await;
    let m1_role = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == m1.id.as_str())
        .unwrap()["role"]
        .clone();
    assert_eq!(m1_role, "owner");
    assert_eq!(c["memberCount"], 2);
}

dual_test!(group_members_must_be_valid_and_not_blocking);
async fn group_members_must_be_valid_and_not_blocking(app: &TestApp) {
    let me = app.signup("me@example.com", "Me").await;
    let blocker = app.signup("blocker@example.com", "Blocker").await;
    let r = app
        .post(
            "/api/v1/conversations/groups",
            Some(&me.token),
            json!({"title": "x", "memberIds": []}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .post(
            "/api/v1/conversations/groups",
            Some(&me.token),
            json!({"title": "x", "memberIds": ["00000000-0000-7000-8000-000000000000"]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .post(
            "/api/v1/conversations/groups",
            Some(&me.token),
            json!({"title": "", "memberIds": [blocker.id]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    app.call(
        Method::PUT,
        &format!("/api/v1/blocks/{}", me.id),
        Some(&blocker.token),
        None,
    )
    .await
    .assert_ok();
    let r = app
        .post(
            "/api/v1/conversations/groups",
            Some(&me.token),
            json!({"title": "x", "memberIds": [blocker.id]}),
        )
        .await;
    r.assert_problem(403, "blocked");
}

dual_test!(settings_and_the_list);
async fn settings_and_the_list(app: &TestApp) {
    let a = app.signup("la@example.com", "La").await;
    let b = app.signup("lb@example.com", "Lb").await;
    let c = app.signup("lc@example.com", "Lc").await;
    let g1 = app.group(&a, "First", &[&b]).await;
    let g2 = app.group(&a, "Second", &[&b, &c]).await;
    app.say(&b, &g1, "one").await;
    app.say(&b, &g1, "two").await;
    // Most recent activity first; unread counts what others sent after the read mark.
    let list = app.get("/api/v1/conversations", &a.token).await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [g1.as_str(), g2.as_str()]);
    let first = &list.body["items"][0];
    assert_eq!(first["unreadCount"], 2);
    assert_eq!(first["lastMessage"]["text"], "two");
    assert_eq!(first["members"].as_array().unwrap().len(), 2);
    // Paging.
    let p1 = app.get("/api/v1/conversations?limit=1", &a.token).await;
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 1);
    let cursor = p1.body["nextCursor"].as_str().unwrap();
    let p2 = app
        .get(
            &format!("/api/v1/conversations?limit=1&cursor={cursor}"),
            &a.token,
        )
        .await;
    assert_eq!(p2.body["items"][0]["id"], g2.as_str());
    assert_eq!(p2.body["nextCursor"], Value::Null);

    let r = app
        .post(
            &format!("/api/v1/conversations/{g1}/read"),
            Some(&a.token),
            json!({"seq": 3}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"conversationId": g1, "deliveredSeq": 3, "readSeq": 3})
    );
    assert_eq!(app.conversation(&a, &g1).await["unreadCount"], 0);

    let r = app
        .patch(
            &format!("/api/v1/conversations/{g1}/settings"),
            &a.token,
            json!({"mutedUntil": "2030-01-01T00:00:00Z", "archived": true, "pinned": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["settings"],
        json!({"mutedUntil": "2030-01-01T00:00:00.000Z", "archived": true, "pinned": true})
    );
    let archived = app
        .get("/api/v1/conversations?archived=true", &a.token)
        .await;
    assert_eq!(archived.body["items"].as_array().unwrap().len(), 1);
    let r = app
        .patch(
            &format!("/api/v1/conversations/{g1}/settings"),
            &a.token,
            json!({"mutedUntil": null}),
        )
        .await;
    assert_eq!(r.body["settings"]["mutedUntil"], Value::Null);
    assert_eq!(r.body["settings"]["pinned"], true);
    // Settings are per member.
    assert_eq!(
        app.conversation(&b, &g1).await["settings"]["archived"],
        false
    );
    let r = app
        .patch(
            &format!("/api/v1/conversations/{g1}/settings"),
            &a.token,
            json!({"mutedUntil": "soon"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
}

dual_test!(outsiders_learn_nothing_of_a_conversation, custom);
async fn outsiders_learn_nothing_of_a_conversation(backend: crate::helpers::Backend) {
    let Some((app, mut mail)) = crate::helpers::spawn_with_mail(backend).await else {
        return;
    };
    outsiders_learn_nothing(&app, &mut mail).await;
    app.stop().await;
}

async fn outsiders_learn_nothing(app: &TestApp, mail: &mut crate::helpers::Capture) {
    let root = crate::workspaces::admin(app, "root@example.com").await;
    let a = app.signup("ma@example.com", "Ma").await;
    let b = app.signup("mb@example.com", "Mb").await;
    let outsider = app.signup("out@example.com", "Out").await;
    let removed = app.signup("rem@example.com", "Rem").await;
    let g = app.group(&a, "Private", &[&b, &removed]).await;
    let msg = app.say(&a, &g, "secret plans").await;
    let mid = msg["id"].as_str().unwrap().to_owned();
    app.delete(
        &format!("/api/v1/conversations/{g}/members/{}", removed.id),
        &a.token,
    )
    .await
    .assert_ok();
    // Someone of another workspace.
    app.post(
        "/api/v1/workspaces",
        Some(&root.token),
        json!({"name": "Other", "slug": "other"}),
    )
    .await
    .assert_ok();
    app.post(
        "/api/v1/workspaces/other/members",
        Some(&root.token),
        json!({"email": "far@example.com", "role": "member"}),
    )
    .await
    .assert_ok();
    let far = app.signup("far@example.com", "Far").await;
    // The invitation binds once Far proves the address.
    app.verify_email(mail, "far@example.com").await;

    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            format!("/api/v1/conversations/{g}"),
            Some(json!({"title": "x"})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{g}/members"),
            Some(json!({"userIds": [b.id]})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/conversations/{g}/members/{}", b.id),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/conversations/{g}/members/{}", b.id),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/conversations/{g}/settings"),
            Some(json!({"pinned": true})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{g}/delivered"),
            Some(json!({"seq": 1})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{g}/read"),
            Some(json!({"seq": 1})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{g}/accept"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{g}/messages"),
            Some(json!({"clientMsgId": "z", "type": "text", "text": "x"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/messages/{mid}"),
            Some(json!({"text": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/messages/{mid}?for=everyone"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/messages/{mid}/reactions"),
            Some(json!({"emoji": "👍"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/messages/{mid}/reactions"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{g}/members"),
            None,
        ),
    ];
    let reads: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/conversations/{g}"), None),
        (
            Method::GET,
            format!("/api/v1/conversations/{g}/messages"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/messages/{mid}/receipts"),
            None,
        ),
        (Method::DELETE, format!("/api/v1/messages/{mid}"), None),
    ];
    for (method, path, body) in writes.iter().chain(&reads) {
        let r = app.call(method.clone(), path, None, body.clone()).await;
        r.assert_problem(401, "unauthorized");
        for who in [&outsider, &far] {
            let r = app
                .call(method.clone(), path, Some(&who.token), body.clone())
                .await;
            r.assert_problem(404, "not_found");
            assert!(!r.text.contains("secret"));
        }
    }
    // The removed member may still read what they saw, but not write.
    for (method, path, body) in &writes {
        let r = app
            .call(method.clone(), path, Some(&removed.token), body.clone())
            .await;
        r.assert_problem(404, "not_found");
    }
    assert_eq!(
        app.history(&removed, &g)
            .await
            .iter()
            .filter(|m| m["text"] == "secret plans")
            .count(),
        1
    );
    // Nothing of it appears in their lists or syncs.
    for who in [&outsider, &far] {
        assert_eq!(
            app.get("/api/v1/conversations", &who.token).await.body["items"],
            json!([])
        );
        let sync = app.get("/api/v1/sync", &who.token).await;
        assert_eq!(sync.body["conversations"], json!([]));
    }
}

dual_test!(an_idempotency_key_makes_one_group, super::no_limits);
async fn an_idempotency_key_makes_one_group(app: &TestApp) {
    let a = app.signup("ia@example.com", "Ia").await;
    let b = app.signup("ib@example.com", "Ib").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (client, url, token, b_id) = (
            app.client.clone(),
            app.url("/api/v1/conversations/groups"),
            a.token.clone(),
            b.id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", "create-once")
                .json(&json!({"title": "Once", "memberIds": [b_id]}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{body}"
        );
        created += (status == StatusCode::CREATED) as usize;
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), created), (1, 1));
    assert_eq!(
        app.get("/api/v1/conversations", &b.token).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = app
        .call_with(
            Method::POST,
            "/api/v1/conversations/groups",
            Some(&a.token),
            Some(json!({"title": "x", "memberIds": [b.id]})),
            &[("idempotency-key", "")],
        )
        .await;
    r.assert_problem(400, "bad_request");
}
