//! A workspace's business hours: `settings.timezone` (an IANA name), `settings.businessHours`
//! (`{mon … sun: [{open: "HH:MM", close: "HH:MM"}]}`, local wall-clock time; `close` may be
//! `24:00`) and `settings.holidays` (`["YYYY-MM-DD"]`, closed all day). "Is it open now" and
//! "when does it next open" follow the timezone's rules, daylight-saving changes included: an
//! opening that falls in a skipped hour opens when the clocks have jumped; a repeated hour is
//! open or closed as its wall-clock time says.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// How far "next opening" looks: past a year of holidays, the hours are closed for good.
const LOOKAHEAD_DAYS: i64 = 400;

#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    pub timezone: Tz,
    /// Monday first: each day's intervals, sorted, not overlapping; `None` close is midnight.
    week: [Vec<(NaiveTime, Option<NaiveTime>)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Interval {
    open: String,
    close: String,
}

fn time(raw: &str, closing: bool) -> Result<Option<NaiveTime>, String> {
    if closing && raw == "24:00" {
        return Ok(None);
    }
    let ok = raw.len() == 5 && raw.as_bytes()[2] == b':';
    ok.then(|| NaiveTime::parse_from_str(raw, "%H:%M").ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| format!("{raw:?} is not a time HH:MM"))
}

impl BusinessHours {
    /// The business hours of a workspace's `settings`; `None` when it sets no `businessHours`
    /// (always open). A `timezone` alone is checked; without one, hours are in UTC.
    pub fn of_settings(settings: &serde_json::Value) -> Result<Option<BusinessHours>, String> {
        let timezone = match settings.get("timezone") {
            None | Some(serde_json::Value::Null) => Tz::UTC,
            Some(v) => v
                .as_str()
                .and_then(|name| name.parse::<Tz>().ok())
                .ok_or("timezone: must be an IANA time zone name, e.g. Europe/Lisbon")?,
        };
        let mut holidays = BTreeSet::new();
        if let Some(v) = settings.get("holidays") {
            let days: Vec<String> = serde_json::from_value(v.clone())
                .map_err(|_| "holidays: must be a list of YYYY-MM-DD dates")?;
            if days.len() > 1000 {
                return Err("holidays: at most 1000".into());
            }
            for d in days {
                let day = NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .map_err(|_| format!("holidays: {d:?} is not a YYYY-MM-DD date"))?;
                holidays.insert(day);
            }
        }
        let Some(hours) = settings.get("businessHours") else {
            return Ok(None);
        };
        let days: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(hours.clone())
                .map_err(|_| "businessHours: must be an object of days")?;
        let mut week: [Vec<(NaiveTime, Option<NaiveTime>)>; 7] = Default::default();
        for (day, intervals) in days {
            let i = DAYS
                .iter()
                .position(|d| *d == day)
                .ok_or_else(|| format!("businessHours: {day:?} is not mon, tue … sun"))?;
            let list: Vec<Interval> = serde_json::from_value(intervals)
                .map_err(|_| format!("businessHours.{day}: must be a list of {{open, close}}"))?;
            let mut parsed = Vec::new();
            for iv in list {
                let open = time(&iv.open, false)
                    .map_err(|e| format!("businessHours.{day}: {e}"))?
                    .unwrap_or_default();
                let close =
                    time(&iv.close, true).map_err(|e| format!("businessHours.{day}: {e}"))?;
                if close.is_some_and(|c| c <= open) {
                    return Err(format!(
                        "businessHours.{day}: {} closes before it opens (split a span past midnight in two days)",
                        iv.open
                    ));
                }
                parsed.push((open, close));
            }
            parsed.sort();
            let overlaps = parsed
                .windows(2)
                .any(|w| w[0].1.is_none_or(|close| close > w[1].0));
            if overlaps {
                return Err(format!("businessHours.{day}: the intervals overlap"));
            }
            week[i] = parsed;
        }
        Ok(Some(BusinessHours {
            timezone,
            week,
            holidays,
        }))
    }

    fn day(&self, date: NaiveDate) -> &[(NaiveTime, Option<NaiveTime>)] {
        if self.holidays.contains(&date) {
            return &[];
        }
        &self.week[date.weekday().num_days_from_monday() as usize]
    }

    /// Whether the business is open at `at` (by its wall clock).
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone).naive_local();
        let t = local.time();
        self.day(local.date())
            .iter()
            .any(|(open, close)| *open <= t && close.is_none_or(|c| t < c))
    }

    /// The instant a local wall-clock time happens: the earlier of a repeated hour, the end of a
    /// skipped one.
    fn instant(&self, date: NaiveDate, t: NaiveTime) -> DateTime<Utc> {
        let mut local = date.and_time(t);
        for _ in 0..4 {
            if let Some(at) = self.timezone.from_local_datetime(&local).earliest() {
                return at.with_timezone(&Utc);
            }
            // In a gap (clocks jumped forward): the first minute after it.
            local += Duration::minutes(30);
        }
        Utc.from_utc_datetime(&date.and_time(t))
    }

    /// When the business next opens after `at`; `at` itself when open now; `None` when no day
    /// of the next 400 has hours.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(at) {
            return Some(at);
        }
        let today = at.with_timezone(&self.timezone).date_naive();
        (0..LOOKAHEAD_DAYS)
            .filter_map(|n| today.checked_add_signed(Duration::days(n)))
            .flat_map(|date| self.day(date).iter().map(move |(open, _)| (date, *open)))
            .map(|(date, open)| self.instant(date, open))
            .find(|opening| *opening > at)
    }

    /// The open spans (UTC milliseconds) that overlap `[from, to)`, clipped to it, in order:
    /// each day's intervals at the instants its wall clock reaches them, so a day of a
    /// daylight-saving change is as long as it really was.
    pub fn open_spans(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let local = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .with_timezone(&self.timezone)
                .date_naive()
        };
        let (first, last) = (local(from).pred_opt(), local(to));
        let mut spans = Vec::new();
        let days = first
            .into_iter()
            .flat_map(|d| d.iter_days())
            .take_while(|d| *d <= last);
        for date in days {
            for (open, close) in self.day(date) {
                let start = self.instant(date, *open).timestamp_millis();
                let end = match close {
                    Some(c) => self.instant(date, *c),
                    None => self.instant(date.succ_opt().unwrap_or(date), NaiveTime::MIN),
                }
                .timestamp_millis();
                let (start, end) = (start.max(from), end.min(to));
                if start < end {
                    spans.push((start, end));
                }
            }
        }
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hours(v: serde_json::Value) -> BusinessHours {
        BusinessHours::of_settings(&v).unwrap().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn open_by_the_local_clock_with_holidays() {
        let h = hours(json!({"timezone": "America/Sao_Paulo",
            "businessHours": {"mon": [{"open": "09:00", "close": "12:00"}, {"open": "13:00", "close": "18:00"}],
                "sat": [{"open": "10:00", "close": "24:00"}]},
            "holidays": ["2026-12-07"]}));
        // Monday 2026-11-30, 11:00 in São Paulo (UTC-3) is 14:00 UTC.
        assert!(h.is_open(utc("2026-11-30T14:00:00Z")));
        assert!(!h.is_open(utc("2026-11-30T15:30:00Z")), "lunch");
        assert!(!h.is_open(utc("2026-11-30T21:00:00Z")), "18:00 is closed");
        assert_eq!(
            h.next_opening(utc("2026-11-30T15:30:00Z")),
            Some(utc("2026-11-30T16:00:00Z"))
        );
        // Saturday to midnight; then the next Monday is a holiday: Saturday the 12th.
        assert!(h.is_open(utc("2026-12-06T02:59:00Z")), "Saturday 23:59");
        assert_eq!(
            h.next_opening(utc("2026-12-06T03:00:00Z")),
            Some(utc("2026-12-12T13:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_changes() {
        let h = hours(json!({"timezone": "Europe/Lisbon",
            "businessHours": {"sun": [{"open": "01:30", "close": "03:00"}],
                "mon": [{"open": "09:00", "close": "17:00"}]}}));
        // 2026-03-29: Lisbon jumps from 01:00 to 02:00 (UTC+0 → UTC+1); 01:30 does not exist.
        assert_eq!(
            h.next_opening(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z")),
            "opens when the clocks have jumped (02:00 local)"
        );
        // Monday 09:00 is 08:00 UTC in summer, 09:00 UTC in winter.
        assert!(h.is_open(utc("2026-03-30T08:00:00Z")));
        assert!(!h.is_open(utc("2026-03-23T08:30:00Z")));
        // 2026-10-25: 01:00–02:00 happens twice; the opening is the first 01:30.
        assert_eq!(
            h.next_opening(utc("2026-10-24T12:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn bad_settings_are_refused_and_none_is_always_open() {
        for bad in [
            json!({"timezone": "Mars/Olympus"}),
            json!({"businessHours": {"monday": []}}),
            json!({"businessHours": {"mon": [{"open": "9:00", "close": "17:00"}]}}),
            json!({"businessHours": {"mon": [{"open": "18:00", "close": "09:00"}]}}),
            json!({"businessHours": {"mon": [{"open": "09:00", "close": "12:00"}, {"open": "11:00", "close": "13:00"}]}}),
            json!({"holidays": ["2026-02-30"]}),
        ] {
            assert!(BusinessHours::of_settings(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            BusinessHours::of_settings(&json!({"timezone": "UTC"})),
            Ok(None)
        );
        let closed = hours(json!({"businessHours": {}}));
        assert_eq!(closed.next_opening(utc("2026-12-02T00:00:00Z")), None);
    }

    #[test]
    fn open_spans_follow_the_wall_clock_across_a_change() {
        let h = hours(json!({"timezone": "Europe/Lisbon",
            "businessHours": {"sat": [{"open": "22:00", "close": "24:00"}],
                "sun": [{"open": "00:00", "close": "03:00"}, {"open": "09:00", "close": "17:00"}]}}));
        let ms = |s: &str| utc(s).timestamp_millis();
        // Saturday 2026-03-28 22:00 (UTC+0) to Sunday 03:00 (UTC+1, after the 01:00 jump):
        // 2 h + 2 h of a Sunday night that lost an hour; then 09:00–17:00 summer time.
        let spans = h.open_spans(ms("2026-03-28T00:00:00Z"), ms("2026-03-30T00:00:00Z"));
        assert_eq!(
            spans,
            vec![
                (ms("2026-03-28T22:00:00Z"), ms("2026-03-29T00:00:00Z")),
                (ms("2026-03-29T00:00:00Z"), ms("2026-03-29T02:00:00Z")),
                (ms("2026-03-29T08:00:00Z"), ms("2026-03-29T16:00:00Z")),
            ]
        );
        // Clipped to the range asked for.
        let spans = h.open_spans(ms("2026-03-29T01:00:00Z"), ms("2026-03-29T09:00:00Z"));
        assert_eq!(
            spans,
            vec![
                (ms("2026-03-29T01:00:00Z"), ms("2026-03-29T02:00:00Z")),
                (ms("2026-03-29T08:00:00Z"), ms("2026-03-29T09:00:00Z")),
            ]
        );
    }
}
