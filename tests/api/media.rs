//! Media: uploads (sniffing, limits), processing jobs (thumbnails, durations, PDF pages and text,
//! OCR, transcription), protected downloads with Range, media messages, the sweep of
//! unreferenced uploads, and a restart with a job still queued.

use std::io::Cursor;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::dual_test;
use crate::helpers::{Backend, Resp, TestApp, User};

// ---------------------------------------------------------------------------------------------
// Files made here.

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([
            (x % 256) as u8,
            (y % 256) as u8,
            128,
            if x < 10 { 0 } else { 255 },
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, 90, (y % 256) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// 16-bit mono PCM at 8 kHz.
fn wav(millis: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples = rate * millis / 1000;
    let data_len = samples * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let v = ((i as f32 * 0.05).sin() * 8000.0) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// An Ogg/Opus voice note of `packets` × 60 ms (the packets are silent SILK frames' headers:
/// nothing decodes them, the duration comes from the stream's granule positions).
fn ogg_opus(packets: u32) -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }
    fn page(out: &mut Vec<u8>, flags: u8, granule: u64, seq: u32, packets: &[Vec<u8>]) {
        let mut p = Vec::new();
        p.extend_from_slice(b"OggS\0");
        p.push(flags);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&0x5041_4c41u32.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        let lacing: Vec<u8> = packets.iter().map(|pk| pk.len() as u8).collect();
        p.push(lacing.len() as u8);
        p.extend_from_slice(&lacing);
        for pk in packets {
            p.extend_from_slice(pk);
        }
        let c = crc(&p);
        p[22..26].copy_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&p);
    }
    let pre_skip = 312u16;
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&4u32.to_le_bytes());
    tags.extend_from_slice(b"test");
    tags.extend_from_slice(&0u32.to_le_bytes());
    let mut out = Vec::new();
    page(&mut out, 0x02, 0, 0, &[head]);
    page(&mut out, 0x00, 0, 1, &[tags]);
    // TOC 0x18: SILK narrowband, one 60 ms frame.
    let audio: Vec<Vec<u8>> = (0..packets).map(|_| vec![0x18, 0xff, 0xfe, 0x00]).collect();
    let granule = u64::from(packets) * 2880 + u64::from(pre_skip);
    page(&mut out, 0x04, granule, 2, &audio);
    out
}

