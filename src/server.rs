//! The wiring: the router (every capability's routes, the OpenAPI document, `/docs`), the
//! middleware stack, the background tasks, the job kinds the runner knows, and the graceful
//! stop. The only module that names every capability; nothing imports it but the CLI.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::{AppState, JSON_BODY_LIMIT};
use crate::automations;
use crate::config::Config;
use crate::error::{AppError, Code, Problem};
use crate::http::middleware;
use crate::jobs::{Job, Kinds};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palaver",
        description = "Self-hosted messaging backend: the HTTP API (v1). Authenticate with \
            `Authorization: Bearer <accessToken>`; pick a workspace with the `Palaver-Workspace` \
            header (id or slug). Lists take `limit` and `cursor` and answer `{items, nextCursor}`."
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The `/api/v1` routes and their OpenAPI document.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(crate::auth::routes::router())
        .merge(crate::users::routes::router())
        .merge(crate::auth::account::router())
        .merge(crate::workspaces::routes::router())
        .merge(crate::chats::routes::router())
        .merge(crate::chats::search::router())
        .merge(crate::messages::routes::router())
        .merge(crate::sync::routes::router())
        .merge(crate::media::routes::router())
        .merge(crate::whatsapp::channels::router())
        .merge(crate::inbox::routes::router())
        .merge(crate::inbox::desk_routes::router())
        .merge(crate::inbox::transfer_routes::router())
        .merge(crate::ai::routes::router())
        .merge(crate::ai::admin_routes::router())
        .merge(crate::automations::routes::router())
        .merge(crate::campaigns::routes::router())
        .merge(crate::analytics::routes::router())
        .merge(crate::whatsapp::templates::router())
        .merge(crate::calls::routes::router())
        .merge(crate::push::routes::router())
        .merge(crate::ops::stats::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The OpenAPI document as JSON (also used by `palaver openapi`).
pub fn openapi_json() -> serde_json::Value {
    let (_, mut doc) = api();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    document_problems(&mut json);
    document_idempotency_keys(&mut json);
    json
}

/// The `Idempotency-Key` header's form (`http::idempotency`), wherever an operation takes it.
fn document_idempotency_keys(doc: &mut serde_json::Value) {
    let Some(paths) = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
    {
        for op in op.values_mut() {
            let params = op
                .get_mut("parameters")
                .and_then(serde_json::Value::as_array_mut);
            for p in params.into_iter().flatten() {
                if p["in"] == "header" && p["name"] == "Idempotency-Key" {
                    p["schema"] =
                        serde_json::json!({"type": "string", "pattern": "^[!-~]{1,100}$"});
                }
            }
        }
    }
}

/// Every error answer is problem+json, and every operation can answer the generic failures;
/// this says so once for the whole document instead of in every handler's annotation.
fn document_problems(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (_, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let secured = op.contains_key("security");
            let has_body = op.contains_key("requestBody");
            let responses = op.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            let mut generic: Vec<(&str, Code)> = vec![
                ("400", Code::BadRequest),
                ("422", Code::ValidationFailed),
                ("429", Code::RateLimited),
                ("500", Code::Internal),
                ("503", Code::Unavailable),
            ];
            if secured {
                generic.push(("401", Code::Unauthorized));
            }
            if has_body {
                generic.push(("413", Code::PayloadTooLarge));
                generic.push(("415", Code::UnsupportedMediaType));
            }
            if path.contains('{') {
                generic.push(("404", Code::NotFound));
            }
            for (status, code) in generic {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"description": code.description()}));
            }
            for (status, response) in responses.iter_mut() {
                if status.starts_with('4') || status.starts_with('5') {
                    response["content"] = problem.clone();
                }
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    let (api_routes, _) = api();
    let doc = openapi_json();
    let openapi_bytes: Arc<[u8]> = serde_json::to_vec(&doc).expect("serializes").into();
    let docs_html: Arc<str> = crate::ops::docs::render(&doc).into();

    let request_id = HeaderName::from_static("x-request-id");
    let mut router = Router::new()
        .merge(api_routes)
        .merge(crate::ops::router())
        .merge(crate::web::router())
        .merge(crate::whatsapp::webhook::router())
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let bytes = openapi_bytes.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], bytes.to_vec()) }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let html = docs_html.clone();
                async move {
                    (
                        [(
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'",
                        )],
                        Html(html.to_string()),
                    )
                }
            }),
        )
        .fallback(|| async { AppError::new(Code::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            AppError::new(Code::MethodNotAllowed, "this path does not accept this method")
        })
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(middleware::problem_json))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(middleware::deadline))
        .layer(cors(&state.config));
    let gateway = Arc::new(crate::realtime::Gateway::new(state.clone()));
    router = router
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            // The path only: query strings may carry cursors or search terms.
            tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id = id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // Outermost: Socket.IO traffic (under /socket.io/) goes straight to the gateway.
        .layer(crate::engineio::Layer::new(crate::engineio::Engine::new(gateway, crate::realtime::Gateway::config())))
        // Outermost of all: the security headers reach every answer, errors, panics and
        // /socket.io included.
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")));
    if state.config.public_url.starts_with("https://") {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    router.with_state(state)
}

fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("palaver-workspace"),
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

/// Serves until `shutdown` resolves, then gives in-flight requests up to the configured
/// shutdown timeout to finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.config.shutdown_timeout;
    let app = router(state.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = crate::http::server::serve(listener, app, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let server = tokio::spawn(server);
    if state.cluster.is_none() {
        // Alone, this node had every device: the calls answered before it started are over.
        crate::realtime::calls::ended_by_restart(&state).await;
    }
    let dispatcher = tokio::spawn(crate::realtime::dispatch::run(state.clone()));
    let expiry = tokio::spawn(crate::realtime::expire_tokens(state.clone()));
    let workers = tokio::spawn(crate::jobs::Runner::work(
        state.clone(),
        Arc::new(job_kinds()),
        state.config.job_workers,
    ));
    let follower = tokio::spawn(push_follower(state.clone()));
    let ai_idle = tokio::spawn(ai_idle(state.clone()));
    let timed = tokio::spawn(automations_timed(state.clone()));
    let campaigns = tokio::spawn(campaign_sender(state.clone()));
    let sweeper = tokio::spawn(crate::media::sweep(
        state.db.clone(),
        state.node_id.clone(),
        state.config.media.unreferenced_ttl,
    ));
    let cluster = state
        .cluster
        .clone()
        .map(|c| tokio::spawn(crate::cluster::run(state.clone(), c)));
    shutdown.await;
    // The calls of this node's devices end while the devices and the cluster still hear it.
    crate::realtime::calls::node_gone(state.clone(), state.node_id.clone()).await;
    dispatcher.abort();
    expiry.abort();
    sweeper.abort();
    follower.abort();
    ai_idle.abort();
    timed.abort();
    campaigns.abort();
    let _ = crate::jobs::lease::release(&state.db, crate::ai::idle::LEASE, &state.node_id).await;
    let _ = crate::jobs::lease::release(&state.db, automations::timed::LEASE, &state.node_id).await;
    let _ =
        crate::jobs::lease::release(&state.db, crate::campaigns::send::LEASE, &state.node_id).await;
    let _ = crate::jobs::lease::release(&state.db, crate::media::SWEEP_LEASE, &state.node_id).await;
    let _ = crate::jobs::lease::release(&state.db, PUSH_LEASE, &state.node_id).await;
    state.jobs.stop(&state.db).await;
    let _ = workers.await;
    // The heartbeat must not write this node's devices back once they are removed.
    if let Some(task) = cluster {
        task.abort();
    }
    let connected = state.hub.close_all();
    crate::realtime::announce::stopping(&state, &connected).await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(joined) => joined.context("the server task")?.context("serving")?,
        Err(_) => tracing::warn!(
            seconds = grace.as_secs(),
            "in-flight requests did not finish in time"
        ),
    }
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The node's side of cluster mode: messages from other nodes reach this node's devices,
/// sessions and presence.
impl crate::cluster::Node for AppState {
    fn deliver(
        &self,
        users: &[String],
        devices: &crate::cluster::Devices,
        packet: crate::engineio::Str,
    ) {
        for u in users {
            self.hub.send_to(u, &packet, devices);
        }
    }
    fn close_sessions(&self, sessions: &[String]) {
        self.sessions.forget(sessions);
        self.hub.close_sessions(sessions);
    }
    fn close_workspace(&self, user: &str, workspace: &str) {
        self.hub.close_workspace(user, workspace);
    }
    fn users(&self) -> Vec<String> {
        self.hub.users()
    }
    fn went_offline(&self, user: String) {
        tokio::spawn(crate::realtime::announce::announce(
            self.clone(),
            user,
            false,
        ));
    }
    fn node_gone(&self, node: String) {
        tokio::spawn(crate::realtime::calls::node_gone(self.clone(), node));
    }
}

/// Every kind of background job this process runs, and what runs it.
fn job_kinds() -> Kinds<AppState> {
    use crate::media::jobs as media;
    use crate::push;
    use crate::whatsapp::{media as whatsapp_media, outbound, webhook};
    macro_rules! job {
        ($work:path) => {
            |state: AppState, job: Arc<Job>| async move { $work(&state, &job).await }
        };
    }
    Kinds::default()
        .add(media::ANALYZE, job!(media::analyze))
        .add(media::EXTRACT_TEXT, job!(media::extract_text))
        .on_give_up(media::EXTRACT_TEXT, |state, job, _| async move {
            media::text_failed(&state, &job).await
        })
        .add(media::DELETE_OBJECTS, job!(media::delete_objects))
        .add(webhook::PROCESS, job!(webhook::process))
        .add(whatsapp_media::FETCH, job!(whatsapp_media::fetch))
        .add(outbound::SEND, job!(outbound::send))
        .on_give_up(outbound::SEND, |state, job, error| async move {
            outbound::send_gave_up(&state, &job, &error).await
        })
        .add(outbound::REACT, job!(outbound::react))
        .add(outbound::MARK_READ, job!(outbound::mark_read))
        .add(
            crate::calls::kinds::RING_TIMEOUT,
            crate::realtime::calls::ring_timeout,
        )
        .add(crate::inbox::jobs::OPENED, crate::inbox::jobs::opened)
        .add(crate::inbox::jobs::WAKE, crate::inbox::jobs::wake)
        .add(crate::ai::insights::JOB, crate::ai::run::run_job)
        .on_give_up(crate::ai::insights::JOB, |state, job, error| async move {
            crate::ai::run::gave_up(&state, &job, &error).await
        })
        .add(
            crate::inbox::import::JOB,
            crate::inbox::transfer_routes::import_job,
        )
        .on_give_up(crate::inbox::import::JOB, |state, job, error| async move {
            crate::inbox::transfer_routes::import_gave_up(&state, &job, &error).await
        })
        .add(automations::run::JOB, automations::run::event)
        .add(automations::webhook::JOB, automations::webhook::deliver)
        .on_give_up(automations::webhook::JOB, automations::webhook::gave_up)
        .add(push::kinds::MESSAGE, |state: AppState, job| async move {
            push::send::message(&state.db, senders(&state), job).await
        })
        .add(push::kinds::CALL, |state: AppState, job| async move {
            push::send::call(&state.db, senders(&state), job).await
        })
}

fn senders(state: &AppState) -> crate::push::send::Senders<'_> {
    crate::push::send::Senders {
        push: &state.push,
        secret: &state.secret,
    }
}

