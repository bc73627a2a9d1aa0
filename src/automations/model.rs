//! A rule as data: its trigger, conditions and actions, parsed and checked once here (for the
//! routes), stored as JSON, and read back by the runner as the same types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::inbox::model::{parse_stage, parse_tag};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    /// A customer's message (any, or matching `keyword`, `keywords` or `regex`).
    MessageReceived,
    /// The customer's first message in a conversation.
    FirstMessage,
    /// An inbox conversation opened: new, reopened by the customer, or woken from a snooze.
    ConversationOpened,
    /// A customer's message while the workspace is closed (its business hours and holidays).
    OutsideBusinessHours,
    /// No agent answered a customer's message within `minutes`.
    NoAgentReply,
    /// The customer has not answered an agent's message within `hours` (a follow-up).
    NoCustomerReply,
    /// A lead moved to another stage (to `stage`, when given).
    StageChanged,
    /// A tag (`tag`, when given) was added to a lead.
    TagAdded,
}

impl TriggerType {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::MessageReceived => "message_received",
            TriggerType::FirstMessage => "first_message",
            TriggerType::ConversationOpened => "conversation_opened",
            TriggerType::OutsideBusinessHours => "outside_business_hours",
            TriggerType::NoAgentReply => "no_agent_reply",
            TriggerType::NoCustomerReply => "no_customer_reply",
            TriggerType::StageChanged => "stage_changed",
            TriggerType::TagAdded => "tag_added",
        }
    }

    /// Fired by the scan of waiting conversations rather than by an event.
    pub fn is_timed(self) -> bool {
        matches!(
            self,
            TriggerType::NoAgentReply | TriggerType::NoCustomerReply
        )
    }
}

/// When a rule fires.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: TriggerType,
    /// `message_received`: a word or phrase the message contains (case-insensitive, whole words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// `message_received`: any of these words or phrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    /// `message_received`: a regular expression the message matches (case-insensitive; at most
    /// 500 characters; matching takes time linear in the message, whatever the expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `no_agent_reply`: minutes, 1 to 10,080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<i64>,
    /// `no_customer_reply`: hours, 1 to 720.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<i64>,
    /// `stage_changed`: only moves into this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// `tag_added`: only this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

const MAX_KEYWORDS: usize = 50;
const MAX_REGEX: usize = 500;
/// The compiled size of a rule's expression is capped: with the regex crate's linear-time
/// matching, this bounds the time one message can take.
const REGEX_SIZE_LIMIT: usize = 1 << 18;

/// A rule's regular expression, compiled as the runner uses it.
pub fn compile_regex(raw: &str) -> Result<regex::Regex, String> {
    if raw.is_empty() || raw.chars().count() > MAX_REGEX {
        return Err(format!("a regex is 1 to {MAX_REGEX} characters"));
    }
    regex::RegexBuilder::new(raw)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("is not a valid expression: {e}"))
}

fn parse_keyword(raw: &str) -> Result<String, String> {
    let k = raw.trim().to_lowercase();
    if k.is_empty() || k.chars().count() > 100 {
        return Err("a keyword is 1 to 100 characters".into());
    }
    Ok(k)
}

