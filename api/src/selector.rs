//! Label selectors in a normalized, typed form, parsed once from the API's
//! `LabelSelector` so the operator (validation), the plan (serialization) and
//! the agent (matching) share one meaning.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A parsed label selector. The empty selector matches everything.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry; `values` is sorted and deduplicated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Selector operators of `metav1.LabelSelectorRequirement`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Parse and normalize `sel`, naming `field` (for example
    /// `spec.podSelector`) in every error. `None` is the empty selector.
    pub fn parse(sel: Option<&LabelSelector>, field: &str) -> Result<Selector, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut out = Selector::default();
        let Some(sel) = sel else { return Ok(out) };
        for (k, v) in sel.match_labels.iter().flatten() {
            let f = format!("{field}.matchLabels[{k}]");
            check_key(k, &f, &mut errors);
            check_value(v, &f, &mut errors);
            out.match_labels.insert(k.clone(), v.clone());
        }
        for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
            let f = format!("{field}.matchExpressions[{i}]");
            check_key(&expr.key, &format!("{f}.key"), &mut errors);
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            for v in &values {
                check_value(v, &format!("{f}.values"), &mut errors);
            }
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    errors.push(FieldError::new(
                        format!("{f}.operator"),
                        format!("unknown operator {other:?}; use In, NotIn, Exists or DoesNotExist"),
                    ));
                    continue;
                }
            };
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => errors.push(FieldError::new(
                    format!("{f}.values"),
                    format!("must be non-empty for operator {operator:?}"),
                )),
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errors.push(FieldError::new(
                    format!("{f}.values"),
                    format!("must be empty for operator {operator:?}"),
                )),
                _ => {}
            }
            out.match_expressions.push(Requirement {
                key: expr.key.clone(),
                operator,
                values: values.into_iter().collect(),
            });
        }
        out.match_expressions.sort();
        out.match_expressions.dedup();
        if errors.is_empty()
            && let Some(key) = out.unsatisfiable_key()
        {
            errors.push(FieldError::new(
                field.to_string(),
                format!("can never match: the requirements on label {key:?} contradict each other"),
            ));
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let got = labels.get(&r.key);
                match r.operator {
                    Operator::In => got.is_some_and(|v| r.values.binary_search(v).is_ok()),
                    Operator::NotIn => got.is_none_or(|v| r.values.binary_search(v).is_err()),
                    Operator::Exists => got.is_some(),
                    Operator::DoesNotExist => got.is_none(),
                }
            })
    }

    /// True for the selector that selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// A label key whose requirements no label set can satisfy, if any.
    fn unsatisfiable_key(&self) -> Option<&str> {
        let mut keys: BTreeSet<&str> = self.match_labels.keys().map(String::as_str).collect();
        keys.extend(self.match_expressions.iter().map(|r| r.key.as_str()));
        keys.into_iter().find(|key| {
            // The allowed values for the key (None = any value), whether it
            // must exist, and whether it must be absent.
            let mut allowed: Option<BTreeSet<&str>> = None;
            let mut excluded = BTreeSet::new();
            let mut must_exist = false;
            let mut must_not_exist = false;
            fn restrict<'a>(allowed: &mut Option<BTreeSet<&'a str>>, vals: BTreeSet<&'a str>) {
                *allowed = Some(match allowed.take() {
                    None => vals,
                    Some(a) => a.intersection(&vals).copied().collect(),
                })
            }
            if let Some(v) = self.match_labels.get(*key) {
                must_exist = true;
                restrict(&mut allowed, BTreeSet::from([v.as_str()]));
            }
            for r in self.match_expressions.iter().filter(|r| r.key == *key) {
                match r.operator {
                    Operator::In => {
                        must_exist = true;
                        restrict(&mut allowed, r.values.iter().map(String::as_str).collect());
                    }
                    Operator::NotIn => excluded.extend(r.values.iter().map(String::as_str)),
                    Operator::Exists => must_exist = true,
                    Operator::DoesNotExist => must_not_exist = true,
                }
            }
            (must_exist && must_not_exist) || allowed.is_some_and(|a| a.iter().all(|v| excluded.contains(v)))
        })
    }
}

fn check_key(key: &str, field: &str, errors: &mut Vec<FieldError>) {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            errors.push(FieldError::new(
                field,
                format!("label key prefix {p:?} is not a DNS subdomain"),
            ));
        }
    }
    if name.is_empty() || !is_label_name(name) {
        errors.push(FieldError::new(
            field,
            format!("label key {key:?} is not a valid qualified name"),
        ));
    }
}