/// The push follower, on whichever node holds its lease.
async fn push_follower(state: AppState) {
    let db = state.db.clone();
    let holder = state.node_id.clone();
    crate::jobs::lease::scheduled(db, holder, PUSH_LEASE, Duration::from_secs(1), || {
        let state = state.clone();
        async move {
            crate::push::follow::catch_up(&state.db, |users| {
                let state = state.clone();
                async move { state.presence.online_among(&state.hub, users).await }
            })
            .await
        }
    })
    .await;
}

const PUSH_LEASE: &str = "push-follower";

/// The AI idle trigger and the end of rotated keys' grace, on whichever node holds the lease.
async fn ai_idle(state: AppState) {
    let db = state.db.clone();
    let holder = state.node_id.clone();
    let every = state.config.ai.idle_scan;
    crate::jobs::lease::scheduled(db, holder, crate::ai::idle::LEASE, every, || {
        let state = state.clone();
        async move {
            crate::ai::keys::retire_due(&state.db).await?;
            crate::ai::idle::scan(&state.db, state.config.ai.idle_after).await?;
            Ok(())
        }
    })
    .await;
}

/// The automations' timed triggers, on whichever node holds the lease.
async fn automations_timed(state: AppState) {
    let db = state.db.clone();
    let holder = state.node_id.clone();
    let every = state.config.automation_scan;
    crate::jobs::lease::scheduled(db, holder, automations::timed::LEASE, every, || {
        let state = state.clone();
        async move {
            automations::timed::scan(&state.db).await?;
            Ok(())
        }
    })
    .await;
}

/// The campaign sender, once a second on whichever node holds the lease.
async fn campaign_sender(state: AppState) {
    let db = state.db.clone();
    let holder = state.node_id.clone();
    let lease = crate::campaigns::send::LEASE;
    crate::jobs::lease::scheduled(db, holder, lease, Duration::from_secs(1), || {
        let state = state.clone();
        async move { crate::campaigns::send::tick(&state.db).await }
    })
    .await;
}

/// Listens for SIGTERM and SIGINT from the call on, and resolves on the first. Call it before
/// the server says it is ready: a signal that came while it was still starting (before the
/// returned future was first polled) would otherwise find no handler and kill the process
/// without a graceful stop.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn first(s: std::io::Result<Signal>) {
        match s {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for a shutdown signal");
                std::future::pending::<()>().await
            }
        }
    }
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        tokio::select! {
            _ = first(term) => {},
            _ = first(int) => {},
        }
    }
}
