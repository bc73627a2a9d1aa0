//! The sign-in rules, shared by the HTTP routes and the `palaver admin` command.

use std::time::Duration;

use rand::Rng;
use subtle::ConstantTimeEq;

use super::secrets::{hash_password, new_token, token_hash, verify_password};
use super::store::{self, RefreshUse, SessionRow};
use crate::app::AppState;
use crate::config::SignupMode;
use crate::db::Role;
use crate::db::{now_ms, Tx};
use crate::error::{AppError, AppResult, Code};
use crate::notify::Mail;
use crate::ratelimit::limits;
use crate::users::model::UserRow;
use crate::users::store as users;
use crate::workspaces::store as workspaces;

pub const OTP_TTL: Duration = Duration::from_secs(300);
pub const OTP_RESEND_COOLDOWN: Duration = Duration::from_secs(60);
pub const OTP_MAX_ATTEMPTS: i64 = 3;
const RESET_TTL: Duration = Duration::from_secs(3600);
/// How long a verification link works.
const VERIFY_TTL: Duration = Duration::from_secs(48 * 3600);

/// The device a session is opened for.
pub struct Device {
    pub id: String,
    pub name: Option<String>,
}

/// A freshly opened session with its tokens.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub session: SessionRow,
}

/// Opens a session inside `tx` and returns the refresh token; the caller commits, then calls
/// [`finish`] to sign the access token.
async fn open_session(
    state: &AppState,
    tx: &mut Tx,
    user_id: &str,
    device: &Device,
) -> AppResult<(SessionRow, String)> {
    let (session, replaced) =
        store::insert_session(tx, user_id, &device.id, device.name.as_deref()).await?;
    state.sessions_revoked(&replaced);
    let refresh = new_token();
    let expires_at = now_ms() + state.config.refresh_token_ttl.as_millis() as i64;
    store::insert_refresh_token(tx, &token_hash(&refresh), &session.id, expires_at).await?;
    Ok((session, refresh))
}

fn finish(state: &AppState, session: SessionRow, refresh_token: String) -> AppResult<Issued> {
    let ttl = state.config.access_token_ttl.as_secs();
    let access_token =
        state
            .keys
            .sign(&session.user_id, &session.id, now_ms() / 1000, ttl as i64)?;
    Ok(Issued {
        access_token,
        refresh_token,
        expires_in: ttl,
        session,
    })
}

pub struct SignupInput {
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub device: Device,
}

/// Creates an account (or claims an invited one) and signs it in.
pub async fn signup(state: &AppState, input: SignupInput) -> AppResult<(UserRow, Issued)> {
    let existing = users::find_by_email(&state.db, &input.email).await?;
    let invited = existing.as_ref().filter(|u| u.is_invited != 0);
    match (state.config.signup, invited, &existing) {
        (SignupMode::Closed, _, _) => return Err(signup_closed()),
        (_, None, Some(_)) => {
            return Err(AppError::new(
                Code::EmailTaken,
                "an account with this email exists",
            ))
        }
        (SignupMode::Invite, None, None) => return Err(signup_closed()),
        _ => {}
    }
    // Hash before the transaction: Argon2 takes tens of milliseconds and the writer is shared.
    let hash = hash_password(input.password).await?;
    let mut tx = state.db.begin().await?;
    let user = match invited {
        Some(u) => {
            users::claim_invited(&mut tx, &u.id, Some(&input.display_name), Some(&hash)).await?
        }
        None => {
            let new = users::NewUser {
                display_name: &input.display_name,
                email: Some(&input.email),
                phone: None,
                password_hash: Some(&hash),
                is_platform_admin: false,
                is_invited: false,
            };
            new_member(state, &mut tx, new).await?
        }
    };
    let (session, refresh) = open_session(state, &mut tx, &user.id, &input.device).await?;
    tx.commit().await?;
    tokio::spawn(send_verification(
        state.clone(),
        user.id.clone(),
        input.email.clone(),
    ));
    Ok((user, finish(state, session, refresh)?))
}

