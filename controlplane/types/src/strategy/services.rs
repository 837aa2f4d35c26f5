//! Services: a known type, ports that are ports (named when there are several),
//! a cluster IP that never changes once given, and what an update leaves out of
//! what the server handed out (cluster IPs, node ports) kept.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Strategy, dns_label, fill, immutable, label_name, port_number, protocol};
use crate::field::FieldError;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// Services.
#[derive(Debug)]
pub(crate) struct Services;

/// The strategy of services.
pub(crate) static SERVICES: Services = Services;

impl Strategy for Services {
    fn apply_defaults(&self, service: &mut Value) {
        fill(service, "/spec/type", json!("ClusterIP"));
        fill(service, "/spec/sessionAffinity", json!("None"));
        fill(service, "/spec/internalTrafficPolicy", json!("Cluster"));
        if let Some(ports) = service
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
        {
            for p in ports {
                fill(p, "/protocol", json!("TCP"));
                let port = p["port"].clone();
                fill(p, "/targetPort", port);
            }
        }
    }

    fn reset_status(&self, service: &mut Value) {
        service["status"] = json!({"loadBalancer": {}});
    }

    /// Keeps what an update leaves out but `old` holds: the cluster IPs, and the
    /// node port of each port that stays (by port number and protocol), as
    /// Kubernetes does.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if new["spec"]["type"] == "ExternalName" {
            return;
        }
        let spec = &mut new["spec"];
        if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
            spec["clusterIP"] = old["spec"]["clusterIP"].clone();
            spec["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
        let same = |a: &Value, b: &Value| a["port"] == b["port"] && a["protocol"] == b["protocol"];
        // Missing, or 0 as Go writes it: left for the server to pick.
        let unset = |port: &Value| port["nodePort"].is_null() || port["nodePort"] == 0;
        let old_ports = old["spec"]["ports"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for port in spec["ports"].as_array_mut().into_iter().flatten() {
            if unset(port)
                && let Some(before) = old_ports.iter().find(|p| same(p, port) && !unset(p))
            {
                port["nodePort"] = before["nodePort"].clone();
            }
        }
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        label_name(name)
    }

    /// A known type; ports that are ports, named when there are several and
    /// unique by name; an external name for ExternalName services.
    fn validate(&self, service: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &service["spec"];
        let kind = spec["type"].as_str().unwrap_or("ClusterIP");
        if !SERVICE_TYPES.contains(&kind) {
            errors.push(FieldError::not_supported("spec.type", kind, SERVICE_TYPES));
        }
        let ports = spec["ports"].as_array().map_or(&[][..], Vec::as_slice);
        let headless = spec["clusterIP"].as_str() == Some("None");
        if kind == "ExternalName" {
            if spec["externalName"].as_str().is_none_or(str::is_empty) {
                errors.push(FieldError::required("spec.externalName", ""));
            }
        } else if ports.is_empty() && !headless {
            errors.push(FieldError::required("spec.ports", ""));
        }
        let mut names = BTreeSet::new();
        for (i, port) in ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            match port["name"].as_str().filter(|n| !n.is_empty()) {
                None if ports.len() > 1 => {
                    errors.push(FieldError::required(format!("{at}.name"), ""))
                }
                None => {}
                Some(name) if !names.insert(name) => {
                    errors.push(FieldError::duplicate(format!("{at}.name"), name))
                }
                Some(name) => dns_label(&format!("{at}.name"), name, &mut errors),
            }
            port_number(&port["port"], &format!("{at}.port"), &mut errors);
            if port["targetPort"].is_number() {
                port_number(
                    &port["targetPort"],
                    &format!("{at}.targetPort"),
                    &mut errors,
                );
            }
            protocol(port, &at, &mut errors);
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(new, old, &["/spec/clusterIP"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::errors;

    #[test]
    fn services_need_known_types_and_named_ports() {
        let service = json!({"spec": {"type": "Magic", "ports": [{"port": 80}, {"port": 0, "protocol": "HTTP"}]}});
        assert_eq!(
            errors("", "v1", "Service", service),
            [
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\"",
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
                "spec.ports[1].port: Invalid value: \"0\": must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ]
        );
        assert_eq!(
            errors("", "v1", "Service", json!({"spec": {}})),
            ["spec.ports: Required value"]
        );
        assert!(errors("", "v1", "Service", json!({"spec": {"clusterIP": "None"}})).is_empty());
        assert_eq!(SERVICES.validate_name("a.b").len(), 1);
    }

    #[test]
    fn an_update_keeps_the_addresses_and_ports_handed_out() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                      {"port": 81, "protocol": "TCP", "nodePort": 30081}]}});
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 0}, {"port": 82, "protocol": "TCP"}]}});
        SERVICES.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.9");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert!(new["spec"]["ports"][1].get("nodePort").is_none());
        let mut moved = json!({"spec": {"clusterIP": "10.0.0.10"}});
        assert_eq!(
            SERVICES.validate_update(&moved, &old)[0].to_string(),
            "spec.clusterIP: Invalid value: \"\\\"10.0.0.10\\\"\": field is immutable"
        );
        SERVICES.reset_status(&mut moved);
        assert_eq!(moved["status"], json!({"loadBalancer": {}}));
    }
}
