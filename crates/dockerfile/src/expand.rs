//! The shell word lexer: variable expansion, quote removal and word splitting, mirroring
//! BuildKit's `frontend/dockerfile/shell` package (`shell.Lex`), which both Docker builders use.
//!
//! # What a word goes through
//!
//! - `$name` and `${name}` expand to the variable's value, or to nothing when it is unset
//!   (or are kept verbatim with [`Lexer::skip_unset_env`]). A `$` not followed by a name is
//!   literal. Names are letters, digits and `_`; a name starting with a digit is all digits;
//!   the special parameters `@ * # ? - $ ! 0` are one-character names.
//! - `${v:-w}` / `${v-w}`: `w` when `v` is unset (or, with `:`, empty), else `v`.
//!   `${v:+w}` / `${v+w}`: `w` when `v` is set (and, with `:`, not empty), else nothing.
//!   `${v:?msg}` / `${v?msg}`: an error `v: msg` when unset (or, with `:`, empty).
//!   `w` is itself a word: it may contain quotes and further expansions (`${a:-${b}}`).
//! - `${v#pat}` `${v##pat}` remove the shortest/longest prefix matching `pat`;
//!   `${v%pat}` `${v%%pat}` the shortest/longest suffix; `${v/pat/repl}` replaces the first
//!   match of `pat` in `v`, `${v//pat/repl}` every match. Patterns know `*`, `?` and
//!   `\`-escapes, not bracket expressions (as BuildKit). `*` and `?` do not match a newline
//!   (BuildKit compiles patterns to Go regular expressions, whose `.` excludes `\n`).
//! - Single quotes keep everything literal; double quotes keep everything but `$`
//!   expansions and the escapes `\"`, `\$` and `\\`; outside quotes the escape character
//!   (`\`, or `` ` `` after `# escape=`) makes the next character literal. Quotes and escapes
//!   are removed from the result.
//! - In words mode ([`Lexer::process_words`]) the result is split on whitespace, but only
//!   whitespace that came from the word itself or from a variable's value: quoted or escaped
//!   whitespace does not split, and an empty quoted string (`""`) produces no word.
//!
//! # Which instructions Docker expands
//!
//! Expansion is not applied to every instruction. BuildKit (`dockerfile2llb.dispatch`, the
//! `Expand` methods in `instructions/commands.go`) and the classic builder's
//! `replaceEnvAllowed` list agree on this set, which [`expand_instruction`] implements:
//!
//! | instruction | what is expanded |
//! | --- | --- |
//! | `ENV`, `LABEL` | every key and value ([`Lexer::process_word`]) |
//! | `ADD`, `COPY` | sources, destination, `--chown`, `--chmod`, `ADD --checksum`; heredoc bodies unless the delimiter was quoted (quotes kept, see [`expand_heredoc`]) |
//! | `WORKDIR`, `USER`, `STOPSIGNAL` | the argument |
//! | `VOLUME` | each path |
//! | `EXPOSE` | each port, in words mode (one `$PORTS` may give several) |
//! | `ARG` | the default value (never the name) |
//! | `FROM` | the image and `--platform`, with the global (pre-`FROM`) args only |
//! | `RUN` | the values of `--mount` options (the command itself is left to the shell) |
//!
//! Not expanded: `RUN`/`CMD`/`ENTRYPOINT`/`HEALTHCHECK`/`SHELL` commands (the shell or the
//! program sees them verbatim), `MAINTAINER`, `ONBUILD` (expanded when the trigger runs), and
//! `COPY --from` (a variable there is an error; see [`crate::stages`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::instruction::{Command, SourceContent};
use crate::parser::Instruction;

/// The default escape character.
pub const DEFAULT_ESCAPE: char = '\\';

/// Where variables are looked up. `None` means unset, which differs from set-but-empty.
pub trait Env {
    /// The value of `name`, or `None` when it is not set.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// An empty environment: every variable is unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
}

