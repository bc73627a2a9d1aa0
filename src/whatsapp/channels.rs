//! Channels: the WhatsApp Business numbers a workspace connects. Workspace admins manage them;
//! their secrets (access token, app secret, verify token) are sealed with the server key and
//! never returned, only whether each is set.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::audit::actions;
use crate::auth::keys::ServerSecret;
use crate::db::{new_id, now_ms, Db, Tenant, Timestamp};
use crate::error::{AppError, AppResult, Code};
use crate::http::validate::{field, optional, Validate};
use crate::http::Query;
use crate::http::{Json, ListQuery, Page, Scope};

pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v21.0";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChannelRow {
    pub id: String,
    pub workspace_id: String,
    pub name: Option<String>,
    pub phone_number_id: String,
    pub display_phone_number: Option<String>,
    pub waba_id: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub graph_base_url: String,
    pub api_version: String,
    /// Messages a second campaigns send through this channel.
    pub send_rate: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, workspace_id, name, phone_number_id, display_phone_number, waba_id, \
    access_token, app_secret, verify_token, graph_base_url, api_version, send_rate, created_at, updated_at";

/// Campaigns' messages a second through a channel unless it says otherwise: WhatsApp Cloud
/// API's default throughput per business number.
pub const DEFAULT_SEND_RATE: i64 = 80;

fn parse_send_rate(v: i64) -> Result<i64, String> {
    if (1..=1000).contains(&v) {
        Ok(v)
    } else {
        Err("1 to 1000 messages a second".into())
    }
}

impl ChannelRow {
    /// The access token in clear, for calls to the Graph API.
    pub fn access_token(&self, secret: &ServerSecret) -> Option<String> {
        self.access_token.as_deref().and_then(|s| secret.open(s))
    }
    pub fn app_secret(&self, secret: &ServerSecret) -> Option<String> {
        self.app_secret.as_deref().and_then(|s| secret.open(s))
    }
    pub fn verify_token(&self, secret: &ServerSecret) -> Option<String> {
        self.verify_token.as_deref().and_then(|s| secret.open(s))
    }
    /// `{graphBaseUrl}/{apiVersion}`.
    pub fn graph(&self) -> String {
        format!("{}/{}", self.graph_base_url, self.api_version)
    }

    fn view(self) -> ChannelView {
        ChannelView {
            access_token_set: self.access_token.is_some(),
            app_secret_set: self.app_secret.is_some(),
            verify_token_set: self.verify_token.is_some(),
            id: self.id,
            name: self.name,
            phone_number_id: self.phone_number_id,
            display_phone_number: self.display_phone_number,
            waba_id: self.waba_id,
            graph_base_url: self.graph_base_url,
            api_version: self.api_version,
            send_rate: self.send_rate,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        }
    }
}

/// A channel as the API shows it: secrets only as "set or not".
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub id: String,
    pub name: Option<String>,
    pub phone_number_id: String,
    pub display_phone_number: Option<String>,
    pub waba_id: Option<String>,
    pub graph_base_url: String,
    pub api_version: String,
    /// Messages a second campaigns send through this channel.
    pub send_rate: i64,
    pub access_token_set: bool,
    pub app_secret_set: bool,
    pub verify_token_set: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Creating (all fields) or changing (any) a channel. A secret given as `""` is removed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelBody {
    pub name: Option<String>,
    /// The Cloud API phone number id (required on create).
    pub phone_number_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub waba_id: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    /// Default https://graph.facebook.com.
    pub graph_base_url: Option<String>,
    /// Default v21.0.
    pub api_version: Option<String>,
    /// Messages a second campaigns send through this channel, 1 to 1000 (WhatsApp's limit for the number applies) [default: 80].
    #[schema(minimum = 1, maximum = 1000)]
    pub send_rate: Option<i64>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, update_channel, delete_channel))
}

fn parse_id(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty()
        || t.len() > 64
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("must be 1 to 64 letters, digits, - or _".into());
    }
    Ok(t.to_owned())
}

fn parse_version(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let ok = t.len() <= 10
        && t.starts_with('v')
        && t[1..]
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    ok.then(|| t.to_owned())
        .ok_or_else(|| "must look like v21.0".into())
}

fn parse_secret(raw: &str) -> Result<String, String> {
    if raw.len() > 1024 || raw.chars().any(char::is_control) {
        return Err("must be at most 1024 characters without control characters".into());
    }
    Ok(raw.to_owned())
}

fn parse_label(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    Ok(t.to_owned())
}

/// A secret to store: sealed, or removed with `""`.
fn seal(state: &AppState, v: Option<String>) -> Option<Option<String>> {
    v.map(|s| (!s.is_empty()).then(|| state.secret.seal(&s)))
}

/// POST /api/v1/channels — connects a WhatsApp Business number (workspace admins).
#[utoipa::path(post, path = "/channels", tag = "whatsapp", security(("bearer" = [])), request_body = ChannelBody,
    responses((status = 201, body = ChannelView), (status = 403, body = crate::error::Problem),
        (status = 409, description = "channel_exists: the phone number id is connected already", body = crate::error::Problem)))]
