//! The query-string extractor: every parameter a list does not know is refused with 422 (a
//! filter is honoured or refused, never silently ignored); a value of the wrong form is 400,
//! naming its parameter.
//! Query structs carry `#[serde(deny_unknown_fields)]`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AppError, Code};

pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parse(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Reads a query string into `T`.
pub fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, AppError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        match unknown_parameter(&message) {
            Some(name) => AppError::invalid_field(name, "is not a parameter of this request"),
            None => AppError::new(
                Code::BadRequest,
                format!("query parameter {}: {}", e.path(), clean(&message)),
            ),
        }
    })
}

/// [`parse`] for a query with one repeatable parameter (`?tag=a&tag=b`): its values are taken
/// out first, in order, and the rest is read into `T`.
pub fn parse_repeated<T: DeserializeOwned>(
    raw: &str,
    name: &str,
) -> Result<(T, Vec<String>), AppError> {
    let mut values = Vec::new();
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if k == name {
            values.push(v.into_owned());
        } else {
            rest.append_pair(&k, &v);
        }
    }
    Ok((parse(&rest.finish())?, values))
}

/// serde's "unknown field `tag`, expected one of …" names the parameter between backticks.
fn unknown_parameter(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn clean(message: &str) -> String {
    message.replace("field", "parameter")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Q {
        limit: Option<i64>,
        archived: Option<bool>,
    }

    #[test]
    fn known_parameters_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse::<Q>("limit=5&archived=true").unwrap(),
            Q {
                limit: Some(5),
                archived: Some(true)
            }
        );
        assert_eq!(
            parse::<Q>("").unwrap(),
            Q {
                limit: None,
                archived: None
            }
        );
        let e = parse::<Q>("limit=5&tag=vip").unwrap_err();
        assert_eq!(e.code(), crate::error::Code::ValidationFailed);
        assert_eq!(e.field_errors()[0].field, "tag");
        let e = parse::<Q>("limit=many").unwrap_err();
        assert_eq!(e.code(), crate::error::Code::BadRequest);
        assert!(e.detail().contains("limit"), "{}", e.detail());
    }
}
