//! Mailers: `log`, `webhook` (POSTs `{"to","subject","text","link"}`) and `smtp` (lettre).

use anyhow::{bail, Context};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::MailConfig;

pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The one link the mail is about (e.g. a password-reset link).
    pub link: Option<String>,
}

pub struct Mailer {
    kind: Kind,
    from: String,
}

enum Kind {
    Log,
    Webhook {
        url: String,
        http: crate::outbound::Outbound,
    },
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn new(
        config: &MailConfig,
        from: String,
        http: crate::outbound::Outbound,
    ) -> anyhow::Result<Self> {
        from.parse::<Mailbox>()
            .context("PALAVER_MAIL_FROM is not a valid address")?;
        let kind = match config {
            MailConfig::Log => {
                tracing::warn!(
                    "PALAVER_MAIL_SENDER=log: mails (with password-reset links) are written to \
                     this log; configure `smtp` or `webhook` before real users sign in"
                );
                Kind::Log
            }
            MailConfig::Webhook { url } => Kind::Webhook {
                url: url.clone(),
                http,
            },
            MailConfig::Smtp { url } => Kind::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .context("PALAVER_SMTP_URL is not a valid smtp:// or smtps:// URL")?
                    .build(),
            ),
        };
        Ok(Self { kind, from })
    }

    pub async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Log => {
                tracing::warn!(
                    to = mail.to,
                    subject = mail.subject,
                    link = mail.link,
                    "mail (log mailer)"
                );
                Ok(())
            }
            Kind::Webhook { url, http } => {
                let body = serde_json::json!({
                    "to": mail.to, "subject": mail.subject, "text": mail.text, "link": mail.link,
                });
                let res = http
                    .post(url)?
                    .json(&body)
                    .send()
                    .await
                    .context("calling the mail webhook")?;
                if !res.status().is_success() {
                    bail!("the mail webhook answered {}", res.status());
                }
                Ok(())
            }
            Kind::Smtp(transport) => {
                let message = lettre::Message::builder()
                    .from(self.from.parse().context("the from address")?)
                    .to(mail.to.parse().context("the recipient address")?)
                    .subject(mail.subject)
                    .body(mail.text)
                    .context("building the mail")?;
                transport.send(message).await.context("sending by SMTP")?;
                Ok(())
            }
        }
    }
}
