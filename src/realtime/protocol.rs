//! The Socket.IO v5 packet format over Engine.IO messages (JSON only):
//! `<type>[<namespace>,][<ack id>][<json>]` with types 0 CONNECT, 1 DISCONNECT, 2 EVENT,
//! 3 ACK, 4 CONNECT_ERROR (5/6 are binary variants, which this server does not accept).
//!
//! Written here rather than taken from socketioxide because the contract needs a
//! `connect_error` that carries `data` (`{"message", "data": {"code"}}`), which socketioxide's
//! packet type cannot express. The builders write whole Engine.IO message packets (their `4`
//! first), so a packet is serialized once, into the buffer every recipient's transport sends.

use serde_json::Value;

use crate::engineio::Str;

/// A packet from a client.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Connect {
        namespace: String,
        auth: Option<Value>,
    },
    Disconnect {
        namespace: String,
    },
    Event {
        namespace: String,
        ack: Option<u64>,
        name: String,
        data: Value,
    },
    /// Binary packets, acks from clients and anything unparsable.
    Unsupported,
}

/// Reads a packet. Never panics: every slice is taken at a position found in the text itself
/// (the type is the first *character*, which may be several bytes long in hostile input).
pub fn decode(msg: &str) -> Incoming {
    let mut chars = msg.chars();
    let Some(kind) = chars.next() else {
        return Incoming::Unsupported;
    };
    let rest = chars.as_str();
    let (namespace, rest) = if rest.starts_with('/') {
        match rest.find(',') {
            Some(i) => (rest[..i].to_owned(), &rest[i + 1..]),
            None => (rest.to_owned(), ""),
        }
    } else {
        ("/".to_owned(), rest)
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (ack, body) = if digits > 0 && digits <= 15 {
        (rest[..digits].parse().ok(), &rest[digits..])
    } else if digits > 15 {
        return Incoming::Unsupported;
    } else {
        (None, rest)
    };
    match kind {
        '0' => {
            let auth = if body.is_empty() {
                None
            } else {
                serde_json::from_str(body).ok()
            };
            Incoming::Connect { namespace, auth }
        }
        '1' => Incoming::Disconnect { namespace },
        '2' => match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(mut items)) if !items.is_empty() => {
                let Value::String(name) = items.remove(0) else {
                    return Incoming::Unsupported;
                };
                let data = if items.is_empty() {
                    Value::Null
                } else {
                    items.remove(0)
                };
                Incoming::Event {
                    namespace,
                    ack,
                    name,
                    data,
                }
            }
            _ => Incoming::Unsupported,
        },
        _ => Incoming::Unsupported,
    }
}

/// `40{"sid": …}`: the namespace accepted the connection.
pub fn connect_ok(sid: &str) -> Str {
    format!("40{}", serde_json::json!({ "sid": sid })).into()
}

/// `44{"message", "data"}`: the connection is refused; clients see `err.message` and `err.data`.
pub fn connect_error(namespace: &str, message: &str, data: Value) -> Str {
    let body = serde_json::json!({ "message": message, "data": data });
    if namespace == "/" {
        format!("44{body}").into()
    } else {
        format!("44{namespace},{body}").into()
    }
}

/// `42["name", data]`.
pub fn event(name: &str, data: &impl serde::Serialize) -> Str {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"42");
    if serde_json::to_writer(&mut out, &(name, data)).is_err() {
        out.truncate(2);
        out.extend_from_slice(b"[]");
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(out)
        .unwrap_or_else(|_| "42[]".into())
        .into()
}

/// `43<id>[data]`.
pub fn ack(id: u64, data: &impl serde::Serialize) -> Str {
    ack_with(id, 256, |out| serde_json::to_writer(out, data))
}

