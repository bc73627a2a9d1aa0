//! Middleware: problem+json for every failure the framework produces itself (unknown route,
//! wrong method, bad path or query, timeouts, panics), request metrics, and security headers.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, Code, FieldError};

/// Any error response that is not already problem+json (axum's rejections, 404/405 fallbacks,
/// timeouts) is rewritten into one, keeping its status and its text as the detail.
pub async fn problem_json(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let code = match status {
        StatusCode::BAD_REQUEST => Code::BadRequest,
        StatusCode::UNAUTHORIZED => Code::Unauthorized,
        StatusCode::FORBIDDEN => Code::Forbidden,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => Code::ValidationFailed,
        StatusCode::TOO_MANY_REQUESTS => Code::RateLimited,
        StatusCode::REQUEST_TIMEOUT => Code::RequestTimeout,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        s if s.is_server_error() => Code::Internal,
        _ => Code::BadRequest,
    };
    let detail = if text.is_empty() || code == Code::Internal {
        code.description().to_owned()
    } else {
        text
    };
    let err = if code == Code::ValidationFailed {
        AppError::validation(vec![FieldError::new("body", detail)])
    } else {
        AppError::new(code, detail)
    };
    let mut out = err.into_response();
    // Keep headers such as `Allow` on a 405.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Requests get 30 seconds to arrive and be answered; media uploads, which stream large files,
/// get an hour. (Answers that stream, such as downloads, are not cut off: the limit ends when
/// the response starts.)
pub async fn deadline(req: Request, next: Next) -> Response {
    const REQUEST: Duration = Duration::from_secs(30);
    const UPLOAD: Duration = Duration::from_secs(3600);
    let upload = req.method() == Method::POST && req.uri().path() == "/api/v1/media";
    let limit = if upload { UPLOAD } else { REQUEST };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => AppError::new(Code::RequestTimeout, "the request took too long").into_response(),
    }
}

/// Counts requests by route template, method and status, and times them.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let elapsed = start.elapsed().as_secs_f64();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed);
    res
}

/// A panic in a handler becomes a 500 problem (and is logged), never a dropped connection.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    AppError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

pub fn static_header(value: &'static str) -> HeaderValue {
    HeaderValue::from_static(value)
}
