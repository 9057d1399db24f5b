//! A renderer for the chart's deliberately plain templates. Helm is not
//! installable here, so the chart keeps to a subset this renderer
//! understands and the tests render it; any other construct is an error,
//! which keeps the templates plain. Supported:
//! `{{ .Values.a.b }}`, `{{ .Release.Namespace }}`, `{{ .Chart.AppVersion }}`,
//! `{{- toYaml .Values.a | nindent N }}`, `{{ .Files.Get "f" | indent N }}`,
//! and `{{- if .Values.a }}` … `{{- end }}` (nestable).

use std::path::Path;

use serde_yaml::Value;

/// Look up `.Values.a.b` in the values document.
fn lookup<'a>(values: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = values;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        cur = cur
            .get(seg)
            .ok_or_else(|| format!(".Values.{path} is not defined in values.yaml"))?;
    }
    Ok(cur)
}

fn scalar(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => return Err(format!("{other:?} is not a scalar")),
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        _ => true,
    }
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.trim_end_matches('\n')
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Render one template.
pub fn render(template: &str, values: &Value, namespace: &str, chart_dir: &Path) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    // Each entry: is the enclosing block emitting?
    let mut emitting: Vec<bool> = Vec::new();
    let on = |stack: &Vec<bool>| stack.iter().all(|b| *b);
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        let end = after.find("}}").ok_or("unclosed {{")?;
        let mut action = &after[2..end];
        let trim_left = action.starts_with('-');
        let trim_right = action.ends_with('-');
        action = action.trim_start_matches('-').trim_end_matches('-').trim();
        let mut text = before.to_string();
        if trim_left {
            text = text.trim_end().to_string();
        }
        if on(&emitting) {
            out.push_str(&text);
        }
        rest = &after[end + 2..];
        if trim_right {
            rest = rest.trim_start();
        }
        let words: Vec<&str> = action.split_whitespace().collect();
        match words.as_slice() {
            ["if", path] => {
                let p = path
                    .strip_prefix(".Values.")
                    .ok_or(format!("unsupported condition {path}"))?;
                let v = lookup(values, p).map(truthy).unwrap_or(false);
                emitting.push(v);
            }
            ["end"] => {
                emitting.pop().ok_or("{{ end }} without {{ if }}")?;
            }
            _ if !on(&emitting) => {}
            [".Release.Namespace"] => out.push_str(namespace),
            [".Chart.AppVersion"] => out.push_str("0.1.0"),
            [path] if path.starts_with(".Values.") => out.push_str(&scalar(lookup(values, &path[8..])?)?),
            ["toYaml", path, "|", "nindent", n] => {
                let v = lookup(values, path.strip_prefix(".Values.").ok_or("toYaml needs .Values")?)?;
                let yaml = serde_yaml::to_string(v).map_err(|e| e.to_string())?;
                out.push('\n');
                out.push_str(&indent(&yaml, n.parse().map_err(|_| "bad nindent")?));
            }
            [".Files.Get", file, "|", "indent", n] => {
                let text = std::fs::read_to_string(chart_dir.join(file.trim_matches('"')))
                    .map_err(|e| format!("{file}: {e}"))?;
                out.push_str(&indent(&text, n.parse().map_err(|_| "bad indent")?));
            }
            other => return Err(format!("unsupported template action {{{{ {} }}}}", other.join(" "))),
        }
    }
    if !emitting.is_empty() {
        return Err("{{ if }} without {{ end }}".into());
    }
    if on(&emitting) {
        out.push_str(rest);
    }
    Ok(out)
}

/// Every object of the chart's templates (and its crds/) for `values`.
pub fn render_chart(chart_dir: &Path, values: &Value, namespace: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(chart_dir.join("templates"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.extend(
        std::fs::read_dir(chart_dir.join("crds"))
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path()),
    );
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
        let rendered = if f.parent().is_some_and(|p| p.ends_with("templates")) {
            render(&text, values, namespace, chart_dir).map_err(|e| format!("{}: {e}", f.display()))?
        } else {
            text
        };
        docs.extend(parse_docs(&rendered).map_err(|e| format!("{}: {e}\n{rendered}", f.display()))?);
    }
    Ok(docs)
}

/// Non-empty documents of a multi-document YAML stream.
pub fn parse_docs(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}