/// `43<id>[data]`, `write` writing the data straight into the packet's buffer (of about
/// `size` bytes): a sync page is hundreds of KB, not to be copied again to prefix it. `write`
/// must write UTF-8 only.
pub fn ack_with(
    id: u64,
    size: usize,
    write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> Str {
    let mut out = Vec::with_capacity(size + 24);
    out.extend_from_slice(format!("43{id}[").as_bytes());
    let prefix = out.len();
    if write(&mut out).is_err() {
        out.truncate(prefix);
    }
    out.push(b']');
    String::from_utf8(out)
        .unwrap_or_else(|_| format!("43{id}[]"))
        .into()
}

/// `41`: the server ends the connection (clients do not reconnect on their own).
pub fn disconnect() -> Str {
    Str::message("1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connect_packets_carry_auth() {
        assert_eq!(
            decode(r#"0{"token":"t"}"#),
            Incoming::Connect {
                namespace: "/".into(),
                auth: Some(json!({"token": "t"}))
            }
        );
        assert_eq!(
            decode("0"),
            Incoming::Connect {
                namespace: "/".into(),
                auth: None
            }
        );
        assert_eq!(
            decode(r#"0/admin,{"a":1}"#),
            Incoming::Connect {
                namespace: "/admin".into(),
                auth: Some(json!({"a": 1}))
            }
        );
    }

    #[test]
    fn events_with_and_without_ack_ids() {
        assert_eq!(
            decode(r#"212["message:send",{"x":1}]"#),
            Incoming::Event {
                namespace: "/".into(),
                ack: Some(12),
                name: "message:send".into(),
                data: json!({"x": 1})
            }
        );
        assert_eq!(
            decode(r#"2["typing:start",{"conversationId":"c"}]"#),
            Incoming::Event {
                namespace: "/".into(),
                ack: None,
                name: "typing:start".into(),
                data: json!({"conversationId": "c"})
            }
        );
        assert_eq!(
            decode(r#"2["ping"]"#),
            Incoming::Event {
                namespace: "/".into(),
                ack: None,
                name: "ping".into(),
                data: Value::Null
            }
        );
    }

    #[test]
    fn garbage_and_binary_are_unsupported() {
        for bad in [
            "",
            "2",
            "2{}",
            "2[1]",
            "5-[\"x\"]",
            "9",
            "2123456789012345678[\"x\"]",
            "2[\"x\"",
            "é",
            "é2[\"x\"]",
            "\u{1F600}",
            "2é",
        ] {
            assert_eq!(decode(bad), Incoming::Unsupported, "{bad:?}");
        }
    }

    /// Hostile packets never panic the decoder: random text, and valid packets cut, spliced and
    /// sprinkled with multi-byte characters. `PALAVER_FUZZ_CASES` sets the count (see README).
    #[test]
    fn hostile_packets_never_panic() {
        let seeds = [
            r#"0{"token":"t"}"#,
            r#"0/admin,{"a":1}"#,
            r#"212["message:send",{"conversationId":"c","text":"hi"}]"#,
            r#"2/ns,7["typing:start",{"conversationId":"c"}]"#,
            "1",
            "3",
            "451-[\"x\",{\"_placeholder\":true,\"num\":0}]",
        ];
        crate::fuzzing::strings(&seeds, |s| {
            let _ = decode(s);
        });
    }

    #[test]
    fn encodings_follow_the_protocol() {
        assert_eq!(
            event("message:new", &json!({"a": 1})).as_str(),
            r#"42["message:new",{"a":1}]"#
        );
        assert_eq!(ack(7, &json!({"ok": true})).as_str(), r#"437[{"ok":true}]"#);
        assert_eq!(
            connect_error("/", "unauthorized", json!({"code": "unauthorized"})).as_str(),
            r#"44{"data":{"code":"unauthorized"},"message":"unauthorized"}"#
        );
        assert_eq!(connect_ok("abc").as_str(), r#"40{"sid":"abc"}"#);
        assert_eq!(disconnect().as_str(), "41");
    }
}