/// An ordered list of variables where setting an existing name replaces its value in
/// place, like BuildKit's `EnvList` (and an image config's `Env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing an earlier value in place.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((name.to_string(), value.to_string())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    /// The variables in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of variables.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `NAME=value` strings, as in an image config.
    pub fn to_env_strings(&self) -> Vec<String> {
        self.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl Env for Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut vars = Vars::new();
        for (k, v) in iter {
            vars.set(&k.into(), &v.into());
        }
        vars
    }
}

/// An expansion failure: a syntax error in the word or a `${v?msg}` on an unset variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ExpandError {
    /// The word being processed.
    pub word: String,
    /// What went wrong, worded as BuildKit does (`syntax error: missing '}'`).
    pub message: String,
}

/// Everything one pass over a word produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with expansions done and quotes removed (whitespace kept).
    pub result: String,
    /// The result split into words.
    pub words: Vec<String>,
    /// Variables looked up that were set.
    pub matched: BTreeSet<String>,
    /// Variables looked up that were unset.
    pub unmatched: BTreeSet<String>,
}

impl Expansion {
    /// Every variable the word looked up, set or not: what a cache key must cover.
    pub fn referenced(&self) -> BTreeSet<String> {
        self.matched.union(&self.unmatched).cloned().collect()
    }
}

/// The lexer: an escape character and BuildKit's four switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character, `\` or `` ` ``.
    pub escape: char,
    /// Keep quote characters in the result (quoted text is still not expanded/split).
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables verbatim instead of expanding them to nothing.
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new(DEFAULT_ESCAPE)
    }
}

impl Lexer {
    /// A lexer with the given escape character and every switch off.
    pub fn new(escape: char) -> Self {
        Self { escape, raw_quotes: false, raw_escapes: false, skip_process_quotes: false, skip_unset_env: false }
    }

    /// `ProcessWord`: expands `word` into one string (quotes removed, whitespace kept).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        self.process(word, env).map(|e| e.result)
    }

    /// `ProcessWords`: expands `word` and splits the result into words.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|e| e.words)
    }

    /// `ProcessWordWithMatches`: the result, the words and which variables were looked up.
    pub fn process(&self, word: &str, env: &dyn Env) -> Result<Expansion, ExpandError> {
        let mut state = WordState::new(self, word, env);
        let (result, words) = state
            .process_stop_on(None, self.raw_escapes)
            .map_err(|message| ExpandError { word: word.to_string(), message })?;
        Ok(Expansion { result, words, matched: state.matched, unmatched: state.unmatched })
    }
}

/// The variables `word` refers to, whatever their values: every `$name` and `${name...}`,
/// including those inside defaults (`${a:-$b}` refers to `a` and `b`) and in double
/// quotes, but not those in single quotes or escaped. Syntax errors end the scan early;
/// what was found up to there is returned.
pub fn referenced_vars(word: &str, escape: char) -> BTreeSet<String> {
    Lexer::new(escape).referenced(word)
}

/// Expands a heredoc body the way BuildKit does for `COPY <<EOF` / `ADD <<EOF` bodies whose
/// delimiter was not quoted: variables are expanded, quotes are ordinary characters, and the
/// escape character is always `\`.
pub fn expand_heredoc(body: &str, env: &dyn Env) -> Result<String, ExpandError> {
    let lexer = Lexer { skip_process_quotes: true, ..Lexer::new(DEFAULT_ESCAPE) };
    lexer.process_word(body, env)
}

/// The words-mode accumulator (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

/// Stands for Go's `scanner.EOF` where a character is reported in a message.
const EOF_CHAR: char = '\u{FFFD}';

struct WordState<'a> {
    lexer: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    raw_escapes: bool,
    never_fail: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type Res<T> = Result<T, String>;

