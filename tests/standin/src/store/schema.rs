//! Admission of custom resources, in the API server's order: unknown
//! fields pruned (or refused under `fieldValidation=Strict`), schema
//! defaults applied, the structural schema checked (types, required, enums,
//! ranges, lengths, patterns, list-map keys), then the CRD's CEL rules
//! evaluated with kube's `cel` support. Errors name the field as the API
//! server does (`spec.probes[0].type: Unsupported value: ...`).

use regex::Regex;
use serde_json::{Map, Value, json};

use kube::core::cel::{Validator, apply_defaults};

/// One rejected field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

/// Check `obj` against `schema`; on success return it pruned and defaulted.
pub fn admit(schema: &Value, obj: &Value, old: Option<&Value>, strict: bool) -> Result<Value, Vec<FieldError>> {
    let mut obj = obj.clone();
    let mut unknown = Vec::new();
    prune(schema, &mut obj, "", true, &mut unknown);
    if strict && !unknown.is_empty() {
        return Err(unknown
            .into_iter()
            .map(|f| FieldError {
                message: format!("unknown field \"{f}\""),
                field: f,
                reason: "FieldValueInvalid",
            })
            .collect());
    }
    let obj = apply_defaults(schema, &obj);
    let mut errors = Vec::new();
    check(schema, &obj, "", true, &mut errors);
    if errors.is_empty()
        && let Err(cel) = Validator::new().validate(schema, &obj, old)
    {
        errors.extend(cel.into_vec().into_iter().map(|e| FieldError {
            field: e.field_path.clone(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: \"object\": {}", e.message),
        }));
    }
    // Ratcheting (GA in 1.33): on update, a field that fails but did not
    // change does not block the write (a status update of an object whose
    // spec predates the schema, say).
    if let Some(old) = old {
        errors.retain(|e| at(&obj, &e.field) != at(old, &e.field));
    }
    if errors.is_empty() { Ok(obj) } else { Err(errors) }
}

/// The value at a field path like `spec.probes[0].type`.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in indices.split('[').filter(|i| !i.is_empty()) {
            cur = cur.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Drop fields the schema does not know, recording their paths.
