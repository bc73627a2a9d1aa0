//! The inbox's shapes and the parsing of its inputs: leads (with opt-in, tags, attributes),
//! stages, tags, attribute definitions. Every transport (HTTP, CSV import) parses here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::Timestamp;
use crate::users::model::{Email, Phone};

pub use crate::conversations::model::DEFAULT_STAGES;
/// A lead's tags, at most.
pub const MAX_TAGS: usize = 50;
/// A lead's attributes, serialized, at most.
pub const MAX_ATTRIBUTES_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptInStatus {
    OptedIn,
    OptedOut,
    Unknown,
}

impl OptInStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OptInStatus::OptedIn => "opted_in",
            OptInStatus::OptedOut => "opted_out",
            OptInStatus::Unknown => "unknown",
        }
    }
    pub fn from_db(s: &str) -> OptInStatus {
        match s {
            "opted_in" => OptInStatus::OptedIn,
            "opted_out" => OptInStatus::OptedOut,
            _ => OptInStatus::Unknown,
        }
    }
    pub fn parse(raw: &str) -> Result<OptInStatus, String> {
        match raw.trim().to_lowercase().as_str() {
            "opted_in" | "yes" | "true" | "1" => Ok(OptInStatus::OptedIn),
            "opted_out" | "no" | "false" | "0" => Ok(OptInStatus::OptedOut),
            "unknown" | "" => Ok(OptInStatus::Unknown),
            _ => Err("must be opted_in, opted_out or unknown".into()),
        }
    }
}

/// Where a lead's consent came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptInSource {
    Whatsapp,
    Import,
    Form,
    Agent,
}

