//! The reports as CSV: one row per day, agent, campaign or channel, the durations in seconds
//! (empty when there were none).

use super::model::Times;
use super::service::{Agents, Campaigns, Channels, Figures, Overview};
use crate::error::{AppError, AppResult};

type Writer = csv::Writer<Vec<u8>>;

fn row<I, S>(w: &mut Writer, cells: I) -> AppResult<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    w.write_record(cells).map_err(AppError::internal)
}

fn done(w: Writer) -> AppResult<Vec<u8>> {
    w.into_inner().map_err(AppError::internal)
}

fn figures_header() -> Vec<String> {
    let mut h: Vec<String> = ["opened", "reopened", "closed", "messagesIn", "messagesOut"]
        .map(String::from)
        .into();
    h.extend(Times::header("firstResponse"));
    h.extend(Times::header("resolution"));
    h
}

fn figures_cells(f: &Figures) -> Vec<String> {
    let mut c: Vec<String> = [
        f.opened,
        f.reopened,
        f.closed,
        f.messages_in,
        f.messages_out,
    ]
    .map(|n| n.to_string())
    .into();
    c.extend(f.first_response.cells());
    c.extend(f.resolution.cells());
    c
}

/// `date, opened, …`: a row per day, then `total`.
pub fn overview(o: &Overview) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    row(
        &mut w,
        std::iter::once("date".to_owned()).chain(figures_header()),
    )?;
    for d in &o.days {
        row(
            &mut w,
            std::iter::once(d.date.clone()).chain(figures_cells(&d.figures)),
        )?;
    }
    row(
        &mut w,
        std::iter::once("total".to_owned()).chain(figures_cells(&o.totals)),
    )?;
    done(w)
}

/// `channelId, name, opened, …` (an empty id: the support desk).
pub fn channels(c: &Channels) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let head = ["channelId", "name"].map(String::from).into_iter();
    row(&mut w, head.chain(figures_header()))?;
    for ch in &c.channels {
        let id = ch.channel_id.clone().unwrap_or_default();
        let cells = [id, ch.name.clone()].into_iter();
        row(&mut w, cells.chain(figures_cells(&ch.figures)))?;
    }
    done(w)
}

pub fn agents(a: &Agents) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = ["userId", "name", "role", "assigned", "replied", "closed"]
        .map(String::from)
        .into();
    head.extend(Times::header("response"));
    head.extend(Times::header("firstResponse"));
    row(&mut w, head)?;
    for r in &a.agents {
        let mut cells = vec![
            r.user_id.clone(),
            r.name.clone(),
            r.role.clone(),
            r.assigned.to_string(),
            r.replied.to_string(),
            r.closed.to_string(),
        ];
        cells.extend(r.response.cells());
        cells.extend(r.first_response.cells());
        row(&mut w, cells)?;
    }
    done(w)
}

pub fn campaigns(c: &Campaigns) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let head = [
        "id",
        "name",
        "status",
        "startedAt",
        "audience",
        "queued",
        "sent",
        "delivered",
        "read",
        "failed",
        "replied",
    ];
    row(&mut w, head)?;
    for r in &c.campaigns {
        let f = &r.funnel;
        let counts = [
            f.audience,
            f.queued,
            f.sent,
            f.delivered,
            f.read,
            f.failed,
            f.replied,
        ];
        let mut cells = vec![
            r.id.clone(),
            r.name.clone(),
            r.status.clone(),
            r.started_at.rfc3339(),
        ];
        cells.extend(counts.map(|n| n.to_string()));
        row(&mut w, cells)?;
    }
    done(w)
}
