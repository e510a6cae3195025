//! What the outbound proxy would do with the next connection or request to a service port,
//! read without changing anything: the endpoint its balancer would choose and what the
//! balancer knows about each endpoint. `explain` shows it next to the model's answer.

use crate::balance::{self, Algorithm, Preview};
use crate::state::{ServiceTarget, Workload};

use super::http::key::{StackStr, request_hash, source_hash};
use super::outbound::Outbound;

impl Outbound {
    /// The balancer's choice for a connection from `source` to `target`, balanced per
    /// request when `http` (the L7 path's balancers, with latency and ejection state) or per
    /// connection otherwise (the L4 path's round robin, which keeps no endpoint state). A
    /// consistent hash on a header or cookie is previewed for a request without them.
    pub fn preview(
        &self,
        target: &ServiceTarget,
        http: bool,
        source: Option<&Workload>,
    ) -> Preview {
        if !http {
            let name = target.service.display_name();
            return Preview {
                algorithm: Algorithm::RoundRobin,
                chosen: self.lb.peek(&name, &target.endpoints),
                endpoints: Vec::new(),
                active: self.lb.has(&name),
            };
        }
        let service = (
            target.service.namespace.clone(),
            target.service.name.clone(),
        );
        let policy = &target.service.traffic_policy;
        let key = StackStr::balancer_key(&service, target.port.port);
        let hash = request_hash(
            &policy.load_balancer,
            &Default::default(),
            source.map(source_hash),
        );
        self.http.balancers.preview(
            key.as_str(),
            &target.endpoints,
            &balance::Config::from(policy),
            hash,
        )
    }
}
