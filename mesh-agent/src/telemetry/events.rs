//! Where finished requests and connections go besides the metrics: the access log (a bounded
//! channel to a writer task, sampled) and the admin API's tap (a broadcast channel).
//!
//! Neither may slow the proxy: a full access-log channel drops the record (counted in
//! `weft_access_log_dropped_total`), and a tap that cannot keep up misses records. With no
//! access log and no tap listening, nothing is built at all.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{IntCounter, Registry};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{broadcast, mpsc};
use tracing::warn;

use super::request::Record;

/// Records waiting for the access-log writer before new ones are dropped.
const LOG_QUEUE: usize = 8192;
/// Records a tap may fall behind by before it misses some.
const TAP_QUEUE: usize = 1024;

/// Where access-log lines go (`--access-log off|stdout|<file>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for AccessLogTarget {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "off" | "" => AccessLogTarget::Off,
            "stdout" | "-" => AccessLogTarget::Stdout,
            path => AccessLogTarget::File(path.into()),
        })
    }
}

impl std::fmt::Display for AccessLogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLogTarget::Off => f.write_str("off"),
            AccessLogTarget::Stdout => f.write_str("stdout"),
            AccessLogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

struct AccessLog {
    tx: mpsc::Sender<Arc<Record>>,
    /// Fraction of records written, 0 to 1.
    sample: f64,
}

struct Inner {
    tap: broadcast::Sender<Arc<Record>>,
    log: OnceLock<AccessLog>,
    dropped: IntCounter,
}

/// The event hub; cheap to clone.
#[derive(Clone)]
pub struct Events(Arc<Inner>);

impl Events {
    pub(super) fn register(registry: &Registry) -> anyhow::Result<Self> {
        let dropped = IntCounter::new(
            "weft_access_log_dropped_total",
            "Access-log records dropped because the writer fell behind.",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(Events(Arc::new(Inner {
            tap: broadcast::channel(TAP_QUEUE).0,
            log: OnceLock::new(),
            dropped,
        })))
    }

    /// Starts the access-log writer on the current runtime (once; later calls are ignored).
    pub async fn start_access_log(
        &self,
        target: &AccessLogTarget,
        sample: f64,
    ) -> anyhow::Result<()> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match target {
            AccessLogTarget::Off => return Ok(()),
            AccessLogTarget::Stdout => Box::new(tokio::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("access log {}: {e}", path.display()))?,
            ),
        };
        let (tx, rx) = mpsc::channel(LOG_QUEUE);
        let log = AccessLog {
            tx,
            sample: sample.clamp(0.0, 1.0),
        };
        if self.0.log.set(log).is_ok() {
            tokio::spawn(write_lines(rx, out));
        }
        Ok(())
    }

    /// A tap: every record from now on, while the receiver lives.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Record>> {
        self.0.tap.subscribe()
    }

    /// Whether the next record would be read by anyone (sampling decides for the log).
    pub fn wanted(&self) -> bool {
        self.0.tap.receiver_count() > 0 || self.sampled()
    }

    fn sampled(&self) -> bool {
        self.0
            .log
            .get()
            .is_some_and(|log| log.sample >= 1.0 || fastrand::f64() < log.sample)
    }

    /// Hands a record to the tap and the access log. The record was built because
    /// [`Events::wanted`] said so; the log takes it whenever it is on, so that the sampling
    /// decision made then holds.
    pub fn emit(&self, record: Record) {
        let record = Arc::new(record);
        if self.0.tap.receiver_count() > 0 {
            let _ = self.0.tap.send(record.clone());
        }
        if let Some(log) = self.0.log.get()
            && log.tx.try_send(record).is_err()
        {
            self.0.dropped.inc();
        }
    }
}

/// Writes one JSON line per record; flushes whenever the queue runs empty, so a line is on
/// disk soon after its request ended without a write per line under load.
async fn write_lines(mut rx: mpsc::Receiver<Arc<Record>>, out: Box<dyn AsyncWrite + Send + Unpin>) {
    let mut out = BufWriter::new(out);
    while let Some(record) = rx.recv().await {
        let mut line = serde_json::to_vec(&*record).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = out.write_all(&line).await {
            warn!(error = %e, "access log write failed");
        }
        if rx.is_empty()
            && let Err(e) = out.flush().await
        {
            warn!(error = %e, "access log flush failed");
        }
    }
}

/// `time` as RFC 3339 UTC with milliseconds (`2026-11-23T15:04:05.123Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm: the proleptic Gregorian date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_446_245_123);
        assert_eq!(rfc3339(t), "2026-11-23T15:04:05.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn access_log_targets_parse() {
        assert_eq!("off".parse(), Ok(AccessLogTarget::Off));
        assert_eq!("stdout".parse(), Ok(AccessLogTarget::Stdout));
        assert_eq!(
            "/var/log/weft.json".parse(),
            Ok(AccessLogTarget::File("/var/log/weft.json".into()))
        );
    }
}
