//! Request rate limits: fixed windows counted per (limit, key).
//!
//! [`RateLimiter`] is the interface the request paths use; its store is in memory on a single
//! node and Redis in cluster mode (one atomic `SET NX PX` + `INCR` + `PTTL` per hit, so every
//! node counts into the same window). While Redis cannot be reached, each node counts in its
//! own memory. `PALAVER_RATE_LIMITS=off` turns off every limit except those marked `always`
//! (the OTP attempt and resend rules).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::Cluster;

/// A named limit: at most `max` hits per `window` for one key.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub max: u32,
    pub window: Duration,
    /// Still enforced when rate limits are turned off.
    pub always: bool,
}

impl Limit {
    pub const fn per_minute(name: &'static str, max: u32) -> Limit {
        Limit {
            name,
            max,
            window: Duration::from_secs(60),
            always: false,
        }
    }
    pub const fn per_hour(name: &'static str, max: u32) -> Limit {
        Limit {
            name,
            max,
            window: Duration::from_secs(3600),
            always: false,
        }
    }
}

pub mod limits {
    use super::Limit;
    /// Sign-in endpoints (signup, login, OTP, refresh, password reset), per client IP.
    pub const AUTH_PER_IP: Limit = Limit::per_minute("auth_ip", 30);
    /// Login and password-reset attempts per account (email).
    pub const AUTH_PER_ACCOUNT: Limit = Limit::per_minute("auth_account", 10);
    /// OTP codes requested per phone number.
    pub const OTP_PER_PHONE: Limit = Limit::per_hour("otp_phone", 5);
    /// OTP codes requested per client IP.
    pub const OTP_PER_IP: Limit = Limit::per_hour("otp_ip", 20);
    /// Authenticated API requests per user.
    pub const API_PER_USER: Limit = Limit::per_minute("api_user", 1200);
    /// WhatsApp webhook deliveries per client IP (Meta sends bursts from few addresses).
    pub const WEBHOOKS_PER_IP: Limit = Limit::per_minute("webhook_ip", 6000);
    /// Media uploads per user.
    pub const UPLOADS_PER_USER: Limit = Limit::per_minute("upload_user", 60);
    /// Password-reset mails per target address (apart from login attempts, so that asking for
    /// someone's reset mails cannot lock them out of signing in).
    pub const FORGOT_PER_ADDRESS: Limit = Limit::per_hour("forgot_address", 5);
    /// Verification mails asked for again, per user.
    pub const VERIFICATION_MAILS_PER_USER: Limit = Limit::per_hour("verify_mail_user", 5);
    /// Contact syncs per user (each up to 1000 numbers).
    pub const CONTACT_SYNCS_PER_USER: Limit = Limit::per_minute("contact_sync_user", 10);
    /// Socket.IO client events per device.
    pub const SOCKET_EVENTS_PER_DEVICE: Limit = Limit {
        name: "socket_device",
        max: 300,
        window: std::time::Duration::from_secs(10),
        always: false,
    };
    /// Socket.IO client events per user, all devices together.
    pub const SOCKET_EVENTS_PER_USER: Limit = Limit {
        name: "socket_user",
        max: 600,
        window: std::time::Duration::from_secs(10),
        always: false,
    };
}

/// The key a client address is limited by: an IPv6 address counts as its /64 (one subscriber
/// holds a whole /64 and could otherwise take a new address per request), an IPv4-mapped one as
/// its IPv4 address.
pub fn ip_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        v4 => v4.to_string(),
    }
}

pub struct RateLimiter {
    enabled: bool,
    /// This node's counts: the store on one node, the fallback in a cluster.
    memory: MemoryStore,
    cluster: Option<Arc<Cluster>>,
}

impl RateLimiter {
    pub fn new(enabled: bool, cluster: Option<Arc<Cluster>>) -> RateLimiter {
        RateLimiter {
            enabled,
            memory: MemoryStore::default(),
            cluster,
        }
    }

    /// Whether the limits that rate limits turn off are counted at all.
    pub fn is_on(&self) -> bool {
        self.enabled
    }

