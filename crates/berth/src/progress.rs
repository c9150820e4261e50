//! Transfer progress like `docker pull`: one bar per layer on a terminal (indicatif), and on a
//! pipe or file one plain line per state change ("<id>: Pull complete"), never a bar. The same
//! display renders the daemon's JSON message streams (pull, push) for the API client.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Read};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    multi: Option<MultiProgress>,
    quiet: bool,
    lock: Mutex<()>,
}

/// One line of progress (a layer, or the manifest).
pub struct Item {
    id: String,
    bar: Option<ProgressBar>,
    p: Progress,
    /// The state last shown, and whether the bar shows bytes.
    last: Mutex<(String, bool)>,
}

const BAR: &str = "{prefix}: {msg:<12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec}";
const PLAIN: &str = "{prefix}: {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

impl Progress {
    /// Bars when stderr is a terminal (unless `quiet`); plain lines otherwise.
    pub fn new(quiet: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let multi = (tty && !quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { inner: Arc::new(Inner { multi, quiet, lock: Mutex::new(()) }) }
    }

    /// A plain message line (above the bars on a terminal).
    pub fn line(&self, msg: &str) {
        if self.inner.quiet {
            return;
        }
        match &self.inner.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => {
                let _g = self.inner.lock.lock();
                eprintln!("{msg}");
            }
        }
    }

    /// Start an item of `total` bytes (0 if unknown) in the given state ("Waiting", "Downloading").
    pub fn item(&self, id: &str, total: u64, state: &str) -> Item {
        self.new_item(id, state, Some(total))
    }

    fn new_item(&self, id: &str, state: &str, total: Option<u64>) -> Item {
        let bar = self.inner.multi.as_ref().map(|m| {
            m.add(
                ProgressBar::new(total.unwrap_or(0))
                    .with_style(style(if total.is_some() { BAR } else { PLAIN }))
                    .with_prefix(id.to_string())
                    .with_message(state.to_string()),
            )
        });
        let it =
            Item { id: id.to_string(), bar, p: self.clone(), last: Mutex::new((state.to_string(), total.is_some())) };
        if it.bar.is_none() {
            it.p.line(&format!("{id}: {state}"));
        }
        it
    }
}

impl Item {
    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    /// Final state; on a terminal the bar stays with the message.
    pub fn finish(&self, state: &str) {
        match &self.bar {
            Some(b) => {
                b.set_style(style(PLAIN));
                b.finish_with_message(state.to_string());
            }
            None => self.p.line(&format!("{}: {state}", self.id)),
        }
    }

    /// A new state, with bytes moved (`current`, `total`) or without: on a terminal the item's
    /// line changes in place (a bar while bytes move); otherwise a line when the state changes.
    pub fn update(&self, state: &str, bytes: Option<(u64, u64)>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &self.bar {
            Some(b) => {
                if last.0 != state {
                    b.set_message(state.to_string());
                }
                if let Some((cur, total)) = bytes {
                    if total > 0 {
                        b.set_length(total);
                    }
                    b.set_position(cur);
                }
                if bytes.is_some() != last.1 {
                    b.set_style(style(if bytes.is_some() { BAR } else { PLAIN }));
                }
            }
            None if last.0 != state => self.p.line(&format!("{}: {state}", self.id)),
            None => {}
        }
        *last = (state.to_string(), bytes.is_some());
    }

    /// Leave the item as it is shown now.
    fn leave(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }
}

/// The message of an `error`/`errorDetail` entry of a JSON message stream, if it is one.
pub fn stream_error(v: &Value) -> Option<String> {
    v["errorDetail"]["message"].as_str().or_else(|| v["error"].as_str()).map(str::to_string)
}

/// Show one of the daemon's JSON message streams (`/images/create`, `/images/{name}/push`) as
/// `docker` does: messages with an `id` are that item's line (a bar while `progressDetail`
/// counts bytes), others are plain lines. `each` sees every message first (for `aux`). An
/// error message ends the display: `Err(message)`.
pub fn show_json_stream(r: impl Read, p: &Progress, mut each: impl FnMut(&Value)) -> Result<(), String> {
    let mut items: HashMap<String, Item> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let result = (|| {
        for line in std::io::BufReader::new(r).lines() {
            let line = line.map_err(|e| format!("reading from the daemon: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(&line).map_err(|e| format!("the daemon sent malformed JSON ({e}): {line}"))?;
            if let Some(m) = stream_error(&v) {
                return Err(m);
            }
            each(&v);
            let status = v["status"].as_str().unwrap_or("");
            match v["id"].as_str().filter(|i| !i.is_empty()) {
                Some(id) => {
                    let d = &v["progressDetail"];
                    let bytes = d["current"].as_u64().map(|c| (c, d["total"].as_u64().unwrap_or(0)));
                    match items.get(id) {
                        Some(it) => it.update(status, bytes),
                        None => {
                            let it = p.new_item(id, status, bytes.map(|b| b.1));
                            if let Some((c, _)) = bytes {
                                it.set_position(c);
                            }
                            items.insert(id.to_string(), it);
                            order.push(id.to_string());
                        }
                    }
                }
                None if !status.is_empty() => p.line(status),
                None => {}
            }
        }
        Ok(())
    })();
    for id in &order {
        if let Some(it) = items.get(id) {
            it.leave();
        }
    }
    result
}