fn prune(schema: &Value, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema["properties"].as_object();
            let extra = &schema["additionalProperties"];
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props
                    .and_then(|p| p.get(&k))
                    .or(if extra.is_object() { Some(extra) } else { None });
                match sub {
                    Some(s) => {
                        if let Some(child) = m.get_mut(&k) {
                            prune(s, child, &join(path, &k), false, unknown);
                        }
                    }
                    None if *extra == true => {}
                    None => {
                        m.remove(&k);
                        unknown.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune(&schema["items"], item, &format!("{path}[{i}]"), false, unknown);
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn err(errors: &mut Vec<FieldError>, field: &str, reason: &'static str, message: String) {
    errors.push(FieldError {
        field: field.to_string(),
        reason,
        message,
    });
}

fn check(schema: &Value, v: &Value, path: &str, root: bool, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema["nullable"] != true && !root {
            err(
                errors,
                path,
                "FieldValueTypeInvalid",
                "Invalid value: \"null\": field must not be null".into(),
            );
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(v, Value::String(_)) && type_name(v) != "integer" {
            err(
                errors,
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{}\": must be an integer or a string", type_name(v)),
            );
        }
        return;
    }
    if let Some(want) = schema["type"].as_str() {
        let got = type_name(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            err(
                errors,
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""),
            );
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        err(
            errors,
            path,
            "FieldValueNotSupported",
            format!("Unsupported value: {v}: supported values: {}", list.join(", ")),
        );
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema["minimum"].as_f64() {
            let excl = schema["exclusiveMinimum"] == true;
            if n < min || (excl && n == min) {
                let op = if excl {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                err(
                    errors,
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {v}: {path} in body should be {op} {min}"),
                );
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            let excl = schema["exclusiveMaximum"] == true;
            if n > max || (excl && n == max) {
                let op = if excl { "less than" } else { "less than or equal to" };
                err(
                    errors,
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {v}: {path} in body should be {op} {max}"),
                );
            }
        }
    }
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|m| len < m) {
                err(
                    errors,
                    path,
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {v}: {path} in body should be at least {} chars long",
                        schema["minLength"]
                    ),
                );
            }
            if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
                err(
                    errors,
                    path,
                    "FieldValueTooLong",
                    format!("Too long: may not be longer than {}", schema["maxLength"]),
                );
            }
            if let Some(p) = schema["pattern"].as_str()
                && Regex::new(p).is_ok_and(|re| !re.is_match(s))
            {
                err(
                    errors,
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {v}: {path} in body should match '{p}'"),
                );
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if schema["minItems"].as_u64().is_some_and(|m| n < m) {
                err(
                    errors,
                    path,
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {n}: {path} in body should have at least {} items",
                        schema["minItems"]
                    ),
                );
            }
            if let Some(m) = schema["maxItems"].as_u64()
                && n > m
            {
                err(
                    errors,
                    path,
                    "FieldValueTooMany",
                    format!("Too many: {n}: must have at most {m} items"),
                );
            }
            if schema["x-kubernetes-list-type"] == "map"
                && let Some(keys) = schema["x-kubernetes-list-map-keys"].as_array()
            {
                let mut seen = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<&Value> = keys.iter().filter_map(Value::as_str).map(|k| &item[k]).collect();
                    if seen.contains(&key) {
                        let shown: Map<String, Value> = keys
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|k| (k.to_string(), item[k].clone()))
                            .collect();
                        err(
                            errors,
                            &format!("{path}[{i}]"),
                            "FieldValueDuplicate",
                            format!("Duplicate value: {}", json!(shown)),
                        );
                    }
                    seen.push(key);
                }
            }
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), false, errors);
            }
        }
        Value::Object(m) => {
            for r in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !m.contains_key(r) {
                    err(errors, &join(path, r), "FieldValueRequired", "Required value".into());
                }
            }
            let props = schema["properties"].as_object();
            for (k, child) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    check(s, child, &join(path, k), false, errors);
                } else if schema["additionalProperties"].is_object() {
                    check(&schema["additionalProperties"], child, &join(path, k), false, errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["probes"], "properties": {
                "probes": {"type": "array", "minItems": 1, "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"],
                           "items": {"type": "object", "required": ["type"], "properties": {
                               "type": {"type": "string", "enum": ["A", "B"]},
                               "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5}}}},
                "name": {"type": "string", "pattern": "^[a-z]+$"}},
                "x-kubernetes-validations": [{"rule": "self.probes.size() < 2", "message": "one probe only"}]}}})
    }

    fn fields(r: Result<Value, Vec<FieldError>>) -> Vec<String> {
        r.expect_err("must be refused")
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn valid_objects_are_defaulted_and_pruned() {
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                         "spec": {"probes": [{"type": "A", "extra": 1}]}});
        let out = admit(&schema(), &obj, None, false).expect("valid");
        assert_eq!(out["spec"]["probes"][0], json!({"type": "A", "n": 5}));
        assert_eq!(out["metadata"]["name"], "a");
        assert_eq!(
            fields(admit(&schema(), &obj, None, true)),
            vec!["spec.probes[0].extra: unknown field \"spec.probes[0].extra\""]
        );
    }

    #[test]
    fn structural_errors_name_the_field() {
        let e = fields(admit(
            &schema(),
            &json!({"spec": {"probes": [{"type": "C", "n": 11}], "name": "A1"}}),
            None,
            false,
        ));
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.probes[0].type: Unsupported value: \"C\"")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with("spec.probes[0].n: Invalid value: 11")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.starts_with("spec.name: Invalid value")), "{e:?}");
        let e = fields(admit(&schema(), &json!({"spec": {}}), None, false));
        assert_eq!(e, vec!["spec.probes: Required value"]);
        let e = fields(admit(
            &schema(),
            &json!({"spec": {"probes": [{"type": "A"}, {"type": "A"}]}}),
            None,
            false,
        ));
        assert!(e[0].starts_with("spec.probes[1]: Duplicate value"), "{e:?}");
        let e = fields(admit(&schema(), &json!({"spec": {"probes": "x"}}), None, false));
        assert!(e[0].starts_with("spec.probes: Invalid value: \"string\""), "{e:?}");
    }

    #[test]
    fn unchanged_invalid_fields_do_not_block_updates() {
        let old = json!({"spec": {"probes": [{"type": "C"}]}, "status": {}});
        let mut new = old.clone();
        new["status"] = json!({"seen": true});
        assert!(admit(&schema(), &new, Some(&old), false).is_ok(), "ratcheting");
        new["spec"]["probes"][0]["type"] = json!("D");
        let e = fields(admit(&schema(), &new, Some(&old), false));
        assert!(
            e[0].starts_with("spec.probes[0].type: Unsupported value: \"D\""),
            "{e:?}"
        );
        assert_eq!(at(&new, "spec.probes[0].type"), Some(&json!("D")));
    }

    #[test]
    fn cel_rules_are_evaluated() {
        let e = fields(admit(
            &schema(),
            &json!({"spec": {"probes": [{"type": "A"}, {"type": "B"}]}}),
            None,
            false,
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("one probe only"), "{e:?}");
    }
}
