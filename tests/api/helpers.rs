//! The test harness: starts the real server on a random port with a temporary SQLite database
//! (or a fresh PostgreSQL database when `TEST_DATABASE_URL` is set) and talks HTTP to it.

use std::net::SocketAddr;
use std::time::Duration;

use palaver::app::AppState;
use palaver::config::{Config, OnOff, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pg_database: Option<(String, String)>,
    settings: Settings,
    _dir: tempfile::TempDir,
}

/// Runs an async test body once on SQLite and once on PostgreSQL (skipped with a line when
/// `TEST_DATABASE_URL` is not set). An optional closure adjusts the settings.
#[macro_export]
macro_rules! dual_test {
    ($name:ident) => {
        $crate::dual_test!($name, |_s| {});
    };
    ($name:ident, custom) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if std::env::var_os("TEST_DATABASE_URL").is_none() {
                    eprintln!(
                        "skipped {}::postgres: TEST_DATABASE_URL is not set",
                        stringify!($name)
                    );
                    return;
                }
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    };
    ($name:ident, $configure:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn($crate::helpers::Backend::Sqlite, $configure)
                    .await
                    .expect("sqlite app");
                super::$name(&app).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::helpers::spawn($crate::helpers::Backend::Postgres, $configure).await {
                    Some(app) => {
                        super::$name(&app).await;
                        app.stop().await;
                    }
                    None => eprintln!(
                        "skipped {}::postgres: TEST_DATABASE_URL is not set",
                        stringify!($name)
                    ),
                }
            }
        }
    };
}

/// Settings for a test server: loopback, port 0, limits on, quiet logs.
pub fn base_settings(dir: &std::path::Path) -> Settings {
    Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.to_path_buf()),
        rate_limits: Some(OnOff::On),
        log: Some(std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into())),
        // The fake Graph API, SMS and mail webhooks listen on loopback.
        outbound_allow: Some("127.0.0.1".into()),
        // The test binary is not palaver: PDFs are read by the real one.
        pdf_reader: Some(env!("CARGO_BIN_EXE_palaver").into()),
        ..Default::default()
    }
}

pub async fn spawn(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = base_settings(dir.path());
    let mut pg_database = None;
    if backend == Backend::Postgres {
        let admin_url = std::env::var("TEST_DATABASE_URL").ok()?;
        let name = format!("palaver_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        settings.database_url = Some(url.to_string());
        pg_database = Some((admin_url, name));
    }
    configure(&mut settings);
    palaver::telemetry::init(
        settings.log.as_deref().unwrap_or("warn"),
        palaver::config::LogFormat::Text,
    );
    Some(start(settings, dir, pg_database).await)
}

async fn start(
    settings: Settings,
    dir: tempfile::TempDir,
    pg_database: Option<(String, String)>,
) -> TestApp {
    let config = Config::build(settings.clone()).expect("test config");
    let state = AppState::build(config).await.expect("app state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(palaver::server::serve(
        listener,
        state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        state,
        stop: Some(stop),
        server: Some(server),
        pg_database,
        settings,
        _dir: dir,
    }
}

impl TestApp {
    /// Stops the server gracefully and starts it again on the same data (data dir and
    /// database), with `configure` applied to its settings. The address changes.
    pub async fn restart(mut self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
        let mut settings = self.settings.clone();
        configure(&mut settings);
        let pg_database = self.pg_database.take();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        start(settings, dir, pg_database).await
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
        if let Some((admin_url, name)) = self.pg_database.take() {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A JSON request; `token` adds a bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Waits until every background job queued so far has run (none is pending: each is done
    /// or has given up), for at most 60 s. Jobs run on the server's own workers; this wakes
    /// them and watches the queue.
    pub async fn run_pending_jobs(&self) {
        let db = &self.state.db;
        db.wake_jobs();
        eventually(Duration::from_secs(60), || async {
            let pending: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE failed_at IS NULL")
                    .fetch_one(db.reader())
                    .await
                    .map_err(|e| e.to_string())?;
            match pending {
                0 => Ok(()),
                n => Err(format!("{n} background jobs still pending")),
            }
        })
        .await
    }

    /// Signs up a user and returns the sign-in answer.
    pub async fn signup(&self, email: &str, name: &str) -> User {
        let r = self
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD, "displayName": name}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "signup {email}: {}", r.body);
        User::from(&r.body)
    }

    pub async fn login(&self, email: &str, device: &str) -> User {
        let r = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD, "deviceId": device}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.body);
        User::from(&r.body)
    }
}

