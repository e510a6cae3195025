//! `weft_bpf_program_run_total` and `weft_bpf_program_run_seconds_total`: the kernel's run
//! statistics of each datapath program, read when Prometheus scrapes (see `datapath::stats`).

use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, IntCounterVec, Opts};

use super::metrics::DatapathStats;

pub(super) struct ProgramCollector {
    source: Arc<dyn DatapathStats>,
    runs: IntCounterVec,
    seconds: CounterVec,
    /// Serializes scrapes: a counter is set by reset + add, which must not interleave.
    lock: Mutex<()>,
}

impl ProgramCollector {
    pub(super) fn new(source: Arc<dyn DatapathStats>) -> anyhow::Result<Self> {
        Ok(ProgramCollector {
            source,
            runs: IntCounterVec::new(
                Opts::new(
                    "weft_bpf_program_run_total",
                    "Runs of each datapath program, from the kernel's BPF statistics.",
                ),
                &["program"],
            )?,
            seconds: CounterVec::new(
                Opts::new(
                    "weft_bpf_program_run_seconds_total",
                    "Time spent in each datapath program, from the kernel's BPF statistics.",
                ),
                &["program"],
            )?,
            lock: Mutex::new(()),
        })
    }
}

impl Collector for ProgramCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.runs.desc();
        descs.extend(self.seconds.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // On a read error the previous values stay: a scrape must not make counters go back.
        match self.source.program_runs() {
            Ok(programs) => {
                for p in programs {
                    let runs = self.runs.with_label_values(&[p.program]);
                    runs.reset();
                    runs.inc_by(p.run_count);
                    let seconds = self.seconds.with_label_values(&[p.program]);
                    seconds.reset();
                    seconds.inc_by(p.run_time.as_secs_f64());
                }
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "reading program statistics"),
        }
        let mut families = self.runs.collect();
        families.extend(self.seconds.collect());
        families
    }
}
