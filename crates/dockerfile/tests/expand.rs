//! The shell word lexer and instruction expansion.

use std::collections::BTreeSet;

use berth_dockerfile::expand::{expand_heredoc, referenced_vars, Lexer, Vars};
use berth_dockerfile::instruction::Command;
use berth_dockerfile::{expand_instruction, parse, referenced_by};

fn env() -> Vars {
    [("HOME", "/root"), ("EMPTY", ""), ("SP", "a  b"), ("FILE", "archive.tar.gz"), ("P", "x/y/z")].into_iter().collect()
}

/// (word, expected result or "ERR:" + message fragment)
const WORDS: &[(&str, &str)] = &[
    ("plain", "plain"),
    ("$HOME", "/root"),
    ("${HOME}", "/root"),
    ("pre${HOME}post", "pre/rootpost"),
    ("$HOME.x", "/root.x"),
    ("$UNSET", ""),
    ("a$", "a$"),
    ("$.", "$."),
    ("$1x", "x"),
    ("\\$HOME", "$HOME"),
    ("\\\\$HOME", "\\/root"),
    ("'$HOME'", "$HOME"),
    ("\"$HOME\"", "/root"),
    ("\"\\$HOME\"", "$HOME"),
    ("'a\\b'", "a\\b"),
    ("\"a\\b\"", "a\\b"),
    ("a\\b", "ab"),
    ("end\\", "end"),
    ("x'y'z", "xyz"),
    ("\"it's\"", "it's"),
    ("${UNSET:-def}", "def"),
    ("${EMPTY:-def}", "def"),
    ("${EMPTY-def}", ""),
    ("${UNSET-def}", "def"),
    ("${HOME:-def}", "/root"),
    ("${UNSET:+alt}", ""),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${HOME:+alt}", "alt"),
    ("${UNSET:-${HOME}}", "/root"),
    ("${UNSET:-${ALSO:-deep}}", "deep"),
    ("${UNSET:-\"quoted  word\"}", "quoted  word"),
    ("${UNSET:-\\$HOME}", "$HOME"),
    ("${HOME:?}", "/root"),
    ("${EMPTY?}", ""),
    ("${UNSET?}", "ERR:UNSET: is not allowed to be unset"),
    ("${EMPTY:?}", "ERR:EMPTY: is not allowed to be empty"),
    ("${UNSET:?custom $HOME}", "ERR:UNSET: custom /root"),
    ("${FILE#*.}", "tar.gz"),
    ("${FILE##*.}", "gz"),
    ("${FILE%.*}", "archive.tar"),
    ("${FILE%%.*}", "archive"),
    ("${P#x/}", "y/z"),
    ("${P/\\//-}", "x-y/z"),
    ("${P//\\//-}", "x-y-z"),
    ("${P/y/}", "x//z"),
    ("${FILE/a?/_}", "_chive.tar.gz"),
    ("${FILE//a*/_}", "_"),
    ("${UNSET//a/b}", ""),
    ("${FILE:#x}", "ERR:unsupported modifier (:#) in substitution"),
    ("${HOME", "ERR:unsupported modifier (\u{fffd}) in substitution"),
    ("${HOME:-x", "ERR:syntax error: missing '}'"),
    ("${}", "ERR:syntax error: bad substitution"),
    ("${:-x}", "ERR:syntax error: bad substitution"),
    ("${HOME:=x}", "ERR:unsupported modifier (:=) in substitution"),
    ("${HOME^}", "ERR:unsupported modifier (^) in substitution"),
    ("'open", "ERR:matching single-quote"),
    ("\"open", "ERR:matching double-quote"),
    ("${a}}", "}"),
    ("안녕$HOME", "안녕/root"),
];

#[test]
fn process_word_table() {
    let lexer = Lexer::new('\\');
    for (word, want) in WORDS {
        let got = lexer.process_word(word, &env());
        match want.strip_prefix("ERR:") {
            Some(fragment) => {
                let err = got.expect_err(word).to_string();
                assert!(err.contains(fragment), "{word:?}: error {err:?} lacks {fragment:?}");
            }
            None => assert_eq!(got.as_deref(), Ok(*want), "{word:?}"),
        }
    }
}

#[test]
fn process_words_table() {
    let cases: &[(&str, &[&str])] = &[
        ("a b  c", &["a", "b", "c"]),
        ("$SP", &["a", "b"]),
        ("\"$SP\"", &["a  b"]),
        ("x${SP}y", &["xa", "by"]),
        ("a\\ b", &["a b"]),
        ("\"\"", &[]),
        ("'' x", &["x"]),
        ("$UNSET", &[]),
        ("80/tcp 443", &["80/tcp", "443"]),
    ];
    let lexer = Lexer::new('\\');
    for (word, want) in cases {
        assert_eq!(lexer.process_words(word, &env()).unwrap(), *want, "{word:?}");
    }
}

#[test]
fn backtick_escape() {
    let lexer = Lexer::new('`');
    let cases = [("c:\\dir\\$HOME", "c:\\dir\\/root"), ("`$HOME", "$HOME"), ("a` b", "a b"), ("\"q`\"q\"", "q\"q")];
    for (word, want) in cases {
        assert_eq!(lexer.process_word(word, &env()).unwrap(), want, "{word:?}");
    }
}