    /// Counts a hit; `Err(seconds)` says how long until the key may try again.
    pub async fn check(&self, limit: &Limit, key: &str) -> Result<(), u64> {
        if !self.enabled && !limit.always {
            return Ok(());
        }
        if let Some(c) = &self.cluster {
            if let Ok((hits, left_ms)) = c.hit(limit.name, key, limit.window).await {
                if hits > u64::from(limit.max) {
                    return Err((left_ms.max(1) as u64).div_ceil(1000));
                }
                return Ok(());
            }
        }
        self.memory.hit(limit, key, crate::db::now_ms())
    }
}

/// (limit name, key) → (window start in ms, window end in ms, hits in the window).
type Windows = HashMap<(&'static str, String), (i64, i64, u32)>;

#[derive(Default)]
struct MemoryStore {
    windows: Mutex<(Windows, Sweep)>,
}

/// When ended windows were last swept (ms).
#[derive(Default)]
struct Sweep(i64);

/// Above this many keys, ended windows are swept, at most once a second (a sweep visits every
/// key).
const SWEEP_AT: usize = 50_000;
/// The most keys kept: past it, the windows that end soonest are dropped first (a flood of
/// new keys, from many addresses say, cannot grow the map without end).
const MAX_KEYS: usize = 200_000;

impl MemoryStore {
    fn hit(&self, limit: &Limit, key: &str, now: i64) -> Result<(), u64> {
        let window_ms = limit.window.as_millis() as i64;
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let (map, swept) = &mut *guard;
        if map.len() > SWEEP_AT && now - swept.0 >= 1000 {
            map.retain(|_, (_, end, _)| *end > now);
            swept.0 = now;
        }
        if map.len() >= MAX_KEYS {
            evict_soonest_ending(map, MAX_KEYS / 2);
        }
        let entry = map
            .entry((limit.name, key.to_owned()))
            .or_insert((now, now + window_ms, 0));
        if now >= entry.1 {
            *entry = (now, now + window_ms, 0);
        }
        if entry.2 >= limit.max {
            let wait_ms = entry.1 - now;
            return Err(((wait_ms + 999) / 1000) as u64);
        }
        entry.2 += 1;
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .len()
    }
}

/// Keeps the `keep` windows that end last.
fn evict_soonest_ending(map: &mut Windows, keep: usize) {
    let mut ends: Vec<i64> = map.values().map(|(_, end, _)| *end).collect();
    let cut = ends.len().saturating_sub(keep);
    if cut == 0 {
        return;
    }
    let (_, threshold, _) = ends.select_nth_unstable(cut);
    let threshold = *threshold;
    map.retain(|_, (_, end, _)| *end >= threshold);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_max_hits_then_says_when_to_retry() {
        let s = MemoryStore::default();
        let l = Limit::per_minute("t", 2);
        assert!(s.hit(&l, "k", 0).is_ok());
        assert!(s.hit(&l, "k", 10).is_ok());
        assert_eq!(s.hit(&l, "k", 20_000), Err(40));
        assert!(s.hit(&l, "other", 20_000).is_ok());
        assert!(s.hit(&l, "k", 60_000).is_ok());
    }

    #[test]
    fn the_key_set_stays_bounded() {
        let s = MemoryStore::default();
        let l = Limit::per_hour("flood", 5);
        for i in 0..(MAX_KEYS + 10) {
            let _ = s.hit(&l, &format!("key-{i}"), i as i64);
        }
        assert!(s.len() <= MAX_KEYS, "{}", s.len());
        // The newest keys are still counted.
        let last = format!("key-{}", MAX_KEYS + 9);
        for _ in 0..4 {
            assert!(s.hit(&l, &last, 1_000_000).is_ok());
        }
        assert!(s.hit(&l, &last, 1_000_000).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(other));
        assert_eq!(ip_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(ip_key("10.1.2.3".parse().unwrap()), "10.1.2.3");
    }

    #[tokio::test]
    async fn off_keeps_only_the_always_limits() {
        let r = RateLimiter::new(false, None);
        let normal = Limit::per_minute("n", 1);
        let always = Limit {
            always: true,
            ..Limit::per_minute("a", 1)
        };
        for _ in 0..3 {
            assert!(r.check(&normal, "k").await.is_ok());
        }
        assert!(r.check(&always, "k").await.is_ok());
        assert!(r.check(&always, "k").await.is_err());
    }
}