/// Mails a verification link for `email` to it (in the background; failures are logged).
pub async fn send_verification(state: AppState, user_id: String, email: String) {
    mail_link(&state, &VERIFICATION, &user_id, email).await;
}

/// A link mailed to an address: a single-use token, stored as its hash.
struct MailedLink {
    kind: store::LinkToken,
    /// The web app's page that takes the token.
    page: &'static str,
    ttl: Duration,
    subject: &'static str,
    /// The mail's text around the link.
    text: fn(&str) -> String,
    /// What failed, for the log.
    what: &'static str,
}

const VERIFICATION: MailedLink = MailedLink {
    kind: store::LinkToken::EmailVerification,
    page: "verify-email",
    ttl: VERIFY_TTL,
    subject: "Confirm your email address",
    text: |link| {
        format!(
            "Please confirm that this address is yours by opening this link within 48 hours:\n{link}\n\n\
             If you did not sign up for Palaver, ignore this mail."
        )
    },
    what: "sending a verification mail failed",
};

const PASSWORD_RESET: MailedLink = MailedLink {
    kind: store::LinkToken::PasswordReset,
    page: "reset-password",
    ttl: RESET_TTL,
    subject: "Reset your Palaver password",
    text: |link| {
        format!(
            "Someone asked to reset the password of your account.\n\n\
             To choose a new password, open this link within an hour:\n{link}\n\n\
             If it was not you, ignore this mail; your password stays as it is."
        )
    },
    what: "sending a password-reset mail failed",
};

/// Stores a new token of `link`'s kind for `email` and mails the link to it; failures are
/// logged (this runs after the answer).
async fn mail_link(state: &AppState, link: &MailedLink, user_id: &str, email: String) {
    let result: anyhow::Result<()> = async {
        let token = new_token();
        let expires_at = now_ms() + link.ttl.as_millis() as i64;
        let hash = token_hash(&token);
        store::insert_link_token(&state.db, link.kind, &hash, user_id, &email, expires_at)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let url = format!("{}/{}?token={token}", state.config.public_url, link.page);
        let mail = Mail {
            to: email,
            subject: link.subject.into(),
            text: (link.text)(&url),
            link: Some(url),
        };
        state.mail.send(mail).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = format!("{e:#}"), "{}", link.what);
    }
}

/// Uses a verification link: the address is verified if it is still the account's, and the
/// invitations waiting for it become memberships.
pub async fn verify_email(state: &AppState, token: &str) -> AppResult<()> {
    let invalid = || {
        AppError::new(
            Code::InvalidVerificationToken,
            "the verification token is invalid, expired or used",
        )
    };
    let mut tx = state.db.begin().await?;
    let (user_id, email) = store::use_email_verification(&mut tx, &token_hash(token))
        .await?
        .ok_or_else(invalid)?;
    if !store::set_email_verified(&mut tx, &user_id, &email).await? {
        return Err(invalid());
    }
    email_proven(&mut tx, &user_id).await?;
    state.db.commit(tx).await?;
    Ok(())
}

/// What an account gets once its address is proven: the invitations sent to it.
async fn email_proven(tx: &mut Tx, user_id: &str) -> AppResult<()> {
    for (workspace_id, role) in workspaces::accept_invitations(tx, user_id).await? {
        if role.works_inbox() {
            crate::conversations::store::join_channel_conversations(tx, &workspace_id, user_id)
                .await?;
        }
    }
    Ok(())
}

/// A new verification mail to the caller's address, unless it is verified (or there is none).
pub async fn resend_verification(state: &AppState, user_id: &str) -> AppResult<()> {
    let user = users::find_by_id(&state.db, user_id)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    if let (Some(email), None) = (user.email, user.email_verified_at) {
        if let Err(retry) = state
            .limiter
            .check(&limits::VERIFICATION_MAILS_PER_USER, user_id)
            .await
        {
            return Err(AppError::rate_limited(Code::RateLimited, retry));
        }
        tokio::spawn(send_verification(state.clone(), user.id, email));
    }
    Ok(())
}

