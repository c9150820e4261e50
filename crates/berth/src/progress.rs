//! Transfer progress like `docker pull`: one bar per layer on a terminal (indicatif), and on a
//! pipe or file one plain line per state change ("<id>: Pull complete"), never a bar.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
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
        let bar = self.inner.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:<12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(id.to_string());
            b.set_message(state.to_string());
            b
        });
        let it = Item { id: id.to_string(), bar, p: self.clone() };
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
                b.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.finish_with_message(state.to_string());
            }
            None => self.p.line(&format!("{}: {state}", self.id)),
        }
    }
}
