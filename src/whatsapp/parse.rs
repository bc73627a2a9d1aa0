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
    for list in ["contacts", "messages", "statuses"] {
        if value.get(list).is_some_and(|v| !v.is_array()) {
            return Err(Malformed(format!("`{list}` is present but not an array")));
        }
    }
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
    let text_field = match kind.as_str() {
        "text" | "system" => body.get("body"),
        "image" | "video" | "document" | "sticker" | "audio" => body.get("caption"),
        "button" | "order" => body.get("text"),
        "interactive" => body
            .get("button_reply")
            .or_else(|| body.get("list_reply"))
            .and_then(|r| r.get("title")),
        _ => None,
    };
    // The text is kept whole whatever its length; what WhatsApp would not send is flagged.
    let text = text_field.and_then(text);
    let mut flags: Vec<&'static str> = Vec::new();
    if text
        .as_deref()
        .is_some_and(|t| t.chars().count() > TEXT_LIMIT)
    {
        flags.push(FLAG_TEXT_OVER_LIMIT);
    }
    if text.is_none() && text_field.is_some_and(|v| !v.is_null()) {
        flags.push(FLAG_TEXT_NOT_A_STRING);
    }
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
    if !flags.is_empty() {
        payload["flags"] = serde_json::json!(flags);
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

/// WhatsApp's limit on a text, in characters.
pub const TEXT_LIMIT: usize = 4096;
/// In a message's `payload.flags`: its text is longer than WhatsApp allows (kept whole).
pub const FLAG_TEXT_OVER_LIMIT: &str = "text_over_limit";
/// In a message's `payload.flags`: its text field was not a string (kept in the payload).
pub const FLAG_TEXT_NOT_A_STRING: &str = "text_not_a_string";

/// A message's text as received: any length, not trimmed; `None` when blank or not text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An identifier: a non-empty string (numbers as the Graph API sometimes sends ids), at most
/// 4096 bytes.
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
    fn long_and_odd_texts_are_kept_and_flagged() {
        let body = |text: Value| {
            serde_json::json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",
                "value": {"metadata": {"phone_number_id": "1"},
                    "messages": [{"from": "2", "id": "w", "type": "text", "text": {"body": text}}]}}]}]})
            .to_string()
        };
        // 4096 characters of two bytes each: within WhatsApp's limit, kept, not flagged.
        let at_limit = "é".repeat(TEXT_LIMIT);
        let m = &parse(body(at_limit.clone().into()).as_bytes()).unwrap()[0].messages[0];
        assert_eq!(m.text.as_deref(), Some(at_limit.as_str()));
        assert!(m.payload.get("flags").is_none());
        // Over the limit: kept whole, flagged.
        let over = "a".repeat(TEXT_LIMIT + 1);
        let m = &parse(body(over.clone().into()).as_bytes()).unwrap()[0].messages[0];
        assert_eq!(m.text.as_deref(), Some(over.as_str()));
        assert_eq!(
            m.payload["flags"],
            serde_json::json!([FLAG_TEXT_OVER_LIMIT])
        );
        // Not a string: the field is kept in the payload, flagged.
        let m = &parse(body(serde_json::json!({"rich": "x"})).as_bytes()).unwrap()[0].messages[0];
        assert_eq!(m.text, None);
        assert_eq!(m.payload["body"]["rich"], "x");
        assert_eq!(
            m.payload["flags"],
            serde_json::json!([FLAG_TEXT_NOT_A_STRING])
        );
    }

    #[test]
    fn lists_that_are_not_arrays_are_malformed() {
        for list in ["messages", "statuses", "contacts"] {
            for bad in [
                serde_json::json!({}),
                serde_json::json!("x"),
                Value::Null,
                serde_json::json!(1),
            ] {
                let mut value = serde_json::json!({"metadata": {"phone_number_id": "1"}});
                value[list] = bad;
                let body = serde_json::json!({"object": "whatsapp_business_account",
                    "entry": [{"changes": [{"field": "messages", "value": value}]}]});
                assert!(parse(body.to_string().as_bytes()).is_err(), "{body}");
            }
        }
        for bad in [
            r#""entry":{}"#,
            r#""entry":[{"changes":{}}]"#,
            r#""entry":[{"changes":null}]"#,
        ] {
            let body = format!(r#"{{"object":"whatsapp_business_account",{bad}}}"#);
            assert!(parse(body.as_bytes()).is_err(), "{body}");
        }
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

    const MEDIA_AND_STATUSES: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
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

    #[test]
    fn reads_media_reactions_context_and_statuses() {
        let c = &parse(MEDIA_AND_STATUSES.as_bytes()).unwrap()[0];
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

    /// Arbitrary JSON never panics the parser: random trees, mutations of real bodies, and
    /// their bytes cut and sprinkled with multi-byte characters (`crate::fuzzing`).
    #[test]
    fn arbitrary_json_never_panics() {
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
            "whatsapp_business_account",
        ];
        let seeds: Vec<Value> = [CORPUS_MESSAGE, MEDIA_AND_STATUSES]
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        crate::fuzzing::json(&keys, &seeds, |v| {
            let _ = parse(v.to_string().as_bytes());
        });
        crate::fuzzing::strings(&[CORPUS_MESSAGE, MEDIA_AND_STATUSES], |s| {
            let _ = parse(s.as_bytes());
        });
    }
}