/// A new account from open signup (email or phone): a member of the default workspace.
async fn new_member(state: &AppState, tx: &mut Tx, new: users::NewUser<'_>) -> AppResult<UserRow> {
    let user = users::insert(tx, new).await?;
    workspaces::insert_membership(tx, &state.default_workspace_id, &user.id, Role::Member).await?;
    Ok(user)
}

fn signup_closed() -> AppError {
    AppError::new(
        Code::SignupClosed,
        "this server does not accept new accounts",
    )
}

/// Email + password. Unknown email and wrong password are the same 401, in the same time.
pub async fn login(
    state: &AppState,
    email: &str,
    password: String,
    device: Device,
) -> AppResult<(UserRow, Issued)> {
    let user = users::find_by_email(&state.db, email).await?;
    let ok = verify_password(
        password,
        user.as_ref().and_then(|u| u.password_hash.clone()),
    )
    .await?;
    let user = match user {
        Some(u) if ok => u,
        _ => {
            return Err(AppError::new(
                Code::InvalidCredentials,
                "wrong email or password",
            ))
        }
    };
    let mut tx = state.db.begin().await?;
    let (session, refresh) = open_session(state, &mut tx, &user.id, &device).await?;
    tx.commit().await?;
    Ok((user, finish(state, session, refresh)?))
}

/// Seconds left of the phone's resend cooldown, if it is in one.
async fn otp_cooldown(state: &AppState, phone: &str) -> AppResult<Option<u64>> {
    let now = now_ms();
    Ok(store::find_otp(&state.db, phone)
        .await?
        .filter(|c| c.resend_after > now && c.consumed_at.is_none())
        .map(|c| ((c.resend_after - now + 999) / 1000) as u64))
}

/// Sends a one-time code to a phone; returns (expires in, resend after) in seconds.
pub async fn request_otp(state: &AppState, phone: &str) -> AppResult<(u64, u64)> {
    if let Some(wait) = otp_cooldown(state, phone).await? {
        return Err(AppError::rate_limited(Code::OtpCooldown, wait));
    }
    if state.config.signup != SignupMode::Open {
        // Refuse before sending: an SMS to a number that can never sign in costs money.
        let known = users::find_by_phone(&state.db, phone).await?;
        let may_sign_in = match state.config.signup {
            SignupMode::Closed => known.is_some_and(|u| u.is_invited == 0),
            _ => known.is_some(),
        };
        if !may_sign_in {
            return Err(signup_closed());
        }
    }
    // Counted only for codes about to be sent, so that retries refused by the cooldown do not
    // use up the phone's hourly allowance.
    if let Err(retry) = state.limiter.check(&limits::OTP_PER_PHONE, phone).await {
        return Err(AppError::rate_limited(Code::RateLimited, retry));
    }
    let code = match &state.config.otp_dev_code {
        Some(fixed) => fixed.expose().to_owned(),
        None => format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32)),
    };
    let now = now_ms();
    let hash = state.secret.mac(&["otp", phone, &code]);
    let expires_at = now + OTP_TTL.as_millis() as i64;
    let resend_after = now + OTP_RESEND_COOLDOWN.as_millis() as i64;
    let Some(id) = store::replace_otp(&state.db, phone, &hash, expires_at, resend_after).await?
    else {
        // A concurrent request won the race and sent a code.
        let wait = otp_cooldown(state, phone)
            .await?
            .unwrap_or(OTP_RESEND_COOLDOWN.as_secs());
        return Err(AppError::rate_limited(Code::OtpCooldown, wait));
    };
    if let Err(e) = state.sms.send_code(phone, &code, OTP_TTL).await {
        store::delete_otp(&state.db, &id).await?;
        tracing::warn!(error = format!("{e:#}"), "the SMS sender failed");
        return Err(AppError::new(
            Code::SmsDeliveryFailed,
            "the code could not be sent; try again",
        ));
    }
    Ok((OTP_TTL.as_secs(), OTP_RESEND_COOLDOWN.as_secs()))
}

