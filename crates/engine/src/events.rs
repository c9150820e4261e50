//! `/events`: what happened to containers, images and volumes, in Docker's event shape.
//!
//! The daemon emits into an in-memory ring of the last [`KEEP`] events (Docker keeps its event
//! log in memory too); subscribers get the history they ask for (`since`) and then new events
//! as they come, until `until` or until they hang up.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEEP: usize = 1024;

#[derive(Default)]
struct Ring {
    /// (sequence number, event)
    events: VecDeque<(u64, Value)>,
    next: u64,
}

#[derive(Default)]
pub struct Events {
    ring: Mutex<Ring>,
    cv: Condvar,
}

/// Filters of `/events`: type, event (action), container, image, volume, label.
pub fn matches(ev: &Value, filters: &[(String, Vec<String>)]) -> bool {
    let attrs = &ev["Actor"]["Attributes"];
    filters.iter().all(|(k, vals)| {
        vals.is_empty()
            || vals.iter().any(|v| match k.as_str() {
                "type" => ev["Type"] == *v,
                "event" | "action" => {
                    let a = ev["Action"].as_str().unwrap_or("");
                    a == v || a.split(':').next() == Some(v.as_str())
                }
                "container" => {
                    ev["Type"] == "container"
                        && (ev["Actor"]["ID"].as_str().is_some_and(|id| id.starts_with(v.as_str()))
                            || attrs["name"] == *v)
                }
                "image" => {
                    attrs["image"] == *v || ev["from"] == *v || (ev["Type"] == "image" && ev["Actor"]["ID"] == *v)
                }
                "volume" => ev["Type"] == "volume" && ev["Actor"]["ID"] == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => attrs[lk] == lv,
                    None => attrs.get(v.as_str()).is_some(),
                },
                _ => false,
            })
    })
}

impl Events {
    /// Record an event: `typ` container|image|volume, `action` start|die|..., `attrs` strings.
    pub fn emit(&self, typ: &str, action: &str, id: &str, attrs: Value) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut ev = json!({
            "Type": typ,
            "Action": action,
            "Actor": {"ID": id, "Attributes": attrs},
            "scope": "local",
            "time": now.as_secs(),
            "timeNano": now.as_nanos() as u64,
        });
        if typ == "container" {
            // The older fields, still read by some clients (docker-py's events()).
            ev["status"] = json!(action);
            ev["id"] = json!(id);
            ev["from"] = ev["Actor"]["Attributes"]["image"].clone();
        }
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let seq = r.next;
        r.next += 1;
        r.events.push_back((seq, ev));
        while r.events.len() > KEEP {
            r.events.pop_front();
        }
        drop(r);
        self.cv.notify_all();
    }

    /// Feed `send` the events from `since` (unix seconds) on, then new ones until `until`
    /// (or forever); ends when `send` fails (the client went away).
    pub fn follow(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        filters: &[(String, Vec<String>)],
        mut send: impl FnMut(&Value) -> bool,
    ) {
        let now = || SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let t_of = |ev: &Value| ev["timeNano"].as_u64().unwrap_or(0) as f64 / 1e9;
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = r.next;
        if let Some(s) = since {
            let old: Vec<Value> = r.events.iter().filter(|(_, e)| t_of(e) >= s).map(|(_, e)| e.clone()).collect();
            drop(r);
            for e in old {
                if until.is_some_and(|u| t_of(&e) > u) {
                    return;
                }
                if matches(&e, filters) && !send(&e) {
                    return;
                }
            }
            r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        }
        loop {
            if until.is_some_and(|u| now() >= u) {
                return;
            }
            let fresh: Vec<(u64, Value)> = r.events.iter().filter(|(s, _)| *s >= next).cloned().collect();
            if let Some((s, _)) = fresh.last() {
                next = s + 1;
            }
            if !fresh.is_empty() {
                drop(r);
                for (_, e) in fresh {
                    if matches(&e, filters) && !send(&e) {
                        return;
                    }
                }
                r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let wait = match until {
                Some(u) => Duration::from_secs_f64((u - now()).clamp(0.0, 1.0)),
                None => Duration::from_secs(1),
            };
            r = self.cv.wait_timeout(r, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_filters_and_until() {
        let ev = Events::default();
        ev.emit("container", "start", "abc", json!({"name": "web", "image": "bb:1", "k": "v"}));
        ev.emit("volume", "create", "vol", json!({"driver": "local"}));
        let mut got = Vec::new();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        ev.follow(Some(0.0), Some(now), &[("type".into(), vec!["container".into()])], |e| {
            got.push(e["Action"].as_str().unwrap().to_string());
            true
        });
        assert_eq!(got, ["start"]);
        let f = [("label".to_string(), vec!["k=v".to_string()]), ("container".to_string(), vec!["web".to_string()])];
        assert!(matches(&ev.ring.lock().unwrap().events[0].1, &f));
    }
}
