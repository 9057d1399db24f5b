use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::Notify;

use http::Uri;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};

mod auth;
mod crd;
mod discovery;
pub mod schema;
mod table;
mod watch;
mod write;

use watch::WatchEvent;
pub use watch::WatchQuery;

use crate::apply::ListMaps;
use crate::select::{FieldQuery, LabelQuery};

/// One served resource type.
#[derive(Clone, Debug)]
struct ResType {
    kind: String,
    namespaced: bool,
    status_subresource: bool,
    list_maps: ListMaps,
    short_names: Vec<String>,
    categories: Vec<String>,
    /// The CRD's `openAPIV3Schema` and printer columns; None for built-ins.
    crd: Option<Arc<CrdVersion>>,
}

/// What the stand-in keeps of one served version of a CRD.
#[derive(Debug)]
pub(crate) struct CrdVersion {
    pub schema: Option<Value>,
    pub columns: Vec<Value>,
}

/// A request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub status: u16,
}

impl Record {
    /// True for requests that can change state.
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

pub(crate) type ObjKey = (String, String, String, String); // (apiVersion path, plural, namespace, name)

/// A request path and query, resolved to a served resource type.
struct Parsed {
    prefix: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    rt: ResType,
    params: BTreeMap<String, String>,
    /// `fieldValidation=Strict`: unknown fields are refused, not pruned.
    strict: bool,
}

/// The stand-in's whole state.
#[derive(Default)]
pub struct Store {
    rv: u64,
    uid: u64,
    types: BTreeMap<(String, String), ResType>,
    objects: BTreeMap<ObjKey, Value>,
    /// Last applied configuration per (object, manager, subresource).
    applied: BTreeMap<(ObjKey, String, bool), Value>,
    pub log: Vec<Record>,
    /// When set, every request fails with this status (an unreachable or
    /// broken API server).
    pub fail_with: Option<u16>,
    /// Recent changes, for watches; older ones answer 410 Gone.
    events: VecDeque<WatchEvent>,
    /// Woken on every change.
    pub(crate) changed: Arc<Notify>,
    /// Tokens issued for ServiceAccounts.
    tokens: std::collections::HashMap<String, auth::TokenUser>,
}

fn api_path(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    }
}

