//! `berth build --progress=tty`: the legacy builder's stream (`Step N/M : ...`, ` ---> Using
//! cache`, the commands' output) shown as BuildKit shows a build on a terminal, one line per
//! step with its time and the running step's last output lines, redrawn in place on stderr.
//!
//! [`BuildView`] is the state machine (text in, lines out, no terminal); [`Live`] draws it.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Output lines of the running step shown under it.
const TAIL: usize = 6;
/// Output lines kept per step (shown whole when the step fails).
const KEEP: usize = 100;
/// The live view's redraw period (it is also redrawn when a step starts).
const TICK: Duration = Duration::from_millis(100);

/// How `berth build` shows the build (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The stream's text as it comes (`docker build` with the legacy builder).
    Plain,
    /// The live view on stderr.
    Tty,
}

impl Mode {
    /// The mode for a `--progress` value: `auto` is `tty` when stderr is a terminal (not a dumb
    /// one) and the build is not quiet; `-q` never shows a view.
    pub(crate) fn parse(value: &str, quiet: bool) -> Result<Mode, String> {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Mode::choose(value, quiet, std::io::stderr().is_terminal() && !dumb)
    }

    fn choose(value: &str, quiet: bool, terminal: bool) -> Result<Mode, String> {
        let mode = match value.to_ascii_lowercase().as_str() {
            "auto" if terminal => Mode::Tty,
            "auto" | "plain" => Mode::Plain,
            "tty" => Mode::Tty,
            _ => return Err(format!("invalid --progress value {value:?}: expected auto, plain or tty")),
        };
        Ok(if quiet { Mode::Plain } else { mode })
    }
}

struct Step {
    /// `N` of `Step N/M`.
    n: usize,
    /// The instruction as the builder shows it.
    text: String,
    cached: bool,
    failed: bool,
    start: Instant,
    end: Option<Instant>,
    /// The step's last output lines (at most [`KEEP`]).
    output: VecDeque<String>,
}

/// The build's state, from the stream's text.
pub(crate) struct BuildView {
    start: Instant,
    /// `M` of the latest `Step N/M` (ONBUILD triggers make it grow).
    total: usize,
    steps: Vec<Step>,
    /// Text after the last newline.
    partial: String,
    /// Lines before the first step (shown as the running step's output would be).
    before: VecDeque<String>,
    warnings: Vec<String>,
    /// `Successfully built/tagged` lines.
    trailer: Vec<String>,
    /// When the build ended, and whether it succeeded.
    end: Option<(Instant, bool)>,
}

impl BuildView {
    pub(crate) fn new(start: Instant) -> BuildView {
        BuildView {
            start,
            total: 0,
            steps: Vec::new(),
            partial: String::new(),
            before: VecDeque::new(),
            warnings: Vec::new(),
            trailer: Vec::new(),
            end: None,
        }
    }

    /// Take stream text (any pieces of lines) received now. Returns whether a step started.
    pub(crate) fn feed(&mut self, text: &str) -> bool {
        self.feed_at(text, Instant::now())
    }

