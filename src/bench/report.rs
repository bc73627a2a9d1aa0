//! What a scenario measured, and how it is printed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl From<&Histogram<u64>> for Latency {
    fn from(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The server's resource use, from /proc.
#[derive(Debug, Serialize, Default)]
pub struct Server {
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_peak_kib: u64,
    /// CPU seconds (user + system) the server used during the measurement.
    pub cpu_seconds: f64,
    /// … as a share of one core.
    pub cpu_percent: f64,
    /// The load generator's own CPU over the same time, as a share of one core: on a machine
    /// shared with the server, what the server could not use.
    pub generator_cpu_percent: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub params: serde_json::Value,
    pub seconds: f64,
    pub counts: BTreeMap<String, u64>,
    pub rates: BTreeMap<String, f64>,
    pub latencies: BTreeMap<String, Latency>,
    pub server: Option<Server>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, params: serde_json::Value) -> Report {
        Report {
            scenario: scenario.to_owned(),
            params,
            seconds: 0.0,
            counts: BTreeMap::new(),
            rates: BTreeMap::new(),
            latencies: BTreeMap::new(),
            server: None,
            notes: Vec::new(),
        }
    }

    pub fn count(&mut self, name: &str, n: u64) {
        self.counts.insert(name.to_owned(), n);
    }

    pub fn rate(&mut self, name: &str, per_second: f64) {
        self.rates
            .insert(name.to_owned(), (per_second * 10.0).round() / 10.0);
    }

    pub fn latency(&mut self, name: &str, h: &Histogram<u64>) {
        if !h.is_empty() {
            self.latencies.insert(name.to_owned(), Latency::from(h));
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario  {}  {}", self.scenario, self.params)?;
        writeln!(f, "measured  {:.2} s", self.seconds)?;
        for (name, n) in &self.counts {
            writeln!(f, "  {name:<28} {n}")?;
        }
        for (name, r) in &self.rates {
            writeln!(f, "  {name:<28} {r:.1}/s")?;
        }
        if !self.latencies.is_empty() {
            writeln!(
                f,
                "  {:<28} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
            )?;
            for (name, l) in &self.latencies {
                writeln!(
                    f,
                    "  {name:<28} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                )?;
            }
        }
        if let Some(s) = &self.server {
            writeln!(
                f,
                "  server RSS {} → {} KiB (peak {}), CPU {:.2} s ({:.0}% of a core); load generator {:.0}% of a core",
                s.rss_before_kib,
                s.rss_after_kib,
                s.rss_peak_kib,
                s.cpu_seconds,
                s.cpu_percent,
                s.generator_cpu_percent
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

/// Samples a process's RSS and CPU time from /proc.
pub struct Probe {
    pid: Option<u32>,
    rss_before: u64,
    cpu_before: f64,
    own_cpu_before: f64,
    started: Instant,
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn proc_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl Probe {
    pub fn start(pid: Option<u32>) -> Probe {
        Probe {
            pid,
            rss_before: pid.and_then(proc_rss_kib).unwrap_or(0),
            cpu_before: pid.and_then(proc_cpu_seconds).unwrap_or(0.0),
            own_cpu_before: proc_cpu_seconds(std::process::id()).unwrap_or(0.0),
            started: Instant::now(),
        }
    }

    pub fn rss_now(&self) -> Option<u64> {
        self.pid.and_then(proc_rss_kib)
    }

    pub fn finish(&self) -> Option<Server> {
        let pid = self.pid?;
        let cpu = proc_cpu_seconds(pid)? - self.cpu_before;
        let own_cpu = proc_cpu_seconds(std::process::id()).unwrap_or(0.0) - self.own_cpu_before;
        let wall = self.started.elapsed().as_secs_f64();
        let percent = |cpu: f64| (cpu / wall * 1000.0).round() / 10.0;
        Some(Server {
            rss_before_kib: self.rss_before,
            rss_after_kib: proc_rss_kib(pid)?,
            rss_peak_kib: proc_hwm_kib(pid).unwrap_or(0),
            cpu_seconds: (cpu * 100.0).round() / 100.0,
            cpu_percent: percent(cpu),
            generator_cpu_percent: percent(own_cpu),
        })
    }
}
