//! Watches: the change log the store keeps, and what a watch request sees
//! of it (replay from a resourceVersion, selection changes as ADDED/DELETED,
//! 410 Gone past the retained history).

use http::Uri;
use serde_json::{Value, json};

use super::{ObjKey, Parsed, Record, Store, status_err};
use crate::select::{FieldQuery, LabelQuery};

/// Changes kept for watches to replay.
pub(super) const MAX_EVENTS: usize = 5000;

/// One change of one object.
#[derive(Clone, Debug)]
pub(crate) struct WatchEvent {
    pub rv: u64,
    pub key: ObjKey,
    pub kind: &'static str,
    pub object: Value,
    /// The object before a MODIFIED event.
    pub old: Option<Value>,
}

/// What a watch request asks for.
#[derive(Clone, Debug)]
pub struct WatchQuery {
    prefix: String,
    plural: String,
    ns: Option<String>,
    labels: LabelQuery,
    fields: FieldQuery,
    pub since: u64,
    pub bookmarks: bool,
    pub timeout: Option<u64>,
}

impl Store {
    /// Store an object and record the watch event.
    pub(super) fn put_obj(&mut self, key: ObjKey, mut obj: Value) {
        if key.1 == "customresourcedefinitions" {
            self.crd_stored(&mut obj);
        }
        let old = self.objects.insert(key.clone(), obj.clone());
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(self.rv);
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(WatchEvent {
            rv,
            key,
            kind,
            object: obj,
            old,
        });
    }

    pub(super) fn record(&mut self, ev: WatchEvent) {
        self.events.push_back(ev);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        self.changed.notify_waiters();
    }

    /// Parse a watch request, or answer why it cannot be served.
    pub fn watch_query(&mut self, uri: &Uri) -> Result<WatchQuery, (u16, Value)> {
        self.builtin();
        let path = uri.path();
        let query = uri.query().unwrap_or("");
        let Parsed {
            prefix,
            plural,
            ns,
            name,
            params,
            ..
        } = self.parse(path, query)?;
        if name.is_some() {
            return Err(status_err(
                405,
                "MethodNotAllowed",
                "watch of a single object is not supported",
            ));
        }
        let labels = LabelQuery::parse(params.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(|e| status_err(400, "BadRequest", e))?;
        let fields = FieldQuery::parse(params.get("fieldSelector").map(String::as_str).unwrap_or(""))
            .map_err(|e| status_err(400, "BadRequest", e))?;
        let since = match params.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => self.rv,
            Some(v) => v
                .parse()
                .map_err(|_| status_err(400, "BadRequest", format!("invalid resourceVersion {v:?}")))?,
        };
        self.log.push(Record {
            method: "WATCH".into(),
            path: path.to_string(),
            query: query.to_string(),
            content_type: None,
            status: 200,
        });
        Ok(WatchQuery {
            prefix,
            plural,
            ns,
            labels,
            fields,
            since,
            bookmarks: params.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
            timeout: params.get("timeoutSeconds").and_then(|v| v.parse().ok()),
        })
    }

    /// Watch events after `q.since`, as the API server would send them
    /// (objects leaving or entering the selection become DELETED/ADDED).
    /// Err(an ERROR event with 410) when history no longer reaches back.
    pub fn watch_events(&self, q: &WatchQuery) -> Result<(Vec<Value>, u64), Value> {
        if let Some(first) = self.events.front()
            && q.since + 1 < first.rv
        {
            let gone = status_err(410, "Expired", format!("too old resource version: {}", q.since)).1;
            return Err(json!({"type": "ERROR", "object": gone}));
        }
        let mut out = Vec::new();
        let mut last = q.since;
        for ev in self.events.iter().filter(|e| e.rv > q.since) {
            last = ev.rv;
            let (p, pl, ns, _) = &ev.key;
            if *p != q.prefix || *pl != q.plural || q.ns.as_ref().is_some_and(|n| n != ns) {
                continue;
            }
            let matches = |o: &Value| q.labels.matches(o) && q.fields.matches(o);
            let kind = match (ev.kind, ev.old.as_ref().map(matches), matches(&ev.object)) {
                ("MODIFIED", Some(true), false) => "DELETED",
                ("MODIFIED", Some(false), true) => "ADDED",
                (_, _, false) => continue,
                (k, _, true) => k,
            };
            out.push(json!({"type": kind, "object": ev.object}));
        }
        Ok((out, last.max(q.since)))
    }

    /// The current resource version (for bookmarks).
    pub fn resource_version(&self) -> u64 {
        self.rv
    }
}
