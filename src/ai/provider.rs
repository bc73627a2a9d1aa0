//! Calling an OpenAI-compatible chat-completions API (OpenAI, Azure OpenAI, Ollama, vLLM, the
//! llama.cpp server…): one analysis is one `POST {baseUrl}/chat/completions` asking for a JSON
//! object, through the SSRF-safe outbound client. 429 and 5xx answers, timeouts and dropped
//! connections are tried again (at most three tries, after the `Retry-After` the provider asks
//! for); a provider that keeps failing is left alone for a while (the circuit breaker); an
//! answer that is not the object asked for is an error, never half an insight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::outbound::Outbound;

/// Tries of one call, the first included.
pub const TRIES: u32 = 3;
/// The longest `Retry-After` honoured; a provider asking for more fails the call.
const LONGEST_WAIT: Duration = Duration::from_secs(30);
/// Calls that failed in a row before the breaker opens, and how long it stays open.
const BREAK_AFTER: u32 = 5;
const BREAK_FOR: Duration = Duration::from_secs(60);
/// The most of an answer read.
const ANSWER_CAP: usize = 1 << 20;

/// Where a call goes and with which key; the key is never printed.
#[derive(Clone)]
pub struct Endpoint {
    /// Without a trailing slash.
    pub base_url: String,
    pub model: String,
    pub key: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A chat message as the API takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What a model answers, checked: every key present with its type, within bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInsight {
    pub summary: String,
    pub open_questions: Vec<String>,
    pub recommendations: Vec<String>,
    pub suggested_reply: Option<String>,
    pub sentiment: String,
    pub language: String,
}

/// A call that ended with an insight.
#[derive(Debug)]
pub struct Answer {
    pub insight: ModelInsight,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The provider reported no usage: the tokens were counted here.
    pub counted: bool,
    pub tries: u32,
}

/// A call that ended without one.
#[derive(Debug)]
pub struct Failure {
    pub error: String,
    pub tries: u32,
    /// The key was refused (401/403): another key may do.
    pub unauthorized: bool,
}

/// Open circuits per provider (base URL).
#[derive(Default)]
pub struct Breakers(Mutex<HashMap<String, Breaker>>);

#[derive(Default, Clone, Copy)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breakers {
    /// `Err(seconds)` while the provider's circuit is open. Once it has been open long enough,
    /// calls go through again (one success closes it; a failure opens it again).
    fn check(&self, url: &str) -> Result<(), u64> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(url).and_then(|b| b.open_until) {
            Some(until) if until > Instant::now() => {
                Err(until.duration_since(Instant::now()).as_secs() + 1)
            }
            _ => Ok(()),
        }
    }

    fn record(&self, url: &str, ok: bool) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            map.remove(url);
            return;
        }
        let b = map.entry(url.to_owned()).or_default();
        b.failures += 1;
        if b.failures >= BREAK_AFTER {
            b.open_until = Some(Instant::now() + BREAK_FOR);
            tracing::warn!(
                provider = url,
                "AI provider failing: calls paused for a minute"
            );
        }
    }
}

/// The request's body.
pub fn request_body(model: &str, messages: &[ChatMessage], max_tokens: u32) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": messages,
        "response_format": {"type": "json_object"},
        "max_tokens": max_tokens,
        "temperature": 0.2,
    })
}

/// Calls `POST {base}/chat/completions` until it answers or the tries are used up.
pub async fn complete(
    http: &Outbound,
    breakers: &Breakers,
    endpoint: &Endpoint,
    messages: &[ChatMessage],
    max_tokens: u32,
    timeout: Duration,
) -> Result<Answer, Failure> {
    if let Err(secs) = breakers.check(&endpoint.base_url) {
        return Err(Failure {
            error: format!("the provider failed repeatedly; calls resume in {secs} s"),
            tries: 0,
            unauthorized: false,
        });
    }
    let body = request_body(&endpoint.model, messages, max_tokens);
    let mut tries = 0;
    loop {
        tries += 1;
        match once(http, endpoint, &body, timeout).await {
            Ok(answer) => {
                breakers.record(&endpoint.base_url, true);
                return parse(&answer, messages)
                    .map(|mut a| {
                        a.tries = tries;
                        a
                    })
                    .map_err(|error| Failure {
                        error,
                        tries,
                        unauthorized: false,
                    });
            }
            Err(Try::Again { error, after }) if tries < TRIES => {
                let wait = after.unwrap_or(Duration::from_millis(500 * u64::from(tries)));
                if wait > LONGEST_WAIT {
                    breakers.record(&endpoint.base_url, false);
                    return Err(Failure {
                        error: format!("{error} (and asked to wait {} s)", wait.as_secs()),
                        tries,
                        unauthorized: false,
                    });
                }
                tracing::info!(provider = %endpoint.base_url, error = %error, try_ = tries, "AI provider call tried again");
                tokio::time::sleep(wait).await;
            }
            Err(Try::Again { error, .. }) => {
                breakers.record(&endpoint.base_url, false);
                return Err(Failure {
                    error,
                    tries,
                    unauthorized: false,
                });
            }
            Err(Try::Stop {
                error,
                unauthorized,
            }) => {
                return Err(Failure {
                    error,
                    tries,
                    unauthorized,
                })
            }
        }
    }
}

