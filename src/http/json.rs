//! The JSON body extractor: 415 for another content type, 413 beyond the body limit, 400 for
//! malformed JSON, 422 with the failing field's path for a missing field or a wrong type.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{AppError, Code, FieldError};

pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(AppError::new(
                Code::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(Code::PayloadTooLarge, "the body exceeds the 1 MiB limit")
            } else {
                AppError::new(Code::BadRequest, "the body could not be read")
            }
        })?;
        parse(&bytes).map(Json)
    }
}

/// Parses a JSON document, naming the failing field on a data error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_data() {
            let path = e.path().to_string();
            let message = clean_message(&inner.to_string());
            // serde reports a missing field at its parent's path; name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let field = match (path.as_str(), missing) {
                (".", Some(name)) => name.to_owned(),
                (_, Some(name)) => format!("{path}.{name}"),
                (".", None) => "body".to_owned(),
                _ => path,
            };
            AppError::validation(vec![FieldError::new(field, message)])
        } else {
            AppError::new(
                Code::MalformedJson,
                format!("malformed JSON: {}", clean_message(&inner.to_string())),
            )
        }
    })?;
    de.end()
        .map_err(|_| AppError::new(Code::MalformedJson, "malformed JSON: trailing characters"))?;
    Ok(value)
}

/// serde's messages end with " at line L column C"; the field path says more to a client.
fn clean_message(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_owned(),
        None => m.to_owned(),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let e = parse::<Body>(br#"{"name":"x","inner":{"n":"seven"}}"#).unwrap_err();
        assert_eq!(e.code(), Code::ValidationFailed);
        assert!(format!("{e:?}").contains("inner.n"));
    }

    #[test]
    fn broken_json_is_malformed() {
        assert_eq!(
            parse::<Body>(b"{\"name\":").unwrap_err().code(),
            Code::MalformedJson
        );
        assert_eq!(
            parse::<Body>(br#"{"name":"x","inner":{"n":1}} x"#)
                .unwrap_err()
                .code(),
            Code::MalformedJson
        );
    }

    #[test]
    fn a_missing_field_is_a_validation_error() {
        let e = parse::<Body>(br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(e.code(), Code::ValidationFailed);
        assert!(format!("{e:?}").contains("field: \"inner\""), "{e:?}");
    }
}
