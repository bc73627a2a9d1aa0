//! The Cloud API webhook body, read defensively: the envelope must be right (else the body is
//! refused), everything inside is optional, unknown fields are ignored, and no input can make
//! it panic (a property test feeds it arbitrary JSON).

use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

/// One `changes[]` item of field `messages`.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub phone_number_id: String,
    pub display_phone_number: Option<String>,
    /// (wa_id, profile name)
    pub contacts: Vec<(String, Option<String>)>,
    pub messages: Vec<Inbound>,
    pub statuses: Vec<StatusUpdate>,
}

/// A message in `messages[]`.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The wamid.
    pub id: String,
    pub from: String,
    /// Milliseconds since the epoch (the provider's seconds × 1000).
    pub at: Option<i64>,
    /// The provider's `type` as sent (`text`, `image`, …, or anything new).
    pub kind: String,
    /// Its text: the body, a media caption, a button's text, an interactive reply's title.
    pub text: Option<String>,
    /// Media sent as an id to fetch.
    pub media: Option<MediaRef>,
    /// The type-specific object as received (location, contacts, interactive, order…),
    /// with `referral` and `errors` when present.
    pub payload: Value,
    /// `context.id`: the message this one answers (or reacts to, for button replies).
    pub reply_to: Option<String>,
    pub forwarded: bool,
    /// For reactions: (target wamid, emoji; empty removes).
    pub reaction: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub id: String,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
    /// `audio.voice == true`: a voice note.
    pub voice: bool,
}

/// A status in `statuses[]`.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub id: String,
    pub status: String,
    pub at: Option<i64>,
    pub recipient_id: Option<String>,
    /// The whole status object (conversation, pricing, errors…), kept in the history.
    pub raw: Value,
}

/// Reads a webhook body: the Graph envelope, or the same envelope inside `metaData`.
pub fn parse(body: &[u8]) -> Result<Vec<Change>, Malformed> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    let root = match v.get("metaData") {
        Some(inner) if inner.is_object() => inner,
        _ => &v,
    };
    let root = root
        .as_object()
        .ok_or_else(|| Malformed("the body is not a JSON object".into()))?;
    match root.get("object").and_then(Value::as_str) {
        Some("whatsapp_business_account") => {}
        Some(other) => {
            return Err(Malformed(format!(
                "object {other:?} is not whatsapp_business_account"
            )))
        }
        None => return Err(Malformed("no `object` field".into())),
    }
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| Malformed("no `entry` array".into()))?;
    let mut out = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            return Err(Malformed("an entry without a `changes` array".into()));
        };
        for change in changes {
            if change.get("field").and_then(Value::as_str) != Some("messages") {
                continue; // account updates, template status… are not messages
            }
            let Some(value) = change.get("value").and_then(Value::as_object) else {
                return Err(Malformed("a change without a `value` object".into()));
            };
            out.push(read_change(value)?);
        }
    }
    Ok(out)
}

