//! Label and field selectors as the API server parses them from the query.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` query parameter.
#[derive(Debug, Clone, Default)]
pub struct LabelQuery(Vec<Req>);

impl LabelQuery {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            if let Some((k, rest)) = p.split_once(" notin ") {
                reqs.push(Req::NotIn(k.trim().into(), set(rest)?));
            } else if let Some((k, rest)) = p.split_once(" in ") {
                reqs.push(Req::In(k.trim().into(), set(rest)?));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::Ne(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().into()));
            } else {
                reqs.push(Req::Exists(p.into()));
            }
        }
        Ok(LabelQuery(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|r| {
            let get = |k: &str| labels.get(k).and_then(Value::as_str);
            match r {
                Req::Eq(k, v) => get(k) == Some(v.as_str()),
                Req::Ne(k, v) => get(k) != Some(v.as_str()),
                Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
                Req::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
                Req::Exists(k) => get(k).is_some(),
                Req::NotExists(k) => get(k).is_none(),
            }
        })
    }
}

/// A parsed `fieldSelector`: `path=value` / `path!=value` over dotted paths.
#[derive(Debug, Clone, Default)]
pub struct FieldQuery(Vec<(String, bool, String)>);

impl FieldQuery {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = p.split_once("!=") {
                out.push((k.into(), false, v.into()));
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                out.push((k.into(), true, v.into()));
            } else {
                return Err(format!("invalid field selector {p:?}"));
            }
        }
        Ok(FieldQuery(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = obj;
            for seg in path.split('.') {
                cur = &cur[seg];
            }
            let got = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let r = rest.trim();
    let inner = r
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("invalid set {r:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_queries() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        for (q, want) in [
            ("a=1", true),
            ("a==1,b=2", true),
            ("a!=1", false),
            ("a in (1,3)", true),
            ("a notin (1)", false),
            ("c", false),
            ("!c", true),
            ("a", true),
            ("b in (3, 4),a", false),
        ] {
            assert_eq!(LabelQuery::parse(q).unwrap().matches(&o), want, "{q}");
        }
    }

    #[test]
    fn field_queries() {
        let o = json!({"metadata": {"name": "x"}, "spec": {"nodeName": "node-a"}});
        assert!(FieldQuery::parse("spec.nodeName=node-a").unwrap().matches(&o));
        assert!(!FieldQuery::parse("spec.nodeName=node-b").unwrap().matches(&o));
        assert!(FieldQuery::parse("metadata.name!=y").unwrap().matches(&o));
    }
}
