//! `palaver demo`: Alice, Bob and Charlie with a direct chat and a group, replies, reactions and
//! receipts, loaded into an empty database through the same services the API uses.

use anyhow::bail;
use rand::Rng;

use crate::chats::service as chats;
use crate::db::Role;
use crate::db::{Db, Tenant};
use crate::messages::model::Outgoing;
use crate::messages::model::{Content, MessageType};
use crate::messages::service as messages;
use crate::users::store::{self as users, NewUser};
use crate::workspaces::store as workspaces;

fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let word = |rng: &mut rand::rngs::OsRng| {
        (0..5)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect::<String>()
    };
    format!("{}-{}-{}", word(&mut rng), word(&mut rng), word(&mut rng))
}

fn text(s: &str) -> Content {
    Content {
        kind: MessageType::Text,
        text: Some(s.to_owned()),
        media_id: None,
        payload: None,
    }
}

/// Loads the demo; returns each account's (email, password).
pub async fn load(db: &Db) -> anyhow::Result<Vec<(&'static str, String)>> {
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db.reader())
        .await?;
    if existing > 0 {
        bail!("the database already has {existing} users; `palaver demo` only fills an empty one");
    }
    let workspace = workspaces::ensure_default(db).await?;
    let people = [
        ("Alice", "alice@example.com"),
        ("Bob", "bob@example.com"),
        ("Charlie", "charlie@example.com"),
    ];
    let mut ids = Vec::new();
    let mut passwords = Vec::new();
    for (name, email) in people {
        let pass = password();
        let hash = crate::auth::secrets::hash_password(pass.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut tx = db.begin().await?;
        let user = users::insert(
            &mut tx,
            NewUser {
                display_name: name,
                email: Some(email),
                phone: None,
                password_hash: Some(&hash),
                is_platform_admin: false,
                is_invited: false,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        workspaces::insert_membership(&mut tx, &workspace, &user.id, Role::Member)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tx.commit().await?;
        ids.push(user.id);
        passwords.push((email, pass));
    }
    let t = Tenant::new(db, &workspace);
    let sends = &crate::messages::pipeline::Pipeline::start(db.clone());
    let (alice, bob, charlie) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let err = |e: crate::error::AppError| anyhow::anyhow!("{e}");
    let say =
        |from: &'static str, conversation: String, body: &'static str, reply: Option<String>| {
            let (t, sender) = (
                t,
                match from {
                    "alice" => alice,
                    "bob" => bob,
                    _ => charlie,
                },
            );
            async move {
                let out = Outgoing {
                    client_msg_id: crate::db::new_id(),
                    content: text(body),
                    reply_to_id: reply,
                    forwarded: false,
                };
                messages::send(t, sends, sender, &conversation, out)
                    .await
                    .map(|(m, _)| m)
            }
        };

    let (direct, _) = chats::open_direct(t, alice, bob).await.map_err(err)?;
    let hi = say(
        "alice",
        direct.id.clone(),
        "Hi Bob! Are we still on for Friday?",
        None,
    )
    .await
    .map_err(err)?;
    let yes = say(
        "bob",
        direct.id.clone(),
        "Yes! 7pm at the usual place.",
        Some(hi.id.clone()),
    )
    .await
    .map_err(err)?;
    messages::react(t, alice, &yes.id, Some("👍".into()))
        .await
        .map_err(err)?;
    say("alice", direct.id.clone(), "Perfect, see you there.", None)
        .await
        .map_err(err)?;
    messages::mark(t, bob, &direct.id, 3, true)
        .await
        .map_err(err)?;

    let (group, _) = chats::create_group(
        t,
        alice,
        chats::NewGroup {
            title: "Weekend hike".into(),
            description: Some("Saturday, weather permitting".into()),
            member_ids: vec![bob.into(), charlie.into()],
            avatar_media_id: None,
        },
        None,
    )
    .await
    .map_err(err)?;
    let plan = say(
        "alice",
        group.id.clone(),
        "Trailhead at 8? Bring water and snacks.",
        None,
    )
    .await
    .map_err(err)?;
    say(
        "charlie",
        group.id.clone(),
        "8 works. I'll bring the map.",
        Some(plan.id.clone()),
    )
    .await
    .map_err(err)?;
    let late = say(
        "bob",
        group.id.clone(),
        "Could we make it 8:30? Ferry times.",
        Some(plan.id.clone()),
    )
    .await
    .map_err(err)?;
    messages::react(t, charlie, &late.id, Some("😅".into()))
        .await
        .map_err(err)?;
    messages::react(t, alice, &late.id, Some("👌".into()))
        .await
        .map_err(err)?;
    let ok = say("alice", group.id.clone(), "8:30 it is!", None)
        .await
        .map_err(err)?;
    for who in [bob, charlie] {
        messages::mark(t, who, &group.id, ok.seq, true)
            .await
            .map_err(err)?;
    }

    Ok(passwords)
}

/// Opens the configured database for the demo.
pub async fn run(config: &crate::config::Config) -> anyhow::Result<()> {
    crate::config::create_private_dir(&config.data_dir)?;
    let db = Db::connect(config.database_url.expose(), 4).await?;
    db.migrate().await?;
    let result = load(&db).await;
    db.close().await;
    println!("Demo data loaded: a direct chat (Alice and Bob) and a group (\"Weekend hike\").");
    println!("Sign in with these accounts; the passwords are shown only now:\n");
    for (email, pass) in result? {
        println!("  {email:<22} {pass}");
    }
    Ok(())
}