/// Checks a code and signs in, creating the account on the first sign-in of a phone.
pub async fn verify_otp(
    state: &AppState,
    phone: &str,
    code: &str,
    display_name: Option<String>,
    device: Device,
) -> AppResult<(UserRow, Issued)> {
    let invalid = || AppError::new(Code::InvalidCode, "the code is wrong or expired");
    let challenge = store::find_otp(&state.db, phone)
        .await?
        .ok_or_else(invalid)?;
    if challenge.consumed_at.is_some()
        || challenge.expires_at <= now_ms()
        || challenge.attempts >= OTP_MAX_ATTEMPTS
    {
        return Err(invalid());
    }
    let expected = state.secret.mac(&["otp", phone, code]);
    if !bool::from(expected.as_bytes().ct_eq(challenge.code_hash.as_bytes())) {
        store::count_otp_attempt(&state.db, &challenge.id, OTP_MAX_ATTEMPTS).await?;
        return Err(invalid());
    }
    let existing = users::find_by_phone(&state.db, phone).await?;
    match (state.config.signup, &existing) {
        (SignupMode::Closed, None) | (SignupMode::Invite, None) => return Err(signup_closed()),
        (SignupMode::Closed, Some(u)) if u.is_invited != 0 => return Err(signup_closed()),
        _ => {}
    }
    let mut tx = state.db.begin().await?;
    if !store::consume_otp(&mut tx, &challenge.id, OTP_MAX_ATTEMPTS).await? {
        return Err(invalid());
    }
    let user = match existing {
        Some(u) if u.is_invited != 0 => {
            users::claim_invited(&mut tx, &u.id, display_name.as_deref(), None).await?
        }
        Some(u) => u,
        None => {
            let name = display_name.unwrap_or_else(|| "New user".to_owned());
            let new = users::NewUser {
                display_name: &name,
                email: None,
                phone: Some(phone),
                password_hash: None,
                is_platform_admin: false,
                is_invited: false,
            };
            new_member(state, &mut tx, new).await?
        }
    };
    let (session, refresh) = open_session(state, &mut tx, &user.id, &device).await?;
    tx.commit().await?;
    Ok((user, finish(state, session, refresh)?))
}

/// Exchanges a refresh token for a new pair. A token presented twice revokes its session.
pub async fn refresh(state: &AppState, refresh_token: &str) -> AppResult<Issued> {
    let invalid = || {
        AppError::new(
            Code::InvalidRefreshToken,
            "the refresh token is invalid, expired or used",
        )
    };
    let mut tx = state.db.begin().await?;
    match store::use_refresh_token(&mut tx, &token_hash(refresh_token)).await? {
        RefreshUse::Fresh {
            session_id,
            user_id,
        } => {
            let refresh = new_token();
            let expires_at = now_ms() + state.config.refresh_token_ttl.as_millis() as i64;
            store::insert_refresh_token(&mut tx, &token_hash(&refresh), &session_id, expires_at)
                .await?;
            tx.commit().await?;
            let session = store::find_session(&state.db, &session_id)
                .await?
                .ok_or_else(invalid)?;
            debug_assert_eq!(session.user_id, user_id);
            finish(state, session, refresh)
        }
        RefreshUse::Reused { session_id } => {
            tx.commit().await?;
            state.sessions_revoked(&[session_id]);
            tracing::warn!("a used refresh token was presented again; its session is revoked");
            Err(invalid())
        }
        RefreshUse::Invalid => Err(invalid()),
    }
}

