//! Outbound notifications to people: one-time codes by SMS, mails (password-reset links).
//! Each has a `log` implementation for development, which writes the secret to the server log
//! and says so loudly at start-up; every other path keeps codes, links and addresses out of logs.

pub mod mail;
pub mod sms;

pub use mail::{Mail, Mailer};
pub use sms::SmsSender;
