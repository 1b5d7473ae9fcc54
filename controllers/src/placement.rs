//! Where a pod (or volume) may go: tolerations against taints and node selector terms
//! against a node, as Kubernetes matches them. Shared by the scheduler, the DaemonSet
//! controller, the node lifecycle controller and the volume binder.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};

/// Kubernetes' `ToleratesTaint`: the effect matches (or the toleration names none), the key
/// matches (or an empty key with `Exists` tolerates every taint), and `Equal` values match.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub fn tolerates_any(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// One `matchExpressions` requirement against the value of its label on a node.
pub fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(v))) = (bound.parse::<i64>(), value.map(str::parse::<i64>))
            else {
                return false;
            };
            if op == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// `matchFields` supports `metadata.name` with `In` and `NotIn`, as Kubernetes does.
pub fn field_matches(req: &NodeSelectorRequirement, node_name: &str) -> bool {
    if req.key != "metadata.name" {
        return false;
    }
    let listed = req.values.iter().flatten().any(|v| v == node_name);
    match req.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

/// A term matches when all its expressions and fields do; an empty term matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| field_matches(r, node_name))
}

/// The terms of a node selector are ORed.
pub fn node_selector_matches(
    selector: &NodeSelector,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node_name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn tolerations_match_like_kubernetes() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "value": "gpu"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "value": "cpu"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
    }

    #[test]
    fn selector_terms_and_operators() {
        let labels = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]);
        let term =
            |v: serde_json::Value| -> NodeSelectorTerm { serde_json::from_value(v).unwrap() };
        assert!(term_matches(
            &term(
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]})
            ),
            "n1",
            &labels
        ));
        assert!(term_matches(
            &term(
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]})
            ),
            "n1",
            &labels
        ));
        assert!(!term_matches(
            &term(json!({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]})),
            "n1",
            &labels
        ));
        assert!(term_matches(
            &term(
                json!({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]})
            ),
            "n1",
            &labels
        ));
        assert!(term_matches(
            &term(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
            ),
            "n1",
            &labels
        ));
        assert!(
            !term_matches(&term(json!({})), "n1", &labels),
            "an empty term matches nothing"
        );
    }
}
