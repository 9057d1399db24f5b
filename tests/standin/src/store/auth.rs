//! Authentication and authorization as the API server answers them for
//! other components (it does not guard the stand-in's own requests):
//! ServiceAccount tokens (`POST .../serviceaccounts/<name>/token`, what
//! `kubectl create token` calls), `TokenReview`, and `SubjectAccessReview`
//! decided by RBAC over the stored ClusterRoles, ClusterRoleBindings,
//! Roles and RoleBindings.
//!
//! Reduced: tokens are opaque (not JWTs), never expire and name no
//! audience; ServiceAccount users get the groups the API server gives them
//! (`system:serviceaccounts`, `system:serviceaccounts:<ns>`,
//! `system:authenticated`); aggregated ClusterRoles are not aggregated.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Store, status_err};

/// The user a token stands for.
#[derive(Clone, Debug)]
pub(crate) struct TokenUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl Store {
    /// Answer the virtual resources, or None when the request is not for one.
    pub(super) fn auth_route(
        &mut self,
        method: &str,
        plural: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
        body: &Value,
    ) -> Option<(u16, Value)> {
        match (method, plural, ns, name, sub) {
            ("POST", "serviceaccounts", Some(ns), Some(sa), Some("token")) => Some(self.token_request(ns, sa, body)),
            ("POST", "tokenreviews", None, None, None) => Some(self.token_review(body)),
            ("POST", "subjectaccessreviews", None, None, None) => Some(self.access_review(body)),
            (_, "tokenreviews" | "subjectaccessreviews", ..) => Some(status_err(
                405,
                "MethodNotAllowed",
                format!("{plural} can only be created"),
            )),
            _ => None,
        }
    }

