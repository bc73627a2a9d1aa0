//! Leads as stored: rows, their tags, the writes (agents, imports, WhatsApp contacts, the
//! support desk) and the filtered list. Every query takes the tenant.

use std::collections::HashMap;

use super::catalog;
use super::model::{
    merge_attributes, wa_id_of, LeadFields, LeadView, OptIn, OptInSource, OptInStatus,
};
use crate::db::lite::{text, Value};
use crate::db::{is_unique_violation, new_id, now_ms, Binds, Db, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeadRow {
    pub id: String,
    pub workspace_id: String,
    pub channel_id: Option<String>,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub stage: String,
    pub attributes: String,
    pub opt_in_status: String,
    pub opted_in_at: Option<i64>,
    pub opt_in_source: Option<String>,
    pub assignee_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

crate::db::lite::lite_row!(LeadRow {
    id,
    workspace_id,
    channel_id,
    wa_id,
    user_id,
    name,
    email,
    stage,
    attributes,
    opt_in_status,
    opted_in_at,
    opt_in_source,
    assignee_id,
    created_at,
    updated_at
});

pub const COLUMNS: &str = "l.id, l.workspace_id, l.channel_id, l.wa_id, l.user_id, l.name, \
    l.email, l.stage, l.attributes, l.opt_in_status, l.opted_in_at, l.opt_in_source, \
    l.assignee_id, l.created_at, l.updated_at";

impl LeadRow {
    pub fn view(self, tags: Vec<String>) -> LeadView {
        LeadView {
            phone: self.wa_id.as_ref().map(|w| format!("+{w}")),
            tags,
            opt_in: OptIn {
                status: OptInStatus::from_db(&self.opt_in_status),
                at: self.opted_in_at.map(Timestamp),
                source: self.opt_in_source.as_deref().and_then(OptInSource::from_db),
            },
            attributes: serde_json::from_str(&self.attributes).unwrap_or_default(),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            id: self.id,
            name: self.name,
            wa_id: self.wa_id,
            user_id: self.user_id,
            email: self.email,
            channel_id: self.channel_id,
            stage: self.stage,
            assignee_id: self.assignee_id,
        }
    }
}

/// The views of these leads, with their tags (one query for all of them).
pub async fn views(db: &Db, rows: Vec<LeadRow>) -> AppResult<Vec<LeadView>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut tags = tags_of(db, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            r.view(t)
        })
        .collect())
}

/// Tag names of these leads, by lead, in name order.
pub async fn tags_of(db: &Db, lead_ids: &[&str]) -> AppResult<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if lead_ids.is_empty() {
        return Ok(out);
    }
    let mut params = Vec::new();
    let list = db.slots().in_list(lead_ids, &mut params);
    let rows: Vec<(String, String)> = db
        .rows_once(
            format!(
                "SELECT lt.lead_id, t.name FROM lead_tags lt JOIN tags t ON t.id = lt.tag_id \
                 WHERE lt.lead_id IN ({list}) ORDER BY t.name"
            ),
            params,
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await?;
    for (lead, tag) in rows {
        out.entry(lead).or_default().push(tag);
    }
    Ok(out)
}

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<Option<LeadRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM leads l WHERE l.id = $1 AND l.workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?)
}

pub async fn find_in_tx(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<LeadRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM leads l WHERE l.id = $1 AND l.workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(AppError::not_found)
}

