//! What analytics computes, apart from where the facts come from: the range asked for (in the
//! workspace's timezone), durations within business hours, medians and 90th percentiles.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;

use crate::workspaces::hours::BusinessHours;

/// The longest range a report covers.
pub const MAX_DAYS: i64 = 400;
const DAY_MS: i64 = 86_400_000;

/// A report's range: `[from, to)` in milliseconds, and the timezone its days are in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
    pub tz: Tz,
}

/// The first instant of a local day (the first after a gap, where midnight is skipped).
pub fn day_start(tz: Tz, date: NaiveDate) -> i64 {
    let mut local = date.and_time(NaiveTime::MIN);
    for _ in 0..8 {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return at.timestamp_millis();
        }
        local += chrono::Duration::minutes(15);
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
        .timestamp_millis()
}

/// The local date of an instant.
pub fn local_date(tz: Tz, ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// A bound: an RFC 3339 instant, or a `YYYY-MM-DD` local date — its first instant, or with
/// `end` the next day's (so `to=2026-03-29` takes in all of the 29th).
pub fn parse_bound(raw: &str, tz: Tz, end: bool) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(day_start(tz, d));
    }
    crate::http::validate::parse_instant(raw)
        .map_err(|_| "must be an RFC 3339 time or a YYYY-MM-DD date".into())
}

impl Range {
    /// Checks a range: `from` before `to`, at most [`MAX_DAYS`] days. Defaults: to now, from
    /// the start of the local day 29 days before `to`'s (30 days with today).
    pub fn new(from: Option<i64>, to: Option<i64>, tz: Tz, now: i64) -> Result<Range, String> {
        let to = to.unwrap_or(now);
        let from = from.unwrap_or_else(|| {
            let today = local_date(tz, to - 1);
            day_start(tz, today - chrono::Duration::days(29))
        });
        if from >= to {
            return Err("`from` must be before `to`".into());
        }
        if to - from > MAX_DAYS * DAY_MS {
            return Err(format!("a report covers at most {MAX_DAYS} days"));
        }
        Ok(Range { from, to, tz })
    }

    /// The local dates the range touches, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        let (first, last) = (
            local_date(self.tz, self.from),
            local_date(self.tz, self.to - 1),
        );
        first.iter_days().take_while(|d| *d <= last).collect()
    }
}

/// Business time between two instants, from the business hours' open spans laid out once
/// for a report (a prefix sum, so each duration is two binary searches).
pub struct Clock {
    spans: Vec<(i64, i64)>,
    /// `before[k]`: the open time of `spans[..k]`.
    before: Vec<i64>,
    /// No business hours: always open, business time is wall time.
    always: bool,
}

impl Clock {
    /// The clock for durations within `[from, to)`.
    pub fn new(hours: Option<&BusinessHours>, from: i64, to: i64) -> Clock {
        let Some(hours) = hours else {
            return Clock {
                spans: Vec::new(),
                before: vec![0],
                always: true,
            };
        };
        let spans = hours.open_spans(from, to);
        let mut before = Vec::with_capacity(spans.len() + 1);
        let mut sum = 0;
        before.push(0);
        for (a, b) in &spans {
            sum += b - a;
            before.push(sum);
        }
        Clock {
            spans,
            before,
            always: false,
        }
    }

    /// Open time before `x`.
    fn open_before(&self, x: i64) -> i64 {
        let k = self.spans.partition_point(|s| s.1 <= x);
        let partial = self.spans.get(k).map_or(0, |s| (x - s.0).max(0));
        self.before[k] + partial
    }

    /// Business time in `[a, b)`.
    pub fn open_ms(&self, a: i64, b: i64) -> i64 {
        if self.always {
            return (b - a).max(0);
        }
        (self.open_before(b) - self.open_before(a)).max(0)
    }
}

/// A duration's nearest-rank percentile `p` (0–100) of sorted `values`: a value that occurred.
pub fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn seconds(ms: Option<i64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1000.0)
}

/// Durations (a wait until the answer, an opening until its closing): how many, their median
/// and 90th percentile (nearest rank) in wall time and within business hours, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Times {
    pub count: i64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub business_median_seconds: Option<f64>,
    pub business_p90_seconds: Option<f64>,
}