async fn create_channel(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<ChannelBody>,
) -> AppResult<(StatusCode, Json<ChannelView>)> {
    scope.require_admin("manage channels")?;
    let rate = optional("sendRate", b.send_rate, parse_send_rate).validate()?;
    let (phone_number_id, name, display, waba, base, version, token, app_secret, verify) = (
        field(
            "phoneNumberId",
            b.phone_number_id
                .as_deref()
                .ok_or("is required".to_string())
                .and_then(parse_id),
        ),
        optional("name", b.name, |v| parse_label(&v)),
        optional("displayPhoneNumber", b.display_phone_number, |v| {
            parse_label(&v)
        }),
        optional("wabaId", b.waba_id, |v| parse_id(&v)),
        optional("graphBaseUrl", b.graph_base_url, |v| {
            crate::outbound::parse_base_url(state.media.http.allow(), &v)
        }),
        optional("apiVersion", b.api_version, |v| parse_version(&v)),
        optional("accessToken", b.access_token, |v| parse_secret(&v)),
        optional("appSecret", b.app_secret, |v| parse_secret(&v)),
        optional("verifyToken", b.verify_token, |v| parse_secret(&v)),
    )
        .validate()?;
    let now = now_ms();
    let row = ChannelRow {
        id: new_id(),
        workspace_id: scope.workspace_id.clone(),
        name,
        phone_number_id,
        display_phone_number: display,
        waba_id: waba,
        access_token: seal(&state, token).flatten(),
        app_secret: seal(&state, app_secret).flatten(),
        verify_token: seal(&state, verify).flatten(),
        graph_base_url: base.unwrap_or_else(|| DEFAULT_GRAPH_BASE_URL.into()),
        api_version: version.unwrap_or_else(|| DEFAULT_API_VERSION.into()),
        send_rate: rate.unwrap_or(DEFAULT_SEND_RATE),
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.begin().await?;
    insert(&mut tx, &row).await?;
    let details = serde_json::json!({"phoneNumberId": row.phone_number_id});
    crate::audit::record(
        &mut tx,
        scope.tenant(&state.db),
        Some(&scope.user_id),
        actions::CHANNEL_CREATED,
        ("channel", &row.id),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    Ok((StatusCode::CREATED, Json(row.view())))
}

/// Writes a channel; a second channel for the same phone number id is a 409.
pub async fn insert(tx: &mut crate::db::Tx, row: &ChannelRow) -> AppResult<()> {
    let done = sqlx::query(
        "INSERT INTO channels (id, workspace_id, name, phone_number_id, display_phone_number, waba_id, \
         access_token, app_secret, verify_token, graph_base_url, api_version, send_rate, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(&row.id)
    .bind(&row.workspace_id)
    .bind(&row.name)
    .bind(&row.phone_number_id)
    .bind(&row.display_phone_number)
    .bind(&row.waba_id)
    .bind(&row.access_token)
    .bind(&row.app_secret)
    .bind(&row.verify_token)
    .bind(&row.graph_base_url)
    .bind(&row.api_version)
    .bind(row.send_rate)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if crate::db::is_unique_violation(&e) => Err(AppError::new(
            Code::ChannelExists,
            "this phone number id is connected already",
        )),
        Err(e) => Err(e.into()),
    }
}

/// GET /api/v1/channels — the workspace's channels (workspace admins).
#[utoipa::path(get, path = "/channels", tag = "whatsapp", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<ChannelView>), (status = 403, body = crate::error::Problem)))]
async fn list_channels(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<ChannelView>>> {
    scope.require_admin("manage channels")?;
    let limit = q.limit()?;
    let after: Option<String> = q.position()?;
    let rows: Vec<ChannelRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM channels WHERE workspace_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(&scope.workspace_id)
    .bind(after.as_deref())
    .bind(limit + 1)
    .fetch_all(state.db.reader())
    .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |c| c.id.clone(),
        ChannelRow::view,
    )))
}

/// A channel of the tenant's workspace.
pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<Option<ChannelRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM channels WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?)
}

/// Any channel by id (jobs).
pub async fn find_any(db: &Db, id: &str) -> AppResult<Option<ChannelRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM channels WHERE id = $1"))
            .bind(id)
            .fetch_optional(db.reader())
            .await?,
    )
}

/// The channels of these phone number ids (a webhook's).
pub async fn by_phone_number_ids(db: &Db, ids: &[String]) -> AppResult<Vec<ChannelRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM channels WHERE phone_number_id IN ({})",
        db.slots().list(ids.len())
    );
    let mut q = sqlx::query_as(&sql).persistent(false);
    for id in ids {
        q = q.bind(id);
    }
    Ok(q.fetch_all(db.reader()).await?)
}

/// Every channel with a verify token (the webhook handshake).
pub async fn with_verify_tokens(db: &Db) -> AppResult<Vec<ChannelRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM channels WHERE verify_token IS NOT NULL"
    ))
    .fetch_all(db.reader())
    .await?)
}