impl Trigger {
    /// Checks the trigger's fields against its type; the checked trigger (keywords lower-cased,
    /// stage and tag as stored) or (field, message).
    pub fn check(mut self) -> Result<Trigger, (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("trigger.{f}"), m.to_owned()));
        let ty = self.kind;
        let message = ty == TriggerType::MessageReceived;
        if !message && (self.keyword.is_some() || self.keywords.is_some() || self.regex.is_some()) {
            return bad(
                "type",
                "keyword, keywords and regex are for message_received",
            );
        }
        if let Some(k) = &self.keyword {
            self.keyword = Some(parse_keyword(k).map_err(|m| ("trigger.keyword".into(), m))?);
        }
        if let Some(ks) = &self.keywords {
            if ks.is_empty() || ks.len() > MAX_KEYWORDS {
                return bad("keywords", "1 to 50 keywords");
            }
            let parsed: Result<Vec<String>, String> = ks.iter().map(|k| parse_keyword(k)).collect();
            self.keywords = Some(parsed.map_err(|m| ("trigger.keywords".into(), m))?);
        }
        if let Some(r) = &self.regex {
            compile_regex(r).map_err(|m| ("trigger.regex".to_string(), m))?;
        }
        match (ty, self.minutes) {
            (TriggerType::NoAgentReply, Some(m)) if (1..=10_080).contains(&m) => {}
            (TriggerType::NoAgentReply, _) => return bad("minutes", "is required: 1 to 10080"),
            (_, Some(_)) => return bad("minutes", "is for no_agent_reply"),
            _ => {}
        }
        match (ty, self.hours) {
            (TriggerType::NoCustomerReply, Some(h)) if (1..=720).contains(&h) => {}
            (TriggerType::NoCustomerReply, _) => return bad("hours", "is required: 1 to 720"),
            (_, Some(_)) => return bad("hours", "is for no_customer_reply"),
            _ => {}
        }
        match (&self.stage, ty) {
            (Some(s), TriggerType::StageChanged) => {
                self.stage = Some(parse_stage(s).map_err(|m| ("trigger.stage".to_string(), m))?)
            }
            (Some(_), _) => return bad("stage", "is for stage_changed"),
            _ => {}
        }
        match (&self.tag, ty) {
            (Some(s), TriggerType::TagAdded) => {
                self.tag = Some(parse_tag(s).map_err(|m| ("trigger.tag".to_string(), m))?)
            }
            (Some(_), _) => return bad("tag", "is for tag_added"),
            _ => {}
        }
        Ok(self)
    }

    /// Whether a customer's message text matches the trigger's words or expression (no
    /// words and no expression: any message).
    pub fn matches_text(&self, text: &str, regex: Option<&regex::Regex>) -> bool {
        let words: Vec<&String> = self
            .keyword
            .iter()
            .chain(self.keywords.iter().flatten())
            .collect();
        if words.is_empty() && regex.is_none() {
            return true;
        }
        let lower = text.to_lowercase();
        words.iter().any(|w| contains_words(&lower, w)) || regex.is_some_and(|r| r.is_match(text))
    }
}

