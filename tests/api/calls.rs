use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::dual_test;
use crate::helpers::TestApp;

/// base64(HMAC-SHA1(secret, text)) by OpenSSL, a counterpart that shares no code with ours.
fn openssl_hmac_sha1(secret: &str, text: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha1", "-binary", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

dual_test!(
    ice_servers_carry_turn_credentials_by_the_shared_secret,
    |s| {
        s.stun_urls = Some("stun:stun.example.com:3478".into());
        s.turn_urls =
            Some("turn:turn.example.com:3478?transport=udp, turns:turn.example.com:5349".into());
        s.turn_secret = Some("north-wind".into());
        s.turn_ttl = Some(600);
    }
);
async fn ice_servers_carry_turn_credentials_by_the_shared_secret(app: &TestApp) {
    let u = app.signup("caller@example.com", "Caller").await;
    let r = app.get("/api/v1/calls/ice-servers", &u.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["ttl"], 600);
    let servers = r.body["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    assert_eq!(
        servers[0],
        json!({"urls": ["stun:stun.example.com:3478"]}),
        "STUN needs no credentials"
    );
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!([
            "turn:turn.example.com:3478?transport=udp",
            "turns:turn.example.com:5349"
        ])
    );
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, u.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(
        turn["credential"].as_str().unwrap(),
        openssl_hmac_sha1("north-wind", username),
        "the credential a TURN server with the same secret computes"
    );
    // Signed-in callers only.
    app.call(
        reqwest::Method::GET,
        "/api/v1/calls/ice-servers",
        None,
        None,
    )
    .await
    .assert_problem(401, "unauthorized");
}

dual_test!(without_servers_configured_the_list_is_empty);
async fn without_servers_configured_the_list_is_empty(app: &TestApp) {
    let u = app.signup("lonely@example.com", "Lonely").await;
    let r = app.get("/api/v1/calls/ice-servers", &u.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"iceServers": [], "ttl": 86400}));
}

/// A coturn on a free port with `use-auth-secret`; `None` (the test skips) without coturn.
struct Coturn {
    child: std::process::Child,
    port: u16,
}

impl Coturn {
    async fn start(secret: &str) -> Option<Coturn> {
        let installed = |program: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !installed("turnserver") || !installed("turnutils_uclient") {
            eprintln!("skipped: coturn (turnserver, turnutils_uclient) is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .args([
                "--use-auth-secret",
                "--realm=palaver.test",
                "--no-tls",
                "--no-dtls",
            ])
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--allow-loopback-peers", "--no-cli", "--log-file=stdout"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        // Ready once it accepts TCP on its port (it serves UDP on the same one).
        crate::helpers::eventually(std::time::Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|e| format!("turnserver is not listening: {e}"))
        })
        .await;
        Some(Coturn { child, port })
    }

    /// Whether coturn's own client allocates a relay with these credentials and echoes data
    /// through it.
    fn allocates(&self, username: &str, credential: &str) -> bool {
        Command::new("timeout")
            .arg("30")
            .arg("turnutils_uclient")
            .args(["-u", username, "-w", credential])
            .args(["-p", &self.port.to_string()])
            .args([
                "-n",
                "1",
                "-m",
                "1",
                "-l",
                "100",
                "-y",
                "-e",
                "127.0.0.1",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

dual_test!(a_turn_server_accepts_the_credentials, |s| {
    s.turn_urls = Some("turn:127.0.0.1:3478".into());
    s.turn_secret = Some("south-wind".into());
});
async fn a_turn_server_accepts_the_credentials(app: &TestApp) {
    let Some(coturn) = Coturn::start("south-wind").await else {
        return;
    };
    let u = app.signup("turner@example.com", "Turner").await;
    let r = app.get("/api/v1/calls/ice-servers", &u.token).await;
    let turn = &r.body["iceServers"][0];
    let (username, credential) = (
        turn["username"].as_str().unwrap(),
        turn["credential"].as_str().unwrap(),
    );
    assert!(
        coturn.allocates(username, credential),
        "coturn refused {username}"
    );
    // The counterpart does refuse: the same credential under another user's name.
    let other = format!("{}:someone-else", username.split(':').next().unwrap());
    assert!(
        !coturn.allocates(&other, credential),
        "a credential is bound to its username"
    );
}