/// Durations as they are gathered: (wall, business) milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<(i64, i64)>);

impl Samples {
    pub fn push(&mut self, wall: i64, business: i64) {
        self.0.push((wall, business));
    }

    pub fn times(&self) -> Times {
        let mut wall: Vec<i64> = self.0.iter().map(|s| s.0).collect();
        let mut business: Vec<i64> = self.0.iter().map(|s| s.1).collect();
        wall.sort_unstable();
        business.sort_unstable();
        Times {
            count: wall.len() as i64,
            median_seconds: seconds(percentile(&wall, 50)),
            p90_seconds: seconds(percentile(&wall, 90)),
            business_median_seconds: seconds(percentile(&business, 50)),
            business_p90_seconds: seconds(percentile(&business, 90)),
        }
    }
}

impl Times {
    /// The CSV columns of these durations, named after `prefix`.
    pub fn header(prefix: &str) -> [String; 5] {
        [
            format!("{prefix}Count"),
            format!("{prefix}MedianSeconds"),
            format!("{prefix}P90Seconds"),
            format!("{prefix}BusinessMedianSeconds"),
            format!("{prefix}BusinessP90Seconds"),
        ]
    }

    pub fn cells(&self) -> [String; 5] {
        let s = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            self.count.to_string(),
            s(self.median_seconds),
            s(self.p90_seconds),
            s(self.business_median_seconds),
            s(self.business_p90_seconds),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 90), Some(7));
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        let v: Vec<i64> = (1..=11).collect();
        assert_eq!(percentile(&v, 50), Some(6));
        assert_eq!(percentile(&v, 90), Some(10));
    }

    #[test]
    fn ranges_in_a_timezone() {
        let tz: Tz = "Europe/Lisbon".parse().unwrap();
        let ms = |s: &str| s.parse::<DateTime<Utc>>().unwrap().timestamp_millis();
        // Summer time: a day starts at 23:00 UTC the day before.
        assert_eq!(
            parse_bound("2026-07-01", tz, false),
            Ok(ms("2026-06-30T23:00:00Z"))
        );
        assert_eq!(
            parse_bound("2026-07-01", tz, true),
            Ok(ms("2026-07-01T23:00:00Z"))
        );
        let r = Range::new(
            Some(ms("2026-03-28T00:00:00Z")),
            Some(ms("2026-03-30T23:00:00Z")),
            tz,
            0,
        )
        .unwrap();
        assert_eq!(
            r.days().len(),
            3,
            "the 28th, the 29th (23 hours) and the 30th"
        );
        assert!(Range::new(Some(5), Some(5), tz, 0).is_err());
        assert!(Range::new(Some(0), Some(401 * DAY_MS), tz, 0).is_err());
        // Default: the last 30 local days.
        let r = Range::new(None, None, tz, ms("2026-07-31T12:00:00Z")).unwrap();
        assert_eq!(r.from, ms("2026-07-01T23:00:00Z"));
        assert_eq!(r.days().len(), 30);
    }

    #[test]
    fn business_time_between_instants() {
        let hours = BusinessHours::of_settings(&serde_json::json!({
            "timezone": "UTC", "businessHours": {"mon": [{"open": "09:00", "close": "17:00"}]}}))
        .unwrap()
        .unwrap();
        let ms = |s: &str| s.parse::<DateTime<Utc>>().unwrap().timestamp_millis();
        let clock = Clock::new(
            Some(&hours),
            ms("2026-11-01T00:00:00Z"),
            ms("2026-12-01T00:00:00Z"),
        );
        // Monday 2026-11-02 16:00 to Monday the 9th 10:00: one hour, then one.
        let a = ms("2026-11-02T16:00:00Z");
        let b = ms("2026-11-09T10:00:00Z");
        assert_eq!(clock.open_ms(a, b), 2 * 3_600_000);
        assert_eq!(
            clock.open_ms(ms("2026-11-03T00:00:00Z"), ms("2026-11-04T00:00:00Z")),
            0
        );
        assert_eq!(Clock::new(None, 0, 10).open_ms(a, b), b - a);
    }
}
