//! Dockerfile text → [`Dockerfile`]: a list of typed [`Instruction`]s, mirroring BuildKit's
//! `frontend/dockerfile/parser` (lines → nodes) and `instructions` (nodes → typed commands).
//!
//! # Lines
//!
//! - A UTF-8 byte-order mark on the first line is dropped.
//! - Parser directives (`# syntax=…`, `# escape=…`, `# check=…`, names case-insensitive,
//!   spaces around `=` allowed) are recognised only while every line so far was a directive:
//!   the first blank line, ordinary comment, unknown directive or instruction ends them. A
//!   directive given twice is an error; `escape` takes `\` or `` ` `` only.
//! - Leading whitespace is dropped; a line whose first non-blank character is `#` is a comment.
//! - A line whose last non-blank character is the escape character continues on the next
//!   line, unless that character is itself escaped. Inside a continuation, comment lines and
//!   blank lines are skipped (blank ones produce a [`Warning`], as Docker warns), and the
//!   whitespace at the start of continuation lines is kept.
//! - An instruction's line number is that of its first line.
//!
//! # Instructions
//!
//! The keyword is case-insensitive. Words starting with `--` right after it are flags
//! (`--name=value`, quotes and escapes removed, `--` alone ends them); the rest is parsed
//! per instruction ([`Command`] documents each form). `RUN`/`CMD`/`ENTRYPOINT`/`SHELL`/
//! `HEALTHCHECK CMD` and `ADD`/`COPY`/`VOLUME` take a JSON array of strings when their
//! arguments parse as one; anything else that does not parse as JSON is the shell form
//! (so `CMD [foo` runs `/bin/sh -c '[foo'`), but a JSON array holding a non-string is an
//! error.
//!
//! # Heredocs
//!
//! For `RUN`, `COPY` and `ADD` in shell form (also under `ONBUILD`), every word of the line
//! shaped like `[fd]<<[-]WORD` starts a heredoc; their bodies follow the instruction, in
//! order, each up to a line equal to its delimiter (after removing leading tabs with `<<-`).
//! Quoting any part of the delimiter (`<<"EOF"`, `<<'EOF'`, `<<E"O"F`) disables expansion
//! of the body. Bodies keep their line endings; [`Heredoc::text`] applies `<<-` tab stripping.

use std::collections::HashSet;
use std::fmt;

use crate::expand::{Lexer, NoEnv, DEFAULT_ESCAPE};
use crate::instruction::{self, Command};

/// A parse error, with the (1-based) line of the instruction or directive at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The first line of the offending instruction (0 only for an empty file).
    pub line: usize,
    /// Docker's wording of the problem, e.g. `unknown instruction: FRUM`.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        Self { line, message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dockerfile parse error on line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A parser directive found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// Its line.
    pub line: usize,
}

/// Something Docker accepts but warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The line the warning is about.
    pub line: usize,
    /// Docker's wording.
    pub message: String,
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor prefix (`3<<EOF` → 3), 0 when absent.
    pub fd: u32,
    /// Whether variables in the body are expanded (false when the delimiter was quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every body line.
    pub chomp: bool,
    /// The body as written, each line with its line ending.
    pub content: String,
}

