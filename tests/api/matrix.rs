//! The authorization matrix (quality.md, "Security requirements"): every route of the served
//! OpenAPI document and every client event, called by those who must not get through —
//! unauthenticated, a workspace member who is not in the conversation, a member of another
//! workspace, a member removed from the workspace, a user the owner blocked, an agent demoted to
//! member — answers 401, 403 or 404 and tells nothing: a real id and a made-up one get the
//! same answer. A route missing from the table below fails the test, so a new route cannot
//! ship without its row.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{TestApp, User};
use crate::whatsapp::{connected, deliver, fake_graph, inbox, png_bytes, text_from};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    /// A member of the workspace who is in none of the owner's conversations.
    Stranger,
    /// A member of another workspace only.
    OtherWorkspace,
    /// Was in the group, then removed from the workspace.
    Removed,
    /// Blocked by the owner.
    Blocked,
    /// Was an agent, now a plain member.
    Demoted,
}

use Caller::*;

const ALL: &[Caller] = &[
    Anonymous,
    Stranger,
    OtherWorkspace,
    Removed,
    Blocked,
    Demoted,
];
/// Those who do not belong to the workspace (or to anything).
const OUTSIDE: &[Caller] = &[Anonymous, OtherWorkspace, Removed];
/// Those who are not the workspace's admins or agents, in it.
const NOT_STAFF: &[Caller] = &[Anonymous, Stranger, Removed, Blocked, Demoted];
const ANONYMOUS: &[Caller] = &[Anonymous];
const NOBODY: &[Caller] = &[];

/// The things the owner has, which the callers must not reach.
struct World {
    owner: User,
    member: User,
    callers: Vec<(Caller, Option<User>)>,
    workspace: String,
    group: String,
    message: String,
    media: String,
    channel: String,
    template: String,
    lead: String,
    channel_conversation: String,
    /// A run of AI analysis of the channel conversation.
    ai_run: String,
    ai_key: String,
    automation: String,
    campaign: String,
    /// The owner's push subscription.
    subscription: String,
    tag: String,
    canned: String,
    import: String,
}

/// A text only the group's members may ever see.
const SECRET: &str = "the vault code is 7731";