impl OptInSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OptInSource::Whatsapp => "whatsapp",
            OptInSource::Import => "import",
            OptInSource::Form => "form",
            OptInSource::Agent => "agent",
        }
    }
    pub fn from_db(s: &str) -> Option<OptInSource> {
        match s {
            "whatsapp" => Some(OptInSource::Whatsapp),
            "import" => Some(OptInSource::Import),
            "form" => Some(OptInSource::Form),
            "agent" => Some(OptInSource::Agent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptIn {
    pub status: OptInStatus,
    /// When the status was last set.
    pub at: Option<Timestamp>,
    pub source: Option<OptInSource>,
}

/// A lead as the API shows it (inbox-ai-calls.md, "lead shape").
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadView {
    pub id: String,
    pub name: Option<String>,
    /// The WhatsApp id: the phone number's digits.
    pub wa_id: Option<String>,
    /// The app user this lead is (support desk customers).
    pub user_id: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// The channel the lead last wrote to.
    pub channel_id: Option<String>,
    pub stage: String,
    pub tags: Vec<String>,
    pub opt_in: OptIn,
    pub assignee_id: Option<String>,
    pub attributes: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A lead's fields as given by an agent, an import or a form: each `None` is "not given".
#[derive(Debug, Default, Clone)]
pub struct LeadFields {
    pub name: Option<Option<String>>,
    pub phone: Option<Option<Phone>>,
    pub email: Option<Option<Email>>,
    pub stage: Option<String>,
    pub tags: Option<Vec<String>>,
    pub opt_in: Option<(OptInStatus, OptInSource)>,
    pub assignee_id: Option<Option<String>>,
    /// Merged into the lead's attributes; a key set to `null` is removed.
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `+4915112345678` → `4915112345678` (WhatsApp ids are the number's digits).
pub fn wa_id_of(phone: &Phone) -> String {
    phone.as_str().trim_start_matches('+').to_owned()
}

/// A phone number as people type it: E.164 with spaces or dashes, or `00` for `+`.
pub fn parse_phone(raw: &str) -> Result<Phone, String> {
    let t = raw.trim();
    match t.strip_prefix("00") {
        Some(rest) if !t.starts_with('+') => Phone::parse(&format!("+{rest}")),
        _ => Phone::parse(t),
    }
}

pub fn parse_name(raw: &str) -> Result<Option<String>, String> {
    let t = raw.trim();
    if t.chars().count() > 200 {
        return Err("must be at most 200 characters".into());
    }
    if t.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok((!t.is_empty()).then(|| t.to_owned()))
}

/// A tag name: 1 to 50 visible characters, no commas or semicolons (they separate tags in
/// filters and CSV cells). Compared as given after trimming.
pub fn parse_tag(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > 50 {
        return Err("a tag is 1 to 50 characters".into());
    }
    if t.chars().any(|c| c.is_control() || c == ',' || c == ';') {
        return Err("a tag has no control characters, commas or semicolons".into());
    }
    Ok(t.to_owned())
}

pub fn parse_tags<S: AsRef<str>>(raw: &[S]) -> Result<Vec<String>, String> {
    let mut tags = Vec::new();
    for t in raw {
        let t = parse_tag(t.as_ref())?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    Ok(tags)
}

/// A stage name: lower-case letters, digits, `_` and `-`, 1 to 40 characters.
pub fn parse_stage(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let ok = !t.is_empty()
        && t.len() <= 40
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(t.to_owned())
    } else {
        Err("a stage is 1 to 40 lower-case letters, digits, _ or -".into())
    }
}

/// An attribute key: letters, digits and `_`, 1 to 40, starting with a letter.
pub fn parse_attribute_key(raw: &str) -> Result<String, String> {
    let ok = raw.len() <= 40
        && raw.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "attribute key {raw:?}: 1 to 40 letters, digits or _, starting with a letter"
        ))
    }
}

/// Attributes to merge: an object of keys to strings, numbers, booleans, lists of strings, or
/// `null` (remove the key).
pub fn parse_attributes(
    v: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let serde_json::Value::Object(map) = v else {
        return Err("must be an object".into());
    };
    for (k, v) in &map {
        parse_attribute_key(k)?;
        let ok = match v {
            serde_json::Value::Array(items) => items.iter().all(|i| i.is_string()),
            serde_json::Value::Object(_) => false,
            _ => true,
        };
        if !ok {
            return Err(format!(
                "attribute {k:?}: a string, number, boolean, list of strings or null"
            ));
        }
    }
    Ok(map)
}

/// `attributes` with `change` merged in (`null` removes a key), refused when too large.
pub fn merge_attributes(
    attributes: &str,
    change: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    let mut current: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(attributes).unwrap_or_default();
    for (k, v) in change {
        if v.is_null() {
            current.remove(k);
        } else {
            current.insert(k.clone(), v.clone());
        }
    }
    let text = serde_json::Value::Object(current).to_string();
    if text.len() > MAX_ATTRIBUTES_BYTES {
        return Err(format!(
            "a lead's attributes are at most {MAX_ATTRIBUTES_BYTES} bytes"
        ));
    }
    Ok(text)
}

/// A tag colour: `#rrggbb`.
pub fn parse_color(raw: &str) -> Result<String, String> {
    let ok =
        raw.len() == 7 && raw.starts_with('#') && raw[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(raw.to_lowercase())
    } else {
        Err("must be a colour like #1f8a70".into())
    }
}

/// The colour of a tag nobody gave one (an import, a lead's new tag): one of a few, by name.
pub fn default_color(name: &str) -> String {
    const PALETTE: [&str; 8] = [
        "#1f8a70", "#2563eb", "#9333ea", "#db2777", "#ea580c", "#ca8a04", "#0891b2", "#4b5563",
    ];
    let h = name
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    PALETTE[h % PALETTE.len()].to_owned()
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagView {
    pub id: String,
    pub name: String,
    pub color: String,
    /// Leads with this tag.
    pub leads: i64,
    pub created_at: Timestamp,
}

/// An attribute the workspace defines for its leads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributeDefinition {
    pub key: String,
    pub label: String,
    /// `text`, `number`, `boolean`, `date` (YYYY-MM-DD) or `list` (of `options`).
    #[serde(rename = "type")]
    pub kind: AttributeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    Text,
    Number,
    Boolean,
    Date,
    List,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::Text => "text",
            AttributeType::Number => "number",
            AttributeType::Boolean => "boolean",
            AttributeType::Date => "date",
            AttributeType::List => "list",
        }
    }
    pub fn from_db(s: &str) -> AttributeType {
        match s {
            "number" => AttributeType::Number,
            "boolean" => AttributeType::Boolean,
            "date" => AttributeType::Date,
            "list" => AttributeType::List,
            _ => AttributeType::Text,
        }
    }
}

impl AttributeDefinition {
    /// Does `v` fit this definition? `null` always does (it removes the value).
    pub fn check(&self, v: &serde_json::Value) -> Result<(), String> {
        use serde_json::Value;
        let ok = match (self.kind, v) {
            (_, Value::Null) => true,
            (AttributeType::Text, Value::String(_)) => true,
            (AttributeType::Number, Value::Number(_)) => true,
            (AttributeType::Boolean, Value::Bool(_)) => true,
            (AttributeType::Date, Value::String(s)) => {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
            }
            (AttributeType::List, Value::String(s)) => self
                .options
                .as_ref()
                .is_none_or(|o| o.iter().any(|x| x == s)),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "attribute {:?} must be a {}{}",
                self.key,
                self.kind.as_str(),
                match (&self.options, self.kind) {
                    (Some(o), AttributeType::List) => format!(" of {}", o.join(", ")),
                    _ => String::new(),
                }
            ))
        }
    }

    /// Turns a CSV cell into this attribute's type.
    pub fn from_cell(&self, cell: &str) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let cell = cell.trim();
        if cell.is_empty() {
            return Ok(Value::Null);
        }
        let v = match self.kind {
            AttributeType::Number => cell
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("attribute {:?} must be a number", self.key))?,
            AttributeType::Boolean => match cell.to_lowercase().as_str() {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" => Value::Bool(false),
                _ => return Err(format!("attribute {:?} must be true or false", self.key)),
            },
            _ => Value::String(cell.to_owned()),
        };
        self.check(&v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_to_e164() {
        assert_eq!(
            parse_phone("+49 151 1234-5678").unwrap().as_str(),
            "+4915112345678"
        );
        assert_eq!(
            parse_phone("0049 151 12345678").unwrap().as_str(),
            "+4915112345678"
        );
        assert!(parse_phone("0151 12345678").is_err());
        assert_eq!(
            wa_id_of(&parse_phone("+14155550123").unwrap()),
            "14155550123"
        );
    }

    #[test]
    fn attributes_merge_and_remove() {
        let change = parse_attributes(serde_json::json!({"city": "Porto", "vip": null})).unwrap();
        let merged = merge_attributes(r#"{"vip":true,"age":3}"#, &change).unwrap();
        let v: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v, serde_json::json!({"age": 3, "city": "Porto"}));
        assert!(parse_attributes(serde_json::json!({"a": {"nested": 1}})).is_err());
        assert!(parse_attributes(serde_json::json!({"1a": 1})).is_err());
    }

    #[test]
    fn definitions_check_types() {
        let d = AttributeDefinition {
            key: "plan".into(),
            label: "Plan".into(),
            kind: AttributeType::List,
            options: Some(vec!["free".into(), "pro".into()]),
        };
        assert!(d.check(&serde_json::json!("pro")).is_ok());
        assert!(d.check(&serde_json::json!("gold")).is_err());
        let n = AttributeDefinition {
            key: "age".into(),
            label: "Age".into(),
            kind: AttributeType::Number,
            options: None,
        };
        assert_eq!(n.from_cell(" 42 ").unwrap(), serde_json::json!(42.0));
        assert!(n.from_cell("many").is_err());
    }

    #[test]
    fn tags_and_stages_are_checked() {
        assert_eq!(
            parse_tags(&["vip", " vip ", "b2b"]).unwrap(),
            vec!["vip", "b2b"]
        );
        assert!(parse_tag("a;b").is_err());
        assert!(parse_stage("Won").is_err());
        assert!(parse_stage("follow-up").is_ok());
    }
}