#[test]
fn skip_unset_and_raw_quotes() {
    let lexer = Lexer { skip_unset_env: true, ..Lexer::new('\\') };
    assert_eq!(lexer.process_word("$HOME $NOPE ${NOPE} ${NOPE:-d}", &env()).unwrap(), "/root $NOPE ${NOPE} ${NOPE:-d}");
    let raw = Lexer { raw_quotes: true, ..Lexer::new('\\') };
    assert_eq!(raw.process_word("'a' \"$HOME\"", &env()).unwrap(), "'a' \"/root\"");
}

#[test]
fn matched_and_unmatched() {
    let e = Lexer::new('\\').process("$HOME ${NOPE:-$EMPTY} '$QUOTED'", &env()).unwrap();
    assert_eq!(e.matched, BTreeSet::from(["HOME".to_string(), "EMPTY".to_string()]));
    assert_eq!(e.unmatched, BTreeSet::from(["NOPE".to_string()]));
}

#[test]
fn referenced_vars_table() {
    let cases: &[(&str, &[&str])] = &[
        ("$a ${b}", &["a", "b"]),
        ("${a:-${b:-$c}}", &["a", "b", "c"]),
        ("${a:?oops}", &["a"]),
        ("'$no' \\$no \"$yes\"", &["yes"]),
        ("${a#$b}", &["a", "b"]),
        ("plain", &[]),
    ];
    for (word, want) in cases {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(referenced_vars(word, '\\'), want, "{word:?}");
    }
}

#[test]
fn heredoc_body_keeps_quotes() {
    assert_eq!(expand_heredoc("echo '$HOME' \"$HOME\"\n", &env()).unwrap(), "echo '/root' \"/root\"\n");
}

fn first_after_from(text: &str) -> berth_dockerfile::Instruction {
    parse(text).unwrap().instructions.into_iter().nth(1).unwrap()
}

#[test]
fn env_line_uses_old_values() {
    let ins = first_after_from("FROM x\nENV a=1 b=$a c=${a:-none}\n");
    let vars: Vars = [("a", "0")].into_iter().collect();
    let Command::Env(kvs) = expand_instruction(&ins, &vars, '\\').unwrap().command else { panic!() };
    let got: Vec<(&str, &str)> = kvs.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())).collect();
    assert_eq!(got, [("a", "1"), ("b", "0"), ("c", "0")]);
}

#[test]
fn expansion_per_instruction() {
    let vars: Vars = [("V", "val"), ("PORTS", "80 443"), ("U", "app")].into_iter().collect();
    let cases: &[(&str, &str)] = &[
        ("WORKDIR /src/$V", "Workdir(\"/src/val\")"),
        ("USER ${U}:${U}", "User(\"app:app\")"),
        ("STOPSIGNAL SIG$V", "StopSignal(\"SIGval\")"),
        ("VOLUME /a/$V \"/b\"", "Volume([\"/a/val\", \"/b\"])"),
        ("VOLUME [\"/j/$V\"]", "Volume([\"/j/val\"])"),
        ("EXPOSE $PORTS 22", "Expose([\"80\", \"443\", \"22\"])"),
        ("LABEL \"k$V\"=\"v $V\"", "k: \"kval\", value: \"v val\""),
        ("RUN echo $V", "args: [\"echo $V\"]"),
        ("CMD echo $V", "args: [\"echo $V\"]"),
        ("ONBUILD RUN echo $V", "expression: \"RUN echo $V\""),
    ];
    for (line, want) in cases {
        let ins = first_after_from(&format!("FROM x\n{line}\n"));
        let got = format!("{:?}", expand_instruction(&ins, &vars, '\\').unwrap().command);
        let want = want.replace("k: ", "key: ");
        assert!(got.contains(&want), "{line}: {got} lacks {want}");
    }
}

#[test]
fn copy_expansion_keeps_from_and_drops_empty_chown() {
    let ins = first_after_from("FROM x\nCOPY --from=build --chown=$NONE --chmod=$M src/$V $D/\n");
    let vars: Vars = [("V", "v"), ("D", "/dst"), ("M", "755")].into_iter().collect();
    let Command::Copy(copy) = expand_instruction(&ins, &vars, '\\').unwrap().command else { panic!() };
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown, None);
    assert_eq!(copy.chmod.as_deref(), Some("755"));
    assert_eq!(copy.files.sources, ["src/v"]);
    assert_eq!(copy.files.dest, "/dst/");
}

#[test]
fn copy_heredoc_expansion_depends_on_quoting() {
    let vars: Vars = [("V", "val")].into_iter().collect();
    for (delim, want) in [("EOF", "x=val\n"), ("\"EOF\"", "x=$V\n"), ("'EOF'", "x=$V\n")] {
        let ins = first_after_from(&format!("FROM x\nCOPY <<{delim} /f\nx=$V\nEOF\n"));
        let Command::Copy(copy) = expand_instruction(&ins, &vars, '\\').unwrap().command else { panic!() };
        assert_eq!(copy.files.contents[0].data, want, "{delim}");
    }
}

#[test]
fn referenced_by_instruction() {
    let cases: &[(&str, &[&str])] = &[
        ("COPY --chown=$U src/$A ${B:-x} /d/$C", &["A", "B", "C", "U"]),
        ("ENV k=$A k2=\"$B\"", &["A", "B"]),
        ("RUN --mount=type=cache,id=$ID,target=/c echo $NOT", &["ID"]),
        ("CMD echo $NOT", &[]),
        ("EXPOSE $P", &["P"]),
        ("ARG x=$A", &["A"]),
    ];
    for (line, want) in cases {
        let ins = first_after_from(&format!("FROM x\n{line}\n"));
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(referenced_by(&ins, '\\'), want, "{line}");
    }
}