/// The phone number ids a body names, for finding its channels (and their secrets) before the
/// signature is checked. Empty when the body is malformed.
pub fn phone_number_ids(body: &[u8]) -> Vec<String> {
    let mut ids: Vec<String> = parse(body)
        .map(|changes| changes.into_iter().map(|c| c.phone_number_id).collect())
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

fn read_change(value: &Map<String, Value>) -> Result<Change, Malformed> {
    let metadata = value.get("metadata");
    let phone_number_id = metadata
        .and_then(|m| m.get("phone_number_id"))
        .and_then(string)
        .ok_or_else(|| Malformed("a change without metadata.phone_number_id".into()))?;
    let display_phone_number = metadata
        .and_then(|m| m.get("display_phone_number"))
        .and_then(string);
    let contacts = array(value.get("contacts"))
        .filter_map(|c| {
            let wa_id = c.get("wa_id").and_then(string)?;
            let name = c
                .get("profile")
                .and_then(|p| p.get("name"))
                .and_then(string);
            Some((wa_id, name))
        })
        .collect();
    let messages = array(value.get("messages"))
        .filter_map(|m| m.as_object().and_then(read_message))
        .collect();
    let statuses = array(value.get("statuses"))
        .filter_map(|s| {
            let o = s.as_object()?;
            Some(StatusUpdate {
                id: o.get("id").and_then(string)?,
                status: o.get("status").and_then(string)?.to_ascii_lowercase(),
                at: o.get("timestamp").and_then(seconds),
                recipient_id: o.get("recipient_id").and_then(string),
                raw: s.clone(),
            })
        })
        .collect();
    Ok(Change {
        phone_number_id,
        display_phone_number,
        contacts,
        messages,
        statuses,
    })
}

fn read_message(m: &Map<String, Value>) -> Option<Inbound> {
    let id = m.get("id").and_then(string)?;
    let from = m.get("from").and_then(string)?;
    let kind = m
        .get("type")
        .and_then(string)
        .unwrap_or_else(|| "unsupported".into());
    let body = m.get(&kind).cloned().unwrap_or(Value::Null);
    let text = match kind.as_str() {
        "text" => body.get("body").and_then(string),
        "image" | "video" | "document" | "sticker" | "audio" => {
            body.get("caption").and_then(string)
        }
        "button" => body.get("text").and_then(string),
        "interactive" => body
            .get("button_reply")
            .or_else(|| body.get("list_reply"))
            .and_then(|r| r.get("title"))
            .and_then(string),
        "system" => body.get("body").and_then(string),
        "order" => body.get("text").and_then(string),
        _ => None,
    };
    let media = match kind.as_str() {
        "image" | "video" | "document" | "sticker" | "audio" => {
            body.get("id").and_then(string).map(|media_id| MediaRef {
                id: media_id,
                mime_type: body.get("mime_type").and_then(string),
                file_name: body.get("filename").and_then(string),
                voice: body.get("voice").and_then(Value::as_bool).unwrap_or(false),
            })
        }
        _ => None,
    };
    let reaction = (kind == "reaction")
        .then(|| {
            let target = body.get("message_id").and_then(string)?;
            let emoji = body.get("emoji").and_then(string).unwrap_or_default();
            Some((target, emoji))
        })
        .flatten();
    let context = m.get("context");
    let mut payload = match body {
        Value::Object(o) => Value::Object(o),
        Value::Null => Value::Object(Map::new()),
        other => serde_json::json!({ "value": other }),
    };
    for extra in ["referral", "errors", "identity"] {
        if let Some(v) = m.get(extra) {
            payload[extra] = v.clone();
        }
    }
    Some(Inbound {
        id,
        from,
        at: m.get("timestamp").and_then(seconds),
        text,
        media,
        payload,
        reply_to: context.and_then(|c| c.get("id")).and_then(string),
        forwarded: context.is_some_and(|c| {
            c.get("forwarded").and_then(Value::as_bool).unwrap_or(false)
                || c.get("frequently_forwarded")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
        }),
        reaction,
        kind,
    })
}

fn array(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

/// A non-empty string (numbers as the Graph API sometimes sends ids), at most 4096 bytes.
fn string(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let s = s.trim();
    (!s.is_empty() && s.len() <= 4096).then(|| s.to_owned())
}

/// A Unix time in seconds (string or number) as milliseconds.
fn seconds(v: &Value) -> Option<i64> {
    let secs: i64 = match v {
        Value::String(s) => s.trim().parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    secs.checked_mul(1000).filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS_MESSAGE: &str = r#"{"payload_type":"whatsapp_webhook","metaData":{"entry":[{"changes":[{"field":"messages","value":{
        "contacts":[{"profile":{"name":"Ravi Kumar"},"wa_id":"919937320320"}],
        "messages":[{"from":"919937320320","id":"wamid.A","timestamp":"1754400000","text":{"body":"Hi"},"type":"text"}],
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"918329446654","phone_number_id":"629305560276479"}}}],
        "id":"30164062719905277"}],"object":"whatsapp_business_account"}}"#;

    #[test]
    fn reads_the_wrapped_envelope() {
        let changes = parse(CORPUS_MESSAGE.as_bytes()).unwrap();
        assert_eq!(changes.len(), 1);
        let c = &changes[0];
        assert_eq!(c.phone_number_id, "629305560276479");
        assert_eq!(
            c.contacts,
            vec![("919937320320".into(), Some("Ravi Kumar".into()))]
        );
        let m = &c.messages[0];
        assert_eq!(
            (m.id.as_str(), m.kind.as_str(), m.text.as_deref()),
            ("wamid.A", "text", Some("Hi"))
        );
        assert_eq!(m.at, Some(1_754_400_000_000));
    }

    #[test]
    fn refuses_what_is_not_a_webhook() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"{"object":"page","entry":[]}"#).is_err());
        assert!(parse(br#"{"object":"whatsapp_business_account"}"#).is_err());
        let no_metadata = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{}}]}]}"#;
        assert!(parse(no_metadata).is_err());
        // Other fields are skipped, not refused.
        let other = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update","value":{}}]}]}"#;
        assert_eq!(parse(other).unwrap().len(), 0);
    }

    #[test]
    fn reads_media_reactions_context_and_statuses() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
            "metadata":{"phone_number_id":"123"},
            "messages":[
              {"from":"1","id":"w1","timestamp":1700000000,"type":"audio","audio":{"id":"m1","mime_type":"audio/ogg; codecs=opus","voice":true}},
              {"from":"1","id":"w2","type":"reaction","reaction":{"message_id":"w0","emoji":""}},
              {"from":"1","id":"w3","type":"text","text":{"body":"re"},"context":{"id":"w0","forwarded":true}},
              {"from":"1","id":"w4","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"b","title":"Yes"}}},
              {"from":"1","id":"w5","type":"something_new","errors":[{"code":131051}]},
              {"id":"no-from"}
            ],
            "statuses":[{"id":"w9","status":"READ","timestamp":"1700000001","recipient_id":"1"},{"status":"sent"}]}}]}]}"#;
        let c = &parse(body).unwrap()[0];
        assert_eq!(c.messages.len(), 5);
        let voice = c.messages[0].media.as_ref().unwrap();
        assert!(voice.voice);
        assert_eq!(voice.id, "m1");
        assert_eq!(c.messages[1].reaction, Some(("w0".into(), String::new())));
        assert_eq!(
            (c.messages[2].reply_to.as_deref(), c.messages[2].forwarded),
            (Some("w0"), true)
        );
        assert_eq!(c.messages[3].text.as_deref(), Some("Yes"));
        assert_eq!(c.messages[4].payload["errors"][0]["code"], 131051);
        assert_eq!(c.statuses.len(), 1);
        assert_eq!(
            (c.statuses[0].status.as_str(), c.statuses[0].at),
            ("read", Some(1_700_000_001_000))
        );
    }

    /// Arbitrary JSON never panics the parser (a cheap property test: random trees, and random
    /// mutations of a real body).
    #[test]
    fn arbitrary_json_never_panics() {
        use rand::{Rng, SeedableRng};
        fn random_value(rng: &mut rand::rngs::StdRng, depth: u32) -> Value {
            let keys = [
                "object",
                "entry",
                "changes",
                "field",
                "value",
                "metadata",
                "phone_number_id",
                "messages",
                "statuses",
                "contacts",
                "id",
                "from",
                "type",
                "text",
                "body",
                "image",
                "reaction",
                "context",
                "timestamp",
                "metaData",
                "wa_id",
                "profile",
                "status",
                "emoji",
            ];
            match if depth > 5 {
                rng.gen_range(0..4)
            } else {
                rng.gen_range(0..7)
            } {
                0 => Value::Null,
                1 => Value::Bool(rng.gen()),
                2 => serde_json::json!(rng.gen::<i64>()),
                3 => Value::String(
                    [
                        "whatsapp_business_account",
                        "messages",
                        "text",
                        "",
                        "1",
                        "x",
                    ][rng.gen_range(0..6)]
                    .into(),
                ),
                4 | 5 => {
                    let mut m = Map::new();
                    for _ in 0..rng.gen_range(0..6) {
                        m.insert(
                            keys[rng.gen_range(0..keys.len())].into(),
                            random_value(rng, depth + 1),
                        );
                    }
                    Value::Object(m)
                }
                _ => Value::Array(
                    (0..rng.gen_range(0..4))
                        .map(|_| random_value(rng, depth + 1))
                        .collect(),
                ),
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let v = random_value(&mut rng, 0);
            let _ = parse(v.to_string().as_bytes());
        }
        let real = CORPUS_MESSAGE.as_bytes();
        for _ in 0..20_000 {
            let mut bytes = real.to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
            let _ = parse(&bytes);
        }
    }
}
