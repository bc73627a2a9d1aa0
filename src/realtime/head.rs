//! The request-head copy for Engine.IO requests (see [`own_request_head`]).

use super::SOCKET_PATH;

/// Gives an Engine.IO request a head of its own. hyper parses a request's URI and header
/// values as slices of the connection's read buffer (16 KiB), and engineioxide keeps each
/// session's request head for as long as it lives, so every connected device pinned a
/// read buffer it would never use again (heaptrack: one 16 KiB allocation per session;
/// server RSS per idle socket 31 → 23 KiB without it). Copies are a few hundred bytes.
/// Other requests pass untouched.
pub fn own_request_head<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    if !req.uri().path().starts_with(SOCKET_PATH) {
        return req;
    }
    if let Ok(uri) = req.uri().to_string().parse::<axum::http::Uri>() {
        // axum's router keeps a copy of the URI as it came in, too.
        if let Some(original) = req.extensions_mut().get_mut::<axum::extract::OriginalUri>() {
            original.0 = uri.clone();
        }
        *req.uri_mut() = uri;
    }
    let headers = std::mem::take(req.headers_mut());
    let mut owned = axum::http::HeaderMap::with_capacity(headers.len());
    let mut last = None;
    for (name, value) in headers {
        // `None` repeats the previous name (a header sent more than once).
        let name = match name {
            Some(name) => {
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        let owned_value = match axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut copy) => {
                copy.set_sensitive(value.is_sensitive());
                copy
            }
            Err(_) => value,
        };
        owned.append(name, owned_value);
    }
    *req.headers_mut() = owned;
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_io_request_head_is_copied_whole() {
        use axum::extract::OriginalUri;
        use axum::http::{header, HeaderValue, Request};
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        let mut req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header(header::COOKIE, "a=1")
            .header(header::COOKIE, "b=2")
            .header(header::AUTHORIZATION, secret)
            .header("x-custom", "v")
            .body(())
            .unwrap();
        let before_uri = req.uri().clone();
        req.extensions_mut().insert(OriginalUri(before_uri.clone()));
        let before = req.headers().clone();
        let req = own_request_head(req);
        assert_eq!(req.uri(), &before_uri);
        assert_eq!(req.extensions().get::<OriginalUri>().unwrap().0, before_uri);
        assert_eq!(req.headers(), &before);
        let cookies: Vec<_> = req.headers().get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive());

        // Other requests are left as they are.
        let other = Request::builder()
            .uri("/api/v1/conversations")
            .header("x-custom", "v")
            .body(())
            .unwrap();
        let other = own_request_head(other);
        assert_eq!(other.headers()["x-custom"], "v");
    }
}