impl Heredoc {
    /// The body with `<<-` tab stripping applied.
    pub fn text(&self) -> String {
        if self.chomp {
            chomp_heredoc(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// A flag as written after the keyword: `--name=value`, or `--name` without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without the leading `--`.
    pub name: String,
    /// The value after `=`, if there was a `=`.
    pub value: Option<String>,
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// The keyword as written (`run`, `Run` or `RUN`).
    pub keyword: String,
    /// The first line (1-based).
    pub line: usize,
    /// The last line, heredoc bodies included.
    pub end_line: usize,
    /// The instruction's text with continuations joined (no heredoc bodies).
    pub original: String,
    /// The flags, in order, as written.
    pub flags: Vec<Flag>,
    /// What the instruction says.
    pub command: Command,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The escape character in effect (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// The parser directives, in order.
    pub directives: Vec<Directive>,
    /// The instructions, in order.
    pub instructions: Vec<Instruction>,
    /// Accepted oddities (empty continuation lines).
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The value of a directive (`syntax`, `escape`, `check`), if given.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives.iter().find(|d| d.name.eq_ignore_ascii_case(name)).map(|d| d.value.as_str())
    }
}

/// Parses a Dockerfile.
///
/// Like Docker, the whole file is split into instructions first (so a broken heredoc is
/// reported before an unknown instruction above it), then each instruction is checked.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let (nodes, meta) = parse_nodes(text)?;
    let mut instructions = Vec::with_capacity(nodes.len());
    for node in &nodes {
        instructions.push(instruction::from_node(node).map_err(|m| ParseError::new(node.start_line, m))?);
    }
    Ok(Dockerfile { escape: meta.escape, directives: meta.directives, instructions, warnings: meta.warnings })
}

/// The parser's output for one instruction, before typing (BuildKit's `parser.Node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub keyword: String,
    pub flags: Vec<String>,
    pub args: Vec<String>,
    pub json: bool,
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    pub heredocs: Vec<Heredoc>,
    pub child: Option<Box<Node>>,
    pub escape: char,
}

struct Meta {
    escape: char,
    directives: Vec<Directive>,
    warnings: Vec<Warning>,
}

/// Go's `bufio.MaxScanTokenSize`: longer lines are refused.
const MAX_LINE: usize = 64 * 1024;

struct DirectiveParser {
    escape: char,
    done: bool,
    seen: HashSet<String>,
    found: Vec<Directive>,
}

impl DirectiveParser {
    /// Looks at one line (newline and leading space removed); true if it was a directive.
    fn feed(&mut self, line: &str, line_no: usize) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = line.strip_prefix('#').and_then(|rest| split_directive(rest.trim_start())) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if !self.seen.insert(name.clone()) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        if name == "escape" {
            self.escape = match value {
                "`" => '`',
                "\\" => '\\',
                _ => return Err(format!("invalid escape token '{value}' does not match ` or \\")),
            };
        }
        self.found.push(Directive { name, value: value.to_string(), line: line_no });
        Ok(true)
    }
}

/// Go's `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let name_len = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    let name = &s[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = s[name_len..].trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = value.trim_matches(is_re_space);
    (!value.is_empty() && !value.contains('\n')).then_some((name, value))
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing continuation escape; false if the line does not continue.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else { return (line, true) };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

fn chomp_heredoc(content: &str) -> String {
    content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

fn parse_nodes(text: &str) -> Result<(Vec<Node>, Meta), ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if let Some(i) = lines.iter().position(|l| l.len() > MAX_LINE) {
        return Err(ParseError::new(
            i + 1,
            format!("dockerfile line greater than max allowed size of {}", MAX_LINE - 1),
        ));
    }
    let mut directives =
        DirectiveParser { escape: DEFAULT_ESCAPE, done: false, seen: HashSet::new(), found: Vec::new() };
    let mut warnings = Vec::new();
    let mut nodes = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let start_line = next + 1;
        let first = trim_newline(lines[next]).trim_start();
        next += 1;
        directives.feed(first, start_line).map_err(|m| ParseError::new(start_line, m))?;
        let first = if is_comment(first) { "" } else { first };
        let (first, mut done) = trim_continuation(first, directives.escape);
        if done && first.is_empty() {
            continue;
        }
        let mut logical = first.to_string();
        let mut empty_continuation = false;
        while !done && next < lines.len() {
            let raw = lines[next];
            next += 1;
            directives.feed(trim_newline(raw), next).map_err(|m| ParseError::new(next, m))?;
            if is_comment(raw) {
                continue;
            }
            if trim_newline(raw).trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, end) = trim_continuation(trim_newline(raw), directives.escape);
            logical.push_str(part);
            done = end;
        }
        if empty_continuation {
            warnings.push(Warning { line: next, message: format!("Empty continuation line found in: {logical}") });
        }
        let mut node = node_from_line(&logical, directives.escape).map_err(|m| ParseError::new(start_line, m))?;
        if can_contain_heredoc(&node) && logical.contains("<<") {
            let docs = heredocs_from_line(&logical).map_err(|m| ParseError::new(start_line, m))?;
            for mut doc in docs {
                doc.content = read_heredoc_body(&lines, &mut next, &doc)
                    .ok_or_else(|| ParseError::new(start_line, "unterminated heredoc"))?;
                node.heredocs.push(doc);
            }
            if let Some(child) = node.child.as_mut() {
                child.heredocs = node.heredocs.clone();
            }
        }
        node.set_lines(start_line, next);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(ParseError::new(lines.len(), "file with no instructions"));
    }
    Ok((nodes, Meta { escape: directives.escape, directives: directives.found, warnings }))
}

