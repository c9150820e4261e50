//! `--format`: the part of Go's text/template that Docker users write, over JSON values.
//!
//! Supported: literal text (with `\t` and `\n` escapes), `{{.}}`, `{{.A.B}}`, `{{json .X}}`,
//! `{{json .}}`, `{{index .Labels "k"}}`, `{{lower .X}}`, `{{upper .X}}`, `{{join .X ","}}`,
//! and the `table` prefix (a header row from the field names, columns aligned). Anything
//! else is refused with the action named, never printed wrong.

use serde_json::Value;

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Action(Vec<String>),
}

pub struct Template {
    parts: Vec<Part>,
    /// `table ...`: print a header and align columns.
    pub table: bool,
}

/// Split an action into words, keeping "quoted strings" whole (quotes removed).
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut had_quote = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                had_quote = true;
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() || had_quote {
                    out.push(std::mem::take(&mut cur));
                }
                had_quote = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("template: unterminated quoted string in {{{{{s}}}}}"));
    }
    if !cur.is_empty() || had_quote {
        out.push(cur);
    }
    Ok(out)
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let (table, body) = match src.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
            _ => (false, src),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let j = after.find("}}").ok_or_else(|| format!("template: unclosed action in {src:?}"))?;
            let inner = after[..j].trim().trim_start_matches('-').trim_end_matches('-').trim();
            let w = words(inner)?;
            let ok = match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [p] => p.starts_with('.'),
                ["json" | "lower" | "upper" | "title", p] => p.starts_with('.'),
                ["index", p, _] => p.starts_with('.'),
                ["join", p, _] => p.starts_with('.'),
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "template: unsupported action {{{{{inner}}}}} (supported: .Field, json, index, join, lower, upper)"
                ));
            }
            parts.push(Part::Action(w));
            rest = &after[j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts, table })
    }

    /// The header row of a `table` template: each field's name through `header`.
    pub fn header(&self, header: impl Fn(&str) -> String) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Action(w) => {
                    let field = w.iter().find(|x| x.starts_with('.')).map(|x| x.trim_start_matches('.')).unwrap_or("");
                    s.push_str(&header(field));
                }
            }
        }
        s
    }

    pub fn render(&self, v: &Value) -> Result<String, String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Action(w) => {
                    let path = w.iter().find(|x| x.starts_with('.')).map(String::as_str).unwrap_or(".");
                    let val = lookup(v, path)?;
                    match w[0].as_str() {
                        "json" => s.push_str(&serde_json::to_string(&val).unwrap_or_default()),
                        "lower" => s.push_str(&plain(&val).to_lowercase()),
                        "upper" => s.push_str(&plain(&val).to_uppercase()),
                        "title" => s.push_str(&plain(&val)),
                        "index" => {
                            let key = &w[2];
                            let x = match &val {
                                Value::Object(o) => o.get(key).cloned().unwrap_or(Value::Null),
                                Value::Array(a) => {
                                    key.parse::<usize>().ok().and_then(|i| a.get(i).cloned()).unwrap_or(Value::Null)
                                }
                                _ => Value::Null,
                            };
                            s.push_str(&plain(&x));
                        }
                        "join" => {
                            let items: Vec<String> =
                                val.as_array().map(|a| a.iter().map(plain).collect()).unwrap_or_default();
                            s.push_str(&items.join(&w[2]));
                        }
                        _ => s.push_str(&plain(&val)),
                    }
                }
            }
        }
        Ok(s)
    }
}

fn lookup(v: &Value, path: &str) -> Result<Value, String> {
    let mut cur = v.clone();
    for k in path.trim_start_matches('.').split('.').filter(|k| !k.is_empty()) {
        cur = match &cur {
            Value::Object(o) => match o.get(k) {
                Some(x) => x.clone(),
                None => return Err(format!("template: can't evaluate field {k}")),
            },
            Value::Null => Value::Null,
            _ => return Err(format!("template: can't evaluate field {k} in a non-object")),
        };
    }
    Ok(cur)
}

/// A value as Go's template prints it.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            format!("map[{}]", o.iter().map(|(k, v)| format!("{k}:{}", plain(v))).collect::<Vec<_>>().join(" "))
        }
    }
}

/// Align tab-separated rows (Docker's tabwriter: padding of 3 spaces), trailing spaces cut.
pub fn align(rows: &[String]) -> String {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let mut w: Vec<usize> = Vec::new();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                if w.len() <= i {
                    w.resize(i + 1, 0);
                }
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for r in &cells {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<width$}   ", width = w[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Print `items` with a `--format` value: `json` (one object per line), `table [template]`
/// (a header from `header`, columns aligned), or a template (one line per item).
pub fn print_formatted(format: &str, items: &[Value], header: Option<&dyn Fn(&str) -> String>) -> Result<(), String> {
    if format == "json" {
        for i in items {
            println!("{}", serde_json::to_string(i).unwrap_or_default());
        }
        return Ok(());
    }
    let t = Template::parse(format)?;
    let mut rows = Vec::new();
    if t.table {
        if let Some(h) = header {
            rows.push(t.header(h));
        }
    }
    for i in items {
        rows.push(t.render(i)?);
    }
    if t.table {
        print!("{}", align(&rows));
    } else {
        for r in rows {
            println!("{r}");
        }
    }
    Ok(())
}

/// JSON with Docker's 4-space indent.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    use serde::Serialize;
    let _ = v.serialize(&mut ser);
    String::from_utf8(buf).unwrap_or_default()
}

/// `inspect` output: a JSON array (Docker's 4-space indent), or each object through `--format`.
pub fn print_inspected(format: Option<&str>, found: Vec<Value>) -> Result<(), String> {
    match format {
        None | Some("json") => println!("{}", pretty(&Value::Array(found))),
        Some(f) => print_formatted(f, &found, None)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_json_index_join() {
        let v = json!({"Name": "a", "State": {"Status": "running"}, "Labels": {"k": "v"}, "L": ["x", "y"]});
        let t =
            Template::parse("{{.Name}} {{.State.Status}} {{json .Labels}} {{index .Labels \"k\"}} {{join .L \",\"}}")
                .unwrap();
        assert_eq!(t.render(&v).unwrap(), "a running {\"k\":\"v\"} v x,y");
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{.Name").is_err());
        let t = Template::parse("table {{.Name}}\\t{{.State.Status}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(|f| f.to_uppercase()), "NAME\tSTATE.STATUS");
        assert_eq!(align(&["A\tBB".into(), "CCC\tD".into()]), "A     BB\nCCC   D\n");
    }
}
