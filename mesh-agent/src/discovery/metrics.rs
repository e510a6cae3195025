//! `weft_cgroup_unresolved_pods`: pods of this node that the mesh should capture but whose cgroup
//! is not found. The agent sets it after each pass over the node's pods.

use prometheus::{IntGauge, Registry};

#[derive(Clone, Debug)]
pub struct UnresolvedGauge(IntGauge);

impl UnresolvedGauge {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = IntGauge::new(
            "weft_cgroup_unresolved_pods",
            "Pods of this node whose cgroup was not found; they are not captured.",
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(UnresolvedGauge(gauge))
    }

    pub fn set(&self, pods: usize) {
        self.0.set(i64::try_from(pods).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_is_exported_with_its_value() {
        let registry = Registry::new();
        let gauge = UnresolvedGauge::register(&registry).expect("register");
        gauge.set(3);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        assert!(
            text.lines().any(|l| l == "weft_cgroup_unresolved_pods 3"),
            "{text}"
        );
        assert!(
            UnresolvedGauge::register(&registry).is_err(),
            "registered twice"
        );
    }
}
