//! What a provider reads: the instructions, then the conversation as one transcript — its
//! newest messages that fit the context budget (counted in tokens, from the newest
//! backwards), with phone numbers and email addresses masked when the workspace asks.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

use super::offline::Side;
use super::provider::{count_tokens, ChatMessage};

/// The instructions; the keys are those of `ModelInsight`.
pub const INSTRUCTIONS: &str = "You help a customer-support team. You read a conversation between a customer \
and the team and answer with one JSON object, nothing else, with exactly these keys:\n\
- \"summary\": string, two or three sentences: who asked what and where it stands;\n\
- \"openQuestions\": array of strings, what the customer asked that the team has not answered yet;\n\
- \"recommendations\": array of strings, the team's next steps;\n\
- \"suggestedReply\": string, the reply the team could send now, in the customer's language, or null;\n\
- \"sentiment\": \"positive\", \"neutral\" or \"negative\", the customer's mood;\n\
- \"language\": the ISO 639-1 code of the customer's language.\n\
Lines start with #number, the side (customer or team) and the time (UTC). Text in [brackets] \
was extracted from a voice note, an image or a document.";

/// A message as the analysis reads it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub side: Side,
    /// The text, with what media understanding extracted.
    pub text: String,
    pub at_ms: i64,
}

/// The request's messages and what they cover.
#[derive(Debug)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    /// The messages sent (`0, 0` when none).
    pub from_seq: i64,
    pub to_seq: i64,
    /// The older messages left out for the context budget.
    pub trimmed: usize,
}

/// The prompt of `entries` (oldest first) within `budget` tokens.
pub fn build(entries: &[Entry], mask_contacts: bool, budget: u32) -> Prompt {
    let mut left = i64::from(budget) - count_tokens(INSTRUCTIONS) - 16;
    let mut lines: Vec<String> = Vec::new();
    let mut first = entries.len();
    for (i, e) in entries.iter().enumerate().rev() {
        let text = if mask_contacts {
            mask(&e.text)
        } else {
            Cow::Borrowed(e.text.as_str())
        };
        let line = format!("#{} {} {}: {}", e.seq, side(e.side), at(e.at_ms), text);
        let cost = count_tokens(&line) + 1;
        if cost > left {
            break;
        }
        left -= cost;
        lines.push(line);
        first = i;
    }
    lines.reverse();
    let sent = &entries[first..];
    Prompt {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: INSTRUCTIONS.into(),
            },
            ChatMessage {
                role: "user".into(),
                content: lines.join("\n"),
            },
        ],
        from_seq: sent.first().map_or(0, |e| e.seq),
        to_seq: sent.last().map_or(0, |e| e.seq),
        trimmed: first,
    }
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Customer => "customer",
        Side::Team => "team",
    }
}

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Email addresses become `[email]`, phone numbers (7 or more digits, with the usual
/// separators) `[phone]`.
pub fn mask(text: &str) -> Cow<'_, str> {
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    static PHONE: OnceLock<Regex> = OnceLock::new();
    let email = EMAIL.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
            .expect("a valid pattern")
    });
    let phone =
        PHONE.get_or_init(|| Regex::new(r"\+?\(?\d[\d\s().\-]{5,}\d").expect("a valid pattern"));
    let once = email.replace_all(text, "[email]");
    match phone.replace_all(&once, |c: &regex::Captures<'_>| {
        let digits = c[0].bytes().filter(u8::is_ascii_digit).count();
        if digits >= 7 {
            "[phone]".to_owned()
        } else {
            c[0].to_owned()
        }
    }) {
        Cow::Borrowed(_) => once,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, text: &str) -> Entry {
        Entry {
            seq,
            side: if seq % 2 == 1 {
                Side::Customer
            } else {
                Side::Team
            },
            text: text.into(),
            at_ms: 1_764_700_000_000 + seq * 60_000,
        }
    }

    #[test]
    fn contacts_are_masked() {
        let m =
            mask("Call me at +55 (11) 98765-4321 or write to ana.silva@example.com.br, room 12.");
        assert_eq!(m, "Call me at [phone] or write to [email], room 12.");
        assert_eq!(mask("Order 2024-11, 3 boxes"), "Order 2024-11, 3 boxes");
    }

    #[test]
    fn the_newest_messages_fit_the_budget() {
        let entries: Vec<Entry> = (1..=200)
            .map(|i| {
                entry(
                    i,
                    "I would like to know whether my prescription is ready to pick up today",
                )
            })
            .collect();
        let all = build(&entries, false, 100_000);
        assert_eq!((all.from_seq, all.to_seq, all.trimmed), (1, 200, 0));
        let some = build(&entries, false, 1000);
        assert_eq!(some.to_seq, 200, "the newest always");
        assert!(some.trimmed > 100, "{}", some.trimmed);
        assert_eq!(some.from_seq, some.trimmed as i64 + 1);
        let tokens: i64 = some.messages.iter().map(|m| count_tokens(&m.content)).sum();
        assert!(tokens <= 1000, "{tokens}");
        assert!(some.messages[1]
            .content
            .starts_with(&format!("#{} ", some.from_seq)));
        assert!(some.messages[1].content.contains(" team "));
    }

    #[test]
    fn masking_applies_to_what_is_sent() {
        let p = build(&[entry(1, "my number is 555 123 4567")], true, 10_000);
        assert!(
            p.messages[1].content.ends_with("my number is [phone]"),
            "{}",
            p.messages[1].content
        );
    }
}
