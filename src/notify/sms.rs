//! SMS senders for one-time codes: `log`, `webhook` (POSTs `{"phone","code","expiresIn"}`) and
//! `twilio` (the Messages API).

use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::SmsConfig;

pub struct SmsSender {
    config: SmsConfig,
    http: crate::outbound::Outbound,
}

impl SmsSender {
    pub fn new(config: SmsConfig, http: crate::outbound::Outbound) -> Self {
        if matches!(config, SmsConfig::Log) {
            tracing::warn!(
                "PALAVER_SMS_SENDER=log: one-time codes are written to this log; \
                 configure `webhook` or `twilio` before real users sign in"
            );
        }
        Self { config, http }
    }

    pub async fn send_code(
        &self,
        phone: &str,
        code: &str,
        expires_in: Duration,
    ) -> anyhow::Result<()> {
        match &self.config {
            SmsConfig::Log => {
                tracing::warn!(phone, code, "one-time code (log SMS sender)");
                Ok(())
            }
            SmsConfig::Webhook { url } => {
                let body = serde_json::json!({
                    "phone": phone, "code": code, "expiresIn": expires_in.as_secs(),
                });
                let res = self
                    .http
                    .post(url)?
                    .json(&body)
                    .send()
                    .await
                    .context("calling the SMS webhook")?;
                if !res.status().is_success() {
                    bail!("the SMS webhook answered {}", res.status());
                }
                Ok(())
            }
            SmsConfig::Twilio {
                api_url,
                account_sid,
                auth_token,
                from,
            } => {
                let url = format!("{api_url}/2010-04-01/Accounts/{account_sid}/Messages.json");
                let text = format!("Your verification code is {code}");
                let res = self
                    .http
                    .post(&url)?
                    .basic_auth(account_sid, Some(auth_token.expose()))
                    .form(&[
                        ("To", phone),
                        ("From", from.as_str()),
                        ("Body", text.as_str()),
                    ])
                    .send()
                    .await
                    .context("calling Twilio")?;
                if !res.status().is_success() {
                    bail!("Twilio answered {}", res.status());
                }
                Ok(())
            }
        }
    }
}
