//! A workspace's provider keys: sealed at rest with the server secret, shown masked, rotated
//! with a grace period (the old key stays usable, as `retiring`, until it ends, then is
//! `revoked`), revoked at once on request; every change in the audit log. Which endpoint a
//! call uses: the workspace's newest active key, else the server's default provider, else none
//! (the offline analyzer).

use serde::Serialize;
use utoipa::ToSchema;

use super::provider::Endpoint;
use crate::audit::actions;
use crate::auth::keys::ServerSecret;
use crate::config::AiConfig;
use crate::db::{new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};

/// Where keys go when they name no base URL and the server has no default provider.
pub const OPENAI_URL: &str = "https://api.openai.com/v1";
/// A rotation's grace period unless the request sets one.
pub const DEFAULT_GRACE_SECONDS: i64 = 86_400;

/// A key as the API shows it: never the key itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub name: String,
    /// The key's last four characters at most, e.g. `••••3f9a`.
    pub masked: String,
    /// `active`, `retiring` (usable until `retiresAt`) or `revoked`.
    pub status: String,
    pub base_url: String,
    pub model: String,
    pub created_at: Timestamp,
    pub retires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    last4: String,
    status: String,
    base_url: String,
    model: String,
    created_at: i64,
    retires_at: Option<i64>,
    revoked_at: Option<i64>,
}

const KEY_COLUMNS: &str =
    "id, name, last4, status, base_url, model, created_at, retires_at, revoked_at";

impl KeyRow {
    /// A retiring key whose grace has ended is revoked, whether or not the sweep has written it.
    fn view(self, now: i64) -> KeyView {
        let ended = self.status == "retiring" && self.retires_at.is_some_and(|t| t <= now);
        KeyView {
            masked: format!("••••{}", self.last4),
            status: if ended { "revoked".into() } else { self.status },
            revoked_at: if ended {
                self.retires_at.map(Timestamp)
            } else {
                self.revoked_at.map(Timestamp)
            },
            id: self.id,
            name: self.name,
            base_url: self.base_url,
            model: self.model,
            created_at: Timestamp(self.created_at),
            retires_at: self.retires_at.map(Timestamp),
        }
    }
}

/// A new key, checked.
pub struct NewKey {
    pub name: String,
    pub api_key: String,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

/// The last four characters of a key long enough to keep the rest secret; none of a short one.
fn last4(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() >= 16 {
        chars[chars.len() - 4..].iter().collect()
    } else {
        String::new()
    }
}

pub fn parse_api_key(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 4096 || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must be 1 to 4096 characters without spaces or control characters".into());
    }
    Ok(t.to_owned())
}

pub fn parse_model(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err("must be 1 to 200 characters".into());
    }
    Ok(t.to_owned())
}

pub async fn list(t: Tenant<'_>) -> AppResult<Vec<KeyView>> {
    let rows: Vec<KeyRow> = sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM ai_keys WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?;
    let now = now_ms();
    Ok(rows.into_iter().map(|r| r.view(now)).collect())
}

