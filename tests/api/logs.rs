//! Runs the real `palaver` binary and reads everything it logs.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::helpers::Capture;

pub struct Running {
    pub child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    pub base: String,
}

pub async fn start(extra_env: &[(&str, String)], dir: &std::path::Path) -> Running {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_palaver"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PALAVER_LISTEN", "127.0.0.1:0")
        .env("PALAVER_DATA_DIR", dir)
        .env("PALAVER_LOG_FORMAT", "json")
        .env("PALAVER_LOG", "debug")
        // The fake SMS and mail webhooks listen on loopback.
        .env("PALAVER_OUTBOUND_ALLOW", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start palaver");
    let (tx, lines) = mpsc::unbounded_channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    let mut running = Running {
        child,
        lines,
        seen: Vec::new(),
        base: String::new(),
    };
    let ready = running.wait_for("Palaver is ready").await;
    let v: Value = serde_json::from_str(&ready).expect("JSON log line");
    running.base = format!("http://{}", v["address"].as_str().expect("address field"));
    running
}

impl Running {
    pub async fn wait_for(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no log line with {needle:?}; saw:\n{}",
                        self.seen.join("\n")
                    )
                })
                .expect("the process ended early");
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// SIGTERM, then the exit status and the rest of the output.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().expect("running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_codes_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut sms = Capture::start().await;
    let mut mail = Capture::start().await;
    let server = start(
        &[
            ("PALAVER_SMS_SENDER", "webhook".into()),
            ("PALAVER_SMS_WEBHOOK_URL", sms.url.clone()),
            ("PALAVER_MAIL_SENDER", "webhook".into()),
            ("PALAVER_MAIL_WEBHOOK_URL", mail.url.clone()),
        ],
        dir.path(),
    )
    .await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();

    let password = "Sup3r-secret-passphrase";
    let email = "secretive@example.com";
    let r: Value = post(
        "/api/v1/auth/signup",
        json!({"email": email, "password": password, "displayName": "Sec"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut secrets = vec![password.to_owned(), email.to_owned()];
    secrets.push(r["accessToken"].as_str().unwrap().to_owned());
    secrets.push(r["refreshToken"].as_str().unwrap().to_owned());
    let r: Value = post(
        "/api/v1/auth/refresh",
        json!({"refreshToken": r["refreshToken"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    secrets.push(r["refreshToken"].as_str().unwrap().to_owned());
    let _ = post(
        "/api/v1/auth/login",
        json!({"email": email, "password": "a wrong password"}),
    )
    .await
    .unwrap();

    let phone = "+14155550777";
    assert_eq!(
        post("/api/v1/auth/otp/request", json!({"phone": phone}))
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let code = sms.next().await["code"].as_str().unwrap().to_owned();
    let r = post(
        "/api/v1/auth/otp/verify",
        json!({"phone": phone, "code": code, "deviceId": "d"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    secrets.push(code);
    secrets.push(phone.to_owned());

    assert_eq!(
        post("/api/v1/auth/password/forgot", json!({"email": email}))
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let link = mail.next_link("/reset-password").await["link"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let new_password = "An0ther-secret-passphrase";
    let r = post(
        "/api/v1/auth/password/reset",
        json!({"token": token, "password": new_password}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    secrets.push(token);
    secrets.push(new_password.to_owned());

    let (status, lines) = server.terminate().await;
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"stopped\"")),
        "logs that it stopped"
    );
    let all = lines.join("\n");
    for s in &secrets {
        assert!(
            !all.contains(s.as_str()),
            "the log contains a secret ({} chars)",
            s.len()
        );
    }
    let requests: Vec<Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|_| panic!("not a JSON line: {l}"))
        })
        .filter(|v| v["span"]["name"] == "request")
        .collect();
    assert!(!requests.is_empty(), "request logs carry their span");
    assert!(requests.iter().all(|v| v["span"]["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_sender_warns_at_start_and_writes_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&[], dir.path()).await;
    // A start-up warning names the log SMS sender (stdout and stderr are read apart, so it may
    // arrive after the ready line).
    if !server
        .seen
        .iter()
        .any(|l| l.contains("PALAVER_SMS_SENDER=log"))
    {
        server.wait_for("PALAVER_SMS_SENDER=log").await;
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/otp/request", server.base))
        .json(&json!({"phone": "+14155550888"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let line = server.wait_for("one-time code").await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["code"].as_str().map(str::len), Some(6));
    let (status, seen) = server.terminate().await;
    assert!(status.success(), "{status:?}; the server wrote: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_keys_never_reach_the_log() {
    use crate::ai_provider::{Provider, Reply};
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start().await;
    let (server_key, first, second) = (
        "sk-server-logged-never-0000000000",
        "sk-first-logged-never-11111111111",
        "sk-second-logged-never-2222222222",
    );
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_palaver"))
        .args([
            "admin",
            "create",
            "--email",
            "boss@example.com",
            "--password",
            "correct horse battery",
        ])
        .env("PALAVER_DATA_DIR", dir.path())
        .env("PALAVER_LOG", "warn")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let server = start(
        &[
            ("PALAVER_AI_URL", provider.url.clone()),
            ("PALAVER_AI_API_KEY", server_key.into()),
            ("PALAVER_AI_IDLE_SCAN", "1".into()),
        ],
        dir.path(),
    )
    .await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut r = http.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            r.send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap_or(Value::Null)
        }
    };
    use reqwest::Method;
    let admin = call(Method::POST, "/api/v1/auth/login",
        None, Some(json!({"email": "boss@example.com", "password": "correct horse battery", "deviceId": "d"}))).await;
    let admin = admin["accessToken"].as_str().unwrap().to_owned();
    call(
        Method::PATCH,
        "/api/v1/workspaces/default",
        Some(&admin),
        Some(json!({"settings": {"support": {"enabled": true}, "ai": {"enabled": true}}})),
    )
    .await;
    let patient = call(Method::POST, "/api/v1/auth/signup", None,
        Some(json!({"email": "p@example.com", "password": "correct horse battery", "displayName": "P"}))).await;
    let patient = patient["accessToken"].as_str().unwrap().to_owned();
    let conv = call(
        Method::POST,
        "/api/v1/support",
        Some(&patient),
        Some(json!({"workspaceId": "default"})),
    )
    .await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    call(
        Method::POST,
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&patient),
        Some(json!({"clientMsgId": "c1", "type": "text", "text": "Is my refill ready?"})),
    )
    .await;
    // Each key is used: the server's (after a 500), the workspace's, the rotated one refused
    // (401) and the retiring one taking over.
    provider.then(Reply::Status(500, None));
    let analyse = || async {
        let run = call(
            Method::POST,
            "/api/v1/ai/analyze",
            Some(&admin),
            Some(json!({"conversationId": conv})),
        )
        .await;
        let run = run["runId"].as_str().unwrap().to_owned();
        crate::helpers::eventually(Duration::from_secs(15), || async {
            let v = call(
                Method::GET,
                &format!("/api/v1/ai/runs/{run}"),
                Some(&admin),
                None,
            )
            .await;
            if v["status"] == "queued" {
                Err(v.to_string())
            } else {
                Ok(v)
            }
        })
        .await
    };
    assert_eq!(analyse().await["status"], "completed");
    let key = call(
        Method::POST,
        "/api/v1/admin/ai/keys",
        Some(&admin),
        Some(json!({"name": "k", "apiKey": first, "baseUrl": provider.url})),
    )
    .await;
    let key = key["id"].as_str().unwrap().to_owned();
    assert_eq!(analyse().await["status"], "completed");
    provider.refuse(second);
    call(
        Method::POST,
        &format!("/api/v1/admin/ai/keys/{key}/rotate"),
        Some(&admin),
        Some(json!({"apiKey": second})),
    )
    .await;
    assert_eq!(analyse().await["status"], "completed");
    let used: Vec<_> = provider
        .seen()
        .into_iter()
        .map(|s| s.key.unwrap())
        .collect();
    assert_eq!(used, [server_key, server_key, first, second, first]);

    let (_, lines) = server.terminate().await;
    let all = lines.join("\n");
    assert!(
        all.contains("AI provider call tried again"),
        "the retry is logged"
    );
    for k in [server_key, first, second] {
        assert!(!all.contains(k), "the log contains an AI key");
    }
}
