//! Message templates: what a channel conversation may send outside the customer's 24-hour
//! window. The stored row, the rules for names and languages, the body's `{{n}}` parameters and
//! rendering live here, beside the send that uses them; `whatsapp::templates` serves them over
//! HTTP and syncs them from the WABA.

use serde_json::Value;

use crate::db::Tenant;
use crate::error::AppResult;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: String,
    pub workspace_id: String,
    pub channel_id: Option<String>,
    pub name: String,
    pub language: String,
    pub category: String,
    pub components: String,
    pub status: String,
    pub external_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub const COLUMNS: &str =
    "id, workspace_id, channel_id, name, language, category, components, status, \
    external_id, created_at, updated_at";

/// The text of the template's BODY component.
pub fn body_text(t: &TemplateRow) -> String {
    let components: Value = serde_json::from_str(&t.components).unwrap_or_default();
    body_of(components.as_array().map(Vec::as_slice).unwrap_or_default()).to_owned()
}

/// The text of the BODY among a template's components (empty without one).
pub fn body_of(components: &[Value]) -> &str {
    components
        .iter()
        .find(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| k.eq_ignore_ascii_case("body"))
        })
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The numbers `n` of `{{n}}` in a text.
pub fn variables(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("}}") else { break };
        if let Ok(n) = rest[..end].trim().parse::<usize>() {
            out.push(n);
        }
        rest = &rest[end + 2..];
    }
    out
}

/// How many parameters the body takes (its highest `{{n}}`).
pub fn variable_count(text: &str) -> usize {
    variables(text).into_iter().max().unwrap_or(0)
}

/// The body with its parameters filled in, as the customer reads it.
pub fn render(text: &str, parameters: &[String]) -> String {
    let mut out = text.to_owned();
    for (i, p) in parameters.iter().enumerate() {
        out = out.replace(&format!("{{{{{}}}}}", i + 1), p);
    }
    out
}

pub async fn find_by_name(
    t: Tenant<'_>,
    name: &str,
    language: &str,
) -> AppResult<Option<TemplateRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM templates WHERE workspace_id = $1 AND name = $2 AND language = $3"
    ))
    .bind(t.workspace_id())
    .bind(name)
    .bind(language)
    .fetch_optional(t.db().reader())
    .await?)
}

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<Option<TemplateRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM templates WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(t.workspace_id())
    .bind(id)
    .fetch_optional(t.db().reader())
    .await?)
}

/// A template's name as Meta accepts it.
pub fn parse_template_name(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 512
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then(|| raw.to_owned())
        .ok_or_else(|| "must be 1 to 512 of a-z, 0-9 and _".into())
}

/// A template's language code (`en`, `en_US`).
pub fn parse_language(raw: &str) -> Result<String, String> {
    let (lang, region) = raw
        .split_once('_')
        .map_or((raw, None), |(l, r)| (l, Some(r)));
    let ok = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| {
            (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    ok.then(|| raw.to_owned())
        .ok_or_else(|| "must be a language code such as en or en_US".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_rendering() {
        assert_eq!(
            variable_count("Hi {{1}}, your order {{2}} ships {{ 3 }}"),
            3
        );
        assert_eq!(variable_count("no variables"), 0);
        assert_eq!(
            render("Hi {{1}}, order {{2}}", &["Ana".into(), "#42".into()]),
            "Hi Ana, order #42"
        );
        assert!(
            parse_language("en_US").is_ok()
                && parse_language("pt").is_ok()
                && parse_language("EN").is_err()
        );
        assert!(
            parse_template_name("order_update").is_ok()
                && parse_template_name("Order Update").is_err()
        );
    }
}