async fn find(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<KeyRow> {
    sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM ai_keys WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(AppError::not_found)
}

async fn insert(
    tx: &mut Tx,
    t: Tenant<'_>,
    secret: &ServerSecret,
    by: &str,
    key: &NewKey,
    base_url: &str,
    model: &str,
) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO ai_keys (id, workspace_id, name, secret, last4, base_url, model, status, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(&key.name)
    .bind(secret.seal(&key.api_key))
    .bind(last4(&key.api_key))
    .bind(base_url)
    .bind(model)
    .bind(by)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Adds an active key; without a base URL or model, the server's defaults.
pub async fn add(
    t: Tenant<'_>,
    secret: &ServerSecret,
    config: &AiConfig,
    by: &str,
    key: NewKey,
) -> AppResult<KeyView> {
    let base_url = key.base_url.clone().unwrap_or_else(|| {
        config
            .provider
            .as_ref()
            .map_or(OPENAI_URL.to_owned(), |p| p.url.clone())
    });
    let model = key.model.clone().unwrap_or_else(|| config.model.clone());
    let mut tx = t.db().begin().await?;
    let id = insert(&mut tx, t, secret, by, &key, &base_url, &model).await?;
    let details = serde_json::json!({"name": key.name, "baseUrl": base_url, "model": model});
    crate::audit::record(
        &mut tx,
        t,
        Some(by),
        actions::AI_KEY_CREATED,
        ("ai_key", &id),
        details,
    )
    .await?;
    let row = find(&mut tx, t, &id).await?;
    t.db().commit(tx).await?;
    Ok(row.view(now_ms()))
}

/// Replaces an active key by a new one (same name, URL and model); the old one is `retiring`
/// until `grace_seconds` from now (0: revoked at once).
pub async fn rotate(
    t: Tenant<'_>,
    secret: &ServerSecret,
    by: &str,
    id: &str,
    api_key: String,
    grace_seconds: i64,
) -> AppResult<KeyView> {
    let mut tx = t.db().begin().await?;
    let old = find(&mut tx, t, id).await?;
    let now = now_ms();
    let (status, revoked_at) = if grace_seconds == 0 {
        ("revoked", Some(now))
    } else {
        ("retiring", None)
    };
    // The old key leaves `active` first, on that condition: of two rotations at once, one
    // makes a new key and the other is refused.
    let left = sqlx::query(
        "UPDATE ai_keys SET status = $1, retires_at = $2, revoked_at = $3 WHERE id = $4 AND status = 'active'",
    )
    .bind(status)
    .bind(now + grace_seconds * 1000)
    .bind(revoked_at)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if left != 1 {
        return Err(AppError::new(
            Code::AiKeyNotActive,
            "only an active key can be rotated",
        ));
    }
    let key = NewKey {
        name: old.name.clone(),
        api_key,
        base_url: None,
        model: None,
    };
    let new_id = insert(&mut tx, t, secret, by, &key, &old.base_url, &old.model).await?;
    let details = serde_json::json!({"newKeyId": new_id, "graceSeconds": grace_seconds});
    crate::audit::record(
        &mut tx,
        t,
        Some(by),
        actions::AI_KEY_ROTATED,
        ("ai_key", id),
        details,
    )
    .await?;
    let row = find(&mut tx, t, &new_id).await?;
    t.db().commit(tx).await?;
    Ok(row.view(now))
}

/// Revokes a key at once (a revoked key stays revoked: no change, no audit entry).
pub async fn revoke(t: Tenant<'_>, by: &str, id: &str) -> AppResult<()> {
    let mut tx = t.db().begin().await?;
    let key = find(&mut tx, t, id).await?.view(now_ms());
    if key.status == "revoked" {
        return Ok(());
    }
    sqlx::query("UPDATE ai_keys SET status = 'revoked', revoked_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let details = serde_json::json!({"name": key.name});
    crate::audit::record(
        &mut tx,
        t,
        Some(by),
        actions::AI_KEY_REVOKED,
        ("ai_key", id),
        details,
    )
    .await?;
    t.db().commit(tx).await?;
    Ok(())
}

/// Writes `revoked` on retiring keys whose grace has ended, each with an audit entry (the
/// system's). Keys already count as revoked from that instant; this makes the row say so.
pub async fn retire_due(db: &crate::db::Db) -> AppResult<usize> {
    let now = now_ms();
    let due: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, workspace_id FROM ai_keys WHERE status = 'retiring' AND retires_at <= $1",
    )
    .bind(now)
    .fetch_all(db.reader())
    .await?;
    for (id, workspace) in &due {
        let t = Tenant::new(db, workspace);
        let mut tx = db.begin().await?;
        let done = sqlx::query(
            "UPDATE ai_keys SET status = 'revoked', revoked_at = retires_at \
             WHERE id = $1 AND status = 'retiring'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            crate::audit::record(
                &mut tx,
                t,
                None,
                actions::AI_KEY_RETIRED,
                ("ai_key", id),
                serde_json::json!({}),
            )
            .await?;
        }
        db.commit(tx).await?;
    }
    Ok(due.len())
}

/// The endpoint a workspace's calls use, with its key's id (`None`: the server's default
/// provider), and the keys to fall back on when the provider refuses it (retiring keys in
/// their grace period, newest first). `None`: no provider, the offline analyzer.
pub struct Chosen {
    pub key_id: Option<String>,
    pub endpoint: Endpoint,
    pub fallbacks: Vec<(String, Endpoint)>,
}

pub async fn choose(
    t: Tenant<'_>,
    secret: &ServerSecret,
    config: &AiConfig,
) -> AppResult<Option<Chosen>> {
    type Row = (String, String, String, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, secret, base_url, model, status FROM ai_keys WHERE workspace_id = $1 \
         AND (status = 'active' OR (status = 'retiring' AND retires_at > $2)) \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(t.workspace_id())
    .bind(now_ms())
    .fetch_all(t.db().reader())
    .await?;
    let mut active = None;
    let mut fallbacks = Vec::new();
    for (id, sealed, base_url, model, status) in rows {
        let Some(key) = secret.open(&sealed) else {
            tracing::warn!(key_id = %id, "an AI key cannot be opened with this server secret");
            continue;
        };
        let endpoint = Endpoint {
            base_url,
            model,
            key: Some(key),
        };
        if status == "active" && active.is_none() {
            active = Some((id, endpoint));
        } else {
            fallbacks.push((id, endpoint));
        }
    }
    Ok(match (active, config.provider.as_ref()) {
        (Some((id, endpoint)), _) => Some(Chosen {
            key_id: Some(id),
            endpoint,
            fallbacks,
        }),
        (None, Some(p)) => Some(Chosen {
            key_id: None,
            endpoint: Endpoint {
                base_url: p.url.clone(),
                model: config.model.clone(),
                key: p.api_key.as_ref().map(|k| k.expose().to_owned()),
            },
            fallbacks: Vec::new(),
        }),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_show_at_most_four_characters_of_long_keys() {
        assert_eq!(last4("sk-proj-0123456789abcdef"), "cdef");
        assert_eq!(last4("short-key"), "");
    }

    #[test]
    fn a_retiring_key_past_its_grace_reads_revoked() {
        let row = |retires_at| KeyRow {
            id: "k".into(),
            name: "n".into(),
            last4: "abcd".into(),
            status: "retiring".into(),
            base_url: "u".into(),
            model: "m".into(),
            created_at: 0,
            retires_at: Some(retires_at),
            revoked_at: None,
        };
        assert_eq!(row(100).view(99).status, "retiring");
        let v = row(100).view(100);
        assert_eq!(
            (v.status.as_str(), v.revoked_at.map(|t| t.0)),
            ("revoked", Some(100))
        );
        assert_eq!(v.masked, "••••abcd");
    }
}
