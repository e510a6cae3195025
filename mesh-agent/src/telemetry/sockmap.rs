//! The same-node acceleration series, read from the kernel's counters at scrape time with the
//! other datapath series (`metrics::DatapathCollector`).

use mesh_common::Counter;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts};

pub struct SockmapSeries {
    sockets: IntCounter,
    messages: IntCounterVec,
    bytes: IntCounter,
    fallbacks: IntCounter,
}

impl SockmapSeries {
    pub fn new() -> prometheus::Result<Self> {
        Ok(SockmapSeries {
            sockets: IntCounter::new(
                "weft_datapath_sockmap_sockets_total",
                "Sockets that entered the same-node acceleration map (both ends of a local \
                 meshed connection count).",
            )?,
            messages: IntCounterVec::new(
                Opts::new(
                    "weft_datapath_sockmap_messages_total",
                    "Sends of accelerated sockets: redirected straight to the peer socket, or \
                     passed to TCP because the peer was not accelerated.",
                ),
                &["result"],
            )?,
            bytes: IntCounter::new(
                "weft_datapath_sockmap_redirected_bytes_total",
                "Bytes redirected socket to socket, bypassing the TCP/IP stack.",
            )?,
            fallbacks: IntCounter::new(
                "weft_datapath_sockmap_fallbacks_total",
                "Accelerated sockets that went back to TCP after sending 4 MiB without an \
                 answer from their peer (a one-way stream, left to TCP's flow control).",
            )?,
        })
    }

    /// Sets the series from one kernel counter; false when it is not a sockmap counter.
    pub fn set(&self, counter: Counter, value: u64) -> bool {
        let series = match counter {
            Counter::SockmapSockets => self.sockets.clone(),
            Counter::SockmapRedirected => self.messages.with_label_values(&["redirected"]),
            Counter::SockmapPassed => self.messages.with_label_values(&["passed"]),
            Counter::SockmapRedirectedBytes => self.bytes.clone(),
            Counter::SockmapFallbacks => self.fallbacks.clone(),
            _ => return false,
        };
        series.reset();
        series.inc_by(value);
        true
    }

    pub fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.sockets.desc();
        descs.extend(self.messages.desc());
        descs.extend(self.bytes.desc());
        descs.extend(self.fallbacks.desc());
        descs
    }

    pub fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.sockets.collect();
        families.extend(self.messages.collect());
        families.extend(self.bytes.collect());
        families.extend(self.fallbacks.collect());
        families
    }
}
