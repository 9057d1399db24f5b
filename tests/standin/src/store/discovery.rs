//! Discovery: what `kubectl` and kube-rs read before they make a request
//! (`/version`, `/api`, `/apis`, and one resource list per group version),
//! built from the types the store serves, CRDs included as soon as they are
//! created.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ResType, Store};

const VERBS: [&str; 7] = ["create", "delete", "get", "list", "patch", "update", "watch"];

impl Store {
    /// Answer a discovery path, or None when `path` is not one.
    pub fn discovery(&mut self, path: &str) -> Option<Value> {
        self.builtin();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segs.as_slice() {
            ["version"] => Some(json!({
                "major": "1", "minor": "32", "gitVersion": "v1.32.0-standin", "gitCommit": "standin",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "none",
                "compiler": "none", "platform": "linux/amd64"
            })),
            ["api"] => Some(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
            })),
            ["apis"] => Some(self.group_list()),
            ["api", v] => Some(self.resource_list(&format!("api/{v}"), v)),
            ["apis", g, v] => Some(self.resource_list(&format!("apis/{g}/{v}"), &format!("{g}/{v}"))),
            ["openapi", "v3"] => Some(self.openapi_root()),
            ["openapi", "v3", rest @ ..] => Some(self.openapi_group_version(&rest.join("/"))),
            _ => None,
        }
    }

    fn group_list(&self) -> Value {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (prefix, _) in self.types.keys() {
            if let Some(gv) = prefix.strip_prefix("apis/")
                && let Some((g, v)) = gv.split_once('/')
            {
                let vs = groups.entry(g).or_default();
                if !vs.contains(&v) {
                    vs.push(v);
                }
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    fn resource_list(&self, prefix: &str, group_version: &str) -> Value {
        let mut resources = Vec::new();
        for ((p, plural), rt) in &self.types {
            if p != prefix {
                continue;
            }
            resources.push(resource(plural, rt));
            if rt.status_subresource {
                resources.push(json!({"name": format!("{plural}/status"), "singularName": "",
                    "namespaced": rt.namespaced, "kind": rt.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
    }
}

impl Store {
    /// The OpenAPI v3 index: one document per group version. kubectl reads
    /// it before `apply` to learn that the server validates fields itself
    /// (`fieldValidation`), so it sends objects for server-side validation
    /// instead of downloading the (protobuf) v2 document.
    fn openapi_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (prefix, _) in self.types.keys() {
            paths.insert(
                prefix.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{prefix}")}),
            );
        }
        json!({"paths": paths})
    }

    /// One group version's document: a PATCH operation per resource that
    /// declares its kind and the `fieldValidation` parameter. Schemas are not
    /// published (validation happens here, on write).
    fn openapi_group_version(&self, prefix: &str) -> Value {
        let (group, version) = match prefix.split('/').collect::<Vec<_>>().as_slice() {
            ["api", v] => (String::new(), v.to_string()),
            ["apis", g, v] => (g.to_string(), v.to_string()),
            _ => (String::new(), String::new()),
        };
        let mut paths = serde_json::Map::new();
        for ((p, plural), rt) in &self.types {
            if p != prefix {
                continue;
            }
            let path = if rt.namespaced {
                format!("/{p}/namespaces/{{namespace}}/{plural}/{{name}}")
            } else {
                format!("/{p}/{plural}/{{name}}")
            };
            paths.insert(
                path,
                json!({"patch": {
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rt.kind},
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}}
                }}),
            );
        }
        json!({"openapi": "3.0.0", "info": {"title": "kube-standin", "version": version},
               "paths": paths, "components": {"schemas": {}}})
    }
}

fn resource(plural: &str, rt: &ResType) -> Value {
    let mut r = json!({
        "name": plural, "singularName": rt.kind.to_lowercase(), "namespaced": rt.namespaced,
        "kind": rt.kind, "verbs": VERBS,
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        r["categories"] = json!(rt.categories);
    }
    r
}