enum Try {
    Again {
        error: String,
        after: Option<Duration>,
    },
    Stop {
        error: String,
        unauthorized: bool,
    },
}

async fn once(
    http: &Outbound,
    endpoint: &Endpoint,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, Try> {
    let url = format!("{}/chat/completions", endpoint.base_url);
    let mut req = http
        .post(&url)
        .map_err(|e| Try::Stop {
            error: e.to_string(),
            unauthorized: false,
        })?
        .timeout(timeout)
        .json(body);
    if let Some(key) = &endpoint.key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.map_err(|e| {
        if crate::outbound::is_refusal(&e) {
            Try::Stop {
                error: format!("the provider's address is not allowed: {e}"),
                unauthorized: false,
            }
        } else if e.is_timeout() {
            Try::Again {
                error: format!("the provider did not answer within {} s", timeout.as_secs()),
                after: None,
            }
        } else {
            Try::Again {
                error: format!("the provider could not be reached: {e}"),
                after: None,
            }
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        let bytes = crate::outbound::read_capped(resp, ANSWER_CAP)
            .await
            .map_err(|e| Try::Again {
                error: format!("reading the provider's answer: {e}"),
                after: None,
            })?;
        return serde_json::from_slice(&bytes).map_err(|e| Try::Stop {
            error: format!("the provider's answer is not JSON: {e}"),
            unauthorized: false,
        });
    }
    let after = crate::jobs::retry_after(resp.headers());
    let excerpt = crate::outbound::text_excerpt(resp).await;
    let error = format!("the provider answered {status}: {excerpt}");
    if status.as_u16() == 429 || status.is_server_error() {
        Err(Try::Again { error, after })
    } else {
        Err(Try::Stop {
            error,
            unauthorized: matches!(status.as_u16(), 401 | 403),
        })
    }
}

/// Reads a chat-completions answer: the first choice's content must be the insight object.
fn parse(answer: &serde_json::Value, sent: &[ChatMessage]) -> Result<Answer, String> {
    let content = answer
        .pointer("/choices/0/message/content")
        .and_then(|c| c.as_str())
        .ok_or("the provider's answer has no choices[0].message.content")?;
    let insight = insight_of(content)?;
    let usage = |k: &str| {
        answer
            .pointer(&format!("/usage/{k}"))
            .and_then(|v| v.as_i64())
    };
    let (prompt_tokens, completion_tokens, counted) =
        match (usage("prompt_tokens"), usage("completion_tokens")) {
            (Some(p), Some(c)) if p >= 0 && c >= 0 => (p, c, false),
            _ => (prompt_tokens(sent), count_tokens(content), true),
        };
    Ok(Answer {
        insight,
        prompt_tokens,
        completion_tokens,
        counted,
        tries: 0,
    })
}

/// Checks a model's content against the insight's schema. A JSON object in a Markdown code
/// fence (some local models add one) is read as the object.
pub fn insight_of(content: &str) -> Result<ModelInsight, String> {
    let trimmed = content.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.trim_end().strip_suffix("```"))
        .unwrap_or(trimmed);
    let mut i: ModelInsight = serde_json::from_str(unfenced)
        .map_err(|e| format!("the model's answer is not the insight object: {e}"))?;
    let bad = |what: &str| {
        Err(format!(
            "the model's answer is not the insight object: {what}"
        ))
    };
    if i.summary.trim().is_empty() || i.summary.chars().count() > 4000 {
        return bad("summary must be 1 to 4000 characters");
    }
    for (name, list) in [
        ("openQuestions", &i.open_questions),
        ("recommendations", &i.recommendations),
    ] {
        if list.len() > 20 || list.iter().any(|s| s.chars().count() > 1000) {
            return bad(&format!("{name}: at most 20 items of 1000 characters"));
        }
    }
    if i.suggested_reply
        .as_ref()
        .is_some_and(|r| r.chars().count() > 4096)
    {
        return bad("suggestedReply: at most 4096 characters");
    }
    i.suggested_reply = i.suggested_reply.filter(|r| !r.trim().is_empty());
    i.sentiment = i.sentiment.trim().to_ascii_lowercase();
    if !matches!(i.sentiment.as_str(), "positive" | "neutral" | "negative") {
        return bad("sentiment must be positive, neutral or negative");
    }
    i.language = language_code(&i.language).ok_or_else(|| {
        "the model's answer is not the insight object: language must be a language code".to_owned()
    })?;
    Ok(i)
}

/// `en`, `pt-BR` → `pt`, `und`: a lowercase ISO 639 code.
fn language_code(raw: &str) -> Option<String> {
    let primary = raw.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase()))
        .then_some(primary)
}

