//! The write paths: create, replace, patch (merge, JSON, server-side
//! apply), delete with finalizers and cascade, and the admission every
//! custom-resource write passes through.

use serde_json::{Value, json};

use super::{ObjKey, Parsed, ResType, Store, WatchEvent, api_version_of, ensure_obj, now, schema, status_err};
use crate::apply;

impl Store {
    pub(super) fn create(
        &mut self,
        prefix: &str,
        plural: &str,
        rt: &ResType,
        ns: Option<String>,
        mut body: Value,
        strict: bool,
    ) -> (u16, Value) {
        if !body.is_object() {
            return status_err(400, "BadRequest", "object expected");
        }
        if rt.namespaced != ns.is_some() {
            return status_err(400, "BadRequest", "namespace does not match the resource scope");
        }
        let m = ensure_obj(&mut body["metadata"]);
        if m.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            match m.get("generateName").and_then(Value::as_str) {
                Some(g) => {
                    let n = format!("{g}{:05}", self.uid + 1);
                    ensure_obj(&mut body["metadata"]).insert("name".into(), json!(n));
                }
                None => return status_err(422, "Invalid", "metadata.name: Required value"),
            }
        }
        if let Some(n) = &ns {
            if !self.objects.contains_key(&Self::key("api/v1", "namespaces", None, n)) {
                return status_err(404, "NotFound", format!("namespaces \"{n}\" not found"));
            }
            ensure_obj(&mut body["metadata"]).insert("namespace".into(), json!(n));
        }
        let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
        // Object names are DNS subdomains: at most 253 characters.
        if name.len() > 253 {
            return status_err(
                422,
                "Invalid",
                format!("metadata.name: Invalid value: \"{name}\": must be no more than 253 characters"),
            );
        }
        let key = Self::key(prefix, plural, ns, &name);
        if self.objects.contains_key(&key) {
            return status_err(409, "AlreadyExists", format!("{plural} \"{name}\" already exists"));
        }
        body["apiVersion"] = json!(api_version_of(prefix));
        body["kind"] = json!(rt.kind);
        if rt.status_subresource
            && let Some(o) = body.as_object_mut()
        {
            o.remove("status");
        }
        if let Err(e) = self.admit(prefix, rt, &mut body, None, strict) {
            return e;
        }
        let m = ensure_obj(&mut body["metadata"]);
        m.remove("resourceVersion");
        m.remove("uid");
        self.stamp_new(&mut body);
        self.put_obj(key, body.clone());
        (201, body)
    }

    pub(super) fn replace(&mut self, p: &Parsed, body: Value, status_sub: bool) -> (u16, Value) {
        let (prefix, plural, rt, ns, name) = (
            p.prefix.as_str(),
            p.plural.as_str(),
            &p.rt,
            p.ns.clone(),
            p.name.as_deref().unwrap_or_default(),
        );
        let key = Self::key(prefix, plural, ns, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return status_err(404, "NotFound", format!("{plural} \"{name}\" not found"));
        };
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return status_err(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            );
        }
        self.commit(key, rt, old, body, status_sub, p.strict)
    }

    /// Store `new` in place of `old`, keeping what the caller may not change.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        key: ObjKey,
        rt: &ResType,
        old: Value,
        mut new: Value,
        status_sub: bool,
        strict: bool,
    ) -> (u16, Value) {
        if rt.status_subresource {
            if status_sub {
                let status = new.get("status").cloned();
                new = old.clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            } else {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(f) {
                Some(v) => {
                    ensure_obj(&mut new["metadata"]).insert(f.into(), v.clone());
                }
                None => {
                    ensure_obj(&mut new["metadata"]).remove(f);
                }
            }
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        if let Err(e) = self.admit(&key.0, rt, &mut new, Some(&old), strict) {
            return e;
        }
        if new.get("spec").is_some() && new.get("spec") != old.get("spec") {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            ensure_obj(&mut new["metadata"]).insert("generation".into(), json!(g));
        }
        if new == old {
            return (200, old);
        }
        let rv = self.next_rv();
        ensure_obj(&mut new["metadata"]).insert("resourceVersion".into(), json!(rv));
        let terminating = new["metadata"].get("deletionTimestamp").is_some();
        let no_finalizers = new["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if terminating && no_finalizers {
            self.remove(&key);
            return (200, new);
        }
        self.put_obj(key, new.clone());
        (200, new)
    }

    pub(super) fn patch(&mut self, p: &Parsed, ct: &str, body: Value, status_sub: bool) -> (u16, Value) {
        let (prefix, plural, rt, ns, name, params) = (
            p.prefix.as_str(),
            p.plural.as_str(),
            &p.rt,
            p.ns.clone(),
            p.name.as_deref().unwrap_or_default(),
            &p.params,
        );
        let key = Self::key(prefix, plural, ns.clone(), name);
        let existing = self.objects.get(&key).cloned();
        let ct = ct.split(';').next().unwrap_or("").trim();
        if ct == "application/apply-patch+yaml" {
            let Some(manager) = params.get("fieldManager").cloned() else {
                return status_err(400, "BadRequest", "fieldManager is required for apply patch");
            };
            let akey = (key.clone(), manager, status_sub);
            let prev = self.applied.get(&akey).cloned();
            let mut applied = body.clone();
            // Apply on the main resource ignores status, on /status everything but status.
            if rt.status_subresource
                && let Some(o) = applied.as_object_mut()
            {
                {
                    if status_sub {
                        o.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind" || k == "metadata");
                        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.retain(|k, _| k == "name" || k == "namespace");
                        }
                    } else {
                        o.remove("status");
                    }
                }
            }
            let Some(old) = existing else {
                if status_sub {
                    return status_err(404, "NotFound", format!("{plural} \"{name}\" not found"));
                }
                self.applied.insert(akey, applied.clone());
                return self.create(prefix, plural, rt, ns, applied, p.strict);
            };
            let mut new = old.clone();
            if let Some(p) = &prev {
                apply::prune(&mut new, p, Some(&applied), "", &rt.list_maps);
            }
            apply::merge(&mut new, &applied, "", &rt.list_maps);
            self.applied.insert(akey, applied);
            return self.commit(key, rt, old, new, status_sub, p.strict);
        }
        let Some(old) = existing else {
            return status_err(404, "NotFound", format!("{plural} \"{name}\" not found"));
        };
        let mut new = old.clone();
        match ct {
            "application/json-patch+json" => {
                let patch: json_patch::Patch = match serde_json::from_value(body) {
                    Ok(p) => p,
                    Err(e) => return status_err(400, "BadRequest", format!("invalid JSON patch: {e}")),
                };
                if let Err(e) = json_patch::patch(&mut new, &patch) {
                    return status_err(422, "Invalid", format!("JSON patch failed: {e}"));
                }
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
                    && Some(rv) != old["metadata"]["resourceVersion"].as_str()
                {
                    return status_err(409, "Conflict", "the object has been modified");
                }
                json_patch::merge(&mut new, &body);
            }
            other => {
                return status_err(
                    415,
                    "UnsupportedMediaType",
                    format!("patch type {other:?} is not supported"),
                );
            }
        }
        self.commit(key, rt, old, new, status_sub, p.strict)
    }

    /// Validate a custom resource write against its CRD (see [`schema`]).
    fn admit(
        &self,
        prefix: &str,
        rt: &ResType,
        obj: &mut Value,
        old: Option<&Value>,
        strict: bool,
    ) -> Result<(), (u16, Value)> {
        let Some(schema) = rt.crd.as_ref().and_then(|c| c.schema.as_ref()) else {
            return Ok(());
        };
        let errors = match schema::admit(schema, obj, old, strict) {
            Ok(v) => {
                *obj = v;
                return Ok(());
            }
            Err(e) => e,
        };
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let group = api_version_of(prefix)
            .split_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default();
        let shown: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        if errors.iter().all(|e| e.message.starts_with("unknown field")) {
            let list: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            return Err(status_err(
                400,
                "BadRequest",
                format!("strict decoding error: {}", list.join(", ")),
            ));
        }
        let joined = if shown.len() == 1 {
            shown[0].clone()
        } else {
            format!("[{}]", shown.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let (code, mut body) = status_err(
            422,
            "Invalid",
            format!("{}.{group} \"{name}\" is invalid: {joined}", rt.kind),
        );
        body["details"] = json!({"name": name, "group": group, "kind": rt.kind, "causes": causes});
        Err((code, body))
    }

    pub(super) fn delete(&mut self, prefix: &str, plural: &str, ns: Option<String>, name: &str) -> (u16, Value) {
        let key = Self::key(prefix, plural, ns, name);
        let Some(mut obj) = self.objects.get(&key).cloned() else {
            return status_err(404, "NotFound", format!("{plural} \"{name}\" not found"));
        };
        let has_finalizers = obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                let rv = self.next_rv();
                let m = ensure_obj(&mut obj["metadata"]);
                m.insert("deletionTimestamp".into(), json!(now()));
                m.insert("resourceVersion".into(), json!(rv));
                self.put_obj(key, obj.clone());
            }
            return (200, obj);
        }
        self.remove(&key);
        (200, obj)
    }

    /// Remove an object and, like the garbage collector, its dependents.
    fn remove(&mut self, key: &ObjKey) {
        let Some(mut obj) = self.objects.remove(key) else {
            return;
        };
        let rv = self.next_rv();
        ensure_obj(&mut obj["metadata"]).insert("resourceVersion".into(), json!(rv));
        self.record(WatchEvent {
            rv: self.rv,
            key: key.clone(),
            kind: "DELETED",
            object: obj.clone(),
            old: None,
        });
        self.applied.retain(|(k, _, _), _| k != key);
        if key.1 == "customresourcedefinitions" {
            self.crd_removed(&obj);
        }
        let uid = obj["metadata"]["uid"].clone();
        let dependents: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for d in dependents {
            let _ = self.delete(&d.0, &d.1, if d.2.is_empty() { None } else { Some(d.2.clone()) }, &d.3);
        }
    }
}
