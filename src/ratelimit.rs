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

/// (limit name, key) → (window start in ms, hits in the window).
type Windows = HashMap<(&'static str, String), (i64, u32)>;

#[derive(Default)]
struct MemoryStore {
    windows: Mutex<Windows>,
}

/// Above this many keys, expired windows are swept on the next hit.
const SWEEP_AT: usize = 50_000;

impl MemoryStore {
    fn hit(&self, limit: &Limit, key: &str, now: i64) -> Result<(), u64> {
        let window_ms = limit.window.as_millis() as i64;
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_AT {
            // Windows are at most an hour long; anything older is dead.
            map.retain(|_, (start, _)| now - *start < 3_600_000);
        }
        let entry = map.entry((limit.name, key.to_owned())).or_insert((now, 0));
        if now - entry.0 >= window_ms {
            *entry = (now, 0);
        }
        if entry.1 >= limit.max {
            let wait_ms = entry.0 + window_ms - now;
            return Err(((wait_ms + 999) / 1000) as u64);
        }
        entry.1 += 1;
        Ok(())
    }
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
