//! List pagination: `?limit=` (default 50, at most 100) and an opaque `?cursor=`, answered as
//! `{"items": [...], "nextCursor": "..." | null}`. Cursors are base64url JSON of the keyset
//! position; clients must treat them as opaque.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 50; larger values are capped at 100).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn limit(&self) -> Result<i64, AppError> {
        match self.limit {
            None => Ok(50),
            Some(n) if n < 1 => Err(AppError::invalid_field("limit", "must be at least 1")),
            Some(n) => Ok(n.min(100)),
        }
    }

    pub fn position<T: DeserializeOwned>(&self) -> Result<Option<T>, AppError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()
    }
}

pub fn encode_cursor<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// [`encode_cursor`] of a pair of integers (a change position: a sync page makes one per
/// event, shared by the event and its envelope), made on the stack: one allocation, the
/// result's.
pub fn encode_pair_cursor(a: i64, b: i64) -> Arc<str> {
    use std::io::Write as _;
    // `[` and `]`, a comma and two integers of at most 20 characters each.
    let mut json = [0u8; 43];
    let mut rest = &mut json[..];
    let _ = write!(rest, "[{a},{b}]");
    let written = 43 - rest.len();
    let mut encoded = [0u8; 58];
    let n = URL_SAFE_NO_PAD
        .encode_slice(&json[..written], &mut encoded)
        .unwrap_or(0);
    // base64 is ASCII.
    std::str::from_utf8(&encoded[..n])
        .unwrap_or_default()
        .into()
}

pub fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| AppError::invalid_field("cursor", "is not a cursor this list gave out"))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_rows<R, P: Serialize>(
        mut rows: Vec<R>,
        limit: i64,
        position: impl Fn(&R) -> P,
        item: impl Fn(R) -> T,
    ) -> Page<T> {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(&position(r)))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(item).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_cursor_is_the_cursor_of_the_pair() {
        for (a, b) in [
            (0, 0),
            (0, 1),
            (7, 123_456),
            (-1, i64::MAX),
            (i64::MIN, i64::MIN),
        ] {
            assert_eq!(*encode_pair_cursor(a, b), encode_cursor(&(a, b)));
            assert_eq!(
                decode_cursor::<(i64, i64)>(&encode_pair_cursor(a, b)).unwrap(),
                (a, b)
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(&("alice", 7));
        assert_eq!(
            decode_cursor::<(String, i64)>(&c).unwrap(),
            ("alice".to_owned(), 7)
        );
        assert!(decode_cursor::<(String, i64)>("%%%").is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_exist() {
        let p = Page::from_rows(vec![1, 2, 3], 2, |r| *r, |r| r);
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(
            decode_cursor::<i32>(p.next_cursor.as_deref().unwrap()).unwrap(),
            2
        );
        assert!(Page::from_rows(vec![1, 2], 2, |r| *r, |r| r)
            .next_cursor
            .is_none());
    }
}