fn read_heredoc_body(lines: &[&str], next: &mut usize, doc: &Heredoc) -> Option<String> {
    let mut body = String::new();
    while *next < lines.len() {
        let raw = lines[*next];
        *next += 1;
        let mut candidate = trim_newline(raw);
        if doc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == doc.name {
            return Some(body);
        }
        body.push_str(raw);
    }
    None
}

impl Node {
    fn set_lines(&mut self, start: usize, end: usize) {
        self.start_line = start;
        self.end_line = end;
        if let Some(child) = self.child.as_mut() {
            child.set_lines(start, end);
        }
    }
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.child {
        Some(child) if node.keyword.eq_ignore_ascii_case("onbuild") => child,
        _ => node,
    };
    ["add", "copy", "run"].iter().any(|k| node.keyword.eq_ignore_ascii_case(k)) && !node.json
}

/// Splits a logical line into keyword, flags and arguments (`newNodeFromLine`).
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_split_space) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_split_space)),
        None => (trimmed, ""),
    };
    let (rest, flags) = if rest.is_empty() { (String::new(), Vec::new()) } else { extract_flags(rest, escape) };
    let rest = rest.trim();
    let mut node = Node {
        keyword: keyword.to_string(),
        flags,
        args: Vec::new(),
        json: false,
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        heredocs: Vec::new(),
        child: None,
        escape,
    };
    dispatch_args(&mut node, rest)?;
    Ok(node)
}

/// The separator class of BuildKit's `reWhitespace`: `[\t\v\f\r ]`.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn dispatch_args(node: &mut Node, rest: &str) -> Result<(), String> {
    let escape = node.escape;
    match node.keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => (node.args, node.json) = maybe_json_list(rest)?,
        "cmd" | "entrypoint" | "run" | "shell" => (node.args, node.json) = maybe_json(rest)?,
        "arg" => node.args = parse_words(rest, escape),
        "env" => node.args = name_vals(rest, "ENV", escape)?,
        "label" => node.args = name_vals(rest, "LABEL", escape)?,
        "expose" | "from" => node.args = split_whitespace(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            node.args = if rest.is_empty() { vec![] } else { vec![rest.to_string()] }
        }
        "healthcheck" => (node.args, node.json) = health_args(rest)?,
        "onbuild" if !rest.is_empty() => {
            let child = node_from_line(rest, escape)?;
            node.args = std::iter::once(child.keyword.clone()).chain(child.args.iter().cloned()).collect();
            node.child = Some(Box::new(child));
        }
        _ => {}
    }
    Ok(())
}

/// Splits on runs of `[\t\v\f\r ]` like Go's `regexp.Split(rest, -1)`; nothing for "".
fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_sep = false;
    for c in rest.chars() {
        if is_split_space(c) {
            if !in_sep {
                out.push(std::mem::take(&mut current));
            }
            in_sep = true;
        } else {
            in_sep = false;
            current.push(c);
        }
    }
    out.push(current);
    out
}

const NOT_STRING_ARRAY: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// `Ok(Some(..))` for a JSON array of strings, `Ok(None)` for "not JSON", `Err` for a JSON
/// array holding something else.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else { return Ok(None) };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRING_ARRAY.to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((vec![], false));
    }
    Ok(match parse_json(rest)? {
        Some(args) => (args, true),
        None => (vec![rest.to_string()], false),
    })
}

