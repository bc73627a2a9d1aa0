//! The reports: the counts of a range by day, channel or agent, and its durations, tallied
//! with one builder ([`Tally::figures`]) for every row that shows the inbox's figures.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{day_start, Clock, Range, Samples, Times};
use super::store::{self, By, Took};
use crate::campaigns::store::Stats;
use crate::db::{Tenant, Timestamp};
use crate::error::AppResult;
use crate::workspaces::hours::BusinessHours;

/// How far back business time is counted for a duration that began before the range.
const LOOKBACK_MS: i64 = 366 * 86_400_000;

/// The inbox's figures for a slice of a range (all of it, a day, a channel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Conversations that opened for the first time.
    pub opened: i64,
    /// Closed conversations that opened again.
    pub reopened: i64,
    pub closed: i64,
    /// Customers' messages.
    pub messages_in: i64,
    /// Agents' and automated messages (automations, campaigns).
    pub messages_out: i64,
    /// From the customer's first unanswered message of an opening to its first agent answer.
    pub first_response: Times,
    /// From an opening to its closing.
    pub resolution: Times,
}

/// Facts as they are tallied.
#[derive(Default)]
struct Tally {
    opened: i64,
    reopened: i64,
    closed: i64,
    messages_in: i64,
    messages_out: i64,
    first: Samples,
    resolution: Samples,
}

impl Tally {
    fn count(&mut self, kind: &str, n: i64) {
        match kind {
            "opened" => self.opened += n,
            "reopened" => self.reopened += n,
            "closed" => self.closed += n,
            "in" => self.messages_in += n,
            "out" => self.messages_out += n,
            _ => {}
        }
    }

    fn took(&mut self, t: &Took, clock: &Clock) {
        let (wall, business) = (t.at - t.since, clock.open_ms(t.since, t.at));
        match (t.kind.as_str(), t.first) {
            ("closed", _) => self.resolution.push(wall, business),
            ("response", 1) => self.first.push(wall, business),
            _ => {}
        }
    }

    fn figures(&self) -> Figures {
        Figures {
            opened: self.opened,
            reopened: self.reopened,
            closed: self.closed,
            messages_in: self.messages_in,
            messages_out: self.messages_out,
            first_response: self.first.times(),
            resolution: self.resolution.times(),
        }
    }
}

/// The workspace's business hours (`None`: none set, or settings that no longer parse).
async fn hours(t: Tenant<'_>) -> AppResult<Option<BusinessHours>> {
    let settings = crate::workspaces::store::settings(t).await?;
    Ok(BusinessHours::of_settings(&settings).ok().flatten())
}

/// The durations of a range and the clock to measure them with (laid out from the earliest
/// start, at most [`LOOKBACK_MS`] before the range).
async fn durations(
    t: Tenant<'_>,
    r: &Range,
    every_answer: bool,
    by: By,
) -> AppResult<(Vec<Took>, Clock)> {
    let took = store::durations(t, (r.from, r.to), every_answer, by).await?;
    let earliest = took.iter().map(|d| d.since).min().unwrap_or(r.from);
    let from = earliest.clamp(r.from - LOOKBACK_MS, r.from);
    let clock = Clock::new(hours(t).await?.as_ref(), from, r.to);
    Ok((took, clock))
}

/// What every report says of its range.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub from: Timestamp,
    pub to: Timestamp,
    /// The timezone of the days (IANA name).
    pub timezone: String,
}