/// GET /api/v1/channels/{id}
#[utoipa::path(get, path = "/channels/{id}", tag = "whatsapp", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ChannelView), (status = 403, body = crate::error::Problem)))]
async fn get_channel(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<ChannelView>> {
    scope.require_admin("manage channels")?;
    let row = find(scope.tenant(&state.db), &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(row.view()))
}

/// PATCH /api/v1/channels/{id} — changes fields; a secret given as "" is removed.
#[utoipa::path(patch, path = "/channels/{id}", tag = "whatsapp", security(("bearer" = [])), request_body = ChannelBody,
    params(("id" = String, Path)), responses((status = 200, body = ChannelView), (status = 403, body = crate::error::Problem)))]
async fn update_channel(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<ChannelBody>,
) -> AppResult<Json<ChannelView>> {
    scope.require_admin("manage channels")?;
    let rate = optional("sendRate", b.send_rate, parse_send_rate).validate()?;
    let (phone_number_id, name, display, waba, base, version, token, app_secret, verify) = (
        optional("phoneNumberId", b.phone_number_id, |v| parse_id(&v)),
        optional("name", b.name, |v| parse_label(&v)),
        optional("displayPhoneNumber", b.display_phone_number, |v| {
            parse_label(&v)
        }),
        optional("wabaId", b.waba_id, |v| parse_id(&v)),
        optional("graphBaseUrl", b.graph_base_url, |v| {
            crate::outbound::parse_base_url(state.media.http.allow(), &v)
        }),
        optional("apiVersion", b.api_version, |v| parse_version(&v)),
        optional("accessToken", b.access_token, |v| parse_secret(&v)),
        optional("appSecret", b.app_secret, |v| parse_secret(&v)),
        optional("verifyToken", b.verify_token, |v| parse_secret(&v)),
    )
        .validate()?;
    let t = scope.tenant(&state.db);
    let mut row = find(t, &id).await?.ok_or_else(AppError::not_found)?;
    if let Some(b) = &base {
        // The stored token never follows the channel to a new host.
        if *b != row.graph_base_url && token.is_none() {
            return Err(AppError::invalid_field(
                "accessToken",
                "changing graphBaseUrl needs the access token again in the same request",
            ));
        }
    }
    if let Some(v) = phone_number_id {
        row.phone_number_id = v;
    }
    row.name = name.or(row.name);
    row.display_phone_number = display.or(row.display_phone_number);
    row.waba_id = waba.or(row.waba_id);
    row.graph_base_url = base.unwrap_or(row.graph_base_url);
    row.api_version = version.unwrap_or(row.api_version);
    row.send_rate = rate.unwrap_or(row.send_rate);
    if let Some(v) = seal(&state, token) {
        row.access_token = v;
    }
    if let Some(v) = seal(&state, app_secret) {
        row.app_secret = v;
    }
    if let Some(v) = seal(&state, verify) {
        row.verify_token = v;
    }
    row.updated_at = now_ms();
    let mut tx = state.db.begin().await?;
    let done = sqlx::query(
        "UPDATE channels SET name = $1, phone_number_id = $2, display_phone_number = $3, waba_id = $4, \
         access_token = $5, app_secret = $6, verify_token = $7, graph_base_url = $8, api_version = $9, \
         updated_at = $10, send_rate = $13 WHERE id = $11 AND workspace_id = $12",
    )
    .bind(&row.name)
    .bind(&row.phone_number_id)
    .bind(&row.display_phone_number)
    .bind(&row.waba_id)
    .bind(&row.access_token)
    .bind(&row.app_secret)
    .bind(&row.verify_token)
    .bind(&row.graph_base_url)
    .bind(&row.api_version)
    .bind(row.updated_at)
    .bind(&row.id)
    .bind(t.workspace_id())
    .bind(row.send_rate)
    .execute(&mut *tx)
    .await;
    match done {
        Ok(_) => {
            // Which fields changed, never their values (secrets among them).
            let details = serde_json::json!({"phoneNumberId": row.phone_number_id});
            crate::audit::record(
                &mut tx,
                t,
                Some(&scope.user_id),
                actions::CHANNEL_UPDATED,
                ("channel", &row.id),
                details,
            )
            .await?;
            state.db.commit(tx).await?;
            Ok(Json(row.view()))
        }
        Err(e) if crate::db::is_unique_violation(&e) => Err(AppError::new(
            Code::ChannelExists,
            "this phone number id is connected already",
        )),
        Err(e) => Err(e.into()),
    }
}

/// DELETE /api/v1/channels/{id} — disconnects the number; its conversations and leads stay.
#[utoipa::path(delete, path = "/channels/{id}", tag = "whatsapp", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = crate::error::Problem)))]
async fn delete_channel(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_admin("manage channels")?;
    let mut tx = state.db.begin().await?;
    let done = sqlx::query("DELETE FROM channels WHERE id = $1 AND workspace_id = $2")
        .bind(&id)
        .bind(&scope.workspace_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found());
    }
    crate::audit::record(
        &mut tx,
        scope.tenant(&state.db),
        Some(&scope.user_id),
        actions::CHANNEL_DELETED,
        ("channel", &id),
        serde_json::json!({}),
    )
    .await?;
    state.db.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
