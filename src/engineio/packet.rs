//! Engine.IO v4 packets from clients: a type digit and its data, as a WebSocket text frame or
//! one of the `\x1e`-separated packets of a long-polling POST (binary data there is `b` and
//! base64). Never panics: every slice is taken at a position found in the input.

use base64::Engine as _;

/// What a client may send.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `1`: the client ends the session.
    Close,
    /// `2` (with `probe` while upgrading).
    Ping(&'a str),
    /// `3` (with `probe` while upgrading).
    Pong(&'a str),
    /// `4` and its text.
    Message(&'a str),
    /// `5`: the client switches to the WebSocket.
    Upgrade,
    /// `6`.
    Noop,
    /// Binary data (a WebSocket binary frame, or `b` + base64 in a polling payload).
    Binary(Vec<u8>),
}

/// The separator of packets in a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// Reads one packet's text.
pub fn decode(text: &str) -> Option<Packet<'_>> {
    let mut chars = text.chars();
    let kind = chars.next()?;
    let data = chars.as_str();
    Some(match kind {
        '1' if data.is_empty() => Packet::Close,
        '2' => Packet::Ping(data),
        '3' => Packet::Pong(data),
        '4' => Packet::Message(data),
        '5' if data.is_empty() => Packet::Upgrade,
        '6' if data.is_empty() => Packet::Noop,
        'b' => Packet::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()?,
        ),
        _ => return None,
    })
}

/// Reads a long-polling payload; `None` if any packet in it is not Engine.IO.
pub fn decode_payload(body: &str) -> Option<Vec<Packet<'_>>> {
    body.split(SEPARATOR).map(decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_and_payloads() {
        assert_eq!(decode("1"), Some(Packet::Close));
        assert_eq!(decode("2probe"), Some(Packet::Ping("probe")));
        assert_eq!(decode("3"), Some(Packet::Pong("")));
        assert_eq!(decode("42[\"a\",{}]"), Some(Packet::Message("2[\"a\",{}]")));
        assert_eq!(decode("4"), Some(Packet::Message("")));
        assert_eq!(decode("5"), Some(Packet::Upgrade));
        assert_eq!(decode("6"), Some(Packet::Noop));
        assert_eq!(decode("bAQID"), Some(Packet::Binary(vec![1, 2, 3])));
        for bad in ["", "0{}", "7", "b!!", "1x", "é", "\u{1e}"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(
            decode_payload("3\u{1e}4hello\u{1e}40"),
            Some(vec![
                Packet::Pong(""),
                Packet::Message("hello"),
                Packet::Message("0")
            ])
        );
        assert_eq!(decode_payload("4a\u{1e}"), None, "an empty packet");
        assert_eq!(decode_payload("4a\u{1e}9"), None);
    }

    /// Hostile payloads (cut, spliced, multi-byte characters, control characters) are read or
    /// refused, never a panic.
    #[test]
    fn hostile_payloads_never_panic() {
        let seeds = [
            "40{\"token\":\"t\"}",
            "42[\"message:send\",{\"conversationId\":\"c\"}]\u{1e}3\u{1e}2probe",
            "bAQIDBA==\u{1e}5\u{1e}6\u{1e}1",
        ];
        let mut read = 0;
        crate::fuzzing::strings(&seeds, |input| {
            if decode_payload(input).is_some() {
                read += 1;
            }
        });
        assert!(read > 0, "some mutations stay valid");
    }
}
