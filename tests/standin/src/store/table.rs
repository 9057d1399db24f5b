//! Table responses (`Accept: ...;as=Table;g=meta.k8s.io;v=v1`), so that
//! `kubectl get` prints a CRD's `additionalPrinterColumns` as a real API
//! server would. Column paths support the JSONPath subset printer columns
//! use: `.a.b`, `[N]` and `[?(@.key=="value")]`.

use serde_json::{Value, json};

use super::Store;

impl Store {
    /// Turn a GET answer (one object or a list) into a Table.
    pub fn table(&self, path: &str, value: Value) -> Value {
        let columns = self
            .parse(path, "")
            .ok()
            .and_then(|p| p.rt.crd.as_ref().map(|c| c.columns.clone()))
            .unwrap_or_else(|| vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]);
        let mut defs =
            vec![json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0})];
        defs.extend(columns.iter().map(|c| {
            json!({"name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")),
                   "description": c.get("description").cloned().unwrap_or(json!("")),
                   "priority": c.get("priority").cloned().unwrap_or(json!(0))})
        }));
        let items = match value.get("items").and_then(Value::as_array) {
            Some(items) => items.clone(),
            None => vec![value.clone()],
        };
        let rows: Vec<Value> = items
            .iter()
            .map(|obj| {
                let mut cells = vec![obj["metadata"]["name"].clone()];
                for c in &columns {
                    let found = c["jsonPath"].as_str().map(|p| select(obj, p)).unwrap_or_default();
                    cells.push(cell(c["type"].as_str().unwrap_or("string"), found));
                }
                json!({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                       "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
            })
            .collect();
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
               "metadata": {"resourceVersion": value["metadata"]["resourceVersion"]},
               "columnDefinitions": defs, "rows": rows})
    }
}

/// The cell for a column: empty when the path finds nothing; dates as ages.
fn cell(ty: &str, found: Vec<Value>) -> Value {
    let Some(v) = found.into_iter().next() else {
        return Value::Null;
    };
    match (ty, &v) {
        ("date", Value::String(s)) => match s.parse::<k8s_openapi::jiff::Timestamp>() {
            Ok(t) => json!(human_age(
                k8s_openapi::jiff::Timestamp::now().duration_since(t).as_secs()
            )),
            Err(_) => json!("<invalid>"),
        },
        ("string", Value::String(_)) | ("integer" | "number", Value::Number(_)) | ("boolean", Value::Bool(_)) => v,
        (_, other) => json!(other.to_string()),
    }
}

/// Ages as kubectl prints them: `45s`, `3m12s`, `2h5m`, `4d`.
fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10800 => format!("{}m", s / 60),
        10800..172800 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86400),
    }
}

/// Evaluate a printer-column JSONPath against `obj`.
pub(crate) fn select(obj: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![obj.clone()];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            current = if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((k, want)) = filter.split_once("==") else {
                    return Vec::new();
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                current
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|e| match &e[k.trim()] {
                        Value::String(s) => s == want,
                        other => {
                            let shown = other.to_string();
                            shown == want
                        }
                    })
                    .cloned()
                    .collect()
            } else if inner == "*" {
                current.iter().filter_map(Value::as_array).flatten().cloned().collect()
            } else {
                let Ok(i) = inner.parse::<usize>() else {
                    return Vec::new();
                };
                current
                    .iter()
                    .filter_map(|v| v.as_array().and_then(|a| a.get(i)).cloned())
                    .collect()
            };
        } else {
            return Vec::new();
        }
    }
    current.into_iter().filter(|v| !v.is_null()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let obj = json!({"status": {"nodesReady": "2/2", "conditions": [
            {"type": "Degraded", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(select(&obj, ".status.nodesReady"), vec![json!("2/2")]);
        assert_eq!(
            select(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(select(&obj, ".status.conditions[0].type"), vec![json!("Degraded")]);
        assert!(select(&obj, ".status.missing").is_empty());
        assert_eq!(human_age(75), "75s");
        assert_eq!(human_age(200), "3m20s");
        assert_eq!(human_age(90000), "25h0m");
    }
}
