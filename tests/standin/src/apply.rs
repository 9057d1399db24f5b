//! Server-side apply, reduced to what list-map ownership needs: each field
//! manager's last applied configuration is remembered; a new apply removes
//! what that manager applied before and no longer applies, then merges the
//! new configuration, merging lists declared as list-maps entry by entry.
//! Not implemented: conflict detection (every apply behaves as `force`),
//! co-ownership of a field by several managers, set-type lists.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// List-map keys by dotted path (`status.nodes` → `["nodeName"]`).
pub type ListMaps = BTreeMap<String, Vec<String>>;

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn entry_key<'a>(v: &'a Value, keys: &[String]) -> Vec<&'a Value> {
    keys.iter().map(|k| &v[k.as_str()]).collect()
}

/// Remove from `base` what `prev` applied and `next` no longer applies.
pub fn prune(base: &mut Value, prev: &Value, next: Option<&Value>, path: &str, lm: &ListMaps) {
    match prev {
        Value::Object(pm) => {
            let Some(bm) = base.as_object_mut() else { return };
            for (k, pv) in pm {
                let p = join(path, k);
                let nv = next.and_then(|n| n.get(k));
                let granular = pv.is_object() || (pv.is_array() && lm.contains_key(&p));
                match (nv, bm.get_mut(k)) {
                    (_, None) => {}
                    // Only what this manager owned goes; a map or list-map
                    // also holding others' fields stays with those.
                    (None, Some(bv)) if granular => {
                        prune(bv, pv, None, &p, lm);
                        let now_empty =
                            bv.as_object().is_some_and(Map::is_empty) || bv.as_array().is_some_and(Vec::is_empty);
                        if now_empty {
                            bm.remove(k);
                        }
                    }
                    (None, Some(_)) => {
                        bm.remove(k);
                    }
                    (Some(nv), Some(bv)) => prune(bv, pv, Some(nv), &p, lm),
                }
            }
        }
        Value::Array(pa) => {
            let Some(keys) = lm.get(path) else { return };
            let Some(ba) = base.as_array_mut() else { return };
            for pe in pa {
                let id = entry_key(pe, keys);
                let ne = next
                    .and_then(Value::as_array)
                    .and_then(|na| na.iter().find(|e| entry_key(e, keys) == id));
                match ne {
                    None => ba.retain(|be| entry_key(be, keys) != id),
                    Some(ne) => {
                        if let Some(be) = ba.iter_mut().find(|be| entry_key(be, keys) == id) {
                            prune(be, pe, Some(ne), path, lm);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Merge `applied` into `base`.
pub fn merge(base: &mut Value, applied: &Value, path: &str, lm: &ListMaps) {
    match (base, applied) {
        (Value::Object(bm), Value::Object(am)) => {
            for (k, av) in am {
                let p = join(path, k);
                match bm.get_mut(k) {
                    Some(bv) if !bv.is_null() => merge(bv, av, &p, lm),
                    _ => {
                        let mut fresh = empty_like(av);
                        merge(&mut fresh, av, &p, lm);
                        bm.insert(k.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(ba), Value::Array(aa)) if lm.contains_key(path) => {
            let keys = &lm[path];
            for ae in aa {
                let id = entry_key(ae, keys);
                match ba.iter_mut().find(|be| entry_key(be, keys) == id) {
                    Some(be) => merge(be, ae, path, lm),
                    None => ba.push(ae.clone()),
                }
            }
        }
        (b, a) => *b = a.clone(),
    }
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lm() -> ListMaps {
        [
            ("status.nodes".to_string(), vec!["nodeName".to_string()]),
            ("status.conditions".to_string(), vec!["type".to_string()]),
        ]
        .into()
    }

    fn apply(base: &mut Value, prev: Option<&Value>, next: &Value) {
        if let Some(p) = prev {
            prune(base, p, Some(next), "", &lm());
        }
        merge(base, next, "", &lm());
    }

    #[test]
    fn two_managers_keep_their_own_entries() {
        let mut obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let a1 = json!({"status": {"nodes": [{"nodeName": "a", "phase": "Running"}]}});
        let b1 = json!({"status": {"nodes": [{"nodeName": "b", "phase": "Pending"}]}});
        apply(&mut obj, None, &a1);
        apply(&mut obj, None, &b1);
        assert_eq!(obj["status"]["nodes"].as_array().unwrap().len(), 2);
        let b2 = json!({"status": {"nodes": [{"nodeName": "b", "phase": "Running"}]}});
        apply(&mut obj, Some(&b1), &b2);
        assert_eq!(obj["status"]["nodes"][1]["phase"], "Running");
        assert_eq!(obj["status"]["nodes"][0]["phase"], "Running");
        // a withdraws its entry; b's and the conditions stay.
        let a2 = json!({"status": {}});
        apply(&mut obj, Some(&a1), &a2);
        assert_eq!(obj["status"]["nodes"], json!([{"nodeName": "b", "phase": "Running"}]));
        assert_eq!(obj["status"]["conditions"][0]["type"], "Ready");
    }

    #[test]
    fn dropped_fields_and_entries_are_removed() {
        let mut obj = json!({});
        let p1 = json!({"status": {"conditions": [{"type": "Ready"}, {"type": "InvalidSpec"}], "x": 1}});
        apply(&mut obj, None, &p1);
        let p2 = json!({"status": {"conditions": [{"type": "Ready"}]}});
        apply(&mut obj, Some(&p1), &p2);
        assert_eq!(obj, json!({"status": {"conditions": [{"type": "Ready"}]}}));
    }
}