/// The lead with this WhatsApp id (phone digits), if any.
pub async fn find_by_wa_id(tx: &mut Tx, t: Tenant<'_>, wa_id: &str) -> AppResult<Option<LeadRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM leads l WHERE l.workspace_id = $1 AND l.wa_id = $2"
    ))
    .bind(t.workspace_id())
    .bind(wa_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// What a write needs to know about the workspace: its stages and attribute definitions.
pub struct Rules {
    pub stages: Vec<String>,
    pub attributes: Vec<super::model::AttributeDefinition>,
}

impl Rules {
    pub async fn load(t: Tenant<'_>) -> AppResult<Rules> {
        Ok(Rules {
            stages: catalog::stages(t).await?,
            attributes: catalog::attributes(t).await?,
        })
    }

    /// Checks a lead's fields against the workspace's pipeline and attribute definitions.
    pub fn check(&self, f: &LeadFields) -> Result<(), (&'static str, String)> {
        if let Some(stage) = &f.stage {
            if !self.stages.contains(stage) {
                return Err((
                    "stage",
                    format!(
                        "is not a stage of this workspace ({})",
                        self.stages.join(", ")
                    ),
                ));
            }
        }
        if let Some(attrs) = &f.attributes {
            for (k, v) in attrs {
                if let Some(d) = self.attributes.iter().find(|d| &d.key == k) {
                    d.check(v).map_err(|m| ("attributes", m))?;
                }
            }
        }
        Ok(())
    }
}

fn lead_taken(e: sqlx::Error) -> AppError {
    if is_unique_violation(&e) {
        AppError::new(Code::LeadExists, "another lead has this phone number")
    } else {
        e.into()
    }
}

/// Creates a lead; 409 `lead_exists` when the phone (or app user) has one already.
pub async fn insert(tx: &mut Tx, t: Tenant<'_>, f: &LeadFields) -> AppResult<LeadRow> {
    let id = new_id();
    let now = now_ms();
    let attributes = match &f.attributes {
        Some(a) => {
            merge_attributes("{}", a).map_err(|m| AppError::invalid_field("attributes", m))?
        }
        None => "{}".to_owned(),
    };
    let (opt_status, opt_at, opt_source) = match f.opt_in {
        Some((status, source)) => (status.as_str(), Some(now), Some(source.as_str())),
        None => ("unknown", None, None),
    };
    let r = sqlx::query(
        "INSERT INTO leads (id, workspace_id, wa_id, name, email, stage, attributes, \
         opt_in_status, opted_in_at, opt_in_source, assignee_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(f.phone.clone().flatten().map(|p| wa_id_of(&p)))
    .bind(f.name.clone().flatten())
    .bind(f.email.clone().flatten().map(|e| e.as_str().to_owned()))
    .bind(match &f.stage {
        Some(s) => s.clone(),
        None => catalog::first_stage(tx, t).await?,
    })
    .bind(attributes)
    .bind(opt_status)
    .bind(opt_at)
    .bind(opt_source)
    .bind(f.assignee_id.clone().flatten())
    .bind(now)
    .execute(&mut **tx)
    .await;
    r.map_err(lead_taken)?;
    if let Some(tags) = &f.tags {
        set_tags(tx, t, &id, tags).await?;
    }
    find_in_tx(tx, t, &id).await
}

/// Changes the given fields of a lead; the opt-in time moves only when the status changes.
pub async fn update(
    tx: &mut Tx,
    t: Tenant<'_>,
    lead: &LeadRow,
    f: &LeadFields,
) -> AppResult<LeadRow> {
    let attributes = match &f.attributes {
        Some(a) => Some(
            merge_attributes(&lead.attributes, a)
                .map_err(|m| AppError::invalid_field("attributes", m))?,
        ),
        None => None,
    };
    let now = now_ms();
    let opt_in = f
        .opt_in
        .filter(|(status, _)| status.as_str() != lead.opt_in_status);
    let r = sqlx::query(
        "UPDATE leads SET \
           name = CASE WHEN $1 = 1 THEN $2 ELSE name END, \
           wa_id = CASE WHEN $3 = 1 THEN $4 ELSE wa_id END, \
           email = CASE WHEN $5 = 1 THEN $6 ELSE email END, \
           stage = COALESCE($7, stage), \
           attributes = COALESCE($8, attributes), \
           opt_in_status = COALESCE($9, opt_in_status), \
           opted_in_at = CASE WHEN $9 IS NULL THEN opted_in_at ELSE $10 END, \
           opt_in_source = COALESCE($11, opt_in_source), \
           assignee_id = CASE WHEN $12 = 1 THEN $13 ELSE assignee_id END, \
           updated_at = $10 \
         WHERE id = $14 AND workspace_id = $15",
    )
    .bind(f.name.is_some() as i64)
    .bind(f.name.clone().flatten())
    .bind(f.phone.is_some() as i64)
    .bind(f.phone.clone().flatten().map(|p| wa_id_of(&p)))
    .bind(f.email.is_some() as i64)
    .bind(f.email.clone().flatten().map(|e| e.as_str().to_owned()))
    .bind(f.stage.as_deref())
    .bind(attributes)
    .bind(opt_in.map(|(s, _)| s.as_str()))
    .bind(now)
    .bind(opt_in.map(|(_, s)| s.as_str()))
    .bind(f.assignee_id.is_some() as i64)
    .bind(f.assignee_id.clone().flatten())
    .bind(&lead.id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await;
    r.map_err(lead_taken)?;
    if let Some(tags) = &f.tags {
        set_tags(tx, t, &lead.id, tags).await?;
    }
    find_in_tx(tx, t, &lead.id).await
}

/// The ids of these tags in the workspace, creating the missing ones (default colour).
pub async fn ensure_tags(tx: &mut Tx, t: Tenant<'_>, names: &[String]) -> AppResult<Vec<String>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        sqlx::query(
            "INSERT INTO tags (id, workspace_id, name, color, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (workspace_id, name) DO NOTHING",
        )
        .bind(new_id())
        .bind(t.workspace_id())
        .bind(name)
        .bind(super::model::default_color(name))
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        let id: String =
            sqlx::query_scalar("SELECT id FROM tags WHERE workspace_id = $1 AND name = $2")
                .bind(t.workspace_id())
                .bind(name)
                .fetch_one(&mut **tx)
                .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// A lead's tag names, in the transaction.
pub async fn tag_names_in_tx(tx: &mut Tx, lead_id: &str) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT t.name FROM lead_tags lt JOIN tags t ON t.id = lt.tag_id WHERE lt.lead_id = $1",
    )
    .bind(lead_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// Replaces a lead's tags.
pub async fn set_tags(
    tx: &mut Tx,
    t: Tenant<'_>,
    lead_id: &str,
    names: &[String],
) -> AppResult<()> {
    let ids = ensure_tags(tx, t, names).await?;
    set_tag_ids(tx, lead_id, &ids).await
}

/// Replaces a lead's tags with these (ids of the lead's workspace's tags).
pub async fn set_tag_ids(tx: &mut Tx, lead_id: &str, ids: &[String]) -> AppResult<()> {
    sqlx::query("DELETE FROM lead_tags WHERE lead_id = $1")
        .bind(lead_id)
        .execute(&mut **tx)
        .await?;
    for id in ids {
        sqlx::query("INSERT INTO lead_tags (lead_id, tag_id) VALUES ($1, $2)")
            .bind(lead_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Deletes a lead without conversations; one with conversations is kept (409): its
/// conversations name it, and the agents' history must stay readable.
pub async fn delete(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<()> {
    let conversations: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM conversations WHERE lead_id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(t.workspace_id())
    .fetch_one(&mut **tx)
    .await?;
    if conversations > 0 {
        return Err(AppError::new(
            Code::LeadInUse,
            format!("the lead has {conversations} conversation(s); it stays while they do"),
        ));
    }
    let deleted = sqlx::query("DELETE FROM leads WHERE id = $1 AND workspace_id = $2")
        .bind(id)
        .bind(t.workspace_id())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(AppError::not_found());
    }
    Ok(())
}

/// Creates the leads of these WhatsApp customers (each once) in the workspace, or updates
/// their names (when one is given) and channel, with one statement; (wa_id, lead id) pairs.
pub async fn upsert_many(
    tx: &mut Tx,
    mut slots: crate::db::Slots,
    workspace_id: &str,
    channel_id: &str,
    contacts: &[(&str, Option<&str>)],
) -> AppResult<Vec<(String, String)>> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from(
        "INSERT INTO leads (id, workspace_id, channel_id, wa_id, name, created_at, updated_at) VALUES ",
    );
    for i in 0..contacts.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&slots.row(7));
    }
    sql.push_str(
        " ON CONFLICT (workspace_id, wa_id) DO UPDATE SET \
           name = COALESCE(excluded.name, leads.name), channel_id = excluded.channel_id, \
           updated_at = excluded.updated_at \
         RETURNING wa_id, id",
    );
    let now = now_ms();
    let mut q = sqlx::query_as::<_, (String, String)>(&sql).persistent(false);
    for (wa_id, name) in contacts {
        q = q
            .bind(new_id())
            .bind(workspace_id)
            .bind(channel_id)
            .bind(*wa_id)
            .bind(name.map(|n| n.chars().take(200).collect::<String>()))
            .bind(now)
            .bind(now);
    }
    Ok(q.fetch_all(&mut **tx).await?)
}

/// The lead of an app user in the workspace (the support desk's customer), made on first use
/// with the user's name, phone and email.
pub async fn for_user(tx: &mut Tx, t: Tenant<'_>, user_id: &str) -> AppResult<LeadRow> {
    let found: Option<LeadRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM leads l WHERE l.workspace_id = $1 AND l.user_id = $2"
    ))
    .bind(t.workspace_id())
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(lead) = found {
        return Ok(lead);
    }
    let (name, phone, email): (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT display_name, phone, email FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut **tx)
            .await?;
    let mut wa_id = phone
        .as_deref()
        .map(|p| p.trim_start_matches('+').to_owned());
    // A lead with the user's phone (a WhatsApp customer, an import) becomes this user's; one
    // that is another user's keeps the phone (the new lead goes without it).
    if let Some(w) = wa_id.clone() {
        let found = find_by_wa_id(tx, t, &w).await?;
        if found.as_ref().is_some_and(|l| l.user_id.is_some()) {
            wa_id = None;
        }
        if let Some(lead) = found.filter(|l| l.user_id.is_none()) {
            sqlx::query("UPDATE leads SET user_id = $1, updated_at = $2 WHERE id = $3")
                .bind(user_id)
                .bind(now_ms())
                .bind(&lead.id)
                .execute(&mut **tx)
                .await?;
            return find_in_tx(tx, t, &lead.id).await;
        }
    }
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO leads (id, workspace_id, wa_id, user_id, name, email, stage, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(wa_id)
    .bind(user_id)
    .bind(name)
    .bind(email)
    .bind(catalog::first_stage(tx, t).await?)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    find_in_tx(tx, t, &id).await
}

/// Which leads a list shows, in which order.
#[derive(Debug, Default)]
pub struct LeadFilter {
    pub stage: Option<String>,
    /// Any of these tag ids.
    pub any_tags: Vec<String>,
    /// All of these tag ids.
    pub all_tags: Vec<String>,
    /// `Some(None)`: unassigned.
    pub assignee: Option<Option<String>>,
    pub opt_in: Option<OptInStatus>,
    pub channel_id: Option<String>,
    pub created: (Option<i64>, Option<i64>),
    pub updated: (Option<i64>, Option<i64>),
    /// Lower-cased, LIKE-escaped text to find anywhere in name, phone, email or attributes.
    pub text: Option<String>,
    pub sort: Sort,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    #[default]
    UpdatedDesc,
    UpdatedAsc,
    CreatedDesc,
    CreatedAsc,
    NameAsc,
    NameDesc,
}

impl Sort {
    pub fn parse(raw: &str) -> Result<Sort, String> {
        Ok(match raw {
            "-updatedAt" => Sort::UpdatedDesc,
            "updatedAt" => Sort::UpdatedAsc,
            "-createdAt" => Sort::CreatedDesc,
            "createdAt" => Sort::CreatedAsc,
            "name" => Sort::NameAsc,
            "-name" => Sort::NameDesc,
            _ => return Err("must be updatedAt, createdAt or name, with - for descending".into()),
        })
    }
    fn key(self) -> &'static str {
        match self {
            Sort::UpdatedDesc | Sort::UpdatedAsc => "l.updated_at",
            Sort::CreatedDesc | Sort::CreatedAsc => "l.created_at",
            Sort::NameAsc | Sort::NameDesc => "LOWER(COALESCE(l.name, ''))",
        }
    }
    fn descending(self) -> bool {
        matches!(self, Sort::UpdatedDesc | Sort::CreatedDesc | Sort::NameDesc)
    }
    /// The row's position in this order, for the cursor.
    pub fn position(self, l: &LeadRow) -> (serde_json::Value, String) {
        let key = match self {
            Sort::UpdatedDesc | Sort::UpdatedAsc => serde_json::json!(l.updated_at),
            Sort::CreatedDesc | Sort::CreatedAsc => serde_json::json!(l.created_at),
            Sort::NameAsc | Sort::NameDesc => {
                serde_json::json!(l.name.as_deref().unwrap_or("").to_lowercase())
            }
        };
        (key, l.id.clone())
    }
}

/// The WHERE clause of a filter (shared by the list and the export).
pub fn filter_sql(t: Tenant<'_>, f: &LeadFilter, b: &mut Binds) -> String {
    let mut sql = format!("l.workspace_id = {}", b.bind(text(t.workspace_id())));
    if let Some(stage) = &f.stage {
        sql += &format!(" AND l.stage = {}", b.bind(text(stage)));
    }
    if !f.any_tags.is_empty() {
        let list: Vec<String> = f.any_tags.iter().map(|id| b.bind(text(id))).collect();
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM lead_tags lt WHERE lt.lead_id = l.id AND lt.tag_id IN ({}))",
            list.join(", ")
        );
    }
    for id in &f.all_tags {
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM lead_tags lt WHERE lt.lead_id = l.id AND lt.tag_id = {})",
            b.bind(text(id))
        );
    }
    match &f.assignee {
        Some(None) => sql += " AND l.assignee_id IS NULL",
        Some(Some(id)) => sql += &format!(" AND l.assignee_id = {}", b.bind(text(id))),
        None => {}
    }
    if let Some(o) = f.opt_in {
        sql += &format!(" AND l.opt_in_status = {}", b.bind(text(o.as_str())));
    }
    if let Some(c) = &f.channel_id {
        sql += &format!(" AND l.channel_id = {}", b.bind(text(c)));
    }
    for (column, (from, to)) in [("l.created_at", f.created), ("l.updated_at", f.updated)] {
        if let Some(from) = from {
            sql += &format!(" AND {column} >= {}", b.bind(Value::Integer(from)));
        }
        if let Some(to) = to {
            sql += &format!(" AND {column} < {}", b.bind(Value::Integer(to)));
        }
    }
    if let Some(q) = &f.text {
        let like = format!("%{q}%");
        let mut one = |column: &str| format!("{column} LIKE {} ESCAPE '\\'", b.bind(text(&like)));
        let any = [
            one("LOWER(COALESCE(l.name, ''))"),
            one("COALESCE(l.wa_id, '')"),
            one("COALESCE(l.email, '')"),
            one("LOWER(l.attributes)"),
        ];
        sql += &format!(" AND ({})", any.join(" OR "));
    }
    sql
}