async fn world(app: &TestApp) -> World {
    let graph = fake_graph().await;
    let (owner, channel) = connected(app, &graph).await;
    let workspace = {
        let r = app.get("/api/v1/workspaces/default", &owner.token).await;
        r.body["id"].as_str().unwrap().to_owned()
    };
    let member = app.signup("member@example.com", "Member").await;
    let stranger = app.signup("stranger@example.com", "Stranger").await;
    let other = app.signup("other@example.com", "Other").await;
    let removed = app.signup("removed@example.com", "Removed").await;
    let blocked = app.signup("blocked@example.com", "Blocked").await;
    let demoted = app.signup("demoted@example.com", "Demoted").await;
    let call = |method: Method, path: String, body: Option<Value>| {
        let token = owner.token.clone();
        async move {
            let r = app.call(method, &path, Some(&token), body).await;
            assert!(r.status.is_success(), "{path}: {}", r.text);
            r
        }
    };
    // The group, with a message, an image, and the member who will be removed.
    let group = app.group(&owner, "Vault", &[&member, &removed]).await;
    let message = app.say(&owner, &group, SECRET).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let media = {
        let part = reqwest::multipart::Part::bytes(png_bytes())
            .file_name("vault.png")
            .mime_str("image/png")
            .unwrap();
        let r = app
            .client
            .post(app.url("/api/v1/media"))
            .bearer_auth(&owner.token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        let r = crate::helpers::Resp::from_response(r).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    };
    call(
        Method::POST,
        format!("/api/v1/conversations/{group}/messages"),
        Some(json!({"clientMsgId": "vault-image", "type": "image", "mediaId": media})),
    )
    .await;
    // The inbox: a customer's conversation, its lead, a template.
    let body = text_from("4915112345678", "Ana", "wamid.m1", SECRET, 1_700_000_000);
    assert_eq!(deliver(app, &body, None).await.0, StatusCode::OK);
    let channel_conversation = inbox(app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lead = call(Method::GET, "/api/v1/leads".into(), None).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let template = call(
        Method::POST,
        "/api/v1/templates".into(),
        Some(json!({"name": "vault_ready", "language": "en_US", "category": "utility", "components": []})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another workspace, whose only member is `other`.
    call(
        Method::POST,
        "/api/v1/workspaces".into(),
        Some(json!({"name": "Elsewhere", "slug": "elsewhere"})),
    )
    .await;
    call(
        Method::POST,
        "/api/v1/workspaces/elsewhere/members".into(),
        Some(json!({"userId": other.id, "role": "owner"})),
    )
    .await;
    for gone in [&other, &removed] {
        call(
            Method::DELETE,
            format!("/api/v1/workspaces/{workspace}/members/{}", gone.id),
            None,
        )
        .await;
    }
    // The owner leaves the other workspace to `other`.
    call(
        Method::DELETE,
        format!("/api/v1/workspaces/elsewhere/members/{}", owner.id),
        None,
    )
    .await;
    call(Method::PUT, format!("/api/v1/blocks/{}", blocked.id), None).await;
    for role in ["agent", "member"] {
        call(
            Method::PATCH,
            format!("/api/v1/workspaces/{workspace}/members/{}", demoted.id),
            Some(json!({ "role": role })),
        )
        .await;
    }
    let subscription = call(
        Method::POST,
        "/api/v1/push/subscriptions".into(),
        Some(json!({"type": "webhook", "url": "http://127.0.0.1:9/hook"})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = call(
        Method::POST,
        "/api/v1/tags".into(),
        Some(json!({"name": "vault"})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let canned = call(
        Method::POST,
        "/api/v1/canned-responses".into(),
        Some(json!({"shortCode": "vault", "text": "The code is {{lead.name}}"})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let import = {
        let r = app
            .client
            .post(app.url("/api/v1/leads/import"))
            .bearer_auth(&owner.token)
            .header("content-type", "text/csv")
            .body("name,phone\nVault Lead,+4915199999999\n")
            .send()
            .await
            .unwrap();
        let r = crate::helpers::Resp::from_response(r).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    };
    call(
        Method::PATCH,
        "/api/v1/workspaces/default".into(),
        Some(json!({"settings": {"ai": {"enabled": true}}})),
    )
    .await;
    let ai_run = call(
        Method::POST,
        "/api/v1/ai/analyze".into(),
        Some(json!({"conversationId": channel_conversation})),
    )
    .await
    .body["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ai_key = call(
        Method::POST,
        "/api/v1/admin/ai/keys".into(),
        Some(json!({"name": "vault", "apiKey": "sk-vault-key-000000000000-9999"})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let automation = call(
        Method::POST,
        "/api/v1/automations".into(),
        Some(
            json!({"name": "vault", "trigger": {"type": "first_message"},
                    "actions": [{"type": "add_note", "text": "psst"}]}),
        ),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let campaign = call(
        Method::POST,
        "/api/v1/campaigns".into(),
        Some(json!({"name": "vault", "channelId": channel, "templateId": template})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    World {
        ai_key,
        automation,
        campaign,
        subscription,
        tag,
        canned,
        import,
        ai_run,
        callers: vec![
            (Anonymous, None),
            (Stranger, Some(stranger)),
            (OtherWorkspace, Some(other)),
            (Removed, Some(removed)),
            (Blocked, Some(blocked)),
            (Demoted, Some(demoted)),
        ],
        owner,
        member,
        workspace,
        group,
        message,
        media,
        channel,
        template,
        lead,
        channel_conversation,
    }
}

/// Builds a request (path and body) around an id.
type Build = Box<dyn Fn(&str) -> (String, Option<Value>)>;

/// A row: the route as the OpenAPI document names it, who must be refused, and how to build
/// the request around an id (the real one, then a made-up one); `None` for routes without
/// one. Requests carry valid bodies, so that what answers is the authorization.
struct Row {
    method: Method,
    route: &'static str,
    refused: &'static [Caller],
    request: Build,
    /// The id the request is built around, if it has one.
    id: Option<String>,
}

fn rows(w: &World) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |method: Method,
                   route: &'static str,
                   refused: &'static [Caller],
                   id: Option<&str>,
                   request: Build| {
        rows.push(Row {
            method,
            route,
            refused,
            request,
            id: id.map(str::to_owned),
        })
    };
    let plain =
        |path: &'static str| -> Build { Box::new(move |_| (format!("/api/v1{path}"), None)) };
    let at = |template: &'static str, body: Option<Value>| -> Build {
        Box::new(move |id| {
            (
                format!("/api/v1{}", template.replace("{}", id)),
                body.clone(),
            )
        })
    };
    // Signing in: public by design.
    for route in [
        "/auth/signup",
        "/auth/login",
        "/auth/otp/request",
        "/auth/otp/verify",
        "/auth/refresh",
        "/auth/password/forgot",
        "/auth/email/verify",
        "/auth/password/reset",
    ] {
        row(Method::POST, route, NOBODY, None, plain(route));
    }
    // The caller's own things: only the anonymous are refused.
    for (method, route) in [
        (Method::POST, "/auth/logout"),
        (Method::POST, "/auth/logout-all"),
        (Method::POST, "/auth/email/verify/resend"),
        (Method::GET, "/users/me"),
        (Method::PATCH, "/users/me"),
        (Method::DELETE, "/users/me"),
        (Method::GET, "/users/search"),
        (Method::GET, "/contacts"),
        (Method::POST, "/contacts/sync"),
        (Method::GET, "/blocks"),
        (Method::GET, "/sessions"),
        (Method::GET, "/conversations"),
        (Method::POST, "/conversations/groups"),
        (Method::POST, "/media"),
        (Method::GET, "/search/messages"),
        (Method::GET, "/sync"),
        (Method::GET, "/workspaces"),
        (Method::GET, "/calls/ice-servers"),
        // The caller's own call log.
        (Method::GET, "/calls"),
        // The caller's own push subscriptions.
        (Method::GET, "/push/vapid-public-key"),
        (Method::GET, "/push/subscriptions"),
        (Method::POST, "/push/subscriptions"),
    ] {
        row(method, route, ANONYMOUS, None, plain(route));
    }
    let owner = w.owner.id.as_str();
    let session = w.owner.session.as_str();
    row(
        Method::DELETE,
        "/sessions/{id}",
        ALL,
        Some(session),
        at("/sessions/{}", None),
    );
    row(
        Method::DELETE,
        "/push/subscriptions/{id}",
        ALL,
        Some(w.subscription.as_str()),
        at("/push/subscriptions/{}", None),
    );
    // Users are found within the workspace only.
    row(
        Method::GET,
        "/users/{id}",
        OUTSIDE,
        Some(owner),
        at("/users/{}", None),
    );
    row(
        Method::PUT,
        "/blocks/{userId}",
        OUTSIDE,
        Some(owner),
        at("/blocks/{}", None),
    );
    // Unblocking is idempotent on the caller's own list (204 whoever is named).
    row(
        Method::DELETE,
        "/blocks/{userId}",
        ANONYMOUS,
        Some(owner),
        at("/blocks/{}", None),
    );
    row(
        Method::POST,
        "/conversations/direct",
        OUTSIDE,
        Some(owner),
        Box::new(|id| {
            (
                "/api/v1/conversations/direct".into(),
                Some(json!({"userId": id})),
            )
        }),
    );
    // The group and its message: members only.
    let g = w.group.as_str();
    let member = w.member.id.clone();
    row(
        Method::GET,
        "/conversations/{id}",
        ALL,
        Some(g),
        at("/conversations/{}", None),
    );
    row(
        Method::PATCH,
        "/conversations/{id}",
        ALL,
        Some(g),
        at("/conversations/{}", Some(json!({"title": "Mine"}))),
    );
    for action in ["accept", "decline"] {
        let route: &'static str = if action == "accept" {
            "/conversations/{id}/accept"
        } else {
            "/conversations/{id}/decline"
        };
        row(
            Method::POST,
            route,
            ALL,
            Some(g),
            Box::new(move |id| (format!("/api/v1/conversations/{id}/{action}"), None)),
        );
    }
    row(
        Method::POST,
        "/conversations/{id}/delivered",
        ALL,
        Some(g),
        at("/conversations/{}/delivered", Some(json!({"seq": 1}))),
    );
    row(
        Method::POST,
        "/conversations/{id}/read",
        ALL,
        Some(g),
        at("/conversations/{}/read", Some(json!({"seq": 1}))),
    );
    row(
        Method::PATCH,
        "/conversations/{id}/settings",
        ALL,
        Some(g),
        at(
            "/conversations/{}/settings",
            Some(json!({"archived": true})),
        ),
    );
    row(
        Method::GET,
        "/conversations/{id}/members",
        ALL,
        Some(g),
        at("/conversations/{}/members", None),
    );
    row(
        Method::POST,
        "/conversations/{id}/members",
        ALL,
        Some(g),
        at(
            "/conversations/{}/members",
            Some(json!({"userIds": [owner]})),
        ),
    );
    let m1 = member.clone();
    row(
        Method::DELETE,
        "/conversations/{id}/members/{userId}",
        ALL,
        Some(g),
        Box::new(move |id| (format!("/api/v1/conversations/{id}/members/{m1}"), None)),
    );
    let m2 = member.clone();
    row(
        Method::PATCH,
        "/conversations/{id}/members/{userId}",
        ALL,
        Some(g),
        Box::new(move |id| {
            (
                format!("/api/v1/conversations/{id}/members/{m2}"),
                Some(json!({"role": "admin"})),
            )
        }),
    );
    row(
        Method::GET,
        "/conversations/{id}/messages",
        ALL,
        Some(g),
        at("/conversations/{}/messages", None),
    );
    row(
        Method::POST,
        "/conversations/{id}/messages",
        ALL,
        Some(g),
        at(
            "/conversations/{}/messages",
            Some(json!({"clientMsgId": "matrix-send", "type": "text", "text": "hi"})),
        ),
    );
    let msg = w.message.as_str();
    row(
        Method::PATCH,
        "/messages/{id}",
        ALL,
        Some(msg),
        at("/messages/{}", Some(json!({"text": "edited"}))),
    );
    row(
        Method::DELETE,
        "/messages/{id}",
        ALL,
        Some(msg),
        at("/messages/{}?for=everyone", None),
    );
    let target = w.group.clone();
    row(
        Method::POST,
        "/messages/{id}/forward",
        ALL,
        Some(msg),
        Box::new(move |id| {
            (
                format!("/api/v1/messages/{id}/forward"),
                Some(json!({"conversationIds": [target]})),
            )
        }),
    );
    row(
        Method::PUT,
        "/messages/{id}/reactions",
        ALL,
        Some(msg),
        at("/messages/{}/reactions", Some(json!({"emoji": "👍"}))),
    );
    row(
        Method::DELETE,
        "/messages/{id}/reactions",
        ALL,
        Some(msg),
        at("/messages/{}/reactions", None),
    );
    row(
        Method::GET,
        "/messages/{id}/receipts",
        ALL,
        Some(msg),
        at("/messages/{}/receipts", None),
    );
    let media = w.media.as_str();
    row(
        Method::GET,
        "/media/{id}",
        ALL,
        Some(media),
        at("/media/{}", None),
    );
    row(
        Method::GET,
        "/media/{id}/text",
        ALL,
        Some(media),
        at("/media/{}/text", None),
    );
    row(
        Method::GET,
        "/media/{id}/thumbnail",
        ALL,
        Some(media),
        at("/media/{}/thumbnail", None),
    );
    // The workspace: its members read it; its admins run it.
    let ws = w.workspace.as_str();
    row(
        Method::POST,
        "/workspaces",
        ALL,
        None,
        Box::new(|_| {
            let body = json!({"name": "Mine", "slug": "mine"});
            ("/api/v1/workspaces".into(), Some(body))
        }),
    );
    row(
        Method::GET,
        "/workspaces/{id}",
        OUTSIDE,
        Some(ws),
        at("/workspaces/{}", None),
    );
    row(
        Method::PATCH,
        "/workspaces/{id}",
        ALL,
        Some(ws),
        at("/workspaces/{}", Some(json!({"name": "Taken"}))),
    );
    row(
        Method::GET,
        "/workspaces/{id}/members",
        ALL,
        Some(ws),
        at("/workspaces/{}/members", None),
    );
    let m3 = member.clone();
    row(
        Method::POST,
        "/workspaces/{id}/members",
        ALL,
        Some(ws),
        Box::new(move |id| {
            (
                format!("/api/v1/workspaces/{id}/members"),
                Some(json!({"userId": m3, "role": "admin"})),
            )
        }),
    );
    let m4 = member.clone();
    row(
        Method::PATCH,
        "/workspaces/{id}/members/{userId}",
        ALL,
        Some(ws),
        Box::new(move |id| {
            (
                format!("/api/v1/workspaces/{id}/members/{m4}"),
                Some(json!({"role": "admin"})),
            )
        }),
    );
    let m5 = member.clone();
    row(
        Method::DELETE,
        "/workspaces/{id}/members/{userId}",
        ALL,
        Some(ws),
        Box::new(move |id| (format!("/api/v1/workspaces/{id}/members/{m5}"), None)),
    );
    row(Method::GET, "/stats", NOT_STAFF, None, plain("/stats"));
    // The inbox: the workspace's admins (channels, templates) and agents (leads, channel
    // conversations).
    row(
        Method::GET,
        "/channels",
        NOT_STAFF,
        None,
        plain("/channels"),
    );
    row(
        Method::POST,
        "/channels",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/channels".into(),
                Some(json!({"phoneNumberId": "999000"})),
            )
        }),
    );
    let ch = w.channel.as_str();
    row(
        Method::GET,
        "/channels/{id}",
        ALL,
        Some(ch),
        at("/channels/{}", None),
    );
    row(
        Method::PATCH,
        "/channels/{id}",
        ALL,
        Some(ch),
        at("/channels/{}", Some(json!({"name": "Taken"}))),
    );
    row(
        Method::DELETE,
        "/channels/{id}",
        ALL,
        Some(ch),
        at("/channels/{}", None),
    );
    row(
        Method::GET,
        "/templates",
        NOT_STAFF,
        None,
        plain("/templates"),
    );
    row(
        Method::POST,
        "/templates",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/templates".into(),
                Some(
                    json!({"name": "mine", "language": "en_US", "category": "utility", "components": []}),
                ),
            )
        }),
    );
    row(
        Method::POST,
        "/templates/sync",
        ALL,
        Some(ch),
        Box::new(|id| {
            (
                "/api/v1/templates/sync".into(),
                Some(json!({"channelId": id})),
            )
        }),
    );
    let tpl = w.template.as_str();
    row(
        Method::GET,
        "/templates/{id}",
        ALL,
        Some(tpl),
        at("/templates/{}", None),
    );
    row(
        Method::PATCH,
        "/templates/{id}",
        ALL,
        Some(tpl),
        at("/templates/{}", Some(json!({"category": "marketing"}))),
    );
    row(
        Method::DELETE,
        "/templates/{id}",
        ALL,
        Some(tpl),
        at("/templates/{}", None),
    );
    row(Method::GET, "/leads", NOT_STAFF, None, plain("/leads"));
    row(
        Method::POST,
        "/leads",
        NOT_STAFF,
        None,
        Box::new(|_| ("/api/v1/leads".into(), Some(json!({"name": "Intruder"})))),
    );
    let lead = w.lead.as_str();
    row(
        Method::GET,
        "/leads/{id}",
        ALL,
        Some(lead),
        at("/leads/{}", None),
    );
    row(
        Method::PATCH,
        "/leads/{id}",
        ALL,
        Some(lead),
        at("/leads/{}", Some(json!({"stage": "won"}))),
    );
    row(
        Method::DELETE,
        "/leads/{id}",
        ALL,
        Some(lead),
        at("/leads/{}", None),
    );
    row(
        Method::GET,
        "/leads/stages",
        NOT_STAFF,
        None,
        plain("/leads/stages"),
    );
    row(
        Method::PUT,
        "/leads/stages",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/leads/stages".into(),
                Some(json!({"stages": ["x"]})),
            )
        }),
    );
    row(
        Method::GET,
        "/leads/attributes",
        NOT_STAFF,
        None,
        plain("/leads/attributes"),
    );
    row(
        Method::PUT,
        "/leads/attributes",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/leads/attributes".into(),
                Some(json!({"attributes": []})),
            )
        }),
    );
    row(Method::GET, "/tags", NOT_STAFF, None, plain("/tags"));
    row(
        Method::POST,
        "/tags",
        NOT_STAFF,
        None,
        Box::new(|_| ("/api/v1/tags".into(), Some(json!({"name": "intruder"})))),
    );
    let tag = w.tag.as_str();
    row(
        Method::PATCH,
        "/tags/{id}",
        ALL,
        Some(tag),
        at("/tags/{}", Some(json!({"name": "taken"}))),
    );
    row(
        Method::DELETE,
        "/tags/{id}",
        ALL,
        Some(tag),
        at("/tags/{}", None),
    );
    row(Method::GET, "/audit", NOT_STAFF, None, plain("/audit"));
    row(
        Method::POST,
        "/leads/import",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/leads/import".into(),
                Some(json!("name\nIntruder\n")),
            )
        }),
    );
    row(
        Method::GET,
        "/leads/imports/{id}",
        ALL,
        Some(w.import.as_str()),
        at("/leads/imports/{}", None),
    );
    row(
        Method::GET,
        "/leads/export.csv",
        NOT_STAFF,
        None,
        plain("/leads/export.csv"),
    );
    // The desk and the inbox at work.
    let cc = w.channel_conversation.as_str();
    row(
        Method::PATCH,
        "/conversations/{id}",
        ALL,
        Some(cc),
        at("/conversations/{}", Some(json!({"status": "closed"}))),
    );
    row(
        Method::GET,
        "/conversations/{id}/notes",
        ALL,
        Some(cc),
        at("/conversations/{}/notes", None),
    );
    row(
        Method::POST,
        "/conversations/{id}/notes",
        ALL,
        Some(cc),
        at("/conversations/{}/notes", Some(json!({"text": "psst"}))),
    );
    // The default workspace's desk is off: nobody opens a support conversation.
    row(
        Method::POST,
        "/support",
        ALL,
        None,
        Box::new(|_| {
            (
                "/api/v1/support".into(),
                Some(json!({"workspaceId": "default"})),
            )
        }),
    );
    row(
        Method::GET,
        "/inbox/counts",
        NOT_STAFF,
        None,
        plain("/inbox/counts"),
    );
    row(
        Method::GET,
        "/inbox/agents",
        NOT_STAFF,
        None,
        plain("/inbox/agents"),
    );
    row(
        Method::PATCH,
        "/inbox/agents/{userId}",
        ALL,
        Some(w.owner.id.as_str()),
        at("/inbox/agents/{}", Some(json!({"capacity": 1}))),
    );
    row(
        Method::GET,
        "/canned-responses",
        NOT_STAFF,
        None,
        plain("/canned-responses"),
    );
    row(
        Method::POST,
        "/canned-responses",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/canned-responses".into(),
                Some(json!({"shortCode": "x", "text": "y"})),
            )
        }),
    );
    let canned = w.canned.as_str();
    row(
        Method::PATCH,
        "/canned-responses/{id}",
        ALL,
        Some(canned),
        at("/canned-responses/{}", Some(json!({"text": "taken"}))),
    );
    row(
        Method::DELETE,
        "/canned-responses/{id}",
        ALL,
        Some(canned),
        at("/canned-responses/{}", None),
    );
    let conversation = cc.to_owned();
    row(
        Method::POST,
        "/canned-responses/{id}/render",
        ALL,
        Some(canned),
        Box::new(move |id| {
            (
                format!("/api/v1/canned-responses/{id}/render"),
                Some(json!({"conversationId": conversation})),
            )
        }),
    );
    row(
        Method::POST,
        "/ai/analyze",
        ALL,
        Some(cc),
        Box::new(|id| {
            (
                "/api/v1/ai/analyze".into(),
                Some(json!({"conversationId": id})),
            )
        }),
    );
    row(
        Method::GET,
        "/ai/runs/{id}",
        ALL,
        Some(w.ai_run.as_str()),
        at("/ai/runs/{}", None),
    );
    row(
        Method::GET,
        "/conversations/{id}/insights",
        ALL,
        Some(cc),
        at("/conversations/{}/insights", None),
    );
    // AI administration: the workspace's owners and admins.
    for (method, route) in [
        (Method::GET, "/admin/ai/keys"),
        (Method::GET, "/admin/ai/usage"),
        (Method::GET, "/admin/ai/usage.csv"),
        (Method::GET, "/admin/ai/calls"),
    ] {
        row(method, route, NOT_STAFF, None, plain(route));
    }
    row(
        Method::POST,
        "/admin/ai/keys",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/admin/ai/keys".into(),
                Some(json!({"name": "x", "apiKey": "sk-x"})),
            )
        }),
    );
    let key = w.ai_key.as_str();
    row(
        Method::POST,
        "/admin/ai/keys/{id}/rotate",
        ALL,
        Some(key),
        at("/admin/ai/keys/{}/rotate", Some(json!({"apiKey": "sk-y"}))),
    );
    row(
        Method::DELETE,
        "/admin/ai/keys/{id}",
        ALL,
        Some(key),
        at("/admin/ai/keys/{}", None),
    );
    // Automations: the workspace's owners and admins; the hours: its agents.
    for route in ["/automations", "/inbox/hours"] {
        row(Method::GET, route, NOT_STAFF, None, plain(route));
    }
    row(
        Method::POST,
        "/automations",
        NOT_STAFF,
        None,
        Box::new(|_| {
            (
                "/api/v1/automations".into(),
                Some(json!({"name": "x", "trigger": {"type": "first_message"},
                            "actions": [{"type": "add_tag", "tag": "x"}]})),
            )
        }),
    );
    let automation = w.automation.as_str();
    for (method, route, body) in [
        (Method::GET, "/automations/{id}", None),
        (
            Method::PATCH,
            "/automations/{id}",
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, "/automations/{id}", None),
        (Method::GET, "/automations/{id}/runs", None),
    ] {
        let path = route.replace("{id}", "{}");
        row(
            method,
            route,
            ALL,
            Some(automation),
            Box::new(move |id| (format!("/api/v1{}", path.replace("{}", id)), body.clone())),
        );
    }
    // Campaigns: the workspace's owners and admins.
    row(
        Method::GET,
        "/campaigns",
        NOT_STAFF,
        None,
        plain("/campaigns"),
    );
    let (channel, template) = (w.channel.clone(), w.template.clone());
    row(
        Method::POST,
        "/campaigns",
        NOT_STAFF,
        None,
        Box::new(move |_| {
            (
                "/api/v1/campaigns".into(),
                Some(json!({"name": "x", "channelId": channel, "templateId": template})),
            )
        }),
    );
    let campaign = w.campaign.as_str();
    for (method, route, body) in [
        (Method::GET, "/campaigns/{id}", None),
        (
            Method::PATCH,
            "/campaigns/{id}",
            Some(json!({"name": "taken"})),
        ),
        (Method::DELETE, "/campaigns/{id}", None),
        (Method::POST, "/campaigns/{id}/schedule", Some(json!({}))),
        (Method::POST, "/campaigns/{id}/pause", None),
        (Method::POST, "/campaigns/{id}/resume", None),
        (Method::POST, "/campaigns/{id}/cancel", None),
        (Method::GET, "/campaigns/{id}/preview", None),
        (Method::GET, "/campaigns/{id}/stats", None),
        (Method::GET, "/campaigns/{id}/recipients", None),
    ] {
        let path = route.replace("{id}", "{}");
        row(
            method,
            route,
            ALL,
            Some(campaign),
            Box::new(move |id| (format!("/api/v1{}", path.replace("{}", id)), body.clone())),
        );
    }
    // Analytics: the workspace's owners and admins (an agent reads their own row of `agents`).
    for route in [
        "/analytics/overview",
        "/analytics/overview.csv",
        "/analytics/agents",
        "/analytics/agents.csv",
        "/analytics/campaigns",
        "/analytics/campaigns.csv",
        "/analytics/channels",
        "/analytics/channels.csv",
    ] {
        row(Method::GET, route, NOT_STAFF, None, plain(route));
    }
    rows
}

