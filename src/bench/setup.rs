//! Setting a scenario up through the public HTTP API: users, conversations, sockets.

use std::future::Future;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::client::{self, Client, Events};

/// How many setup requests run at once (sign-up hashes a password: CPU-bound on the server).
const PARALLEL: usize = 8;

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    /// Makes this run's emails unique.
    tag: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            tag: uuid::Uuid::now_v7().simple().to_string(),
        }
    }

    /// The same run's API at another node (`base`).
    pub fn at(&self, base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: self.http.clone(),
            tag: self.tag.clone(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_in("", method, path, token, body).await
    }

    /// A call acting in a workspace (`Palaver-Workspace`; empty: the default one).
    pub async fn call_in(
        &self,
        workspace: &str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if !workspace.is_empty() {
            req = req.header("palaver-workspace", workspace);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req, path).await
    }

    /// A POST of a body that is not JSON (a CSV), acting in `workspace`.
    pub async fn post_text(
        &self,
        workspace: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .header("palaver-workspace", workspace)
            .header("content-type", content_type)
            .bearer_auth(token)
            .body(body);
        Self::answer(req, path).await
    }

    async fn answer(req: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text} (is the server running with PALAVER_RATE_LIMITS=off?)");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn signup(&self, name: &str) -> anyhow::Result<User> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/auth/signup",
                None,
                Some(json!({
                    "email": format!("{name}-{}@bench.example", self.tag),
                    "password": "bench password 1234",
                    "displayName": name,
                })),
            )
            .await?;
        Ok(User {
            id: v["user"]["id"].as_str().context("user.id")?.to_owned(),
            token: v["accessToken"].as_str().context("accessToken")?.to_owned(),
        })
    }

    pub async fn users(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<User>> {
        parallel((0..n).map(|i| {
            let api = self.clone();
            async move { api.signup(&format!("{prefix}{i}")).await }
        }))
        .await
    }

    pub async fn direct(&self, from: &User, to: &User) -> anyhow::Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/conversations/direct",
                Some(&from.token),
                Some(json!({"userId": to.id})),
            )
            .await?;
        Ok(v["id"].as_str().context("conversation id")?.to_owned())
    }

    pub async fn group(&self, owner: &User, members: &[User]) -> anyhow::Result<String> {
        let ids: Vec<&str> = members.iter().map(|u| u.id.as_str()).collect();
        let v = self
            .call(
                reqwest::Method::POST,
                "/conversations/groups",
                Some(&owner.token),
                Some(json!({"title": "bench", "memberIds": ids})),
            )
            .await?;
        Ok(v["id"].as_str().context("conversation id")?.to_owned())
    }

    pub async fn connect(&self, user: &User) -> anyhow::Result<(Client, Events)> {
        client::connect(&self.base, &json!({"token": user.token}))
            .await
            .context("connecting a socket")
    }

    pub async fn connect_all(&self, users: &[User]) -> anyhow::Result<Vec<(Client, Events)>> {
        parallel(users.iter().map(|u| self.connect(u))).await
    }
}

/// Runs the futures `PARALLEL` at a time, keeping their order; the first error wins.
pub async fn parallel<T, F>(tasks: impl Iterator<Item = F>) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<T>>,
{
    futures_util::stream::iter(tasks)
        .buffered(PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