fn status_err(code: u16, reason: &str, message: impl Into<String>) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message.into(), "reason": reason, "code": code}),
    )
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Store {
    fn builtin(&mut self) {
        if !self.types.is_empty() {
            return;
        }
        let t = |kind: &str, namespaced: bool, short: &[&str]| ResType {
            kind: kind.into(),
            namespaced,
            status_subresource: matches!(kind, "Pod" | "Node" | "Namespace" | "CustomResourceDefinition"),
            list_maps: ListMaps::from([("metadata.ownerReferences".to_string(), vec!["uid".to_string()])]),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            crd: None,
        };
        for (av, plural, kind, ns, short) in [
            ("v1", "configmaps", "ConfigMap", true, &["cm"][..]),
            ("v1", "pods", "Pod", true, &["po"]),
            ("v1", "nodes", "Node", false, &["no"]),
            ("v1", "namespaces", "Namespace", false, &["ns"]),
            ("v1", "events", "Event", true, &["ev"]),
            ("events.k8s.io/v1", "events", "Event", true, &["ev"]),
            ("coordination.k8s.io/v1", "leases", "Lease", true, &[]),
            ("v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
            (
                "rbac.authorization.k8s.io/v1",
                "clusterroles",
                "ClusterRole",
                false,
                &[],
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
            ),
            ("rbac.authorization.k8s.io/v1", "roles", "Role", true, &[]),
            ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", true, &[]),
            ("authentication.k8s.io/v1", "tokenreviews", "TokenReview", false, &[]),
            (
                "authorization.k8s.io/v1",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
                &[],
            ),
            (
                "apiextensions.k8s.io/v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
            ),
        ] {
            self.types.insert((api_path(av), plural.into()), t(kind, ns, short));
        }
        // The namespaces every cluster has.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            self.seed(
                "v1",
                "namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
    }

    /// Serve the resources of `crd` (replacing what an earlier version of it served).
    pub fn register_crd(&mut self, crd: &CustomResourceDefinition) {
        self.builtin();
        let spec = &crd.spec;
        for v in &spec.versions {
            let mut list_maps = ListMaps::from([("metadata.ownerReferences".to_string(), vec!["uid".to_string()])]);
            let schema = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok());
            if let Some(schema) = &schema {
                collect_list_maps(schema, "", &mut list_maps);
            }
            let columns = v
                .additional_printer_columns
                .iter()
                .flatten()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect();
            self.types.insert(
                (format!("apis/{}/{}", spec.group, v.name), spec.names.plural.clone()),
                ResType {
                    kind: spec.names.kind.clone(),
                    namespaced: spec.scope == "Namespaced",
                    status_subresource: v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
                    list_maps,
                    short_names: spec.names.short_names.clone().unwrap_or_default(),
                    categories: spec.names.categories.clone().unwrap_or_default(),
                    crd: Some(Arc::new(CrdVersion { schema, columns })),
                },
            );
        }
    }

    /// Writes recorded so far.
    pub fn writes(&self) -> Vec<&Record> {
        self.log.iter().filter(|r| r.is_write()).collect()
    }

    pub fn seed(&mut self, api_version: &str, plural: &str, mut obj: Value) -> Value {
        self.builtin();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = (api_path(api_version), plural.to_string(), ns, name);
        // Objects carry their type, as a real API server returns them
        // (kubectl delete reads it from what it got).
        if let Some(rt) = self.types.get(&(key.0.clone(), plural.to_string())) {
            let m = ensure_obj(&mut obj);
            m.entry("apiVersion").or_insert(json!(api_version));
            m.entry("kind").or_insert(json!(rt.kind));
        }
        self.stamp_new(&mut obj);
        self.put_obj(key, obj.clone());
        obj
    }

    pub fn get_obj(&self, api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.objects
            .get(&(
                api_path(api_version),
                plural.to_string(),
                namespace.unwrap_or("").to_string(),
                name.to_string(),
            ))
            .cloned()
    }

    /// All objects of a type.
    pub fn list_objs(&self, api_version: &str, plural: &str) -> Vec<Value> {
        let p = api_path(api_version);
        self.objects
            .iter()
            .filter(|(k, _)| k.0 == p && k.1 == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn stamp_new(&mut self, obj: &mut Value) {
        self.uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", self.uid);
        let rv = self.next_rv();
        let m = ensure_obj(&mut obj["metadata"]);
        m.entry("uid").or_insert(json!(uid));
        m.insert("resourceVersion".into(), json!(rv));
        m.entry("creationTimestamp").or_insert(json!(now()));
        if obj.get("spec").is_some() {
            ensure_obj(&mut obj["metadata"]).entry("generation").or_insert(json!(1));
        }
    }

    /// Answer one request.
    pub fn handle(&mut self, method: &str, uri: &Uri, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
        self.builtin();
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or("").to_string();
        let (status, value) = match self.fail_with {
            Some(code) => status_err(code, "ServiceUnavailable", "the stand-in is failing on purpose"),
            None => self.route(method, &path, &query, content_type, body),
        };
        self.log.push(Record {
            method: method.to_string(),
            path,
            query,
            content_type: content_type.map(str::to_string),
            status,
        });
        (status, value)
    }

    fn route(&mut self, method: &str, path: &str, query: &str, ct: Option<&str>, body: &[u8]) -> (u16, Value) {
        if method == "GET"
            && let Some(v) = self.discovery(path)
        {
            return (200, v);
        }
        let parsed = match self.parse(path, query) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status_err(400, "BadRequest", format!("body is not JSON: {e}")),
            }
        };
        if let Some(answer) = self.auth_route(
            method,
            &parsed.plural,
            parsed.ns.as_deref(),
            parsed.name.as_deref(),
            parsed.sub.as_deref(),
            &body,
        ) {
            return answer;
        }
        let status_sub = parsed.sub.as_deref() == Some("status");
        let (prefix, plural, rt, ns) = (
            parsed.prefix.as_str(),
            parsed.plural.as_str(),
            &parsed.rt,
            parsed.ns.clone(),
        );
        match (method, parsed.name.as_deref()) {
            ("GET", None) => self.list(prefix, plural, rt, ns.as_deref(), &parsed.params),
            ("GET", Some(n)) => match self.objects.get(&Self::key(prefix, plural, ns, n)) {
                Some(o) => (200, o.clone()),
                None => status_err(404, "NotFound", format!("{plural} \"{n}\" not found")),
            },
            ("POST", None) => self.create(prefix, plural, rt, ns, body, parsed.strict),
            ("PUT", Some(_)) => self.replace(&parsed, body, status_sub),
            ("PATCH", Some(_)) => self.patch(&parsed, ct.unwrap_or(""), body, status_sub),
            ("DELETE", Some(n)) => self.delete(prefix, plural, ns, n),
            _ => status_err(405, "MethodNotAllowed", format!("{method} {path} is not supported")),
        }
    }

    /// Resolve `/api/v1/...` or `/apis/<g>/<v>/...` to a served type.
    fn parse(&self, path: &str, query: &str) -> Result<Parsed, (u16, Value)> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => (format!("api/{v}"), rest),
            ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), rest),
            _ => return Err(status_err(404, "NotFound", format!("no route for {path}"))),
        };
        let (ns, plural, name, sub) = match rest {
            ["namespaces", ns, plural, tail @ ..] => (Some(*ns), *plural, tail.first().copied(), tail.get(1).copied()),
            [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
            [] => return Err(status_err(404, "NotFound", "discovery is not served in-process")),
        };
        let Some(rt) = self.types.get(&(prefix.clone(), plural.to_string())).cloned() else {
            return Err(status_err(
                404,
                "NotFound",
                format!("the server could not find the requested resource {prefix}/{plural}"),
            ));
        };
        let params: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect();
        Ok(Parsed {
            strict: params.get("fieldValidation").is_some_and(|v| v == "Strict"),
            prefix,
            plural: plural.to_string(),
            ns: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
            rt,
            params,
        })
    }

    fn list(
        &self,
        prefix: &str,
        plural: &str,
        rt: &ResType,
        ns: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> (u16, Value) {
        let lq = match params.get("labelSelector").map(|s| LabelQuery::parse(s)).transpose() {
            Ok(q) => q.unwrap_or_default(),
            Err(e) => return status_err(400, "BadRequest", e),
        };
        let fq = match params.get("fieldSelector").map(|s| FieldQuery::parse(s)).transpose() {
            Ok(q) => q.unwrap_or_default(),
            Err(e) => return status_err(400, "BadRequest", e),
        };
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, _)| k.0 == prefix && k.1 == plural && ns.is_none_or(|n| k.2 == n))
            .map(|(_, v)| v)
            .filter(|v| lq.matches(v) && fq.matches(v))
            .cloned()
            .collect();
        (
            200,
            json!({"apiVersion": api_version_of(prefix), "kind": format!("{}List", rt.kind),
                   "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
        )
    }

    fn key(prefix: &str, plural: &str, ns: Option<String>, name: &str) -> ObjKey {
        (
            prefix.to_string(),
            plural.to_string(),
            ns.unwrap_or_default(),
            name.to_string(),
        )
    }
}

fn ensure_obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn api_version_of(prefix: &str) -> String {
    prefix
        .trim_start_matches("apis/")
        .trim_start_matches("api/")
        .to_string()
}

fn collect_list_maps(schema: &Value, path: &str, out: &mut ListMaps) {
    if schema["x-kubernetes-list-type"] == "map"
        && let Some(keys) = schema["x-kubernetes-list-map-keys"].as_array()
    {
        out.insert(
            path.to_string(),
            keys.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        );
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            collect_list_maps(v, &p, out);
        }
    }
    if schema.get("items").is_some() {
        collect_list_maps(&schema["items"], path, out);
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
