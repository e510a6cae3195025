//! Translation of single objects: what is kept, skipped or rejected.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::policy::Action;

fn object<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a well-formed test object")
}

fn service_ports(spec: Value) -> Result<Option<ServiceRecord>, String> {
    let svc: Service =
        object(json!({"metadata": {"namespace": "shop", "name": "s"}, "spec": spec}));
    service(svc).map(|r| match r {
        Some(Record::Service(s)) => Some(s),
        _ => None,
    })
}

#[test]
fn services_keep_cluster_ips_and_tcp_udp_ports() {
    let spec = json!({
        "clusterIPs": ["10.96.0.1", "fd00::1"],
        "ports": [
            {"port": 80, "targetPort": "8080"},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
            {"port": 9, "protocol": "SCTP"},
        ],
    });
    let svc = service_ports(spec).expect("valid").expect("a record");
    assert_eq!(svc.vips.len(), 2);
    let targets: Vec<_> = svc
        .ports
        .iter()
        .map(|p| (p.port, p.target.clone()))
        .collect();
    let named = TargetPort::Named("dns".into());
    assert_eq!(targets, [(80, TargetPort::Number(8080)), (53, named)]);
    let headless = service_ports(json!({"clusterIP": "None"}))
        .expect("valid")
        .expect("a record");
    assert!(headless.vips.is_empty());
    let zero = service_ports(json!({"ports": [{"port": 80, "targetPort": 0}]}));
    assert_eq!(
        zero.expect_err("port 0"),
        "spec.ports[0].targetPort: 0 is not a port"
    );
}

fn running_pod(status: Value, spec: Value) -> Translated {
    let mut value = json!({
        "metadata": {"namespace": "shop", "name": "p", "uid": "u-1"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c"}]},
        "status": status,
    });
    if let (Some(base), Some(extra)) = (value["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    pod(object::<Pod>(value))
}

#[test]
fn pods_keep_their_addresses_and_named_ports() {
    let spec = json!({"initContainers": [{"name": "side", "ports": [{"name": "admin", "containerPort": 9901}]}]});
    let status =
        json!({"podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}], "hostIP": "192.168.250.1"});
    let Ok(Some(Record::Pod(p))) = running_pod(status, spec) else {
        panic!("a workload");
    };
    assert_eq!(p.workload.ips.len(), 2);
    assert_eq!(p.workload.service_account, "default");
    assert_eq!(
        p.host_ips,
        ["192.168.250.1".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(p.ports[0].name, "admin");
    assert_eq!(p.ports[0].port, 9901);
}

#[test]
fn pods_without_a_place_in_the_mesh_are_skipped_or_rejected() {
    assert!(
        matches!(running_pod(json!({}), json!({})), Ok(None)),
        "no IP yet"
    );
    let unscheduled = running_pod(json!({"podIP": "10.244.1.5"}), json!({"nodeName": ""}));
    assert_eq!(
        unscheduled.expect_err("no node"),
        "spec.nodeName: missing on a pod that has an IP"
    );
    let bad = running_pod(json!({"podIP": "10.244.1.500"}), json!({}));
    assert_eq!(
        bad.expect_err("bad IP"),
        "status.podIP[0]: `10.244.1.500` is not an IP address"
    );
}

#[test]
fn slices_list_ready_pods_of_their_service() {
    let value = json!({
        "metadata": {"namespace": "shop", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.5"], "targetRef": {"kind": "Pod", "name": "a"}},
            {"addresses": ["10.244.1.6"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "b"}},
            {"addresses": ["10.0.0.9"]},
        ],
    });
    let Ok(Some(Record::Slice(s))) = endpoint_slice(object::<EndpointSlice>(value.clone())) else {
        panic!("a slice");
    };
    assert_eq!(s.service, "web");
    let names: Vec<String> = s.endpoints.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        ["shop/a"],
        "ready absent counts as ready; not-ready and non-pods left out"
    );
    let mut unlabelled = value;
    unlabelled["metadata"]["labels"] = json!({});
    assert!(matches!(
        endpoint_slice(object::<EndpointSlice>(unlabelled)),
        Ok(None)
    ));
}

fn route(parents: Value) -> Translated {
    http_route(object::<DynamicObject>(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"namespace": "shop", "name": "r"},
        "spec": {"parentRefs": parents},
    })))
}

#[test]
fn routes_keep_only_their_service_parents() {
    assert!(
        matches!(route(json!([{"name": "gw"}])), Ok(None)),
        "a Gateway's route"
    );
    let mixed = json!([{"name": "gw"}, {"group": "", "kind": "Service", "name": "web"}]);
    let Ok(Some(Record::Route(RouteObject::Http(r)))) = route(mixed) else {
        panic!("a mesh route");
    };
    let parents = r.spec.parent_refs.unwrap_or_default();
    assert_eq!(parents.len(), 1);
    assert_eq!(parents[0].name, "web");
}

fn policy(spec: Value) -> Translated {
    let mut value = json!({
        "apiVersion": "weft.dev/v1alpha1", "kind": "AuthorizationPolicy",
        "metadata": {"namespace": "shop", "name": "p"},
    });
    if !spec.is_null() {
        value["spec"] = spec;
    }
    authorization_policy(object::<DynamicObject>(value))
}

#[test]
fn policies_read_their_spec() {
    let Ok(Some(Record::Authorization(p))) = policy(Value::Null) else {
        panic!("a policy");
    };
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("shop", "p"));
    assert_eq!(p.spec.action, Action::Allow);
    assert!(
        p.spec.rules.is_none(),
        "no spec reads as {{}}: allow nothing, as in Istio"
    );
    let bad = policy(json!({"action": "PERMIT"})).expect_err("bad action");
    assert!(
        bad.starts_with("spec.action: unknown variant `PERMIT`"),
        "{bad}"
    );
}
