use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::dual_test;
use crate::helpers::{TestApp, User, PASSWORD};

/// A platform admin who owns the default workspace, made by the code `palaver admin create` runs.
pub async fn admin(app: &TestApp, email: &str) -> User {
    let email_v = palaver::users::model::Email::parse(email).unwrap();
    palaver::auth::service::create_platform_admin(
        &app.state.db,
        &email_v,
        PASSWORD.into(),
        "Admin",
    )
    .await
    .unwrap();
    app.login(email, "admin-laptop").await
}

dual_test!(a_new_user_belongs_to_the_default_workspace);
async fn a_new_user_belongs_to_the_default_workspace(app: &TestApp) {
    let u = app.signup("vera@example.com", "Vera").await;
    let r = app.get("/api/v1/workspaces", &u.token).await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["slug"], "default");
    assert_eq!(items[0]["role"], "member");
    assert_eq!(items[0]["isDefault"], true);
    let by_slug = app.get("/api/v1/workspaces/default", &u.token).await;
    assert_eq!(by_slug.body["id"], items[0]["id"]);
    // Members may not rename the workspace nor list its people.
    app.patch(
        "/api/v1/workspaces/default",
        &u.token,
        json!({"name": "Mine"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.get("/api/v1/workspaces/default/members", &u.token)
        .await
        .assert_problem(403, "forbidden");
}

dual_test!(only_platform_admins_create_workspaces);
async fn only_platform_admins_create_workspaces(app: &TestApp) {
    let u = app.signup("walt@example.com", "Walt").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&u.token),
            json!({"name": "Acme", "slug": "acme"}),
        )
        .await;
    r.assert_problem(403, "forbidden");
    let a = admin(app, "root@example.com").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&a.token),
            json!({"name": "Acme", "slug": "acme"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["role"], "owner");
    assert_eq!(r.body["settings"], json!({}));
    app.post(
        "/api/v1/workspaces",
        Some(&a.token),
        json!({"name": "Acme 2", "slug": "acme"}),
    )
    .await
    .assert_problem(409, "slug_taken");
    app.post(
        "/api/v1/workspaces",
        Some(&a.token),
        json!({"name": "", "slug": "Not A Slug"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let r = app
        .patch(
            "/api/v1/workspaces/acme",
            &a.token,
            json!({"name": "Acme Pharmacy", "settings": {"timezone": "Europe/Paris"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["name"], "Acme Pharmacy");
    assert_eq!(r.body["settings"]["timezone"], "Europe/Paris");
    app.patch(
        "/api/v1/workspaces/acme",
        &a.token,
        json!({"settings": [1]}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

dual_test!(anyone_creates_workspaces_when_open, |s| s.workspaces =
    Some(palaver::config::WorkspaceCreation::Open));
async fn anyone_creates_workspaces_when_open(app: &TestApp) {
    let u = app.signup("xena@example.com", "Xena").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&u.token),
            json!({"name": "Xena's", "slug": "xenas"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

dual_test!(a_second_workspace_sees_nothing_of_the_first, custom);
async fn a_second_workspace_sees_nothing_of_the_first(backend: crate::helpers::Backend) {
    let Some((app, mut mail)) = crate::helpers::spawn_with_mail(backend).await else {
        return;
    };
    second_workspace(&app, &mut mail).await;
    app.stop().await;
}

async fn second_workspace(app: &TestApp, mail: &mut crate::helpers::Capture) {
    let root = admin(app, "root@example.com").await;
    let alice = app.signup("alice@example.com", "Alice Default").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&root.token),
            json!({"name": "Other", "slug": "other"}),
        )
        .await;
    let other_id = r.body["id"].as_str().unwrap().to_owned();
    // Carol is invited to the other workspace only, then signs up and claims the invitation.
    let r = app
        .post(
            "/api/v1/workspaces/other/members",
            Some(&root.token),
            json!({"email": "carol@example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let carol = app.signup("carol@example.com", "Carol Other").await;
    // The invitation binds once Carol proves the address.
    let r = app.get("/api/v1/workspaces", &carol.token).await;
    assert_eq!(r.body["items"], json!([]), "{}", r.body);
    app.verify_email(mail, "carol@example.com").await;

    // Carol's world is the other workspace.
    let r = app.get("/api/v1/workspaces", &carol.token).await;
    let slugs: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["other"]);
    for path in [
        "/api/v1/workspaces/default",
        "/api/v1/workspaces/default/members",
    ] {
        app.get(path, &carol.token)
            .await
            .assert_problem(404, "not_found");
    }
    let default_id = app
        .get("/api/v1/workspaces/default", &alice.token)
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get(&format!("/api/v1/workspaces/{default_id}"), &carol.token)
        .await
        .assert_problem(404, "not_found");
    let r = app
        .post(
            &format!("/api/v1/workspaces/{default_id}/members"),
            Some(&carol.token),
            json!({"email": "x@example.com", "role": "member"}),
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/users/search?q=alice",
            Some(&carol.token),
            None,
            &[("palaver-workspace", "default")],
        )
        .await;
    r.assert_problem(404, "not_found");
    for q in ["alice", "alice@example.com"] {
        let r = app
            .get(&format!("/api/v1/users/search?q={q}"), &carol.token)
            .await;
        assert_eq!(r.body["items"], json!([]), "{q}");
    }
    app.get(&format!("/api/v1/users/{}", alice.id), &carol.token)
        .await
        .assert_problem(404, "not_found");
    app.call(
        Method::PUT,
        &format!("/api/v1/blocks/{}", alice.id),
        Some(&carol.token),
        None,
    )
    .await
    .assert_problem(404, "not_found");

    // And the first sees nothing of the second.
    app.get("/api/v1/workspaces/other", &alice.token)
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/workspaces/{other_id}"), &alice.token)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        app.get("/api/v1/users/search?q=carol", &alice.token)
            .await
            .body["items"],
        json!([])
    );
    app.get(&format!("/api/v1/users/{}", carol.id), &alice.token)
        .await
        .assert_problem(404, "not_found");
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/users/me",
            Some(&alice.token),
            None,
            &[("palaver-workspace", &other_id)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "user-level endpoints do not need a workspace"
    );
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/contacts",
            Some(&alice.token),
            None,
            &[("palaver-workspace", "other")],
        )
        .await;
    r.assert_problem(404, "not_found");

    // The root admin is in both and picks one with the header.
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/users/search?q=carol",
            Some(&root.token),
            None,
            &[("palaver-workspace", "other")],
        )
        .await;
    assert_eq!(r.body["items"][0]["id"], carol.id.as_str());
    let r = app.get("/api/v1/users/search?q=carol", &root.token).await;
    assert_eq!(
        r.body["items"],
        json!([]),
        "without the header the default workspace applies"
    );
}

dual_test!(membership_roles_follow_the_rules);
async fn membership_roles_follow_the_rules(app: &TestApp) {
    let root = admin(app, "root@example.com").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&root.token),
            json!({"name": "Team", "slug": "team"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let ann = app.signup("ann@example.com", "Ann").await;
    let ben = app.signup("ben@example.com", "Ben").await;

    let add = |token: String, body: serde_json::Value| async move {
        app.post("/api/v1/workspaces/team/members", Some(&token), body)
            .await
    };
    let r = add(
        root.token.clone(),
        json!({"userId": ann.id, "role": "admin"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["role"], "admin");
    add(
        root.token.clone(),
        json!({"userId": ann.id, "role": "agent"}),
    )
    .await
    .assert_problem(409, "already_member");
    add(
        root.token.clone(),
        json!({"email": "x@example.com", "phone": "+14155550100", "role": "agent"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    add(
        root.token.clone(),
        json!({"userId": ben.id, "role": "boss"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    // Admins add agents and members, not owners.
    add(
        ann.token.clone(),
        json!({"userId": ben.id, "role": "owner"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let r = add(
        ann.token.clone(),
        json!({"userId": ben.id, "role": "agent"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = add(
        ann.token.clone(),
        json!({"phone": "+14155550999", "role": "member"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["invited"], true);

    let members = app
        .get("/api/v1/workspaces/team/members?limit=2", &ben.token)
        .await;
    assert_eq!(members.status, StatusCode::OK);
    assert_eq!(members.body["items"].as_array().unwrap().len(), 2);
    let cursor = members.body["nextCursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/api/v1/workspaces/team/members?limit=2&cursor={cursor}"),
            &ben.token,
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest.body["nextCursor"], serde_json::Value::Null);

    // Agents cannot manage; admins cannot touch owners; the last owner stays.
    let path = |u: &str| format!("/api/v1/workspaces/team/members/{u}");
    app.patch(&path(&ann.id), &ben.token, json!({"role": "member"}))
        .await
        .assert_problem(403, "forbidden");
    app.delete(&path(&root.id), &ann.token)
        .await
        .assert_problem(403, "forbidden");
    app.patch(&path(&root.id), &ann.token, json!({"role": "member"}))
        .await
        .assert_problem(403, "forbidden");
    app.patch(&path(&root.id), &root.token, json!({"role": "admin"}))
        .await
        .assert_problem(409, "last_owner");
    app.delete(&path(&root.id), &root.token)
        .await
        .assert_problem(409, "last_owner");
    let r = app
        .patch(&path(&ben.id), &ann.token, json!({"role": "member"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["role"], "member");
    // A second owner lets the first one go.
    let r = app
        .patch(&path(&ann.id), &root.token, json!({"role": "owner"}))
        .await;
    assert_eq!(r.body["role"], "owner");
    let r = app.delete(&path(&root.id), &root.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/workspaces/team", &root.token)
        .await
        .assert_problem(404, "not_found");
    // Members leave by themselves.
    let r = app.delete(&path(&ben.id), &ben.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.delete(&path(&ben.id), &ann.token)
        .await
        .assert_problem(404, "not_found");
}

/// The default workspace's id, as `user` sees it.
async fn default_workspace(app: &TestApp, user: &User) -> String {
    let r = app.get("/api/v1/workspaces/default", &user.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn set_role(app: &TestApp, admin: &User, ws: &str, user: &User, role: &str) {
    let r = app
        .patch(
            &format!("/api/v1/workspaces/{ws}/members/{}", user.id),
            &admin.token,
            json!({"role": role}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

dual_test!(a_demoted_agent_loses_the_inbox_at_once);
async fn a_demoted_agent_loses_the_inbox_at_once(app: &TestApp) {
    use crate::whatsapp::{connected, deliver, fake_graph, history_until, inbox, text_from};
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    let agent = app.signup("agent@example.com", "Agent").await;
    let ws = default_workspace(app, &owner).await;
    set_role(app, &owner, &ws, &agent, "agent").await;
    let first = text_from("4915112345678", "Ana", "wamid.d1", "hello", 1_700_000_000);
    assert_eq!(deliver(app, &first, None).await.0, StatusCode::OK);
    let conv = inbox(app, &agent, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The agent sees the customer's message (the "finds it" half).
    history_until(app, &agent, &conv, |h| h.len() == 1).await;
    set_role(app, &owner, &ws, &agent, "member").await;
    // In the same request: no inbox, no conversation, no history, no reply.
    let list = app
        .get("/api/v1/conversations?kind=channel", &agent.token)
        .await;
    assert_eq!(list.body["items"], json!([]), "{}", list.body);
    app.get(&format!("/api/v1/conversations/{conv}"), &agent.token)
        .await
        .assert_problem(404, "not_found");
    app.get(
        &format!("/api/v1/conversations/{conv}/messages"),
        &agent.token,
    )
    .await
    .assert_problem(404, "not_found");
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&agent.token),
            json!({"clientMsgId": "after-demotion", "type": "text", "text": "hi"}),
        )
        .await;
    r.assert_problem(404, "not_found");
    // Promoted again, the agent works the inbox again.
    set_role(app, &owner, &ws, &agent, "agent").await;
    let again = inbox(app, &agent, "", |i| i.len() == 1).await;
    assert_eq!(again[0]["id"], conv.as_str());
}

dual_test!(a_removed_member_loses_the_workspace_and_its_sockets_are_told);
async fn a_removed_member_loses_the_workspace_and_its_sockets_are_told(app: &TestApp) {
    let owner = admin(app, "owner@example.com").await;
    let ws = default_workspace(app, &owner).await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let carol = app.signup("carol@example.com", "Carol").await;
    let group = app.group(&owner, "Team", &[&bob, &carol]).await;
    app.say(&owner, &group, "before").await;
    let (socket, mut events) = palaver::client::connect(&app.base, &json!({"token": bob.token}))
        .await
        .expect("bob connects");
    let r = app
        .delete(
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // Bob's device is told why, then disconnected.
    let ended = events
        .expect("session:ended", std::time::Duration::from_secs(10))
        .await
        .expect("told");
    assert_eq!(ended["reason"], "removed_from_workspace");
    assert_eq!(ended["workspaceId"], ws.as_str());
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while events.next().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the socket was closed");
    drop(socket);
    // What happens next in the group is not Bob's; Carol still gets it.
    app.say(&owner, &group, "after").await;
    let carol_sees = app.history(&carol, &group).await;
    assert!(carol_sees.iter().any(|m| m["text"] == "after"));
    // Bob's access to the workspace is gone (he acts in it no more).
    let r = app
        .call_with(
            Method::GET,
            &format!("/api/v1/conversations/{group}"),
            Some(&bob.token),
            None,
            &[("palaver-workspace", ws.as_str())],
        )
        .await;
    assert!(
        r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN,
        "{}",
        r.text
    );
    // The group lost a member: two left.
    let view = app.conversation(&owner, &group).await;
    assert_eq!(view["memberCount"], 2, "{view}");
}

dual_test!(business_hours_settings_are_checked);
async fn business_hours_settings_are_checked(app: &TestApp) {
    let owner = admin(app, "owner@example.com").await;
    for bad in [
        json!({"timezone": "Mars/Olympus"}),
        json!({"businessHours": {"mon": [{"open": "18:00", "close": "09:00"}]}}),
        json!({"holidays": ["25/12/2026"]}),
    ] {
        app.patch(
            "/api/v1/workspaces/default",
            &owner.token,
            json!({"settings": bad}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    let hours = json!({"timezone": "Europe/Lisbon", "holidays": ["2026-12-25"],
        "businessHours": {"mon": [{"open": "09:00", "close": "13:00"}, {"open": "14:00", "close": "18:00"}],
            "sat": [{"open": "10:00", "close": "24:00"}]}});
    let r = app
        .patch(
            "/api/v1/workspaces/default",
            &owner.token,
            json!({"settings": hours}),
        )
        .await
        .assert_ok();
    assert_eq!(r.body["settings"], hours);
}
