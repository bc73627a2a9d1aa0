//! `/api/v1/workspaces*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{parse_name, parse_slug, store, Workspace, WorkspaceMember};
use crate::app::AppState;
use crate::config::WorkspaceCreation;
use crate::db::Role;
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::validate::{field, optional, Validate};
use crate::http::Query;
use crate::http::{idempotency, AuthUser, IdempotencyKey, Json, ListQuery, Page, Scope};
use crate::users::model::{Email, Phone};
use crate::users::store as users;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace))
        .routes(routes!(list_members, add_member))
        .routes(routes!(change_member_role, remove_member))
}

/// The caller's scope in the workspace named by the path (id or slug); 404 for non-members.
async fn scope_for(state: &AppState, auth: AuthUser, id_or_slug: &str) -> AppResult<Scope> {
    let (workspace_id, role) =
        crate::db::find_membership_by_ref(&state.db, &auth.user_id, id_or_slug)
            .await?
            .ok_or_else(AppError::not_found)?;
    Ok(Scope {
        user_id: auth.user_id,
        session_id: auth.session_id,
        workspace_id,
        role,
    })
}

/// GET /api/v1/workspaces — the caller's workspaces with their role.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<Workspace>), (status = 401, body = Problem)))]
async fn list_workspaces(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<Workspace>>> {
    let limit = q.limit()?;
    let after: Option<String> = q.position()?;
    let rows = store::list_for_user(&state.db, &auth.user_id, after.as_deref(), limit).await?;
    Ok(Json(Page::from_rows(rows, limit, |w| w.id.clone(), |w| w)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWorkspaceBody {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    /// 2 to 40 of a-z, 0-9 and inner dashes; usable in `Palaver-Workspace`.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$")]
    pub slug: String,
}

/// POST /api/v1/workspaces — creates a workspace owned by the caller (platform admins, or anyone with PALAVER_WORKSPACES=open). An `Idempotency-Key` makes retries safe.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", security(("bearer" = [])), request_body = CreateWorkspaceBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key answers the workspace made the first time (200)")),
    responses((status = 201, body = Workspace), (status = 200, description = "made by an earlier request with this Idempotency-Key", body = Workspace), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "slug_taken", body = Problem), (status = 422, body = Problem)))]
async fn create_workspace(
    State(state): State<AppState>,
    auth: AuthUser,
    key: IdempotencyKey,
    Json(b): Json<CreateWorkspaceBody>,
) -> AppResult<(StatusCode, Json<Workspace>)> {
    let (name, slug) = (
        field("name", parse_name(&b.name)),
        field("slug", parse_slug(&b.slug)),
    )
        .validate()?;
    if state.config.workspaces == WorkspaceCreation::Admin {
        let user = users::find_by_id(&state.db, &auth.user_id)
            .await?
            .ok_or_else(AppError::unauthorized)?;
        if user.is_platform_admin == 0 {
            return Err(AppError::forbidden(
                "only platform admins may create workspaces",
            ));
        }
    }
    if let Some(k) = &key.0 {
        if let Some(id) = idempotency::find(&state.db, &auth.user_id, "workspace", k).await? {
            let scope = scope_for(&state, auth, &id).await?;
            return Ok((
                StatusCode::OK,
                Json(store::get(scope.tenant(&state.db), &scope.user_id).await?),
            ));
        }
    }
    let mut tx = state.db.begin().await?;
    let id = store::create(&mut tx, &name, &slug, &auth.user_id).await?;
    if let Some(k) = &key.0 {
        if !idempotency::record(&mut tx, &auth.user_id, "workspace", k, &id).await? {
            // A concurrent request with this key made the workspace: answer that one.
            drop(tx);
            state.db.settle_writes().await?;
            let id = idempotency::find(&state.db, &auth.user_id, "workspace", k)
                .await?
                .ok_or_else(AppError::not_found)?;
            let scope = scope_for(&state, auth, &id).await?;
            return Ok((
                StatusCode::OK,
                Json(store::get(scope.tenant(&state.db), &scope.user_id).await?),
            ));
        }
    }
    tx.commit().await?;
    let scope = scope_for(&state, auth, &id).await?;
    let ws = store::get(scope.tenant(&state.db), &scope.user_id).await?;
    Ok((StatusCode::CREATED, Json(ws)))
}

/// GET /api/v1/workspaces/{id} — a workspace the caller belongs to (by id or slug).
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", security(("bearer" = [])),
    params(("id" = String, Path, description = "workspace id or slug")),
    responses((status = 200, body = Workspace), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_workspace(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Workspace>> {
    let scope = scope_for(&state, auth, &id).await?;
    Ok(Json(
        store::get(scope.tenant(&state.db), &scope.user_id).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateWorkspaceBody {
    pub name: Option<String>,
    /// Replaces the settings object (business hours, timezone, AI options…); at most 16 KiB.
    pub settings: Option<serde_json::Value>,
}

/// PATCH /api/v1/workspaces/{id} — owners and admins change the name and settings.
#[utoipa::path(patch, path = "/workspaces/{id}", tag = "workspaces", security(("bearer" = [])), request_body = UpdateWorkspaceBody,
    params(("id" = String, Path, description = "workspace id or slug")),
    responses((status = 200, body = Workspace), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_workspace(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(b): Json<UpdateWorkspaceBody>,
) -> AppResult<Json<Workspace>> {
    let scope = scope_for(&state, auth, &id).await?;
    scope.require_admin("may do this")?;
    let (name, settings) = (
        optional("name", b.name, |n| parse_name(&n)),
        optional("settings", b.settings, |s| {
            let text = serde_json::to_string(&s).unwrap_or_default();
            if !s.is_object() {
                Err("must be an object".to_owned())
            } else if text.len() > 16 * 1024 {
                Err("must be at most 16 KiB".to_owned())
            } else if let Err(e) = super::check_settings(&s) {
                Err(e)
            } else {
                Ok(text)
            }
        }),
    )
        .validate()?;
    store::update(
        scope.tenant(&state.db),
        name.as_deref(),
        settings.as_deref(),
    )
    .await?;
    Ok(Json(
        store::get(scope.tenant(&state.db), &scope.user_id).await?,
    ))
}

/// GET /api/v1/workspaces/{id}/members — the members (owners, admins and agents only).
#[utoipa::path(get, path = "/workspaces/{id}/members", tag = "workspaces", security(("bearer" = [])),
    params(("id" = String, Path, description = "workspace id or slug"), ListQuery),
    responses((status = 200, body = Page<WorkspaceMember>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn list_members(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<WorkspaceMember>>> {
    let scope = scope_for(&state, auth, &id).await?;
    if scope.role == Role::Member {
        return Err(AppError::forbidden(
            "only the workspace's agents may list its members",
        ));
    }
    let limit = q.limit()?;
    let after: Option<String> = q.position()?;
    let rows = store::list_members(scope.tenant(&state.db), after.as_deref(), limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |m| m.user_id.clone(),
        |m| m,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMemberBody {
    /// One of `userId`, `email`, `phone`. An email or phone without an account creates an
    /// invited account that is claimed at its first sign-in.
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Role,
}

/// POST /api/v1/workspaces/{id}/members — adds (or invites) a member (owners and admins; only owners add owners).
#[utoipa::path(post, path = "/workspaces/{id}/members", tag = "workspaces", security(("bearer" = [])), request_body = AddMemberBody,
    params(("id" = String, Path, description = "workspace id or slug")),
    responses((status = 201, body = WorkspaceMember), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "already_member", body = Problem), (status = 422, body = Problem)))]
async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(b): Json<AddMemberBody>,
) -> AppResult<(StatusCode, Json<WorkspaceMember>)> {
    let scope = scope_for(&state, auth, &id).await?;
    scope.require_admin("may do this")?;
    if b.role == Role::Owner && scope.role != Role::Owner {
        return Err(AppError::forbidden("only owners may add owners"));
    }
    let given = [b.user_id.is_some(), b.email.is_some(), b.phone.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given != 1 {
        return Err(AppError::validation(vec![FieldError::new(
            "userId",
            "give exactly one of userId, email, phone",
        )]));
    }
    let mut tx = state.db.begin().await?;
    // An invitation by email binds only to a proven address: until the account's address is
    // verified, it waits (and grants nothing).
    let mut unproven_email = false;
    let user_id = if let Some(user_id) = b.user_id {
        users::find_by_id(&state.db, &user_id)
            .await?
            .ok_or_else(|| AppError::invalid_field("userId", "no such user"))?
            .id
    } else {
        let email = optional("email", b.email, |e| Email::parse(&e)).validate()?;
        let phone = optional("phone", b.phone, |p| Phone::parse(&p)).validate()?;
        let existing = match (&email, &phone) {
            (Some(e), _) => users::find_by_email(&state.db, e.as_str()).await?,
            (_, Some(p)) => users::find_by_phone(&state.db, p.as_str()).await?,
            _ => None,
        };
        unproven_email = email.is_some()
            && existing
                .as_ref()
                .is_none_or(|u| u.email_verified_at.is_none());
        match existing {
            Some(u) => u.id,
            None => {
                let name = email
                    .as_ref()
                    .map(|e| e.as_str().split('@').next().unwrap_or("Invited").to_owned());
                let new = users::insert(
                    &mut tx,
                    users::NewUser {
                        display_name: name.as_deref().unwrap_or("Invited user"),
                        email: email.as_ref().map(Email::as_str),
                        phone: phone.as_ref().map(Phone::as_str),
                        password_hash: None,
                        is_platform_admin: false,
                        is_invited: true,
                    },
                )
                .await?;
                new.id
            }
        }
    };
    if unproven_email {
        store::insert_invitation(&mut tx, &scope.workspace_id, &user_id, b.role).await?;
    } else {
        store::insert_membership(&mut tx, &scope.workspace_id, &user_id, b.role).await?;
    }
    tx.commit().await?;
    let member = store::find_member(scope.tenant(&state.db), &user_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    tracing::info!(
        workspace_id = scope.workspace_id,
        user_id,
        role = b.role.as_str(),
        "member added"
    );
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeRoleBody {
    pub role: Role,
}

/// PATCH /api/v1/workspaces/{id}/members/{userId} — changes a member's role (owners and admins; only owners touch owners).
#[utoipa::path(patch, path = "/workspaces/{id}/members/{userId}", tag = "workspaces", security(("bearer" = [])), request_body = ChangeRoleBody,
    params(("id" = String, Path, description = "workspace id or slug"), ("userId" = String, Path)),
    responses((status = 200, body = WorkspaceMember), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "last_owner", body = Problem)))]
async fn change_member_role(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_id)): Path<(String, String)>,
    Json(b): Json<ChangeRoleBody>,
) -> AppResult<Json<WorkspaceMember>> {
    let scope = scope_for(&state, auth, &id).await?;
    scope.require_admin("may do this")?;
    let tenant = scope.tenant(&state.db);
    let target = store::find_member(tenant, &user_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    if (target.role == Role::Owner || b.role == Role::Owner) && scope.role != Role::Owner {
        return Err(AppError::forbidden(
            "only owners may grant or take the owner role",
        ));
    }
    // The role and what it opens or closes change together: a demoted agent has lost the
    // inbox when this answers.
    let mut tx = state.db.begin().await?;
    let before = store::set_role(&mut tx, &scope.workspace_id, &user_id, b.role).await?;
    match (before.works_inbox(), b.role.works_inbox()) {
        (false, true) => {
            crate::conversations::store::join_channel_conversations(
                &mut tx,
                &scope.workspace_id,
                &user_id,
            )
            .await?
        }
        (true, false) => {
            crate::chats::service::leave_workspace_conversations(
                &mut tx,
                &scope.workspace_id,
                &user_id,
                true,
            )
            .await?;
        }
        _ => {}
    }
    let details = serde_json::json!({"from": before, "to": b.role});
    crate::audit::record(
        &mut tx,
        tenant,
        Some(&scope.user_id),
        crate::audit::actions::MEMBER_ROLE_CHANGED,
        ("member", &user_id),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    let member = store::find_member(tenant, &user_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(member))
}

/// DELETE /api/v1/workspaces/{id}/members/{userId} — removes a member (owners and admins), or leaves (yourself); the last owner cannot leave.
#[utoipa::path(delete, path = "/workspaces/{id}/members/{userId}", tag = "workspaces", security(("bearer" = [])),
    params(("id" = String, Path, description = "workspace id or slug"), ("userId" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, description = "last_owner", body = Problem)))]
async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let scope = scope_for(&state, auth, &id).await?;
    let tenant = scope.tenant(&state.db);
    if user_id != scope.user_id {
        scope.require_admin("may do this")?;
        let target = store::find_member(tenant, &user_id)
            .await?
            .ok_or_else(AppError::not_found)?;
        if target.role == Role::Owner && scope.role != Role::Owner {
            return Err(AppError::forbidden("only owners may remove owners"));
        }
    }
    // Out of the workspace and out of its conversations at once; the member's devices acting
    // in it are told and disconnected.
    let mut tx = state.db.begin().await?;
    store::remove_member(&mut tx, &scope.workspace_id, &user_id).await?;
    crate::chats::service::leave_workspace_conversations(
        &mut tx,
        &scope.workspace_id,
        &user_id,
        false,
    )
    .await?;
    crate::audit::record(
        &mut tx,
        tenant,
        Some(&scope.user_id),
        crate::audit::actions::MEMBER_REMOVED,
        ("member", &user_id),
        serde_json::json!({}),
    )
    .await?;
    state.db.commit(tx).await?;
    state.left_workspace(&user_id, &scope.workspace_id);
    Ok(StatusCode::NO_CONTENT)
}
