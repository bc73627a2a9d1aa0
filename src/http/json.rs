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

/// A body that may be left out (`Option<Json<T>>`): none at all is `None`; anything else is
/// read as [`Json`] reads it.
impl<T, S> axum::extract::OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, AppError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::new(Code::PayloadTooLarge, "the body exceeds the 1 MiB limit")
                } else {
                    AppError::new(Code::BadRequest, "the body could not be read")
                }
            })?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Parses a JSON document, naming the failing field on a data error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end().map_err(|_| {
                AppError::new(Code::MalformedJson, "malformed JSON: trailing characters")
            })?;
            Ok(value)
        }
        // JSON Schema counts 3.0 as an integer, and so does the API: a number with no
        // fraction is read again as the integer it is (only on this rare path, so the common
        // one parses once).
        Err(e)
            if e.inner()
                .to_string()
                .starts_with("invalid type: floating point") =>
        {
            let mut value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| AppError::new(Code::MalformedJson, format!("malformed JSON: {e}")))?;
            integral_floats_to_integers(&mut value);
            serde_path_to_error::deserialize(value).map_err(|e| {
                let message = e.inner().to_string();
                field_error(e.path().to_string(), message)
            })
        }
        Err(e) => {
            let inner = e.inner();
            if inner.is_data() {
                Err(field_error(e.path().to_string(), inner.to_string()))
            } else {
                Err(AppError::new(
                    Code::MalformedJson,
                    format!("malformed JSON: {}", clean_message(&inner.to_string())),
                ))
            }
        }
    }
}

/// A 422 naming the field a data error is about.
fn field_error(path: String, message: String) -> AppError {
    let message = clean_message(&message);
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
}

/// Replaces every number with no fraction (within i64) by its integer.
fn integral_floats_to_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *v = serde_json::Value::from(f as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
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
    fn a_number_without_fraction_is_an_integer() {
        let b = parse::<Body>(br#"{"name":"x","inner":{"n":7.0}}"#).unwrap();
        assert_eq!(b.inner.n, 7);
        let e = parse::<Body>(br#"{"name":"x","inner":{"n":7.5}}"#).unwrap_err();
        assert!(format!("{e:?}").contains("inner.n"), "{e:?}");
    }

    #[test]
    fn a_missing_field_is_a_validation_error() {
        let e = parse::<Body>(br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(e.code(), Code::ValidationFailed);
        assert!(format!("{e:?}").contains("field: \"inner\""), "{e:?}");
    }
}