    /// [`BuildView::feed`], the text received at `now`.
    pub(crate) fn feed_at(&mut self, text: &str, now: Instant) -> bool {
        let steps = self.steps.len();
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.line(last_segment(&line[..i]), now);
        }
        self.steps.len() != steps
    }

    fn running(&mut self) -> Option<&mut Step> {
        self.steps.last_mut().filter(|s| s.end.is_none())
    }

    fn line(&mut self, line: &str, now: Instant) {
        if let Some((n, total, text)) = step_line(line) {
            if let Some(s) = self.running() {
                s.end = Some(now);
            }
            self.total = total;
            self.steps.push(Step {
                n,
                text: text.to_string(),
                cached: false,
                failed: false,
                start: now,
                end: None,
                output: VecDeque::new(),
            });
        } else if let Some(r) = line.strip_prefix(" ---> ") {
            // `Running in ID` and the step's result ID are the view's own business.
            if r.starts_with("Using cache") {
                if let Some(s) = self.running() {
                    s.cached = true;
                }
            }
        } else if line.starts_with("Successfully built ") || line.starts_with("Successfully tagged ") {
            if let Some(s) = self.running() {
                s.end = Some(now);
            }
            self.trailer.push(line.to_string());
        } else if line.starts_with("WARNING:") || line.starts_with("[WARNING]") {
            self.warnings.push(line.to_string());
        } else if let Some(s) = self.steps.last_mut() {
            push_capped(&mut s.output, line, KEEP);
        } else {
            push_capped(&mut self.before, line, TAIL);
        }
    }

    /// The build ended (`ok`: it succeeded) at `now`: the running step ends there (failed
    /// unless `ok`), and [`BuildView::render`] gives the final view from now on.
    pub(crate) fn finish(&mut self, ok: bool, now: Instant) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(last_segment(&rest), now);
        }
        if let Some(s) = self.running() {
            s.end = Some(now);
            s.failed = !ok;
        }
        self.end = Some((now, ok));
    }

    /// The view at `now` in lines of at most `width` characters: while the build runs, at most
    /// `height` lines (the last steps, the running one's last output lines under it); once it
    /// ended, every step with its time and no output.
    pub(crate) fn render(&self, width: usize, height: usize, now: Instant) -> Vec<String> {
        let now = self.end.map_or(now, |e| e.0);
        let done = self.steps.iter().filter(|s| s.end.is_some() && !s.failed).count();
        let mut header = format!(
            "[+] Building {:.1}s ({done}/{})",
            now.saturating_duration_since(self.start).as_secs_f64(),
            self.total
        );
        if let Some((_, true)) = self.end {
            header.push_str(" FINISHED");
        }
        let step = |s: &Step| self.step_line(s, width, now);
        if self.end.is_some() {
            return std::iter::once(truncate(&header, width)).chain(self.steps.iter().map(step)).collect();
        }
        if height == 0 {
            return Vec::new();
        }
        let mut tail: Vec<&str> = match self.steps.last() {
            Some(s) => s.output.iter().map(String::as_str).collect(),
            None => self.before.iter().map(String::as_str).collect(),
        };
        let partial = last_segment(&self.partial);
        if !partial.is_empty() {
            tail.push(partial);
        }
        let budget = height - 1;
        let room = if self.steps.is_empty() { budget } else { budget.saturating_sub(1) };
        let ntail = tail.len().min(TAIL).min(room);
        let nsteps = self.steps.len().min(budget - ntail);
        let mut lines = vec![truncate(&header, width)];
        lines.extend(self.steps[self.steps.len() - nsteps..].iter().map(step));
        lines.extend(tail[tail.len() - ntail..].iter().map(|l| truncate(&format!(" => => # {}", clean(l)), width)));
        lines
    }

    fn step_line(&self, s: &Step, width: usize, now: Instant) -> String {
        let mark = if s.failed {
            "ERROR "
        } else if s.cached {
            "CACHED "
        } else {
            ""
        };
        let left = format!(" => {mark}[{}/{}] {}", s.n, self.total, clean(&s.text));
        let time = format!("{:.1}s", s.end.unwrap_or(now).saturating_duration_since(s.start).as_secs_f64());
        let tw = time.chars().count();
        if width < tw + 2 {
            return truncate(&format!("{left} {time}"), width);
        }
        let room = width - tw - 1;
        format!("{:<room$} {time}", truncate(&left, room))
    }

    /// For a failed build: the failed step's output (its last [`KEEP`] lines) as BuildKit shows
    /// it under the view; nothing when no step failed.
    pub(crate) fn failure_log(&self) -> Vec<String> {
        let Some(s) = self.steps.iter().find(|s| s.failed) else { return Vec::new() };
        let mut lines = vec!["------".to_string(), format!(" > [{}/{}] {}:", s.n, self.total, s.text)];
        lines.extend(s.output.iter().cloned());
        lines.push("------".to_string());
        lines
    }

    /// The `WARNING:` lines seen.
    pub(crate) fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The `Successfully built/tagged` lines seen.
    pub(crate) fn trailer(&self) -> &[String] {
        &self.trailer
    }
}