pub const PASSWORD: &str = "correct horse battery";

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
    pub refresh: String,
    pub session: String,
}

impl From<&Value> for User {
    fn from(v: &Value) -> Self {
        User {
            id: v["user"]["id"].as_str().expect("user.id").to_owned(),
            token: v["accessToken"].as_str().expect("accessToken").to_owned(),
            refresh: v["refreshToken"].as_str().expect("refreshToken").to_owned(),
            session: v["session"]["id"].as_str().expect("session.id").to_owned(),
        }
    }
}

/// A response with its body parsed as JSON (or `Value::Null`).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub async fn from_response(r: reqwest::Response) -> Resp {
        Resp::from(r).await
    }

    async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and code.
    /// Asserts a 2xx answer (for setup calls) and hands the response on.
    pub fn assert_ok(self) -> Resp {
        assert!(self.status.is_success(), "{}: {}", self.status, self.text);
        self
    }

    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status);
        if status == 422 {
            assert!(!self.body["errors"].as_array().expect("errors").is_empty());
        }
    }
}

/// A local HTTP endpoint that records the JSON bodies POSTed to it (an SMS or mail webhook).
pub struct Capture {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Value>,
}

impl Capture {
    pub async fn start() -> Capture {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(v);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Capture { url, rx }
    }

    /// The next recorded body (fails after 10 s).
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a webhook call within 10 s")
            .expect("capture open")
    }

    pub fn try_next(&mut self) -> Option<Value> {
        self.rx.try_recv().ok()
    }

    /// The next mail whose link goes to `path` (`/verify-email`, `/reset-password`); mails of
    /// other kinds before it are skipped.
    pub async fn next_link(&mut self, path: &str) -> Value {
        loop {
            let mail = self.next().await;
            if mail["link"].as_str().is_some_and(|l| l.contains(path)) {
                return mail;
            }
        }
    }

    /// The token of the next mail whose link goes to `path`.
    pub async fn next_token(&mut self, path: &str) -> String {
        token_of(&self.next_link(path).await)
    }
}

/// The `token=` of a recorded mail's link.
pub fn token_of(mail: &Value) -> String {
    let link = mail["link"].as_str().expect("a link in the mail");
    link.split("token=")
        .nth(1)
        .expect("a token in the link")
        .to_owned()
}

/// A test server whose mails go to a [`Capture`].
pub async fn spawn_with_mail(backend: Backend) -> Option<(TestApp, Capture)> {
    let mail = Capture::start().await;
    let url = mail.url.clone();
    let app = spawn(backend, |s| {
        s.mail_sender = Some(palaver::config::MailSenderKind::Webhook);
        s.mail_webhook_url = Some(url);
    })
    .await?;
    Some((app, mail))
}

impl TestApp {
    /// Uses the next verification link in `mail` that went to `address` (others are skipped).
    pub async fn verify_email(&self, mail: &mut Capture, address: &str) {
        let token = loop {
            let sent = mail.next_link("/verify-email").await;
            if sent["to"] == address {
                break token_of(&sent);
            }
        };
        let r = self
            .post("/api/v1/auth/email/verify", None, json!({ "token": token }))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }

    /// Opens (or finds) the direct conversation of `a` with `b`; returns its id.
    pub async fn direct(&self, a: &User, b: &User) -> String {
        let r = self
            .post(
                "/api/v1/conversations/direct",
                Some(&a.token),
                json!({"userId": b.id}),
            )
            .await;
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::OK,
            "{}",
            r.text
        );
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a group owned by `owner`; returns its id.
    pub async fn group(&self, owner: &User, title: &str, members: &[&User]) -> String {
        let ids: Vec<&str> = members.iter().map(|u| u.id.as_str()).collect();
        let r = self
            .post(
                "/api/v1/conversations/groups",
                Some(&owner.token),
                json!({"title": title, "memberIds": ids}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Sends a text message and returns the stored message.
    pub async fn say(&self, from: &User, conversation: &str, text: &str) -> Value {
        let r = self
            .post(
                &format!("/api/v1/conversations/{conversation}/messages"),
                Some(&from.token),
                json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text", "text": text}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// The whole history the user can see, ascending.
    pub async fn history(&self, user: &User, conversation: &str) -> Vec<Value> {
        let r = self
            .get(
                &format!("/api/v1/conversations/{conversation}/messages?limit=100"),
                &user.token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["items"].as_array().unwrap().clone()
    }

    /// Where the user's change stream stands now (the snapshot's cursor): sync from here sees
    /// only what happens next.
    pub async fn sync_start(&self, user: &User) -> String {
        let r = self.get("/api/v1/sync", &user.token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["cursor"].as_str().unwrap().to_owned()
    }

    /// The conversation as the user sees it.
    pub async fn conversation(&self, user: &User, conversation: &str) -> Value {
        let r = self
            .get(
                &format!("/api/v1/conversations/{conversation}"),
                &user.token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }
}

/// One page of the user's stream over HTTP (`GET /sync`).
pub async fn sync_page(app: &TestApp, user: &User, cursor: &str, limit: usize) -> Value {
    let page = app
        .get(
            &format!("/api/v1/sync?cursor={cursor}&limit={limit}"),
            &user.token,
        )
        .await;
    assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.text);
    page.body
}

/// Pages through the user's stream from `cursor` with `limit`; returns the events and the end cursor.
pub async fn drain(
    app: &TestApp,
    user: &User,
    mut cursor: String,
    limit: usize,
) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    loop {
        let page = sync_page(app, user, &cursor, limit).await;
        let batch = page["events"].as_array().unwrap().clone();
        assert!(batch.len() <= limit);
        cursor = page["cursor"].as_str().unwrap().to_owned();
        events.extend(batch);
        if page["hasMore"] != true {
            return (events, cursor);
        }
    }
}

/// Every message the events replay is the message its conversation's history shows now, as
/// a value (a sync page on SQLite writes a plain message straight from its row; the history
/// builds views). For a quiet moment: nothing may change the messages meanwhile.
pub async fn assert_replayed_as_history(app: &TestApp, user: &User, events: &[Value]) {
    let mut histories: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let mut checked = 0;
    for e in events {
        let message = &e["data"]["message"];
        if message.is_null() {
            continue;
        }
        let conversation = message["conversationId"].as_str().unwrap().to_owned();
        if !histories.contains_key(&conversation) {
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let r = app
                    .get(
                        &format!(
                            "/api/v1/conversations/{conversation}/messages?after={after}&limit=100"
                        ),
                        &user.token,
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                let items = r.body["items"].as_array().unwrap().clone();
                let Some(last) = items.last() else { break };
                after = last["seq"].as_i64().unwrap();
                all.extend(items);
            }
            histories.insert(conversation.clone(), all);
        }
        let shown = histories[&conversation]
            .iter()
            .find(|m| m["id"] == message["id"])
            .unwrap_or_else(|| panic!("{message} replayed but not in the history"));
        assert_eq!(message, shown, "the replay and the history of one message");
        checked += 1;
    }
    assert!(checked > 0, "no message replayed: {events:?}");
}

/// Polls `probe` every 20 ms until it answers `Ok`, for at most `limit`; past that, fails with
/// the last `Err` (what was seen instead). For state outside the test's reach — another
/// process, Redis, a background job — where there is no event to await.
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) => assert!(tokio::time::Instant::now() < deadline, "{seen}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drains until `done` holds for everything received so far. On PostgreSQL a committed change
/// becomes visible once every older writing transaction of the cluster has ended (see
/// `changes`), which other tests' transactions can delay briefly; nothing is skipped, so
/// continuing from the returned cursor must eventually deliver it.
pub async fn drain_until(
    app: &TestApp,
    user: &User,
    mut cursor: String,
    limit: usize,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut events = Vec::new();
    loop {
        let (batch, next) = drain(app, user, cursor, limit).await;
        events.extend(batch);
        cursor = next;
        if done(&events) {
            return (events, cursor);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "changes did not arrive: {events:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