    /// Issue a token for a ServiceAccount that exists.
    pub fn issue_token(&mut self, namespace: &str, sa: &str) -> Option<String> {
        let obj = self.get_obj("v1", "serviceaccounts", Some(namespace), sa)?;
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        self.uid += 1;
        let digest = Sha256::new()
            .chain_update(format!(
                "{namespace}/{sa}/{uid}/{}/{:?}",
                self.uid,
                std::time::SystemTime::now()
            ))
            .finalize();
        let token: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.tokens.insert(
            token.clone(),
            TokenUser {
                username: format!("system:serviceaccount:{namespace}:{sa}"),
                uid,
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ],
            },
        );
        Some(token)
    }

    fn token_request(&mut self, ns: &str, sa: &str, body: &Value) -> (u16, Value) {
        match self.issue_token(ns, sa) {
            Some(token) => (
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "metadata": {"name": sa, "namespace": ns},
                       "spec": body.get("spec").cloned().unwrap_or(json!({})),
                       "status": {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}}),
            ),
            None => status_err(404, "NotFound", format!("serviceaccounts \"{sa}\" not found")),
        }
    }

    fn token_review(&self, body: &Value) -> (u16, Value) {
        let Some(token) = body["spec"]["token"].as_str() else {
            return status_err(422, "Invalid", "spec.token: Required value");
        };
        // A token whose ServiceAccount was deleted is no longer valid.
        let user = self.tokens.get(token).filter(|u| {
            let parts: Vec<&str> = u.username.splitn(4, ':').collect();
            matches!(parts.as_slice(), [_, _, ns, name]
                if self.get_obj("v1", "serviceaccounts", Some(ns), name)
                    .is_some_and(|o| o["metadata"]["uid"] == json!(u.uid)))
        });
        let status = match user {
            Some(u) => {
                json!({"authenticated": true, "user": {"username": u.username, "uid": u.uid, "groups": u.groups}})
            }
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        let mut out = body.clone();
        out["status"] = status;
        out["apiVersion"] = json!("authentication.k8s.io/v1");
        out["kind"] = json!("TokenReview");
        (201, out)
    }

    fn access_review(&self, body: &Value) -> (u16, Value) {
        let spec = &body["spec"];
        let user = spec["user"].as_str().unwrap_or_default();
        let groups: Vec<&str> = spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if user.is_empty() && groups.is_empty() {
            return status_err(
                422,
                "Invalid",
                "spec.user: Invalid value: \"\": at least one of user or group must be specified",
            );
        }
        let (allowed, reason) = match (spec.get("nonResourceAttributes"), spec.get("resourceAttributes")) {
            (Some(nr), None) => {
                let (path, verb) = (nr["path"].as_str().unwrap_or(""), nr["verb"].as_str().unwrap_or(""));
                match self.binding_allowing(user, &groups, None, |rule| non_resource_rule(rule, path, verb)) {
                    Some(b) => (true, format!("RBAC: allowed by ClusterRoleBinding \"{b}\"")),
                    None => (false, String::new()),
                }
            }
            (None, Some(ra)) => {
                let ns = ra["namespace"].as_str().filter(|n| !n.is_empty());
                match self.binding_allowing(user, &groups, ns, |rule| resource_rule(rule, ra)) {
                    Some(b) => (true, format!("RBAC: allowed by {b}")),
                    None => (false, String::new()),
                }
            }
            _ => {
                return status_err(
                    422,
                    "Invalid",
                    "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
                );
            }
        };
        let mut out = body.clone();
        out["status"] = json!({"allowed": allowed, "reason": reason});
        out["apiVersion"] = json!("authorization.k8s.io/v1");
        out["kind"] = json!("SubjectAccessReview");
        (201, out)
    }

    /// The first binding naming the subject whose role has a rule `allows`:
    /// ClusterRoleBindings, and RoleBindings of `ns` (which cannot grant
    /// non-resource URLs: those are cluster-wide).
    fn binding_allowing(
        &self,
        user: &str,
        groups: &[&str],
        ns: Option<&str>,
        allows: impl Fn(&Value) -> bool,
    ) -> Option<String> {
        let rbac = "rbac.authorization.k8s.io/v1";
        let role_allows = |kind: &str, name: &str, role_ns: Option<&str>| {
            let role = match kind {
                "ClusterRole" => self.get_obj(rbac, "clusterroles", None, name),
                "Role" => self.get_obj(rbac, "roles", role_ns, name),
                _ => None,
            };
            role.is_some_and(|r| r["rules"].as_array().is_some_and(|rules| rules.iter().any(&allows)))
        };
        let names = |b: &Value| subject_matches(&b["subjects"], user, groups, b["metadata"]["namespace"].as_str());
        for b in self.list_objs(rbac, "clusterrolebindings") {
            if names(&b)
                && role_allows(
                    b["roleRef"]["kind"].as_str().unwrap_or(""),
                    b["roleRef"]["name"].as_str().unwrap_or(""),
                    None,
                )
            {
                return Some(format!(
                    "ClusterRoleBinding \"{}\"",
                    b["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
        }
        let ns = ns?;
        for b in self.list_objs(rbac, "rolebindings") {
            if b["metadata"]["namespace"].as_str() == Some(ns)
                && names(&b)
                && role_allows(
                    b["roleRef"]["kind"].as_str().unwrap_or(""),
                    b["roleRef"]["name"].as_str().unwrap_or(""),
                    Some(ns),
                )
            {
                return Some(format!(
                    "RoleBinding \"{ns}/{}\"",
                    b["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
        }
        None
    }
}

fn subject_matches(subjects: &Value, user: &str, groups: &[&str], binding_ns: Option<&str>) -> bool {
    subjects.as_array().into_iter().flatten().any(|s| {
        let name = s["name"].as_str().unwrap_or("");
        match s["kind"].as_str() {
            Some("User") => name == user,
            Some("Group") => groups.contains(&name),
            Some("ServiceAccount") => {
                let ns = s["namespace"].as_str().or(binding_ns).unwrap_or("");
                user == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|v| v == "*" || v == want)
}

/// A rule's `nonResourceURLs` match a path exactly, or by a trailing `*`.
fn non_resource_rule(rule: &Value, path: &str, verb: &str) -> bool {
    has(&rule["verbs"], verb)
        && rule["nonResourceURLs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p)))
}

fn resource_rule(rule: &Value, ra: &Value) -> bool {
    let resource = match ra["subresource"].as_str().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{}/{sub}", ra["resource"].as_str().unwrap_or("")),
        None => ra["resource"].as_str().unwrap_or("").to_string(),
    };
    let name = ra["name"].as_str().unwrap_or("");
    has(&rule["verbs"], ra["verb"].as_str().unwrap_or(""))
        && has(&rule["apiGroups"], ra["group"].as_str().unwrap_or(""))
        && has(&rule["resources"], &resource)
        && (rule["resourceNames"].as_array().is_none_or(Vec::is_empty) || has(&rule["resourceNames"], name))
}