/// A PDF with one page per text (Courier, so every text extractor reads it back).
fn pdf(texts: &[&str]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for text in texts {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 36.into()]),
                Operation::new("Td", vec![60.into(), 700.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// Requests.

async fn upload(
    app: &TestApp,
    user: &User,
    bytes: Vec<u8>,
    file_name: &str,
    claimed_type: &str,
    kind: Option<&str>,
) -> Resp {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(file_name.to_owned())
        .mime_str(claimed_type)
        .unwrap();
    let mut form = reqwest::multipart::Form::new().part("file", part);
    if let Some(k) = kind {
        form = form.text("kind", k.to_owned());
    }
    let r = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    Resp::from_response(r).await
}

/// Uploads and asserts a 201; the media JSON.
async fn uploaded(
    app: &TestApp,
    user: &User,
    bytes: Vec<u8>,
    name: &str,
    kind: Option<&str>,
) -> Value {
    let r = upload(app, user, bytes, name, "application/octet-stream", kind).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

/// A GET returning raw bytes.
async fn fetch(
    app: &TestApp,
    user: Option<&User>,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.client.get(app.url(path));
    if let Some(u) = user {
        req = req.bearer_auth(&u.token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("get");
    let status = r.status();
    let h = r.headers().clone();
    (status, h, r.bytes().await.unwrap().to_vec())
}

async fn send_media(
    app: &TestApp,
    from: &User,
    conversation: &str,
    kind: &str,
    media_id: &str,
    caption: Option<&str>,
) -> Resp {
    let mut body =
        json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": kind, "mediaId": media_id});
    if let Some(c) = caption {
        body["text"] = json!(c);
    }
    app.post(
        &format!("/api/v1/conversations/{conversation}/messages"),
        Some(&from.token),
        body,
    )
    .await
}

/// A JSON GET once the background jobs queued so far have run; `done` must hold then.
async fn eventually(
    app: &TestApp,
    user: &User,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    app.run_pending_jobs().await;
    let r = app.get(path, &user.token).await;
    assert!(
        r.status == StatusCode::OK && done(&r.body),
        "{path} did not get there: {}",
        r.text
    );
    r.body
}

/// The media JSON of the message carrying `media_id`, as `user` sees it in the history.
async fn media_in_history(app: &TestApp, user: &User, conversation: &str, media_id: &str) -> Value {
    let history = app.history(user, conversation).await;
    history
        .iter()
        .find(|m| m["media"]["id"] == media_id)
        .map(|m| m["media"].clone())
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Tests.

dual_test!(photo_voice_note_and_pdf_in_a_chat);
async fn photo_voice_note_and_pdf_in_a_chat(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let eve = app.signup("eve@example.com", "Eve").await;
    let chat = app.direct(&alice, &bob).await;

    // A photo under a lying name and type: the bytes decide.
    let photo = png(800, 600);
    let m = upload(
        app,
        &alice,
        photo.clone(),
        "holiday.html",
        "text/html",
        None,
    )
    .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.text);
    let photo_id = m.body["id"].as_str().unwrap().to_owned();
    assert_eq!(m.body["contentType"], "image/png");
    assert_eq!(m.body["kind"], "image");
    assert_eq!(m.body["size"], photo.len());
    assert_eq!(m.body["sha256"], sha256(&photo));
    assert_eq!(
        (m.body["width"].as_i64(), m.body["height"].as_i64()),
        (Some(800), Some(600))
    );
    assert_eq!(m.body["url"], format!("/api/v1/media/{photo_id}"));

    let voice = ogg_opus(50);
    let v = uploaded(app, &alice, voice.clone(), "voice.ogg", None).await;
    assert_eq!(
        (v["contentType"].as_str(), v["kind"].as_str()),
        (Some("audio/ogg"), Some("voice"))
    );
    let voice_id = v["id"].as_str().unwrap().to_owned();

    let doc = pdf(&["Quarterly figures", "Page two says hello"]);
    let d = uploaded(app, &alice, doc.clone(), "report.pdf", None).await;
    assert_eq!(
        (d["contentType"].as_str(), d["kind"].as_str()),
        (Some("application/pdf"), Some("document"))
    );
    let doc_id = d["id"].as_str().unwrap().to_owned();

    // Before any message carries them, only the uploader can fetch them.
    let (status, _, _) = fetch(app, Some(&bob), &format!("/api/v1/media/{photo_id}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let sent = send_media(app, &alice, &chat, "image", &photo_id, Some("the view")).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    assert_eq!(sent.body["text"], "the view");
    assert_eq!(sent.body["media"]["id"], photo_id.as_str());
    assert_eq!(
        send_media(app, &alice, &chat, "voice", &voice_id, None)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        send_media(app, &alice, &chat, "document", &doc_id, None)
            .await
            .status,
        StatusCode::CREATED
    );

    // The recipient sees thumbnails, duration and page count once processing is done.
    app.run_pending_jobs().await;
    let photo_view = media_in_history(app, &bob, &chat, &photo_id).await;
    let voice_view = media_in_history(app, &bob, &chat, &voice_id).await;
    let doc_view = media_in_history(app, &bob, &chat, &doc_id).await;
    for view in [&photo_view, &voice_view, &doc_view] {
        assert_eq!(view["processed"], true, "{view}");
    }
    assert_eq!(
        photo_view["thumbnailUrl"],
        format!("/api/v1/media/{photo_id}/thumbnail")
    );
    assert_eq!(voice_view["durationMs"], 3000, "{voice_view}");
    assert_eq!(doc_view["pages"], 2, "{doc_view}");

    // The thumbnail: a re-encoded JPEG within 320 pixels, same aspect.
    let (status, h, thumb) = fetch(
        app,
        Some(&bob),
        &format!("/api/v1/media/{photo_id}/thumbnail"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["content-type"], "image/jpeg");
    let t = image::load_from_memory(&thumb).unwrap();
    assert_eq!((t.width(), t.height()), (320, 240));

    // Whole download with its headers.
    let path = format!("/api/v1/media/{photo_id}");
    let (status, h, body) = fetch(app, Some(&bob), &path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, photo);
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["accept-ranges"], "bytes");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256(&photo)));
    let disposition = h["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("inline; filename=\"holiday.html\""),
        "{disposition}"
    );

    // Ranges.
    let (status, h, body) = fetch(app, Some(&bob), &path, &[("range", "bytes=10-19")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &photo[10..20]);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes 10-19/{}", photo.len())
    );
    let (status, _, body) = fetch(app, Some(&bob), &path, &[("range", "bytes=-5")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &photo[photo.len() - 5..]);
    let far = format!("bytes={}-", photo.len());
    let (status, h, _) = fetch(app, Some(&bob), &path, &[("range", far.as_str())]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        h["content-range"].to_str().unwrap(),
        format!("bytes */{}", photo.len())
    );
    // An If-Range that no longer matches gets the whole file; a matching ETag gets a 304.
    let (status, _, body) = fetch(
        app,
        Some(&bob),
        &path,
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, photo.len()));
    let (status, _, body) =
        fetch(app, Some(&bob), &path, &[("if-none-match", etag.as_str())]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

    // The PDF is a download, and its text is read out.
    let (_, h, body) = fetch(app, Some(&bob), &format!("/api/v1/media/{doc_id}"), &[]).await;
    assert_eq!(body, doc);
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"report.pdf\""));
    let text = eventually(app, &bob, &format!("/api/v1/media/{doc_id}/text"), |b| {
        b["state"] != "pending"
    })
    .await;
    assert_eq!(
        (text["state"].as_str(), text["source"].as_str()),
        (Some("done"), Some("pdf")),
        "{text}"
    );
    let words = text["text"].as_str().unwrap();
    assert!(
        words.contains("Quarterly figures") && words.contains("Page two says hello"),
        "{words}"
    );

    // A voice note without a transcription service: its text is unavailable, not failed.
    let r = app
        .get(&format!("/api/v1/media/{voice_id}/text"), &bob.token)
        .await;
    assert_eq!(r.body["state"], "unavailable");

    // Nobody else: not a member, not signed in.
    for id in [&photo_id, &voice_id, &doc_id] {
        for suffix in ["", "/thumbnail", "/text"] {
            let p = format!("/api/v1/media/{id}{suffix}");
            let (status, h, _) = fetch(app, Some(&eve), &p, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
            assert_eq!(h["content-type"], "application/problem+json");
            let (status, _, _) = fetch(app, None, &p, &[]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
        }
    }
    // Unknown ids look the same as forbidden ones.
    let (status, _, _) = fetch(app, Some(&bob), "/api/v1/media/nope", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

dual_test!(uploads_are_checked, |s| s.media_max_image_mib = Some(1));
async fn uploads_are_checked(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let chat = app.direct(&alice, &bob).await;
    let media_dir = match &app.state.config.media.store {
        palaver::config::MediaStoreConfig::Fs { dir } => dir.clone(),
        _ => unreachable!(),
    };
    // Uploads stored (thumbnails aside), including half-written ones.
    let stored_files = || {
        fn count(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            count(&e.path())
                        } else {
                            usize::from(!e.file_name().to_string_lossy().starts_with("thumbnail"))
                        }
                    })
                    .sum()
            })
        }
        count(&media_dir)
    };

    // An image over its 1 MiB limit: 413, nothing stored. The same size as a document is fine.
    let mut big = png(16, 16);
    big.resize(1024 * 1024 + 10, 0);
    let r = upload(app, &alice, big.clone(), "big.png", "image/png", None).await;
    r.assert_problem(413, "payload_too_large");
    assert_eq!(stored_files(), 0);
    let mut big_file = b"just some text\n".to_vec();
    big_file.resize(2 * 1024 * 1024, b'x');
    let r = upload(app, &alice, big_file, "notes.txt", "text/plain", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["contentType"], "text/plain; charset=utf-8");
    assert_eq!(stored_files(), 1);

    // HTML is never served as HTML, whatever the name says.
    let html = uploaded(
        app,
        &alice,
        b"<html><script>alert(1)</script></html>".to_vec(),
        "page.html",
        None,
    )
    .await;
    assert_eq!(html["contentType"], "application/octet-stream");
    let (_, h, _) = fetch(
        app,
        Some(&alice),
        &format!("/api/v1/media/{}", html["id"].as_str().unwrap()),
        &[],
    )
    .await;
    assert_eq!(h["content-type"], "application/octet-stream");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));

    // Malformed uploads.
    let r = app
        .post("/api/v1/media", Some(&alice.token), json!({"file": "x"}))
        .await;
    r.assert_problem(415, "unsupported_media_type");
    let form = reqwest::multipart::Form::new().text("kind", "image");
    let r = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&alice.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    Resp::from_response(r)
        .await
        .assert_problem(422, "validation_failed");
    upload(app, &alice, Vec::new(), "empty.png", "image/png", None)
        .await
        .assert_problem(422, "validation_failed");
    let r = upload(
        app,
        &alice,
        pdf(&["x"]),
        "doc.pdf",
        "application/pdf",
        Some("image"),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    upload(
        app,
        &alice,
        png(4, 4),
        "a.png",
        "image/png",
        Some("../../etc"),
    )
    .await
    .assert_problem(422, "validation_failed");
    let form = reqwest::multipart::Form::new().text("file", "x");
    let r = app
        .client
        .post(app.url("/api/v1/media"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    Resp::from_response(r)
        .await
        .assert_problem(401, "unauthorized");
    // Only `file` and `kind`, as the document says.
    let part = reqwest::multipart::Part::bytes(png(4, 4))
        .file_name("a.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("caption", "hi");
    let r = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&alice.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    Resp::from_response(r)
        .await
        .assert_problem(422, "validation_failed");
    let files_before = stored_files();

    // A message's type must fit its media; media of someone else's is unknown.
    let doc = uploaded(app, &alice, pdf(&["x"]), "doc.pdf", None).await;
    let doc_id = doc["id"].as_str().unwrap();
    send_media(app, &alice, &chat, "image", doc_id, None)
        .await
        .assert_problem(422, "validation_failed");
    send_media(app, &bob, &chat, "document", doc_id, None)
        .await
        .assert_problem(422, "validation_failed");
    send_media(app, &alice, &chat, "image", "no-such-id", None)
        .await
        .assert_problem(422, "validation_failed");
    let r = app
        .post(
            &format!("/api/v1/conversations/{chat}/messages"),
            Some(&alice.token),
            json!({"clientMsgId": "m1", "type": "image"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(stored_files(), files_before + 1);

    // Avatars are the user's own images.
    let face = uploaded(app, &alice, jpeg(64, 64), "me.jpg", None).await;
    let r = app
        .patch(
            "/api/v1/users/me",
            &alice.token,
            json!({"avatarMediaId": doc_id}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .patch(
            "/api/v1/users/me",
            &bob.token,
            json!({"avatarMediaId": face["id"]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .patch(
            "/api/v1/users/me",
            &alice.token,
            json!({"avatarMediaId": face["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["avatarMediaId"], face["id"]);
    // Everyone in the workspace sees profiles, so they can fetch the avatar.
    let (status, _, body) = fetch(
        app,
        Some(&bob),
        &format!("/api/v1/media/{}", face["id"].as_str().unwrap()),
        &[],
    )
    .await;
    assert_eq!(
        (status, body.len() as i64),
        (StatusCode::OK, face["size"].as_i64().unwrap())
    );
}

dual_test!(removed_members_and_deleted_messages_lose_access);
async fn removed_members_and_deleted_messages_lose_access(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let carol = app.signup("carol@example.com", "Carol").await;
    let group = app.group(&alice, "Trip", &[&bob, &carol]).await;

    let first = uploaded(app, &alice, png(20, 20), "1.png", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = send_media(app, &alice, &group, "image", &first, None).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    let first_msg = sent.body["id"].as_str().unwrap().to_owned();
    let get = |u: &User, id: &str| {
        let (u, path) = (u.clone(), format!("/api/v1/media/{id}"));
        async move { fetch(app, Some(&u), &path, &[]).await.0 }
    };
    assert_eq!(get(&bob, &first).await, StatusCode::OK);

    // Bob forwards what he received; it stays the same media.
    let fwd = app
        .post(
            &format!("/api/v1/messages/{first_msg}/forward"),
            Some(&bob.token),
            json!({"conversationIds": [app.direct(&bob, &carol).await]}),
        )
        .await;
    assert!(fwd.status.is_success(), "{}", fwd.text);

    let r = app
        .delete(
            &format!("/api/v1/conversations/{group}/members/{}", bob.id),
            &alice.token,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let second = uploaded(app, &alice, png(30, 30), "2.png", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send_media(app, &alice, &group, "image", &second, None)
            .await
            .status,
        StatusCode::CREATED
    );
    // What Bob received before his removal stays his; what came after is not.
    assert_eq!(get(&bob, &first).await, StatusCode::OK);
    assert_eq!(get(&bob, &second).await, StatusCode::NOT_FOUND);
    assert_eq!(get(&carol, &second).await, StatusCode::OK);

    // Deleted for everyone: the media link is gone from the group, Carol keeps Bob's forward.
    let r = app
        .delete(
            &format!("/api/v1/messages/{first_msg}?for=everyone"),
            &alice.token,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    assert_eq!(get(&carol, &first).await, StatusCode::OK);
    assert_eq!(
        get(&alice, &first).await,
        StatusCode::OK,
        "the uploader keeps access"
    );
    let history = app.history(&carol, &group).await;
    let tomb = history
        .iter()
        .find(|m| m["id"] == first_msg.as_str())
        .unwrap();
    assert_eq!(tomb["media"], Value::Null);
}

dual_test!(unreferenced_uploads_are_swept, |s| s
    .media_unreferenced_ttl =
    Some(1));
async fn unreferenced_uploads_are_swept(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let chat = app.direct(&alice, &bob).await;
    let lone = uploaded(app, &alice, png(8, 8), "lone.png", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = uploaded(app, &alice, png(9, 9), "kept.png", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let avatar = uploaded(app, &alice, png(10, 10), "me.png", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send_media(app, &alice, &chat, "image", &kept, None)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = app
        .patch(
            "/api/v1/users/me",
            &alice.token,
            json!({"avatarMediaId": avatar}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fetch(app, Some(&alice), &format!("/api/v1/media/{lone}"), &[])
        .await
        .0
        != StatusCode::NOT_FOUND
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lone upload was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in [&kept, &avatar] {
        assert_eq!(
            fetch(app, Some(&alice), &format!("/api/v1/media/{id}"), &[])
                .await
                .0,
            StatusCode::OK
        );
    }
}

dual_test!(a_queued_job_survives_a_restart, custom);
async fn a_queued_job_survives_a_restart(backend: Backend) {
    // No workers: the analysis stays queued.
    let Some(app) = crate::helpers::spawn(backend, |s| s.job_workers = Some(0)).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let chat = app.direct(&alice, &bob).await;
    let m = uploaded(&app, &alice, png(400, 200), "p.png", None).await;
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(m["processed"], false);
    let sent = send_media(&app, &alice, &chat, "image", &id, None).await;
    assert_eq!(sent.body["media"]["processed"], false, "{}", sent.text);
    let message_id = sent.body["id"].as_str().unwrap().to_owned();
    let cursor = app.sync_start(&bob).await;
    let path = format!("/api/v1/media/{id}/thumbnail");
    assert_eq!(
        fetch(&app, Some(&alice), &path, &[]).await.0,
        StatusCode::NOT_FOUND
    );

    // After a restart with workers, the queued job runs; the recipient hears of the result.
    let app = app.restart(|s| s.job_workers = Some(2)).await;
    let (events, _) = crate::helpers::drain_until(&app, &bob, cursor, 50, |events| {
        events.iter().any(|e| {
            e["type"] == "message:updated" && e["data"]["message"]["media"]["processed"] == true
        })
    })
    .await;
    let updated = events
        .iter()
        .find(|e| e["type"] == "message:updated")
        .unwrap();
    assert_eq!(updated["data"]["message"]["id"], message_id.as_str());
    let media = &updated["data"]["message"]["media"];
    assert_eq!(
        (media["width"].as_i64(), media["height"].as_i64()),
        (Some(400), Some(200))
    );
    assert_eq!(media["thumbnailUrl"], path.as_str());
    let (status, _, body) = fetch(&app, Some(&alice), &path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let t = image::load_from_memory(&body).unwrap();
    assert_eq!((t.width(), t.height()), (320, 160));
    app.stop().await;
}

dual_test!(ocr_reads_text_in_images, custom);
async fn ocr_reads_text_in_images(backend: Backend) {
    let (Ok(_), Ok(_)) = (which("tesseract"), which("pdftoppm")) else {
        eprintln!("skipped ocr_reads_text_in_images: tesseract or pdftoppm (poppler-utils) is not installed");
        return;
    };
    let Some(app) = crate::helpers::spawn(backend, |_| {}).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    // Text rendered into a PNG by poppler from a PDF made here.
    let dir = tempfile::tempdir().unwrap();
    let pdf_path = dir.path().join("t.pdf");
    std::fs::write(&pdf_path, pdf(&["PALAVER OCR 2026"])).unwrap();
    let out = dir.path().join("t");
    let status = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "150", "-singlefile"])
        .arg(&pdf_path)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let picture = std::fs::read(dir.path().join("t.png")).unwrap();

    let alice = app.signup("alice@example.com", "Alice").await;
    let m = uploaded(&app, &alice, picture, "scan.png", None).await;
    let text = eventually(
        &app,
        &alice,
        &format!("/api/v1/media/{}/text", m["id"].as_str().unwrap()),
        |b| b["state"] != "pending",
    )
    .await;
    assert_eq!(
        (text["state"].as_str(), text["source"].as_str()),
        (Some("done"), Some("ocr")),
        "{text}"
    );
    assert!(
        text["text"].as_str().unwrap().contains("PALAVER OCR 2026"),
        "{text}"
    );

    // A PDF gets a thumbnail of its first page from pdftoppm.
    let d = uploaded(&app, &alice, pdf(&["cover"]), "c.pdf", None).await;
    let view = eventually(
        &app,
        &alice,
        &format!("/api/v1/media/{}/text", d["id"].as_str().unwrap()),
        |b| b["state"] == "done",
    )
    .await;
    assert_eq!(view["source"], "pdf");
    let path = format!("/api/v1/media/{}/thumbnail", d["id"].as_str().unwrap());
    app.run_pending_jobs().await;
    assert_eq!(
        fetch(&app, Some(&alice), &path, &[]).await.0,
        StatusCode::OK,
        "no PDF thumbnail"
    );
    app.stop().await;
}

fn which(program: &str) -> std::io::Result<std::process::ExitStatus> {
    std::process::Command::new(program)
        .arg(if program == "pdftoppm" {
            "-v"
        } else {
            "--version"
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
}

/// A local stand-in for an OpenAI-compatible `/audio/transcriptions`: answers 429 with
/// `Retry-After: 1` the first time, then the transcript; records what it was sent.
async fn fake_transcriber() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Option<String>, String, usize)>,
) {
    use axum::extract::Multipart;
    use axum::http::HeaderMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/v1/audio/transcriptions",
        axum::routing::post(move |headers: HeaderMap, mut form: Multipart| {
            let (tx, calls) = (tx.clone(), calls.clone());
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                let (mut model, mut bytes) = (String::new(), 0);
                while let Some(field) = form.next_field().await.unwrap() {
                    match field.name() {
                        Some("model") => model = field.text().await.unwrap(),
                        Some("file") => bytes = field.bytes().await.unwrap().len(),
                        _ => {}
                    }
                }
                tx.send((auth, model, bytes)).unwrap();
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return axum::response::Response::builder()
                        .status(429)
                        .header("retry-after", "1")
                        .body(axum::body::Body::from(
                            "{\"error\":{\"message\":\"slow down\"}}",
                        ))
                        .unwrap();
                }
                axum::response::Response::builder()
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        "{\"text\":\"  see you at eight  \"}",
                    ))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

dual_test!(voice_notes_are_transcribed, custom);
async fn voice_notes_are_transcribed(backend: Backend) {
    let (url, mut calls) = fake_transcriber().await;
    let Some(app) = crate::helpers::spawn(backend, |s| {
        s.transcription_url = Some(url);
        s.transcription_api_key = Some("sk-test".into());
        s.transcription_model = Some("whisper-test".into());
    })
    .await
    else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let alice = app.signup("alice@example.com", "Alice").await;
    let note = wav(1500);
    let m = uploaded(&app, &alice, note.clone(), "note.wav", Some("voice")).await;
    assert_eq!(m["kind"], "voice");
    let id = m["id"].as_str().unwrap();
    let text = eventually(&app, &alice, &format!("/api/v1/media/{id}/text"), |b| {
        b["state"] != "pending"
    })
    .await;
    assert_eq!(
        text,
        json!({"state": "done", "source": "transcription", "text": "see you at eight"})
    );
    // Asked twice (the 429 was retried after its Retry-After), with the key, model and bytes.
    for _ in 0..2 {
        let (auth, model, bytes) = calls.recv().await.unwrap();
        assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
        assert_eq!((model.as_str(), bytes), ("whisper-test", note.len()));
    }
    // Its duration, from the WAV header, in the message.
    let chat = app
        .direct(&alice, &app.signup("bob@example.com", "Bob").await)
        .await;
    assert_eq!(
        send_media(&app, &alice, &chat, "voice", id, None)
            .await
            .status,
        StatusCode::CREATED
    );
    app.run_pending_jobs().await;
    assert_eq!(
        media_in_history(&app, &alice, &chat, id).await["durationMs"],
        1500
    );
    // Plain audio (not a voice note) is not sent for transcription.
    let song = uploaded(&app, &alice, wav(200), "song.wav", None).await;
    assert_eq!(song["kind"], "audio");
    let r = app
        .get(
            &format!("/api/v1/media/{}/text", song["id"].as_str().unwrap()),
            &alice.token,
        )
        .await;
    assert_eq!(r.body["state"], "unavailable");
    app.stop().await;
}

/// A local S3 (moto's server, from PyPI: `pip install 'moto[server]'`) on a free port, with a
/// bucket; `None` when moto is not installed. Killed when dropped.
async fn local_s3(bucket: &str) -> Option<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = tokio::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // moto does not check signatures: a plain PUT makes the bucket.
        if let Ok(r) = client.put(format!("{endpoint}/{bucket}")).send().await {
            assert!(
                r.status().is_success(),
                "creating the bucket: {}",
                r.status()
            );
            return Some((child, endpoint));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

dual_test!(media_in_an_s3_bucket, custom);
async fn media_in_an_s3_bucket(backend: Backend) {
    let Some((_moto, endpoint)) = local_s3("palaver-media").await else {
        eprintln!("skipped media_in_an_s3_bucket: moto_server (pip install 'moto[server]') is not installed");
        return;
    };
    let s3 = endpoint.clone();
    let Some(app) = crate::helpers::spawn(backend, move |s| {
        s.media_store = Some(palaver::config::MediaStoreKind::S3);
        s.s3_endpoint = Some(s3);
        s.s3_bucket = Some("palaver-media".into());
        s.s3_access_key_id = Some("test".into());
        s.s3_secret_access_key = Some("test".into());
    })
    .await
    else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let alice = app.signup("alice@example.com", "Alice").await;
    // Larger than one 5 MiB part: a real multipart upload.
    let mut video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    video.extend((0..7 * 1024 * 1024).map(|i| (i % 251) as u8));
    let m = uploaded(&app, &alice, video.clone(), "clip.mp4", None).await;
    assert_eq!(
        (m["contentType"].as_str(), m["kind"].as_str()),
        (Some("video/mp4"), Some("video"))
    );
    assert_eq!(m["sha256"], sha256(&video));
    let id = m["id"].as_str().unwrap();
    let (status, _, body) = fetch(
        &app,
        Some(&alice),
        &format!("/api/v1/media/{id}"),
        &[("range", "bytes=6000000-6000099")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &video[6_000_000..6_000_100]);

    // The bytes are in the bucket under a key the server made.
    let listing = reqwest::get(format!("{endpoint}/palaver-media?list-type=2"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(&format!("/{id}/original</Key>")),
        "{listing}"
    );

    // Thumbnails go there too.
    let p = uploaded(&app, &alice, png(640, 640), "sq.png", None).await;
    let path = format!("/api/v1/media/{}/thumbnail", p["id"].as_str().unwrap());
    app.run_pending_jobs().await;
    let (status, _, body) = fetch(&app, Some(&alice), &path, &[]).await;
    assert_eq!(status, StatusCode::OK, "no thumbnail in S3");
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 320);
    app.stop().await;
}

dual_test!(erasing_an_account_deletes_its_uploads);
async fn erasing_an_account_deletes_its_uploads(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    let bob = app.signup("bob@example.com", "Bob").await;
    let chat = app.direct(&alice, &bob).await;
    let photo = uploaded(app, &alice, png(12, 12), "p.png", None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send_media(app, &alice, &chat, "image", &photo, None)
            .await
            .status,
        StatusCode::CREATED
    );
    let path = format!("/api/v1/media/{photo}");
    assert_eq!(fetch(app, Some(&bob), &path, &[]).await.0, StatusCode::OK);
    let r = app.delete("/api/v1/users/me", &alice.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // The row goes with the account; the bytes go by a job.
    assert_eq!(
        fetch(app, Some(&bob), &path, &[]).await.0,
        StatusCode::NOT_FOUND
    );
    let media_dir = match &app.state.config.media.store {
        palaver::config::MediaStoreConfig::Fs { dir } => dir.clone(),
        _ => unreachable!(),
    };
    let workspace = app.get("/api/v1/workspaces/default", &bob.token).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = media_dir.join(&workspace).join(&photo).join("original");
    app.run_pending_jobs().await;
    assert!(!stored.exists(), "the erased user's upload is still stored");
}

dual_test!(uploads_have_their_own_rate_limit);
async fn uploads_have_their_own_rate_limit(app: &TestApp) {
    let alice = app.signup("alice@example.com", "Alice").await;
    for i in 0..60 {
        let r = upload(app, &alice, b"note\n".to_vec(), "n.txt", "text/plain", None).await;
        assert_eq!(r.status, StatusCode::CREATED, "upload {i}: {}", r.text);
    }
    let r = upload(app, &alice, b"note\n".to_vec(), "n.txt", "text/plain", None).await;
    r.assert_problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
}

dual_test!(a_pdf_is_read_apart_under_a_memory_limit, custom);
async fn a_pdf_is_read_apart_under_a_memory_limit(backend: crate::helpers::Backend) {
    if which("prlimit").is_err() || which("python3").is_err() {
        eprintln!(
            "skipped a_pdf_is_read_apart_under_a_memory_limit: prlimit or python3 is missing"
        );
        return;
    }
    // A reader that behaves like a decompression bomb: it takes 3 GiB, then answers. Read in
    // the server's process (or without limits) it would answer; apart, under the limit, it
    // is refused the memory and the PDF's text ends as failed, the server untouched.
    let dir = tempfile::tempdir().unwrap();
    let reader = dir.path().join("bomb-reader");
    std::fs::write(
        &reader,
        "#!/bin/sh\nexec python3 -c 'b = bytearray(3 * 1024 ** 3); print(\"{\\\"pages\\\": 1, \\\"text\\\": \\\"read\\\"}\")'\n",
    )
    .unwrap();
    std::fs::set_permissions(&reader, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = reader.to_string_lossy().into_owned();
    let Some(app) = crate::helpers::spawn(backend, |s| s.pdf_reader = Some(path)).await else {
        return;
    };
    let alice = app.signup("pdf@example.com", "Pdf").await;
    let d = uploaded(&app, &alice, pdf(&["bomb"]), "bomb.pdf", None).await;
    let id = d["id"].as_str().unwrap();
    let text = eventually(&app, &alice, &format!("/api/v1/media/{id}/text"), |b| {
        b["state"] != "pending"
    })
    .await;
    assert_eq!(text["state"], "failed", "{text}");
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    app.stop().await;
}
