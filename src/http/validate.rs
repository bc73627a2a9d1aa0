//! Collecting field errors: parse every field of a body, report all failures at once as one 422.
//!
//! ```ignore
//! let (email, password) = (
//!     field("email", Email::parse(&body.email)),
//!     field("password", Password::parse(body.password)),
//! ).validate()?;
//! ```

use crate::error::{AppError, FieldError};

/// One field's parse result, labelled with the field name.
pub fn field<T>(name: &str, result: Result<T, String>) -> Result<T, FieldError> {
    result.map_err(|message| FieldError::new(name, message))
}

/// An optional field: absent is fine, present must parse.
pub fn optional<T, U>(
    name: &str,
    value: Option<U>,
    parse: impl FnOnce(U) -> Result<T, String>,
) -> Result<Option<T>, FieldError> {
    value
        .map(parse)
        .transpose()
        .map_err(|message| FieldError::new(name, message))
}

/// For a JSON field where absent (outer `None`) and `null` (`Some(None)`) differ, e.g.
/// "leave the assignee" and "unassign": `#[serde(default, deserialize_with = "…double_option")]`.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

/// An instant in RFC 3339 (`2026-12-02T10:00:00Z`), as milliseconds since the epoch.
pub fn parse_instant(raw: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| "must be a time in RFC 3339, e.g. 2026-12-02T10:00:00Z".into())
}

pub trait Validate {
    type Output;
    fn validate(self) -> Result<Self::Output, AppError>;
}

impl<A> Validate for Result<A, FieldError> {
    type Output = A;
    fn validate(self) -> Result<A, AppError> {
        self.map_err(|e| AppError::validation(vec![e]))
    }
}

macro_rules! validate_tuple {
    ($($t:ident),+) => {
        impl<$($t),+> Validate for ($(Result<$t, FieldError>,)+) {
            type Output = ($($t,)+);
            #[allow(non_snake_case)]
            fn validate(self) -> Result<Self::Output, AppError> {
                let ($($t,)+) = self;
                let mut errors = Vec::new();
                $(let $t = $t.map_err(|e| errors.push(e));)+
                match ($($t,)+) {
                    ($(Ok($t),)+) => Ok(($($t,)+)),
                    _ => Err(AppError::validation(errors)),
                }
            }
        }
    };
}

validate_tuple!(A);
validate_tuple!(A, B);
validate_tuple!(A, B, C);
validate_tuple!(A, B, C, D);
validate_tuple!(A, B, C, D, E);
validate_tuple!(A, B, C, D, E, F);
validate_tuple!(A, B, C, D, E, F, G);
validate_tuple!(A, B, C, D, E, F, G, H);
validate_tuple!(A, B, C, D, E, F, G, H, I);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_field_is_reported() {
        let r = (
            field::<u8>("a", Err("bad a".into())),
            field("b", Ok(2u8)),
            field::<u8>("c", Err("bad c".into())),
        )
            .validate();
        let e = r.unwrap_err();
        assert_eq!(e.code(), crate::error::Code::ValidationFailed);
    }

    #[test]
    fn all_good_fields_pass_through() {
        assert_eq!(
            (field("a", Ok(1)), field("b", Ok("x"))).validate().unwrap(),
            (1, "x")
        );
    }
}