pub async fn logout_all(state: &AppState, user_id: &str) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let revoked = store::revoke_all_sessions(&mut tx, user_id).await?;
    tx.commit().await?;
    state.sessions_revoked(&revoked);
    Ok(())
}

/// Mails a reset link if the account exists. Runs after the response (always 202), so its
/// timing says nothing about the account.
pub async fn send_password_reset(state: AppState, email: String) {
    match users::find_by_email(&state.db, &email).await {
        Ok(Some(user)) => mail_link(&state, &PASSWORD_RESET, &user.id, email).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "{}", PASSWORD_RESET.what),
    }
}

/// Sets a new password with a reset token and revokes every session of the account.
pub async fn reset_password(state: &AppState, token: &str, password: String) -> AppResult<()> {
    let hash = hash_password(password).await?;
    let mut tx = state.db.begin().await?;
    let (user_id, mailed_to) = store::use_password_reset(&mut tx, &token_hash(token))
        .await?
        .ok_or_else(|| {
            AppError::new(
                Code::InvalidResetToken,
                "the reset token is invalid, expired or used",
            )
        })?;
    users::set_password(&mut tx, &user_id, &hash).await?;
    // The reset link was opened from the mailbox: that proves the address it went to.
    if let Some(email) = mailed_to {
        if store::set_email_verified(&mut tx, &user_id, &email).await? {
            email_proven(&mut tx, &user_id).await?;
        }
    }
    let revoked = store::revoke_all_sessions(&mut tx, &user_id).await?;
    tx.commit().await?;
    state.sessions_revoked(&revoked);
    Ok(())
}

/// A password: 8 to 128 characters.
pub fn parse_password(raw: String) -> Result<String, String> {
    let n = raw.chars().count();
    if n < 8 {
        Err("must be at least 8 characters".into())
    } else if n > 128 {
        Err("must be at most 128 characters".into())
    } else {
        Ok(raw)
    }
}

/// A device id: 1 to 128 visible characters.
pub fn parse_device_id(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
        return Err("must be 1 to 128 visible characters".into());
    }
    Ok(t.to_owned())
}

pub fn parse_device_name(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.chars().count() > 128 || t.chars().any(char::is_control) {
        return Err("must be at most 128 characters without control characters".into());
    }
    Ok(t.to_owned())
}

pub fn parse_otp_code(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()) {
        Ok(t.to_owned())
    } else {
        Err("must be the 6-digit code".into())
    }
}

/// Creates a platform admin who owns the default workspace, or promotes the account that has
/// this email (keeping its password). Returns the user id and whether it was created.
pub async fn create_platform_admin(
    db: &crate::db::Db,
    email: &crate::users::model::Email,
    password: String,
    name: &str,
) -> anyhow::Result<(String, bool)> {
    let workspace_id = workspaces::ensure_default(db).await?;
    let existing = users::find_by_email(db, email.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = match existing {
        Some(_) => None,
        None => Some(
            hash_password(password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    };
    let mut tx = db.begin().await?;
    let (user_id, created) = match (existing, hash) {
        (Some(u), _) => {
            sqlx::query("UPDATE users SET is_platform_admin = 1 WHERE id = $1")
                .bind(&u.id)
                .execute(&mut *tx)
                .await?;
            (u.id, false)
        }
        (None, hash) => {
            let user = users::insert(
                &mut tx,
                users::NewUser {
                    display_name: name,
                    email: Some(email.as_str()),
                    phone: None,
                    password_hash: hash.as_deref(),
                    is_platform_admin: true,
                    is_invited: false,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            (user.id, true)
        }
    };
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3) \
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = 'owner'",
    )
    .bind(&workspace_id)
    .bind(&user_id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    // The operator named the address on the command line: it counts as proven.
    store::set_email_verified(&mut tx, &user_id, email.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    Ok((user_id, created))
}