/// A page of leads after `after` (a cursor position of the same sort).
pub async fn list(
    t: Tenant<'_>,
    f: &LeadFilter,
    after: Option<(serde_json::Value, String)>,
    limit: i64,
) -> AppResult<Vec<LeadRow>> {
    let db = t.db();
    let mut b = Binds::new(db);
    let mut sql = format!(
        "SELECT {COLUMNS} FROM leads l WHERE {}",
        filter_sql(t, f, &mut b)
    );
    let key = f.sort.key();
    let (cmp, dir) = if f.sort.descending() {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((value, id)) = after {
        let v = match value {
            serde_json::Value::Number(n) => Value::Integer(n.as_i64().unwrap_or_default()),
            serde_json::Value::String(s) => Value::Text(s),
            _ => {
                return Err(AppError::invalid_field(
                    "cursor",
                    "is not a cursor of this list",
                ))
            }
        };
        let (a1, a2, i) = (b.bind(v.clone()), b.bind(v), b.bind(text(&id)));
        sql += &format!(" AND ({key} {cmp} {a1} OR ({key} = {a2} AND l.id {cmp} {i}))");
    }
    sql += &format!(" ORDER BY {key} {dir}, l.id {dir} LIMIT {}", limit + 1);
    db.rows_once(sql, b.params, LeadRow::from_lite).await
}