/// A made-up id of the same form as a real one.
fn made_up() -> String {
    uuid::Uuid::now_v7().to_string()
}

dual_test!(no_route_lets_an_outsider_in);
async fn no_route_lets_an_outsider_in(app: &TestApp) {
    let w = world(app).await;
    let rows = rows(&w);
    // Every route of the document has its row, and every row a route.
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let mut documented = BTreeSet::new();
    for (path, ops) in doc.body["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                let path = path.strip_prefix("/api/v1").unwrap_or(path);
                documented.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.route.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "rows for routes that do not exist: {stale:?}"
    );

    let mut failures = Vec::new();
    for row in &rows {
        for (caller, user) in &w.callers {
            if !row.refused.contains(caller) {
                continue;
            }
            let token = user.as_ref().map(|u| u.token.as_str());
            let call = |id: &str| {
                let (path, body) = (row.request)(id);
                let method = row.method.clone();
                async move { (path.clone(), app.call(method, &path, token, body).await) }
            };
            let (path, real) = call(row.id.as_deref().unwrap_or("")).await;
            // Where the id travels in the body, "no such …" is a 422 naming the field.
            let in_body = ["/conversations/direct", "/templates/sync"].contains(&row.route);
            let refused = matches!(real.status.as_u16(), 401 | 403 | 404)
                || (in_body && real.status == StatusCode::UNPROCESSABLE_ENTITY);
            if !refused || (*caller == Anonymous && real.status != StatusCode::UNAUTHORIZED) {
                failures.push(format!(
                    "{caller:?} {} {path}: {} {}",
                    row.method, real.status, real.text
                ));
                continue;
            }
            // To those who may not know the thing exists, a real id must look like a made-up
            // one. (A member refused the workspace's settings knows the workspace.)
            let hidden = if row.route.starts_with("/workspaces/{id}") {
                OUTSIDE
            } else {
                row.refused
            };
            if row.id.is_some() && hidden.contains(caller) {
                let (fake_path, fake) = call(&made_up()).await;
                let same = fake.status == real.status && fake.body["code"] == real.body["code"];
                if !same {
                    failures.push(format!(
                        "{caller:?} {} {path} answers {} {} but {fake_path} answers {} {}: the real id shows",
                        row.method, real.status, real.body["code"], fake.status, fake.body["code"]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "let in or told apart:\n{}",
        failures.join("\n")
    );

    // What callers may list of their own holds nothing of the owner's.
    for (caller, user) in &w.callers {
        let Some(user) = user else { continue };
        for path in [
            "/api/v1/conversations".to_string(),
            "/api/v1/conversations?kind=channel".into(),
            "/api/v1/sync".into(),
            "/api/v1/search/messages?q=vault".into(),
        ] {
            let r = app.get(&path, &user.token).await;
            for secret in [
                SECRET,
                "vault code",
                w.group.as_str(),
                w.channel_conversation.as_str(),
            ] {
                assert!(
                    !r.text.contains(secret),
                    "{caller:?} {path} shows {secret:?}: {}",
                    r.text
                );
            }
        }
    }
    // The "finds it" half: the owner and the member do see it.
    let r = app
        .get("/api/v1/search/messages?q=vault", &w.member.token)
        .await;
    assert!(r.text.contains(SECRET), "{}", r.text);
    let r = app
        .get("/api/v1/conversations?kind=channel", &w.owner.token)
        .await;
    assert!(r.text.contains(&w.channel_conversation), "{}", r.text);
}

dual_test!(no_client_event_lets_an_outsider_in);
async fn no_client_event_lets_an_outsider_in(app: &TestApp) {
    let w = world(app).await;
    // A call ringing between the owner and the member.
    let direct = app.direct(&w.owner, &w.member).await;
    app.say(&w.member, &direct, "call me").await;
    let (owner_socket, _owner_events) =
        palaver::client::connect(&app.base, &json!({"token": w.owner.token}))
            .await
            .expect("the owner connects");
    let invite = json!({"conversationId": direct, "media": "audio", "sdp": "v=0"});
    let ringing = owner_socket
        .call("call:invite", &invite, Duration::from_secs(10))
        .await
        .expect("ack");
    let call = ringing["callId"].as_str().expect("a call rings").to_owned();
    let events = |conversation: &str, message: &str, call: &str| {
        vec![
            (
                "message:send",
                json!({"conversationId": conversation, "clientMsgId": "matrix-event", "type": "text", "text": "hi"}),
            ),
            (
                "message:delivered",
                json!({"conversationId": conversation, "seq": 1}),
            ),
            (
                "message:read",
                json!({"conversationId": conversation, "seq": 1}),
            ),
            (
                "message:edit",
                json!({"messageId": message, "text": "edited"}),
            ),
            (
                "message:delete",
                json!({"messageId": message, "for": "everyone"}),
            ),
            (
                "message:react",
                json!({"messageId": message, "emoji": "👍"}),
            ),
            ("typing:start", json!({"conversationId": conversation})),
            ("typing:stop", json!({"conversationId": conversation})),
            (
                "call:invite",
                json!({"conversationId": conversation, "media": "audio", "sdp": "v=0"}),
            ),
            ("call:accept", json!({"callId": call, "sdp": "v=0"})),
            (
                "call:ice",
                json!({"callId": call, "candidate": {"candidate": "c"}}),
            ),
            ("call:reject", json!({ "callId": call })),
            ("call:end", json!({ "callId": call })),
        ]
    };
    let fake = made_up();
    let mut failures = Vec::new();
    for (caller, user) in &w.callers {
        let token = user.as_ref().map(|u| u.token.clone()).unwrap_or_default();
        let connected = palaver::client::connect(&app.base, &json!({ "token": token })).await;
        let (socket, _events) = match (caller, connected) {
            // No workspace, or no token: no socket at all.
            (Anonymous | Removed, Err(palaver::client::ClientError::Refused(v))) => {
                assert_eq!(v["data"]["code"], "unauthorized", "{caller:?}: {v}");
                continue;
            }
            (Anonymous | Removed, other) => {
                failures.push(format!("{caller:?} connected: {:?}", other.map(|_| ())));
                continue;
            }
            (_, Ok(pair)) => pair,
            (_, Err(e)) => panic!("{caller:?} could not connect: {e}"),
        };
        let real = events(&w.group, &w.message, &call);
        let made_up = events(&fake, &fake, &fake);
        for ((name, data), (_, fake_data)) in real.into_iter().zip(made_up) {
            let ack = socket
                .call(name, &data, Duration::from_secs(10))
                .await
                .expect("ack");
            let fake_ack = socket
                .call(name, &fake_data, Duration::from_secs(10))
                .await
                .expect("ack");
            if ack["ok"] != false || ack["error"]["code"] != fake_ack["error"]["code"] {
                failures.push(format!("{caller:?} {name}: {ack} (made-up id: {fake_ack})"));
            }
        }
        // Nothing of the owner's comes back from a catch-up either.
        let page = socket
            .call("sync:request", &json!({}), Duration::from_secs(10))
            .await
            .expect("ack");
        let text = page.to_string();
        assert!(
            !text.contains(SECRET) && !text.contains(&w.group),
            "{caller:?}: {text}"
        );
    }
    assert!(
        failures.is_empty(),
        "let in or told apart:\n{}",
        failures.join("\n")
    );
    // The "finds it" half: the group's member gets through with the same events.
    let (socket, _events) = palaver::client::connect(&app.base, &json!({"token": w.member.token}))
        .await
        .expect("the member connects");
    let ack = socket
        .call(
            "message:read",
            &json!({"conversationId": w.group, "seq": 1}),
            Duration::from_secs(10),
        )
        .await
        .expect("ack");
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = socket
        .call(
            "call:accept",
            &json!({"callId": call, "sdp": "v=0"}),
            Duration::from_secs(10),
        )
        .await
        .expect("ack");
    assert_eq!(ack["ok"], true, "the callee answers: {ack}");
}