impl Span {
    fn of(r: &Range) -> Span {
        Span {
            from: Timestamp(r.from),
            to: Timestamp(r.to),
            timezone: r.tz.name().to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    /// `YYYY-MM-DD` in the report's timezone.
    pub date: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// `GET /analytics/overview`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    #[serde(flatten)]
    pub span: Span,
    #[serde(flatten)]
    pub totals: Figures,
    /// Every day of the range, the quiet ones too.
    pub days: Vec<Day>,
}

pub async fn overview(t: Tenant<'_>, r: Range) -> AppResult<Overview> {
    let days = r.days();
    // The slices: each local day's first instant (the range's own ends first and last).
    let mut bounds: Vec<i64> = days.iter().map(|d| day_start(r.tz, *d)).collect();
    bounds[0] = r.from;
    bounds.push(r.to);
    let mut tallies: Vec<Tally> = days.iter().map(|_| Tally::default()).collect();
    let counts = store::events(t, &bounds, By::Nothing).await?;
    let traffic = store::traffic(t, &bounds, By::Nothing).await?;
    for c in counts.iter().chain(&traffic) {
        if let Some(day) = tallies.get_mut(c.slice as usize) {
            day.count(&c.kind, c.n);
        }
    }
    let (took, clock) = durations(t, &r, false, By::Nothing).await?;
    for d in &took {
        let slice = bounds.partition_point(|b| *b <= d.at).saturating_sub(1);
        if let Some(day) = tallies.get_mut(slice) {
            day.took(d, &clock);
        }
    }
    let mut total = Tally::default();
    for day in &tallies {
        for (kind, n) in [
            ("opened", day.opened),
            ("reopened", day.reopened),
            ("closed", day.closed),
            ("in", day.messages_in),
            ("out", day.messages_out),
        ] {
            total.count(kind, n);
        }
        total.first.0.extend_from_slice(&day.first.0);
        total.resolution.0.extend_from_slice(&day.resolution.0);
    }
    Ok(Overview {
        span: Span::of(&r),
        totals: total.figures(),
        days: days
            .into_iter()
            .zip(&tallies)
            .map(|(d, t)| Day {
                date: d.to_string(),
                figures: t.figures(),
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelFigures {
    /// `null`: the support desk.
    pub channel_id: Option<String>,
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// `GET /analytics/channels`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Channels {
    #[serde(flatten)]
    pub span: Span,
    /// The support desk first, then each WhatsApp channel (deleted ones as "deleted channel").
    pub channels: Vec<ChannelFigures>,
}

pub async fn channels(t: Tenant<'_>, r: Range) -> AppResult<Channels> {
    let bounds = [r.from, r.to];
    let mut by: HashMap<String, Tally> = HashMap::new();
    let counts = store::events(t, &bounds, By::Channel).await?;
    let traffic = store::traffic(t, &bounds, By::Channel).await?;
    for c in counts.into_iter().chain(traffic) {
        by.entry(c.key).or_default().count(&c.kind, c.n);
    }
    let (took, clock) = durations(t, &r, false, By::Channel).await?;
    for d in &took {
        let key = d.channel_id.clone().unwrap_or_default();
        by.entry(key).or_default().took(d, &clock);
    }
    let mut rows = vec![ChannelFigures {
        channel_id: None,
        name: "Support desk".into(),
        figures: by.remove("").unwrap_or_default().figures(),
    }];
    for (id, name) in store::channels(t).await? {
        let figures = by.remove(&id).unwrap_or_default().figures();
        let name = name.unwrap_or_else(|| id.clone());
        rows.push(ChannelFigures {
            channel_id: Some(id),
            name,
            figures,
        });
    }
    let mut gone: Vec<(String, Tally)> = by.into_iter().collect();
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, tally) in gone {
        rows.push(ChannelFigures {
            channel_id: Some(id),
            name: "deleted channel".into(),
            figures: tally.figures(),
        });
    }
    Ok(Channels {
        span: Span::of(&r),
        channels: rows,
    })
}

#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentFigures {
    pub user_id: String,
    pub name: String,
    /// `owner`, `admin` or `agent`.
    pub role: String,
    /// Conversations given to them (by anyone, a rule or auto-assignment).
    pub assigned: i64,
    /// Messages they sent to customers.
    pub replied: i64,
    /// Every customer's wait they answered.
    pub response: Times,
    /// The first answers of openings.
    pub first_response: Times,
    /// Conversations closed while assigned to them.
    pub closed: i64,
}

/// `GET /analytics/agents`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agents {
    #[serde(flatten)]
    pub span: Span,
    pub agents: Vec<AgentFigures>,
}

#[derive(Default)]
struct AgentTally {
    assigned: i64,
    replied: i64,
    closed: i64,
    responses: Samples,
    first: Samples,
}

/// The agents' rows; `only` keeps one agent's.
pub async fn agents(t: Tenant<'_>, r: Range, only: Option<&str>) -> AppResult<Agents> {
    let bounds = [r.from, r.to];
    let mut by: HashMap<String, AgentTally> = HashMap::new();
    for c in store::events(t, &bounds, By::Agent).await? {
        let a = by.entry(c.key).or_default();
        match c.kind.as_str() {
            "assigned" => a.assigned += c.n,
            "closed" => a.closed += c.n,
            _ => {}
        }
    }
    for c in store::traffic(t, &bounds, By::Agent).await? {
        if c.kind == "out" && !c.key.is_empty() {
            by.entry(c.key).or_default().replied += c.n;
        }
    }
    let (took, clock) = durations(t, &r, true, By::Agent).await?;
    for d in took.iter().filter(|d| d.kind == "response") {
        let Some(agent) = &d.agent_id else {
            continue;
        };
        let (wall, business) = (d.at - d.since, clock.open_ms(d.since, d.at));
        let a = by.entry(agent.clone()).or_default();
        a.responses.push(wall, business);
        if d.first == 1 {
            a.first.push(wall, business);
        }
    }
    let rows = store::agents(t)
        .await?
        .into_iter()
        .filter(|(id, _, _)| only.is_none_or(|o| o == id))
        .map(|(user_id, name, role)| {
            let a = by.remove(&user_id).unwrap_or_default();
            AgentFigures {
                assigned: a.assigned,
                replied: a.replied,
                response: a.responses.times(),
                first_response: a.first.times(),
                closed: a.closed,
                user_id,
                name,
                role,
            }
        })
        .collect();
    Ok(Agents {
        span: Span::of(&r),
        agents: rows,
    })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignFigures {
    pub id: String,
    pub name: String,
    pub status: String,
    pub started_at: Timestamp,
    #[serde(flatten)]
    pub funnel: Stats,
}

/// `GET /analytics/campaigns`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Campaigns {
    #[serde(flatten)]
    pub span: Span,
    /// The campaigns that started in the range (the first 200), each with its funnel now.
    pub campaigns: Vec<CampaignFigures>,
}

pub async fn campaigns(t: Tenant<'_>, r: Range) -> AppResult<Campaigns> {
    let mut rows = Vec::new();
    for (id, name, status, started_at) in store::campaigns(t, r.from, r.to).await? {
        let funnel = crate::campaigns::store::stats(t.db(), &id).await?;
        rows.push(CampaignFigures {
            id,
            name,
            status,
            started_at: Timestamp(started_at),
            funnel,
        });
    }
    Ok(Campaigns {
        span: Span::of(&r),
        campaigns: rows,
    })
}