/// Tokens of a text in `o200k_base` (the encoding of OpenAI's current models; other models'
/// tokenizers differ by a few percent, which is what a budget needs).
pub fn count_tokens(text: &str) -> i64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as i64
}

/// Tokens of a chat request: each message's content, plus the few tokens the chat format adds
/// per message and per reply.
pub fn prompt_tokens(messages: &[ChatMessage]) -> i64 {
    messages
        .iter()
        .map(|m| count_tokens(&m.content) + 4)
        .sum::<i64>()
        + 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> serde_json::Value {
        serde_json::json!({"summary": "Asked about a refill.", "openQuestions": ["When?"],
            "recommendations": ["Answer"], "suggestedReply": "Tomorrow.", "sentiment": "Neutral",
            "language": "pt-BR"})
    }

    #[test]
    fn a_checked_insight_and_its_normal_form() {
        let i = insight_of(&good().to_string()).unwrap();
        assert_eq!(i.sentiment, "neutral");
        assert_eq!(i.language, "pt");
        let fenced = format!("```json\n{}\n```", good());
        assert_eq!(insight_of(&fenced).unwrap(), i);
    }

    #[test]
    fn malformed_answers_are_errors() {
        for (key, value) in [
            ("summary", serde_json::json!("")),
            ("summary", serde_json::json!(3)),
            ("openQuestions", serde_json::json!("one")),
            ("sentiment", serde_json::json!("angry")),
            ("language", serde_json::json!("English!")),
        ] {
            let mut v = good();
            v[key] = value;
            assert!(insight_of(&v.to_string()).is_err(), "{key}");
        }
        let mut missing = good();
        missing.as_object_mut().unwrap().remove("recommendations");
        assert!(insight_of(&missing.to_string()).is_err());
        assert!(insight_of("Sure! Here is the summary").is_err());
    }

    #[test]
    fn usage_is_the_providers_or_counted() {
        let sent = vec![ChatMessage {
            role: "user".into(),
            content: "Hello there, general Kenobi".into(),
        }];
        let content = good().to_string();
        let with = serde_json::json!({"choices": [{"message": {"content": content}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7}});
        let a = parse(&with, &sent).unwrap();
        assert_eq!(
            (a.prompt_tokens, a.completion_tokens, a.counted),
            (11, 7, false)
        );
        let without = serde_json::json!({"choices": [{"message": {"content": content}}]});
        let a = parse(&without, &sent).unwrap();
        assert!(a.counted);
        assert_eq!(
            a.prompt_tokens,
            count_tokens("Hello there, general Kenobi") + 7
        );
        assert!(a.completion_tokens > 10, "{}", a.completion_tokens);
        assert_eq!(count_tokens("hello world"), 2);
    }

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_a_success_closes_it() {
        let b = Breakers::default();
        for _ in 0..BREAK_AFTER - 1 {
            b.record("u", false);
        }
        assert!(b.check("u").is_ok());
        b.record("u", false);
        assert!(b.check("u").is_err());
        assert!(b.check("other").is_ok());
        b.record("u", true);
        assert!(b.check("u").is_ok());
    }

    #[test]
    fn the_key_is_not_printed() {
        let e = Endpoint {
            base_url: "http://x".into(),
            model: "m".into(),
            key: Some("sk-secret".into()),
        };
        assert!(!format!("{e:?}").contains("sk-secret"));
    }
}
