//! The authorization series: every decision the node proxy enforces, by the policy that took it,
//! the outcome and the layer (a connection or an HTTP request).
//!
//! Policy names come from the mesh state (bounded by the configuration); decisions that no
//! policy took carry `policy=""`.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::policy::{Decision, Layer};

#[derive(Clone)]
pub struct AuthzMetrics {
    decisions: IntCounterVec,
}

impl AuthzMetrics {
    pub(super) fn register(registry: &Registry) -> anyhow::Result<Self> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "weft_authorization_decisions_total",
                "Authorization decisions enforced by the node proxy, by policy, action and layer.",
            ),
            &["policy", "action", "layer"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        // Decisions without a policy start at zero, so that rates and alerts work at once.
        for action in ["allow", "deny"] {
            for layer in [Layer::L4, Layer::L7] {
                decisions.with_label_values(&["", action, layer.as_str()]);
            }
        }
        Ok(AuthzMetrics { decisions })
    }

    /// Counts one enforced decision.
    pub fn decision(&self, decision: &Decision, layer: Layer) {
        let action = if decision.allow { "allow" } else { "deny" };
        self.decisions
            .with_label_values(&[&*decision.policy, action, layer.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::telemetry::Metrics;

    #[test]
    fn decisions_are_counted_by_policy_action_and_layer() -> anyhow::Result<()> {
        let metrics = Metrics::new()?;
        let denied = Decision {
            allow: false,
            policy: Arc::from("shop/deny-admin"),
        };
        metrics.authz().decision(&denied, Layer::L7);
        metrics.authz().decision(&denied, Layer::L7);
        let unmatched = Decision {
            allow: false,
            policy: Arc::from(""),
        };
        metrics.authz().decision(&unmatched, Layer::L4);
        let text = metrics.encode()?;
        let name = "weft_authorization_decisions_total";
        for line in [
            format!(r#"{name}{{action="deny",layer="l7",policy="shop/deny-admin"}} 2"#),
            format!(r#"{name}{{action="deny",layer="l4",policy=""}} 1"#),
            format!(r#"{name}{{action="allow",layer="l7",policy=""}} 0"#),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        Ok(())
    }
}
