//! How the HTTP and gRPC servers misbehave on purpose: an answer status, a delay and a body size,
//! chosen per request (`?status=503&delay_ms=50&size=1024`) or persistently (`POST /control`), so
//! a test can make a backend fail and later recover it.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

/// Longest delay a request may ask for: tests are bounded, and so are their servers.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Largest padded body a request may ask for.
pub const MAX_SIZE: usize = 16 << 20;

/// What every server of one `http-serve` process shares: its name and the persistent behaviour.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub control: Control,
}

/// The persistent defaults, shared by every connection of a server.
#[derive(Debug)]
pub struct Control {
    status: AtomicU16,
    delay_ms: AtomicU64,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
        }
    }
}

/// Body of `POST /control`; absent fields keep their current value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlUpdate {
    pub status: Option<u16>,
    pub delay_ms: Option<u64>,
}

/// What one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    pub status: StatusCode,
    pub delay: Duration,
    /// Minimum body length (the body is padded with trailing whitespace, so it stays JSON).
    pub size: usize,
}

impl Control {
    /// The persistent status and delay (ms).
    pub fn current(&self) -> (u16, u64) {
        (
            self.status.load(Ordering::Relaxed),
            self.delay_ms.load(Ordering::Relaxed),
        )
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }

    /// Validates the whole update before storing any of it, so a bad request changes nothing.
    pub fn apply(&self, update: &ControlUpdate) -> Result<(), String> {
        if let Some(status) = update.status {
            answer_status(u64::from(status))?;
        }
        if let Some(delay_ms) = update.delay_ms {
            bounded("delay_ms", delay_ms, MAX_DELAY_MS)?;
        }
        if let Some(status) = update.status {
            self.status.store(status, Ordering::Relaxed);
        }
        if let Some(delay_ms) = update.delay_ms {
            self.delay_ms.store(delay_ms, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The persistent defaults overridden by the request's query parameters. Unknown parameters
    /// are ignored, so tests can add their own (cache busters, route markers).
    pub fn behaviour(&self, query: Option<&str>) -> Result<Behaviour, String> {
        let (status, delay_ms) = self.current();
        let mut behaviour = Behaviour {
            status: answer_status(u64::from(status))?,
            delay: Duration::from_millis(delay_ms),
            size: 0,
        };
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value:?}: not a number"))
            };
            match key {
                "status" => behaviour.status = answer_status(number()?)?,
                "delay_ms" => {
                    behaviour.delay = Duration::from_millis(bounded(key, number()?, MAX_DELAY_MS)?);
                }
                "size" => {
                    let size = bounded(key, number()?, MAX_SIZE as u64)?;
                    behaviour.size = usize::try_from(size).unwrap_or(MAX_SIZE);
                }
                _ => {}
            }
        }
        Ok(behaviour)
    }
}

/// Final statuses only: 1xx cannot end an exchange and would confuse every client.
fn answer_status(code: u64) -> Result<StatusCode, String> {
    u16::try_from(code)
        .ok()
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("status {code}: must be within 200..=599"))
}

fn bounded(what: &str, value: u64, max: u64) -> Result<u64, String> {
    if value > max {
        return Err(format!("{what} {value}: at most {max}"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_overrides_the_persistent_defaults() {
        let control = Control::default();
        let plain = control.behaviour(None).expect("defaults");
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(plain.delay, Duration::ZERO);
        let tuned = control
            .behaviour(Some("status=503&delay_ms=50&size=1024&other=x&flag"))
            .expect("valid query");
        assert_eq!(tuned.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(tuned.delay, Duration::from_millis(50));
        assert_eq!(tuned.size, 1024);
    }

    #[test]
    fn bad_queries_are_refused() {
        let control = Control::default();
        for query in [
            "status=99",
            "status=600",
            "status=abc",
            "delay_ms=60001",
            "size=-1",
        ] {
            assert!(control.behaviour(Some(query)).is_err(), "{query}");
        }
    }

    #[test]
    fn updates_persist_until_reset_and_bad_ones_change_nothing() {
        let control = Control::default();
        let fail: ControlUpdate =
            serde_json::from_str(r#"{"status": 503, "delay_ms": 50}"#).expect("json");
        control.apply(&fail).expect("valid update");
        assert_eq!(control.current(), (503, 50));
        let behaviour = control.behaviour(Some("size=1")).expect("valid");
        assert_eq!(behaviour.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            control.behaviour(Some("status=200")).expect("ok").status,
            200
        );

        let half_bad = ControlUpdate {
            status: Some(200),
            delay_ms: Some(MAX_DELAY_MS + 1),
        };
        assert!(control.apply(&half_bad).is_err());
        assert_eq!(control.current(), (503, 50));

        let reset: ControlUpdate =
            serde_json::from_str(r#"{"status": 200, "delay_ms": 0}"#).expect("json");
        control.apply(&reset).expect("reset");
        assert_eq!(control.current(), (200, 0));
        assert!(serde_json::from_str::<ControlUpdate>(r#"{"stauts": 1}"#).is_err());
    }
}
