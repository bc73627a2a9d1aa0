//! User-facing types: validated inputs (email, phone, names) and the user shapes of the API.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::Timestamp;

/// A lower-cased, trimmed email address of plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let e = raw.trim().to_lowercase();
        let ok = e.len() <= 254
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
                    && !domain.contains('@')
            })
            && !e
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',');
        if ok {
            Ok(Email(e))
        } else {
            Err("must be a valid email address".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164: `+`, then 8 to 15 digits, not starting with 0. Spaces, dashes,
/// dots and parentheses are removed first, the way address books write numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Phone, String> {
        let cleaned: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = cleaned.strip_prefix('+').unwrap_or("");
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Phone(cleaned))
        } else {
            Err("must be a phone number in E.164 format, e.g. +14155550123".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Visible text of bounded length without control characters.
fn bounded_text(raw: &str, min: usize, max: usize, what: &str) -> Result<String, String> {
    let t = raw.trim();
    let n = t.chars().count();
    if n < min || n > max {
        return Err(format!("{what} must be {min} to {max} characters"));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(t.to_owned())
}

pub fn parse_display_name(raw: &str) -> Result<String, String> {
    bounded_text(raw, 1, 64, "the display name").and_then(|s| {
        if s.contains('\n') {
            Err("the display name must be one line".into())
        } else {
            Ok(s)
        }
    })
}

pub fn parse_about(raw: &str) -> Result<String, String> {
    bounded_text(raw, 0, 140, "about")
}

/// Who sees a user's last-seen time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LastSeenPrivacy {
    /// Everyone who can see the user's profile.
    Everyone,
    /// Only users the user has in their address book.
    Contacts,
    Nobody,
}

impl LastSeenPrivacy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "contacts" => Self::Contacts,
            "nobody" => Self::Nobody,
            _ => Self::Everyone,
        }
    }
}

/// A user row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub display_name: String,
    pub about: String,
    pub avatar_media_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub privacy_last_seen: String,
    pub is_platform_admin: i64,
    pub is_invited: i64,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the address in `email` was proven (a verification link or a password reset
    /// mailed to it was used); `None` until then.
    pub email_verified_at: Option<i64>,
    /// Whether push notifications show the sender and a preview (1) or only that something
    /// came (0).
    pub push_previews: i64,
}

pub const USER_COLUMNS: &str = "id, display_name, about, avatar_media_id, phone, email, \
    password_hash, privacy_last_seen, is_platform_admin, is_invited, last_seen_at, created_at, updated_at, \
    email_verified_at, push_previews";

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Privacy {
    pub last_seen: LastSeenPrivacy,
    /// Whether push notifications show who wrote and a preview of the message (true, the
    /// default), or only "New message" and the caller's name for a call.
    pub push_previews: bool,
}

/// The signed-in user's own profile.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: String,
    pub display_name: String,
    pub about: String,
    pub avatar_media_id: Option<String>,
    /// Set by OTP sign-in; read-only.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// Whether `email` was proven by opening a link mailed to it.
    pub email_verified: bool,
    pub privacy: Privacy,
    pub is_platform_admin: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&UserRow> for Me {
    fn from(u: &UserRow) -> Self {
        Me {
            id: u.id.clone(),
            display_name: u.display_name.clone(),
            about: u.about.clone(),
            avatar_media_id: u.avatar_media_id.clone(),
            phone: u.phone.clone(),
            email: u.email.clone(),
            email_verified: u.email.is_some() && u.email_verified_at.is_some(),
            privacy: Privacy {
                last_seen: LastSeenPrivacy::from_db(&u.privacy_last_seen),
                push_previews: u.push_previews != 0,
            },
            is_platform_admin: u.is_platform_admin != 0,
            created_at: Timestamp(u.created_at),
            updated_at: Timestamp(u.updated_at),
        }
    }
}

/// Another user as the caller may see them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    pub id: String,
    pub display_name: String,
    pub about: String,
    pub avatar_media_id: Option<String>,
    /// Only when the caller has this number in their address book.
    pub phone: Option<String>,
    /// Null when unknown or hidden by the user's privacy setting.
    pub last_seen_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "a@b",
            "@example.com",
            "a@.com",
            "a b@example.com",
            "a@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(
            Phone::parse("+1 (415) 555-0123").unwrap().as_str(),
            "+14155550123"
        );
        for bad in [
            "4155550123",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "+1415555O123",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_are_bounded_single_lines() {
        assert_eq!(parse_display_name("  Alice ").unwrap(), "Alice");
        assert!(parse_display_name("").is_err());
        assert!(parse_display_name(&"x".repeat(65)).is_err());
        assert!(parse_display_name("a\nb").is_err());
        assert!(parse_display_name("a\u{7}").is_err());
    }
}