fn check_value(value: &str, field: &str, errors: &mut Vec<FieldError>) {
    if !value.is_empty() && !is_label_name(value) {
        errors.push(FieldError::new(field, format!("label value {value:?} is not valid")));
    }
}

/// A name part or value: ≤ 63 characters, alphanumeric at both ends, `-_.`
/// inside.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn sel(ml: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: if ml.is_empty() { None } else { Some(labels(ml)) },
            match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::parse(None, "spec.podSelector").unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("app", "x")])));
        let s = Selector::parse(Some(&LabelSelector::default()), "f").unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn operators_match_like_kubernetes() {
        let s = Selector::parse(
            Some(&sel(
                &[("app", "redis")],
                vec![
                    expr("tier", "In", &["cache", "db"]),
                    expr("env", "NotIn", &["dev"]),
                    expr("team", "Exists", &[]),
                    expr("legacy", "DoesNotExist", &[]),
                ],
            )),
            "f",
        )
        .unwrap();
        let ok = labels(&[("app", "redis"), ("tier", "db"), ("team", "a")]);
        assert!(s.matches(&ok));
        let mut l = ok.clone();
        l.insert("env".into(), "dev".into());
        assert!(!s.matches(&l), "NotIn excludes");
        let mut l = ok.clone();
        l.insert("legacy".into(), "1".into());
        assert!(!s.matches(&l), "DoesNotExist excludes");
        let mut l = ok.clone();
        l.remove("team");
        assert!(!s.matches(&l), "Exists requires");
        let mut l = ok.clone();
        l.insert("tier".into(), "web".into());
        assert!(!s.matches(&l), "In requires a listed value");
        let mut l = ok;
        l.insert("app".into(), "other".into());
        assert!(!s.matches(&l), "matchLabels requires equality");
    }

    #[test]
    fn invalid_selectors_name_the_field() {
        let cases = [
            (
                sel(&[], vec![expr("a", "Equals", &["x"])]),
                "spec.podSelector.matchExpressions[0].operator",
            ),
            (
                sel(&[], vec![expr("a", "In", &[])]),
                "spec.podSelector.matchExpressions[0].values",
            ),
            (
                sel(&[], vec![expr("a", "Exists", &["x"])]),
                "spec.podSelector.matchExpressions[0].values",
            ),
            (
                sel(&[("bad key!", "x")], vec![]),
                "spec.podSelector.matchLabels[bad key!]",
            ),
            (sel(&[("ok", "-bad")], vec![]), "spec.podSelector.matchLabels[ok]"),
            (
                sel(&[("UPPER.example/ok", "v")], vec![]),
                "spec.podSelector.matchLabels[UPPER.example/ok]",
            ),
        ];
        for (s, field) in cases {
            let err = Selector::parse(Some(&s), "spec.podSelector").unwrap_err();
            assert_eq!(err[0].field, field, "{err:?}");
        }
    }

    #[test]
    fn contradictions_can_never_match() {
        let never = [
            sel(&[("app", "a")], vec![expr("app", "NotIn", &["a"])]),
            sel(&[], vec![expr("app", "In", &["a"]), expr("app", "In", &["b"])]),
            sel(&[], vec![expr("app", "Exists", &[]), expr("app", "DoesNotExist", &[])]),
            sel(&[("app", "a")], vec![expr("app", "DoesNotExist", &[])]),
            sel(
                &[],
                vec![expr("app", "In", &["a", "b"]), expr("app", "NotIn", &["a", "b"])],
            ),
        ];
        for s in never {
            let err = Selector::parse(Some(&s), "spec.podSelector").unwrap_err();
            assert!(err[0].message.contains("can never match"), "{err:?}");
            assert_eq!(err[0].field, "spec.podSelector");
        }
        let fine = sel(&[], vec![expr("app", "In", &["a", "b"]), expr("app", "NotIn", &["a"])]);
        assert!(Selector::parse(Some(&fine), "f").is_ok());
    }

    #[test]
    fn normalization_is_order_independent() {
        let a = sel(&[], vec![expr("b", "In", &["2", "1"]), expr("a", "Exists", &[])]);
        let b = sel(&[], vec![expr("a", "Exists", &[]), expr("b", "In", &["1", "2", "1"])]);
        assert_eq!(
            Selector::parse(Some(&a), "f").unwrap(),
            Selector::parse(Some(&b), "f").unwrap()
        );
    }
}