/// `Step N/M : TEXT` parsed.
fn step_line(line: &str) -> Option<(usize, usize, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (nums, text) = rest.split_once(" : ")?;
    let (n, m) = nums.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?, text))
}

/// What a terminal would show of a line with carriage returns (progress counters rewrite it).
fn last_segment(line: &str) -> &str {
    line.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("")
}

fn push_capped(q: &mut VecDeque<String>, line: &str, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(line.to_string());
}

/// A line without escape sequences or control characters (a tab is a space), as the view can
/// only place plain text.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ parameters final-byte; other escapes are two characters.
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn truncate(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// The terminal's size on stderr: (columns, rows), 80x24 when unknown.
fn term_size() -> (usize, usize) {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ only writes a `winsize` into the struct passed, which outlives the
    // call; an fd that is not a terminal makes it fail (checked), changing nothing.
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    let known = |v: u16, default: usize| if r == 0 && v > 0 { v as usize } else { default };
    (known(ws.ws_col, 80), known(ws.ws_row, 24))
}

/// Write `lines` over the `prev` lines drawn last (the cursor below them); the count drawn.
fn draw(prev: usize, lines: &[String]) -> usize {
    let mut s = String::new();
    if prev > 0 {
        s.push_str(&format!("\r\x1b[{prev}A"));
    }
    for l in lines {
        s.push_str("\x1b[2K");
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("\x1b[J");
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
    let _ = e.flush();
    lines.len()
}

/// A frame's size: one column is left free (a full line would leave the cursor pending a
/// wrap), and one row (the cursor's line under the view).
fn frame_size() -> (usize, usize) {
    let (cols, rows) = term_size();
    (cols.saturating_sub(1).max(1), rows.saturating_sub(1))
}

struct State {
    view: BuildView,
    stop: bool,
    /// A step started since the last frame.
    dirty: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live view on stderr: a thread redraws it every [`TICK`] and when a step starts; the
/// stream's text is written to it (it is a [`Write`]).
pub(crate) struct Live {
    shared: Arc<Shared>,
    drawer: Option<std::thread::JoinHandle<usize>>,
}

impl Live {
    pub(crate) fn start() -> Live {
        let view = BuildView::new(Instant::now());
        let shared =
            Arc::new(Shared { state: Mutex::new(State { view, stop: false, dirty: true }), wake: Condvar::new() });
        let s = shared.clone();
        let drawer = std::thread::spawn(move || {
            let mut drawn = 0;
            let mut st = s.lock();
            while !st.stop {
                let (w, h) = frame_size();
                let lines = st.view.render(w, h, Instant::now());
                st.dirty = false;
                drop(st);
                drawn = draw(drawn, &lines);
                st = s.lock();
                st = s
                    .wake
                    .wait_timeout_while(st, TICK, |st| !st.stop && !st.dirty)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drawn
        });
        Live { shared, drawer: Some(drawer) }
    }

    /// End the view (`ok`: the build succeeded): the final view over the live one, the warnings,
    /// the failed step's output (the caller shows the error next); the `Successfully
    /// built/tagged` lines go to `out`.
    pub(crate) fn finish(mut self, ok: bool, out: &mut dyn Write) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        let drawn = self.drawer.take().and_then(|t| t.join().ok()).unwrap_or(0);
        let mut st = self.shared.lock();
        st.view.finish(ok, Instant::now());
        let (w, h) = frame_size();
        let mut lines = st.view.render(w, h, Instant::now());
        lines.extend(st.view.warnings().iter().cloned());
        lines.extend(st.view.failure_log());
        draw(drawn, &lines);
        for l in st.view.trailer() {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
}

impl Write for Live {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut st = self.shared.lock();
        if st.view.feed(&String::from_utf8_lossy(buf)) {
            st.dirty = true;
            drop(st);
            self.shared.wake.notify_all();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(t) = self.drawer.take() {
            self.shared.lock().stop = true;
            self.shared.wake.notify_all();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The stream of a build of 9 steps up to step 4 (running, with output), as the daemon sends
    /// it, fed at the given times (ms after the start).
    fn running(t0: Instant) -> BuildView {
        let mut v = BuildView::new(t0);
        let chunks: &[(u64, &str)] = &[
            (0, "Step 1/9 : FROM bb:1\n"),
            (10, " ---> 0123456789ab\n"),
            (20, "Step 2/9 : RUN apk add x\n ---> Using cache\n ---> 1111aaaa2222\n"),
            (30, "Step 3/9 : COPY src/ /src/\n"),
            (120, " ---> 2222bbbb3333\n"),
            (130, "Step 4/9 : RUN make\n ---> Running in abcdef123456\n"),
            (200, "one\ntwo\nthree\nfour\n"),
            (300, "five\nsix\nseven\ncc -o app"),
            (400, " main.c\nlinking...\n"),
        ];
        for (t, c) in chunks {
            v.feed_at(c, t0 + ms(*t));
        }
        v
    }

    #[test]
    fn live_view_of_a_running_build() {
        let t0 = Instant::now();
        let v = running(t0);
        let lines = v.render(60, 20, t0 + ms(4230));
        assert_eq!(
            lines,
            [
                "[+] Building 4.2s (3/9)",
                " => [1/9] FROM bb:1                                     0.0s",
                " => CACHED [2/9] RUN apk add x                          0.0s",
                " => [3/9] COPY src/ /src/                               0.1s",
                " => [4/9] RUN make                                      4.1s",
                " => => # four",
                " => => # five",
                " => => # six",
                " => => # seven",
                " => => # cc -o app main.c",
                " => => # linking...",
            ]
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 60));
    }

    #[test]
    fn partial_lines_and_carriage_returns_show_what_a_terminal_would() {
        let t0 = Instant::now();
        let mut v = BuildView::new(t0);
        v.feed_at("Step 1/1 : RUN fetch\n 10%\r 55%\r\n", t0);
        v.feed_at("\x1b[1mbold\x1b[0m\tend", t0);
        let lines = v.render(40, 10, t0);
        assert_eq!(lines[2..], [" => => #  55%", " => => # bold end"]);
    }

    #[test]
    fn lines_are_cut_to_the_width() {
        let t0 = Instant::now();
        let mut v = BuildView::new(t0);
        v.feed_at("Step 1/2 : RUN echo a-very-long-command-line-that-does-not-fit\n", t0);
        v.feed_at(&format!("{}\n", "x".repeat(100)), t0);
        let lines = v.render(30, 10, t0 + ms(1500));
        assert_eq!(
            lines,
            ["[+] Building 1.5s (0/2)", " => [1/2] RUN echo a-very 1.5s", &format!(" => => # {}", "x".repeat(21))]
        );
        // Narrower than the time: cut as well.
        assert!(v.render(5, 10, t0).iter().all(|l| l.chars().count() <= 5));
    }

    #[test]
    fn the_view_fits_the_height_with_the_last_steps() {
        let t0 = Instant::now();
        let v = running(t0);
        let lines = v.render(60, 5, t0 + ms(500));
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("[+] Building 0.5s (3/9)"));
        assert!(lines[1].starts_with(" => [4/9] RUN make"), "{lines:?}");
        assert_eq!(lines[2..], [" => => # seven", " => => # cc -o app main.c", " => => # linking..."]);
        // Room for the running step and one output line.
        let lines = v.render(60, 3, t0 + ms(500));
        assert!(lines[1].starts_with(" => [4/9]") && lines[2].starts_with(" => => # linking"), "{lines:?}");
        assert_eq!(v.render(60, 1, t0).len(), 1);
        assert!(v.render(60, 0, t0).is_empty());
        // Only steps: the last ones.
        let mut v = BuildView::new(t0);
        for n in 1..=30 {
            v.feed_at(&format!("Step {n}/30 : ENV N={n}\n ---> 0000\n"), t0);
        }
        let lines = v.render(60, 4, t0);
        assert_eq!(lines.len(), 4);
        assert!(lines[3].starts_with(" => [30/30] ENV N=30") && lines[1].starts_with(" => [28/30]"), "{lines:?}");
    }

    #[test]
    fn final_view_of_a_build_that_succeeded() {
        let t0 = Instant::now();
        let mut v = running(t0);
        v.feed_at(" ---> 3333cccc4444\n", t0 + ms(4000));
        v.feed_at("Step 5/10 : RUN echo from-trigger\n", t0 + ms(4000));
        v.feed_at("WARNING: something to know\n", t0 + ms(4000));
        v.feed_at(" ---> 4444dddd5555\nSuccessfully built 4444dddd5555\nSuccessfully tagged app:1\n", t0 + ms(4500));
        v.finish(true, t0 + ms(4600));
        let lines = v.render(60, 3, t0 + ms(9999));
        assert_eq!(
            lines,
            [
                "[+] Building 4.6s (5/10) FINISHED",
                " => [1/10] FROM bb:1                                    0.0s",
                " => CACHED [2/10] RUN apk add x                         0.0s",
                " => [3/10] COPY src/ /src/                              0.1s",
                " => [4/10] RUN make                                     3.9s",
                " => [5/10] RUN echo from-trigger                        0.5s",
            ]
        );
        assert!(v.failure_log().is_empty());
        assert_eq!(v.warnings(), ["WARNING: something to know"]);
        assert_eq!(v.trailer(), ["Successfully built 4444dddd5555", "Successfully tagged app:1"]);
    }

    #[test]
    fn final_view_of_a_build_that_failed_keeps_the_output() {
        let t0 = Instant::now();
        let mut v = running(t0);
        for i in 0..150 {
            v.feed_at(&format!("error line {i}\n"), t0 + ms(1000));
        }
        v.feed_at("last words", t0 + ms(1000));
        v.finish(false, t0 + ms(1300));
        let lines = v.render(60, 20, t0 + ms(5000));
        assert_eq!(lines[0], "[+] Building 1.3s (3/9)");
        assert_eq!(lines[4], " => ERROR [4/9] RUN make                                1.2s");
        assert_eq!(lines.len(), 5);
        let log = v.failure_log();
        assert_eq!(log[..2], ["------", " > [4/9] RUN make:"]);
        assert_eq!(log.len(), 2 + KEEP + 1);
        assert_eq!(log[2], "error line 51");
        assert_eq!(log[log.len() - 2..], ["last words", "------"]);
    }

    #[test]
    fn a_failure_before_any_step_is_an_empty_view() {
        let t0 = Instant::now();
        let mut v = BuildView::new(t0);
        v.feed_at("WARNING: --cache-from x: not used\n", t0);
        v.feed_at("fetching\n", t0);
        assert_eq!(v.render(40, 10, t0), ["[+] Building 0.0s (0/0)", " => => # fetching"]);
        v.finish(false, t0 + ms(100));
        assert_eq!(v.render(40, 10, t0), ["[+] Building 0.1s (0/0)"]);
        assert!(v.failure_log().is_empty());
        assert_eq!(v.warnings().len(), 1);
    }

    #[test]
    fn progress_values() {
        assert_eq!(Mode::choose("auto", false, true), Ok(Mode::Tty));
        assert_eq!(Mode::choose("auto", false, false), Ok(Mode::Plain));
        assert_eq!(Mode::choose("auto", true, true), Ok(Mode::Plain));
        assert_eq!(Mode::choose("tty", false, false), Ok(Mode::Tty));
        assert_eq!(Mode::choose("tty", true, true), Ok(Mode::Plain));
        assert_eq!(Mode::choose("plain", false, true), Ok(Mode::Plain));
        let e = Mode::choose("bogus", false, true).unwrap_err();
        assert!(e.contains("bogus") && !e.contains('\n'), "{e}");
    }
}
