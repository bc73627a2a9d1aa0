//! The reports: the facts of a range gathered once, then tallied by day, channel or agent with
//! one builder ([`Tally::figures`]) for every row that shows the inbox's figures.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{local_date, Clock, Range, Samples, Times};
use super::store::{self, Event, Traffic};
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
    fn event(&mut self, e: &Event, clock: &Clock) {
        let took = |since: i64| (e.at - since, clock.open_ms(since, e.at));
        match e.kind.as_str() {
            "opened" => self.opened += 1,
            "reopened" => self.reopened += 1,
            "closed" => {
                self.closed += 1;
                if let Some((wall, business)) = e.since.map(took) {
                    self.resolution.push(wall, business);
                }
            }
            "response" if e.first == 1 => {
                if let Some((wall, business)) = e.since.map(took) {
                    self.first.push(wall, business);
                }
            }
            _ => {}
        }
    }

    fn traffic(&mut self, t: &Traffic) {
        if t.direction == "in" {
            self.messages_in += t.messages;
        } else {
            self.messages_out += t.messages;
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

/// The facts of a range and the clock to measure their durations with.
struct Gathered {
    events: Vec<Event>,
    traffic: Vec<Traffic>,
    clock: Clock,
}

/// The workspace's business hours (`None`: none set, or settings that no longer parse).
async fn hours(t: Tenant<'_>) -> AppResult<Option<BusinessHours>> {
    let settings = crate::workspaces::store::settings(t).await?;
    Ok(BusinessHours::of_settings(&settings).ok().flatten())
}

async fn gather(t: Tenant<'_>, r: &Range) -> AppResult<Gathered> {
    let events = store::events(t, r.from, r.to).await?;
    let traffic = store::traffic(t, r.from, r.to).await?;
    let earliest = events
        .iter()
        .filter_map(|e| e.since)
        .min()
        .unwrap_or(r.from);
    let from = earliest.clamp(r.from - LOOKBACK_MS, r.from);
    let clock = Clock::new(hours(t).await?.as_ref(), from, r.to);
    Ok(Gathered {
        events,
        traffic,
        clock,
    })
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
    let g = gather(t, &r).await?;
    let mut total = Tally::default();
    let mut days: BTreeMap<chrono::NaiveDate, Tally> = r
        .days()
        .into_iter()
        .map(|d| (d, Tally::default()))
        .collect();
    for e in &g.events {
        total.event(e, &g.clock);
        days.entry(local_date(r.tz, e.at))
            .or_default()
            .event(e, &g.clock);
    }
    for x in &g.traffic {
        total.traffic(x);
        days.entry(local_date(r.tz, x.bucket))
            .or_default()
            .traffic(x);
    }
    Ok(Overview {
        span: Span::of(&r),
        totals: total.figures(),
        days: days
            .into_iter()
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
    let g = gather(t, &r).await?;
    let mut by: HashMap<String, Tally> = HashMap::new();
    for e in &g.events {
        let key = e.channel_id.clone().unwrap_or_default();
        by.entry(key).or_default().event(e, &g.clock);
    }
    for x in &g.traffic {
        by.entry(x.channel_id.clone()).or_default().traffic(x);
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
    let g = gather(t, &r).await?;
    let mut by: HashMap<&str, AgentTally> = HashMap::new();
    for e in &g.events {
        let Some(agent) = e.agent_id.as_deref() else {
            continue;
        };
        let a = by.entry(agent).or_default();
        match (e.kind.as_str(), e.since) {
            ("assigned", _) => a.assigned += 1,
            ("closed", _) => a.closed += 1,
            ("response", Some(since)) => {
                let (wall, business) = (e.at - since, g.clock.open_ms(since, e.at));
                a.responses.push(wall, business);
                if e.first == 1 {
                    a.first.push(wall, business);
                }
            }
            _ => {}
        }
    }
    for x in g.traffic.iter().filter(|x| x.direction == "out") {
        if !x.agent_id.is_empty() {
            by.entry(&x.agent_id).or_default().replied += x.messages;
        }
    }
    let rows = store::agents(t)
        .await?
        .into_iter()
        .filter(|(id, _, _)| only.is_none_or(|o| o == id))
        .map(|(user_id, name, role)| {
            let a = by.remove(user_id.as_str()).unwrap_or_default();
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
