//! The SMS and mail senders against local fakes of Twilio and of an SMTP server, and a
//! configured signing key.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::dual_test;
use crate::helpers::{spawn, Backend, PASSWORD};

/// A fake of Twilio's Messages API: records (authorization, form fields) per call.
async fn fake_twilio() -> (
    String,
    mpsc::UnboundedReceiver<(String, HashMap<String, String>)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/AC123/Messages.json",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let form = url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                let _ = tx.send((auth, form));
                (StatusCode::CREATED, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

dual_test!(the_twilio_sender_posts_the_code, custom);
async fn the_twilio_sender_posts_the_code(backend: Backend) {
    let (api, mut calls) = fake_twilio().await;
    let Some(app) = spawn(backend, |s| {
        s.sms_sender = Some(palaver::config::SmsSenderKind::Twilio);
        s.twilio_api_url = Some(api);
        s.twilio_account_sid = Some("AC123".into());
        s.twilio_auth_token = Some("twilio-secret".into());
        s.twilio_from = Some("+15005550006".into());
    })
    .await
    else {
        return;
    };
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"phone": "+14155550142"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let (auth, form) = calls.recv().await.unwrap();
    use base64::Engine;
    assert_eq!(
        auth,
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("AC123:twilio-secret")
        )
    );
    assert_eq!(form["To"], "+14155550142");
    assert_eq!(form["From"], "+15005550006");
    let code: String = form["Body"].chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6);
    let r = app
        .post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"phone": "+14155550142", "code": code, "deviceId": "d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.stop().await;
}

/// A minimal SMTP server: answers every command and hands over (recipients, message) per mail.
async fn fake_smtp() -> (u16, mpsc::UnboundedReceiver<(Vec<String>, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                let mut rcpt = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 fake\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                        b"250 ok\r\n"
                    } else if upper.starts_with("DATA") {
                        write.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut message = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            message.push_str(&l);
                            message.push('\n');
                        }
                        let _ = tx.send((std::mem::take(&mut rcpt), message));
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

dual_test!(the_smtp_mailer_sends_the_reset_link, custom);
async fn the_smtp_mailer_sends_the_reset_link(backend: Backend) {
    let (port, mut mails) = fake_smtp().await;
    let Some(app) = spawn(backend, |s| {
        s.mail_sender = Some(palaver::config::MailSenderKind::Smtp);
        // Plain SMTP to a local relay; production uses smtps:// or ?tls=required.
        s.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        s.mail_from = Some("Palaver <no-reply@chat.example.com>".into());
    })
    .await
    else {
        return;
    };
    app.signup("smtp@example.com", "Smtp").await;
    let r = app
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "smtp@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // (Signing up mailed a verification link first; the reset mail is the one wanted.)
    let (rcpt, message) = loop {
        let (rcpt, message) =
            tokio::time::timeout(std::time::Duration::from_secs(10), mails.recv())
                .await
                .unwrap()
                .unwrap();
        if message.contains("Subject: Reset your Palaver password") {
            break (rcpt, message);
        }
    };
    assert_eq!(rcpt, ["smtp@example.com"]);
    assert!(
        message.contains("From: Palaver <no-reply@chat.example.com>"),
        "{message}"
    );
    assert!(message.contains("Subject: Reset your Palaver password"));
    // Undo quoted-printable soft breaks and escapes before reading the link.
    let body = message.replace("=\n", "").replace("=3D", "=");
    let token = body
        .split("reset-password?token=")
        .nth(1)
        .expect("a link")
        .split_whitespace()
        .next()
        .unwrap();
    let r = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "fresh password 123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "smtp@example.com", "password": "fresh password 123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "smtp@example.com", "password": PASSWORD}),
        )
        .await;
    r.assert_problem(401, "invalid_credentials");
    app.stop().await;
}

dual_test!(a_configured_signing_key_is_used, custom);
async fn a_configured_signing_key_is_used(backend: Backend) {
    use base64::Engine;
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    let Some(app) = spawn(backend, |s| s.jwt_private_key = Some(pem)).await else {
        return;
    };
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    assert_eq!(jwks.body["keys"][0]["x"], x.as_str());
    let u = app.signup("keyed@example.com", "Keyed").await;
    assert_eq!(
        app.get("/api/v1/users/me", &u.token).await.status,
        StatusCode::OK
    );
    app.stop().await;
}