/// Whether `phrase` occurs in `text` between word boundaries ("price" in "the price?", not in
/// "priceless").
pub fn contains_words(text: &str, phrase: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(phrase).any(|(at, m)| {
        let before = text[..at].chars().next_back();
        let after = text[at + m.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Neq,
    In,
    NotIn,
    /// `tags` only: the lead has the tag.
    Contains,
    /// `tags` only: the lead does not have the tag.
    NotContains,
    Exists,
    NotExists,
}

/// A test of the conversation or its lead when the rule fires. Fields: `channel` (a channel
/// id), `kind` (`channel` or `support`), `status`, `assignee` (a user id), `stage`, `tags`,
/// `optIn` (`opted_in`, `opted_out`, `unknown`), `attributes.KEY`, `businessHours` (`open` or
/// `closed`, at the event's time).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    /// A string (or a number or boolean for attributes); a list for `in` and `not_in`; none
    /// for `exists` and `not_exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
}

const SCALAR_FIELDS: [&str; 6] = ["channel", "kind", "status", "assignee", "stage", "optIn"];

impl Condition {
    pub fn check(self, i: usize) -> Result<Condition, (String, String)> {
        let at = |f: &str| format!("conditions[{i}].{f}");
        let field = self.field.as_str();
        let scalar = SCALAR_FIELDS.contains(&field)
            || field
                .strip_prefix("attributes.")
                .is_some_and(|k| crate::inbox::model::parse_attribute_key(k).is_ok());
        let ops_ok = match field {
            "tags" => matches!(self.op, Op::Contains | Op::NotContains | Op::In | Op::NotIn),
            "businessHours" => self.op == Op::Eq,
            _ if scalar => !matches!(self.op, Op::Contains | Op::NotContains),
            _ => {
                return Err((
                    at("field"),
                    "is one of channel, kind, status, assignee, stage, tags, optIn, attributes.KEY, businessHours".into(),
                ))
            }
        };
        if !ops_ok {
            return Err((at("op"), format!("cannot test {field}")));
        }
        let value_ok = match (self.op, &self.value) {
            (Op::Exists | Op::NotExists, None) => true,
            (Op::In | Op::NotIn, Some(Value::Array(items))) => {
                !items.is_empty() && items.len() <= 100 && items.iter().all(is_scalar)
            }
            (Op::Eq | Op::Neq | Op::Contains | Op::NotContains, Some(v)) => is_scalar(v),
            _ => false,
        };
        if !value_ok {
            return Err((
                at("value"),
                "a string, number or boolean; a list of 1 to 100 of them for in and not_in; none for exists and not_exists".into(),
            ));
        }
        if field == "businessHours"
            && !matches!(
                self.value.as_ref().and_then(Value::as_str),
                Some("open" | "closed")
            )
        {
            return Err((at("value"), "is open or closed".into()));
        }
        Ok(self)
    }

    /// Tests the condition against what the rule sees.
    pub fn holds(&self, facts: &Facts) -> bool {
        if self.field == "tags" {
            let has = |v: &Value| {
                v.as_str()
                    .is_some_and(|t| facts.tags.iter().any(|x| x == t))
            };
            return match (self.op, &self.value) {
                (Op::Contains, Some(v)) => has(v),
                (Op::NotContains, Some(v)) => !has(v),
                (Op::In, Some(Value::Array(vs))) => vs.iter().any(has),
                (Op::NotIn, Some(Value::Array(vs))) => !vs.iter().any(has),
                _ => false,
            };
        }
        let actual = facts.field(&self.field);
        match (self.op, &self.value) {
            (Op::Exists, _) => actual.is_some(),
            (Op::NotExists, _) => actual.is_none(),
            (Op::Eq, Some(v)) => actual.as_ref() == Some(v),
            (Op::Neq, Some(v)) => actual.as_ref() != Some(v),
            (Op::In, Some(Value::Array(vs))) => actual.is_some_and(|a| vs.contains(&a)),
            (Op::NotIn, Some(Value::Array(vs))) => !actual.is_some_and(|a| vs.contains(&a)),
            _ => false,
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// What conditions test: the conversation and its lead when the rule fires.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub channel_id: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub assignee_id: Option<String>,
    pub stage: Option<String>,
    pub opt_in: Option<String>,
    pub tags: Vec<String>,
    pub attributes: serde_json::Map<String, Value>,
    pub open: bool,
}

impl Facts {
    fn field(&self, name: &str) -> Option<Value> {
        let s = |v: &Option<String>| v.clone().map(Value::String);
        match name {
            "channel" => s(&self.channel_id),
            "kind" => s(&self.kind),
            "status" => s(&self.status),
            "assignee" => s(&self.assignee_id),
            "stage" => s(&self.stage),
            "optIn" => s(&self.opt_in),
            "businessHours" => Some(Value::String(
                if self.open { "open" } else { "closed" }.into(),
            )),
            other => other
                .strip_prefix("attributes.")
                .and_then(|k| self.attributes.get(k))
                .filter(|v| !v.is_null())
                .cloned(),
        }
    }
}

/// What a rule does, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Action {
    /// A text to the customer (inside WhatsApp's 24-hour window for channel conversations);
    /// `{{lead.name}}` and the other canned-response variables are filled in.
    SendText {
        text: String,
    },
    /// An approved template (channel conversations), its parameters filled in like texts.
    SendTemplate {
        template_id: String,
        #[serde(default)]
        parameters: Vec<String>,
    },
    /// To this agent, or (`roundRobin`) the online agent who has waited longest.
    Assign {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        round_robin: Option<bool>,
    },
    AddTag {
        tag: String,
    },
    RemoveTag {
        tag: String,
    },
    SetStage {
        stage: String,
    },
    /// `open`, `pending` or `closed`.
    SetStatus {
        status: String,
    },
    /// An internal note for the agents, never sent.
    AddNote {
        text: String,
    },
    /// A note that mentions these agents (each gets `note:new`).
    Notify {
        user_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A signed POST (HMAC-SHA256 with `secret`, 16 to 200 characters, write-only).
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::SendText { .. } => "send_text",
            Action::SendTemplate { .. } => "send_template",
            Action::Assign { .. } => "assign",
            Action::AddTag { .. } => "add_tag",
            Action::RemoveTag { .. } => "remove_tag",
            Action::SetStage { .. } => "set_stage",
            Action::SetStatus { .. } => "set_status",
            Action::AddNote { .. } => "add_note",
            Action::Notify { .. } => "notify",
            Action::Webhook { .. } => "webhook",
        }
    }
}

/// 1 to 20 actions.
pub const MAX_ACTIONS: usize = 20;
/// 0 to 20 conditions.
pub const MAX_CONDITIONS: usize = 20;
/// A rule fires at most once per conversation in this many minutes unless it says otherwise.
pub const DEFAULT_COOLDOWN_MINUTES: i64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words_only() {
        assert!(contains_words("what is the price?", "price"));
        assert!(contains_words("price", "price"));
        assert!(!contains_words("priceless", "price"));
        assert!(contains_words("opening hours please", "opening hours"));
        assert!(contains_words("¿precio, por favor?", "precio"));
        assert!(!contains_words("unprice", "price"));
    }

    #[test]
    fn a_trigger_is_checked_against_its_type() {
        let t = |v: serde_json::Value| serde_json::from_value::<Trigger>(v).unwrap().check();
        assert!(t(serde_json::json!({"type": "no_agent_reply"})).is_err());
        assert!(t(serde_json::json!({"type": "no_agent_reply", "minutes": 10})).is_ok());
        assert!(t(serde_json::json!({"type": "first_message", "keyword": "x"})).is_err());
        assert!(t(serde_json::json!({"type": "message_received", "regex": "(a"})).is_err());
        let ok =
            t(serde_json::json!({"type": "message_received", "keywords": [" Price "]})).unwrap();
        assert_eq!(ok.keywords.unwrap(), vec!["price"]);
        assert!(ok_regex_is_linear());
    }

    fn ok_regex_is_linear() -> bool {
        // The classic catastrophic-backtracking expression answers at once here.
        let r = compile_regex("(a+)+$").unwrap();
        let text = format!("{}!", "a".repeat(4096));
        let started = std::time::Instant::now();
        let hit = r.is_match(&text);
        !hit && started.elapsed() < std::time::Duration::from_secs(1)
    }

    #[test]
    fn conditions_test_the_facts() {
        let c = |v: serde_json::Value| serde_json::from_value::<Condition>(v).unwrap().check(0);
        let facts = Facts {
            stage: Some("new".into()),
            tags: vec!["vip".into()],
            attributes: serde_json::json!({"plan": "gold", "seats": 3})
                .as_object()
                .unwrap()
                .clone(),
            open: false,
            ..Default::default()
        };
        let holds = |v| c(v).unwrap().holds(&facts);
        assert!(holds(
            serde_json::json!({"field": "stage", "op": "eq", "value": "new"})
        ));
        assert!(holds(
            serde_json::json!({"field": "tags", "op": "contains", "value": "vip"})
        ));
        assert!(!holds(
            serde_json::json!({"field": "tags", "op": "in", "value": ["a", "b"]})
        ));
        assert!(holds(
            serde_json::json!({"field": "attributes.seats", "op": "in", "value": [3, 4]})
        ));
        assert!(holds(
            serde_json::json!({"field": "assignee", "op": "not_exists"})
        ));
        assert!(holds(
            serde_json::json!({"field": "businessHours", "op": "eq", "value": "closed"})
        ));
        assert!(c(serde_json::json!({"field": "stage", "op": "contains", "value": "x"})).is_err());
        assert!(c(serde_json::json!({"field": "nope", "op": "eq", "value": "x"})).is_err());
        assert!(c(serde_json::json!({"field": "stage", "op": "in", "value": "x"})).is_err());
    }
}