impl<'a> WordState<'a> {
    fn new(lexer: &'a Lexer, word: &str, env: &'a dyn Env) -> Self {
        Self {
            lexer,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: lexer.raw_escapes,
            never_fail: false,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes until `stop` (consumed) or the end; `raw_escapes` applies meanwhile.
    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Res<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.stop_on(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                '<' => {
                    let s = self.possible_heredoc();
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '\'' if quotes => {
                    let s = self.single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' if quotes => {
                    let s = self.double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                _ => {
                    self.next();
                    if ch != self.lexer.escape {
                        words.add_char(ch);
                        result.push(ch);
                        continue;
                    }
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
            }
        }
        match stop {
            Some(c) => Err(format!("unexpected end of statement while looking for matching {c}")),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quote(&mut self) -> Res<String> {
        let mut out = String::new();
        let open = self.next().unwrap_or(EOF_CHAR);
        if self.lexer.raw_quotes {
            out.push(open);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Res<String> {
        let mut out = String::new();
        let open = self.next().unwrap_or(EOF_CHAR);
        if self.lexer.raw_quotes {
            out.push(open);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let s = self.dollar()?;
                    out.push_str(&s);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or(EOF_CHAR);
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lexer.escape => {
                                ch = self.next().unwrap_or(EOF_CHAR);
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn dollar(&mut self) -> Res<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next().unwrap_or(EOF_CHAR);
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                let op = self.next().unwrap_or(EOF_CHAR);
                self.modifier(&name, op, true)
            }
            '+' | '-' | '?' | '#' | '%' => self.modifier(&name, ch, false),
            '/' => self.replace(&name),
            _ => Err(format!("unsupported modifier ({ch}) in substitution")),
        }
    }

    /// `${name<op>word}`, `${name:<op>word}` with `null_is_unset`.
    fn modifier(&mut self, name: &str, op: char, null_is_unset: bool) -> Res<String> {
        let shown = if null_is_unset { format!(":{op}") } else { op.to_string() };
        let raw = op == '#' || op == '%';
        if null_is_unset && raw {
            return Err(format!("unsupported modifier ({shown}) in substitution"));
        }
        let word = self.stop_on_brace('}', "syntax error: missing '}'", raw)?;
        let value = self.get_env(name);
        if self.lexer.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{shown}{word}}}"));
        }
        let empty = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match op {
            '-' => Ok(if empty { word } else { value.unwrap_or_default() }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => self.required(name, value, word, null_is_unset),
            '%' | '#' => {
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                let value = value.unwrap_or_default();
                if op == '%' {
                    trim_suffix(&pattern, &value, greedy)
                } else {
                    trim_prefix(&pattern, &value, greedy)
                }
            }
            _ => Err(format!("unsupported modifier ({shown}) in substitution")),
        }
    }

    fn required(&self, name: &str, value: Option<String>, word: String, null_is_unset: bool) -> Res<String> {
        let problem = match &value {
            None => Some("is not allowed to be unset"),
            Some(v) if null_is_unset && v.is_empty() => Some("is not allowed to be empty"),
            Some(_) => None,
        };
        match problem {
            None => Ok(value.unwrap_or_default()),
            Some(_) if self.never_fail => Ok(String::new()),
            Some(default) => Err(format!("{name}: {}", if word.is_empty() { default } else { &word })),
        }
    }

    fn stop_on_brace(&mut self, stop: char, at_end: &str, raw: bool) -> Res<String> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(at_end.to_string()),
            Err(e) => Err(e),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> Res<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = self.stop_on_brace('/', "syntax error: missing '/' in ${}", true)?;
        let replacement = self.stop_on_brace('}', "syntax error: missing '}'", true)?;
        match self.get_env(name) {
            None if self.lexer.skip_unset_env => Ok(format!("${{{name}/{pattern}/{replacement}}}")),
            value => replace_matches(&value.unwrap_or_default(), &pattern, &replacement, all),
        }
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// One element of a `#`/`%`/`/` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

/// BuildKit's `convertShellPatternToRegex`, as tokens instead of a regular expression.
fn compile_pattern(pattern: &str) -> Res<Vec<Tok>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Any),
            '\\' => match chars.get(i) {
                Some('}' | '/') => {}
                Some(&e @ ('*' | '?' | '\\')) => {
                    toks.push(Tok::Lit(e));
                    i += 1;
                }
                other => {
                    let shown = other.copied().unwrap_or(EOF_CHAR);
                    return Err(format!("invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'"));
                }
            },
            _ => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Leftmost-first (Perl/Go) matching of `toks` at `pos`: the end a backtracking matcher
/// would pick, with `*` preferring longer (`greedy`) or shorter runs.
fn match_at(toks: &[Tok], s: &[char], pos: usize, greedy: bool) -> Option<usize> {
    let Some((first, rest)) = toks.split_first() else { return Some(pos) };
    match *first {
        Tok::Lit(c) => (s.get(pos) == Some(&c)).then(|| match_at(rest, s, pos + 1, greedy)).flatten(),
        Tok::Any => s.get(pos).filter(|&&c| c != '\n').and_then(|_| match_at(rest, s, pos + 1, greedy)),
        Tok::Star => {
            let run = s[pos..].iter().take_while(|&&c| c != '\n').count();
            let mut ends: Box<dyn Iterator<Item = usize>> =
                if greedy { Box::new((pos..=pos + run).rev()) } else { Box::new(pos..=pos + run) };
            ends.find_map(|end| match_at(rest, s, end, greedy))
        }
    }
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let toks = compile_pattern(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match match_at(&toks, &chars, 0, greedy) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// Reverses a pattern, keeping each escape in front of the character it escapes.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push([chars[i], chars[i + 1]].iter().collect());
            i += 2;
        } else {
            units.push(chars[i].to_string());
            i += 1;
        }
    }
    units.into_iter().rev().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Go's `Regexp.ReplaceAllString` / first-match replacement, with greedy `*`.
fn replace_matches(value: &str, pattern: &str, replacement: &str, all: bool) -> Res<String> {
    let toks = compile_pattern(pattern)?;
    let s: Vec<char> = value.chars().collect();
    let find = |from: usize| (from..=s.len()).find_map(|start| match_at(&toks, &s, start, true).map(|e| (start, e)));
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= s.len() {
        let Some((start, end)) = find(search) else { break };
        out.extend(&s[last_end..start]);
        if end > last_end || start == 0 {
            out.push_str(replacement);
        }
        last_end = end;
        if !all {
            break;
        }
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(&s[last_end.min(s.len())..]);
    Ok(out)
}

impl Lexer {
    /// The variables `word` refers to under this lexer's quoting rules (see
    /// [`referenced_vars`]).
    pub fn referenced(&self, word: &str) -> BTreeSet<String> {
        let plain = Lexer { skip_unset_env: false, ..*self };
        let mut state = WordState::new(&plain, word, &NoEnv);
        state.never_fail = true;
        let _ = state.process_stop_on(None, self.raw_escapes);
        state.unmatched
    }
}

/// Applies `f` to every argument Docker expands as a single word (see the module docs);
/// `EXPOSE` ports, `RUN --mount` values and heredoc bodies are handled by the callers.
fn for_each_word(
    command: &mut Command,
    f: &mut dyn FnMut(&mut String) -> Result<(), ExpandError>,
) -> Result<(), ExpandError> {
    let opt = |v: &mut Option<String>, f: &mut dyn FnMut(&mut String) -> Result<(), ExpandError>| match v {
        Some(s) => f(s),
        None => Ok(()),
    };
    match command {
        Command::Env(kvs) | Command::Label(kvs) => {
            for kv in kvs {
                f(&mut kv.key)?;
                f(&mut kv.value)?;
            }
        }
        Command::Add(add) => {
            opt(&mut add.chown, f)?;
            opt(&mut add.chmod, f)?;
            opt(&mut add.checksum, f)?;
            add.files.sources.iter_mut().try_for_each(&mut *f)?;
            f(&mut add.files.dest)?;
        }
        Command::Copy(copy) => {
            opt(&mut copy.chown, f)?;
            opt(&mut copy.chmod, f)?;
            copy.files.sources.iter_mut().try_for_each(&mut *f)?;
            f(&mut copy.files.dest)?;
        }
        Command::Workdir(s) | Command::User(s) | Command::StopSignal(s) => f(s)?,
        Command::Volume(paths) => paths.iter_mut().try_for_each(&mut *f)?,
        Command::Arg(decls) => decls.iter_mut().try_for_each(|d| opt(&mut d.default, f))?,
        Command::From(from) => {
            f(&mut from.image)?;
            opt(&mut from.platform, f)?;
        }
        Command::Run(_)
        | Command::Cmd(_)
        | Command::Entrypoint(_)
        | Command::Shell(_)
        | Command::Expose(_)
        | Command::Onbuild(_)
        | Command::Healthcheck(_)
        | Command::Maintainer(_) => {}
    }
    Ok(())
}

fn heredoc_contents(command: &mut Command) -> Option<&mut Vec<SourceContent>> {
    match command {
        Command::Add(add) => Some(&mut add.files.contents),
        Command::Copy(copy) => Some(&mut copy.files.contents),
        _ => None,
    }
}

/// Expands an instruction's arguments the way Docker does before executing it: exactly the
/// arguments listed in the module docs, with `env` (the stage's `ENV` and `ARG` values at
/// that point; for `FROM`, the global args). Empty `--chown`/`--chmod`/`--checksum` results
/// become `None`. `RUN --mount` specs stay as written: pass their values through
/// [`crate::mount::parse_mount`] with the same lexer.
///
/// All values of one `ENV` line see the environment from before the line: in
/// `ENV a=1 b=$a`, `b` gets the old `a` (Docker's documented behaviour).
pub fn expand_instruction(instruction: &Instruction, env: &dyn Env, escape: char) -> Result<Instruction, ExpandError> {
    let lexer = Lexer::new(escape);
    let mut out = instruction.clone();
    for_each_word(&mut out.command, &mut |w: &mut String| {
        *w = lexer.process_word(w, env)?;
        Ok(())
    })?;
    if let Command::Expose(ports) = &mut out.command {
        let mut expanded = Vec::new();
        for port in ports.iter() {
            expanded.extend(lexer.process_words(port, env)?);
        }
        *ports = expanded;
    }
    if let Some(contents) = heredoc_contents(&mut out.command) {
        for content in contents.iter_mut().filter(|c| c.expand) {
            content.data = expand_heredoc(&content.data, env)?;
        }
    }
    match &mut out.command {
        Command::Add(add) => {
            add.chown = add.chown.take().filter(|s| !s.is_empty());
            add.chmod = add.chmod.take().filter(|s| !s.is_empty());
            add.checksum = add.checksum.take().filter(|s| !s.is_empty());
        }
        Command::Copy(copy) => {
            copy.chown = copy.chown.take().filter(|s| !s.is_empty());
            copy.chmod = copy.chmod.take().filter(|s| !s.is_empty());
        }
        _ => {}
    }
    Ok(out)
}

/// Every variable an instruction's expansion can look at (set or not): what the builder's
/// cache key must include besides the instruction text. Covers the arguments of
/// [`expand_instruction`], `RUN --mount` values and expanded heredoc bodies. For `RUN`,
/// `CMD` and the like this is empty: their variables are the shell's business (though
/// `ARG`/`ENV` values still reach `RUN` through its environment).
pub fn referenced_by(instruction: &Instruction, escape: char) -> BTreeSet<String> {
    let lexer = Lexer::new(escape);
    let mut found = BTreeSet::new();
    let mut command = instruction.command.clone();
    let _ = for_each_word(&mut command, &mut |w: &mut String| {
        found.extend(lexer.referenced(w));
        Ok(())
    });
    match &command {
        Command::Expose(ports) => ports.iter().for_each(|p| found.extend(lexer.referenced(p))),
        Command::Run(run) => {
            for spec in &run.mounts {
                for field in crate::mount::csv_fields(spec).unwrap_or_default() {
                    if let Some((_, value)) = field.split_once('=') {
                        found.extend(lexer.referenced(value));
                    }
                }
            }
        }
        _ => {}
    }
    if let Some(contents) = heredoc_contents(&mut command) {
        let body_lexer = Lexer { skip_process_quotes: true, ..Lexer::new(DEFAULT_ESCAPE) };
        contents.iter().filter(|c| c.expand).for_each(|c| found.extend(body_lexer.referenced(&c.data)));
    }
    found
}