fn maybe_json_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    Ok(match parse_json(rest)? {
        Some(args) => (args, true),
        None => (split_whitespace(rest), false),
    })
}

fn health_args(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((vec![], false));
    }
    let (typ, tail) = rest.split_at(sep);
    let (cmd, json) = maybe_json(tail.trim_start())?;
    Ok((std::iter::once(typ.to_string()).chain(cmd).collect(), json))
}

/// `ENV`/`LABEL` arguments as `[key, value, sep]` triples; `sep` is `""` for the legacy
/// `KEY value` form and `"="` otherwise.
fn name_vals(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else { return Ok(vec![]) };
    if !first.contains('=') {
        let Some(split) = rest.find(is_split_space) else {
            return Err(format!("{keyword} must have two arguments"));
        };
        let value = rest[split..].trim_start_matches(is_split_space);
        return Ok(vec![rest[..split].to_string(), value.to_string(), String::new()]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(word)));
        };
        out.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(out)
}

/// Go's `%q` for the characters Dockerfiles contain.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// Splits into words, keeping quotes and escapes (`parseWords`): for `ENV`, `LABEL`, `ARG`.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let ch = chars.get(i).copied();
        if phase == Phase::Spaces {
            match ch {
                None => break,
                Some(c) if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                Some(_) => phase = Phase::Word,
            }
        }
        let Some(mut c) = ch else {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        };
        let last = i + 1 == chars.len();
        if phase == Phase::Word {
            if c.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if c == '\'' || c == '"' {
                quote = c;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if c == escape {
                if last {
                    i += 1;
                    continue;
                }
                word.push(c);
                i += 1;
                c = chars[i];
            }
            word.push(c);
        } else {
            if c == quote {
                phase = Phase::Word;
            }
            if c == escape && quote != '\'' {
                if last {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                word.push(c);
                i += 1;
                c = chars[i];
            }
            word.push(c);
        }
        i += 1;
    }
    words
}

/// Takes the leading `--flag` words off `line` (`extractBuilderFlags`): the rest of the
/// line and the flags with quotes and escapes removed.
fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let rest_at = |i: usize| chars.get(i).map_or(String::new(), |&(b, _)| line[b..].to_string());
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let ch = chars.get(i).map(|&(_, c)| c);
        if phase == Phase::Spaces {
            match ch {
                None => break,
                Some(c) if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                Some('-') if chars.get(i + 1).map(|&(_, c)| c) == Some('-') => phase = Phase::Word,
                Some(_) => return (rest_at(i), words),
            }
        }
        let Some(mut c) = ch else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        let last = i + 1 == chars.len();
        if phase == Phase::Word {
            if c.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_at(i), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if c == '\'' || c == '"' {
                quote = c;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
        } else if c == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        if c == escape {
            if last {
                if phase == Phase::Quote {
                    phase = Phase::Word;
                }
                i += 1;
                continue;
            }
            i += 1;
            c = chars[i].1;
        }
        word.push(c);
        i += 1;
    }
    (String::new(), words)
}

/// Finds the heredocs a logical line opens (`heredocsFromLine`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer { raw_quotes: true, raw_escapes: true, skip_unset_env: true, ..Lexer::new(DEFAULT_ESCAPE) };
    let words = lexer.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Parses one word as a heredoc opener (`ParseHeredoc`): `[fd]<<[-]WORD`.
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    let digits = src.len() - src.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = src[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches(is_re_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = src[..digits].parse::<u32>().unwrap_or(0);
    let lexer = Lexer { skip_unset_env: true, ..Lexer::new(DEFAULT_ESCAPE) };
    let words = lexer.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    let [word] = words.as_slice() else { return Ok(None) };
    let raw = Lexer { raw_quotes: true, ..lexer }.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    let [raw_word] = raw.as_slice() else {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: word.clone(),
        fd,
        expand: quotes(word) == quotes(raw_word),
        chomp,
        content: String::new(),
    }))
}
