//! Parsing: lines, directives, continuations, flags, forms, heredocs, per-instruction checks.

use std::time::Duration;

use berth_dockerfile::instruction::{Command, Healthcheck, Network, Security};
use berth_dockerfile::parse;

fn commands(text: &str) -> Vec<Command> {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}")).instructions.into_iter().map(|i| i.command).collect()
}

fn second(text: &str) -> Command {
    commands(text).into_iter().nth(1).unwrap()
}

fn error(text: &str) -> String {
    parse(text).expect_err(text).to_string()
}

#[test]
fn errors_table() {
    let cases: &[(&str, &str)] = &[
        ("FROM a\nRUN x\nFRUM b\n", "dockerfile parse error on line 3: unknown instruction: FRUM"),
        ("FROM a\nfoo bar\n", "line 2: unknown instruction: foo"),
        ("", "file with no instructions"),
        ("# only\n\n# comments\n", "file with no instructions"),
        ("FROM a b\n", "FROM requires either one or three arguments"),
        ("FROM a AS 1st\n", "invalid name for build stage: \"1st\", name can't start with a number or contain symbols"),
        ("FROM a\nENV\n", "ENV requires at least one argument"),
        ("FROM a\nENV x\n", "ENV must have two arguments"),
        ("FROM a\nENV a=b c\n", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ("FROM a\nLABEL =x\n", "LABEL names can not be blank"),
        ("FROM a\nARG =x\n", "ARG names can not be blank"),
        ("FROM a\nARG\n", "ARG requires at least one argument"),
        ("FROM a\nCOPY x\n", "COPY requires at least two arguments, but only one was provided"),
        ("FROM a\nADD x\n", "ADD requires at least two arguments"),
        ("FROM a\nCOPY x <<EOF\nEOF\n", "COPY cannot accept a heredoc as a destination"),
        ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
        ("FROM a\nUSER\n", "USER requires exactly one argument"),
        ("FROM a\nEXPOSE\n", "EXPOSE requires at least one argument"),
        ("FROM a\nVOLUME [\"\"]\n", "VOLUME specified can not be an empty string"),
        ("FROM a\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON form"),
        ("FROM a\nSHELL []\n", "SHELL requires at least one argument"),
        ("FROM a\nCMD [\"a\", 1]\n", "when using JSON array syntax, arrays must be comprised of strings only"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD maintainer me\n", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD\n", "ONBUILD requires at least one argument"),
        ("FROM a\nONBUILD FOO x\n", "unknown instruction: FOO"),
        ("FROM a\nRUN <<EOF\nno end\n", "line 2: unterminated heredoc"),
        ("FROM --plat=x a\n", "unknown flag: --plat"),
        ("FROM a\nCOPY --from=a --from=b x y\n", "duplicate flag specified: --from"),
        ("FROM a\nCOPY --from x y\n", "missing a value on flag: --from"),
        ("FROM a\nCOPY --link=maybe x y\n", "expecting boolean value for flag --link, not: maybe"),
        ("FROM a\nCOPY --link= x y\n", "missing a value on flag: --link"),
        ("FROM a\nENV --x=1 a=b\n", "unknown flag: --x"),
        ("FROM a\nRUN --network=bridge x\n", "invalid network mode \"bridge\""),
        ("FROM a\nRUN --security=x y\n", "security \"x\" is not valid"),
        ("FROM a\nRUN --mount=from=$X,target=/x y\n", "'from' doesn't support variable expansion"),
        ("FROM a\nHEALTHCHECK\n", "HEALTHCHECK requires at least one argument"),
        ("FROM a\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nHEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD"),
        ("FROM a\nHEALTHCHECK FOO x\n", "Unknown type \"FOO\" in HEALTHCHECK (try CMD)"),
        ("FROM a\nHEALTHCHECK --interval=5 CMD x\n", "time: missing unit in duration \"5\""),
        ("FROM a\nHEALTHCHECK --interval=1us CMD x\n", "Interval \"interval\" cannot be less than 1ms"),
        ("FROM a\nHEALTHCHECK --timeout=1x CMD x\n", "time: unknown unit \"x\" in duration \"1x\""),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "--retries cannot be negative (-1)"),
        ("FROM a\nHEALTHCHECK --retries=x CMD x\n", "strconv.ParseInt: parsing \"x\": invalid syntax"),
        ("# escape=x\nFROM a\n", "line 1: invalid escape token 'x' does not match ` or \\"),
        ("# escape=`\n# escape=\\\nFROM a\n", "line 2: only one escape parser directive can be used"),
        ("FROM a\nRUN x \\\n  && y\nBAD z\n", "line 4: unknown instruction: BAD"),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(got.contains(want), "{text:?}: {got:?} lacks {want:?}");
    }
}

#[test]
fn error_line_is_first_line_of_instruction() {
    let e = parse("FROM a\n\nRUN a \\\n  b \\\n  c\nCOPY x\n").unwrap_err();
    assert_eq!(e.line, 6);
    let e = parse("FROM a\nENV a=b \\\n  c\n").unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "Syntax error - can't find = in \"c\". Must be of the form: name=value")
    );
}

#[test]
fn directives() {
    type Case<'a> = (&'a str, char, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n",
            '`',
            &[("syntax", "docker/dockerfile:1"), ("escape", "`")],
        ),
        ("#ESCAPE = `\nFROM a\n", '`', &[("escape", "`")]),
        ("  # escape=`\nFROM a\n", '`', &[("escape", "`")]),
        ("# check=skip=all\nFROM a\n", '\\', &[("check", "skip=all")]),
        ("# comment\n# escape=`\nFROM a\n", '\\', &[]),
        ("\n# escape=`\nFROM a\n", '\\', &[]),
        ("# unknown=1\n# escape=`\nFROM a\n", '\\', &[]),
        ("FROM a\n# escape=`\n", '\\', &[]),
        ("\u{feff}# escape=`\nFROM a\n", '`', &[("escape", "`")]),
    ];
    for (text, escape, want) in cases {
        let df = parse(text).unwrap();
        assert_eq!(df.escape, *escape, "{text:?}");
        let got: Vec<(&str, &str)> = df.directives.iter().map(|d| (d.name.as_str(), d.value.as_str())).collect();
        assert_eq!(got, *want, "{text:?}");
    }
}

#[test]
fn continuations_comments_and_lines() {
    let df =
        parse("# header\nFROM a\n\n  RUN one \\\n    two \\\n# inner comment\n\n    three\nRUN four \\\\\nRUN last \\")
            .unwrap();
    let got: Vec<(usize, &str)> = df.instructions.iter().map(|i| (i.line, i.original.as_str())).collect();
    assert_eq!(got, [(2, "FROM a"), (4, "RUN one     two     three"), (9, "RUN four \\\\"), (10, "RUN last ")]);
    assert_eq!(df.instructions[1].end_line, 8);
    assert_eq!(df.warnings.len(), 1);
    assert!(df.warnings[0].message.starts_with("Empty continuation line found in: RUN one"));
}

#[test]
fn windows_style_escape() {
    let df =
        parse("# escape=`\nFROM mcr.microsoft.com/windows\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n    /b\n").unwrap();
    let cmds: Vec<Command> = df.instructions.into_iter().map(|i| i.command).collect();
    let Command::Copy(copy) = &cmds[1] else { panic!() };
    assert_eq!(copy.files.dest, "c:\\");
    let Command::Run(run) = &cmds[2] else { panic!() };
    assert_eq!(run.cmd.args, ["dir c:\\     /b"]);
}

#[test]
fn keywords_are_case_insensitive() {
    let cmds = commands("from a as Build\nrUn x\nCopy a b\n");
    assert!(matches!(&cmds[0], Command::From(f) if f.name.as_deref() == Some("build")));
    assert!(matches!(cmds[1], Command::Run(_)));
    assert!(matches!(cmds[2], Command::Copy(_)));
}

#[test]
fn exec_and_shell_forms() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("RUN [\"echo\", \"hi there\"]", &["echo", "hi there"], false),
        ("RUN echo hi   there", &["echo hi   there"], true),
        ("RUN [\"unterminated\"", &["[\"unterminated\""], true),
        ("RUN ['single', 'quotes']", &["['single', 'quotes']"], true),
        ("RUN [\"a\"] trailing", &["[\"a\"] trailing"], true),
        ("RUN", &[], true),
        ("CMD []", &[], false),
        ("ENTRYPOINT [\"/bin/app\", \"--flag\"]", &["/bin/app", "--flag"], false),
    ];
    for (line, args, shell) in cases {
        let cmd = second(&format!("FROM a\n{line}\n"));
        let (Command::Run(berth_dockerfile::instruction::Run { cmd: c, .. })
        | Command::Cmd(c)
        | Command::Entrypoint(c)) = cmd
        else {
            panic!("{line}")
        };
        assert_eq!(c.args, *args, "{line}");
        assert_eq!(c.prepend_shell, *shell, "{line}");
    }
}

#[test]
fn env_and_label_forms() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str, bool)]);
    let cases: &[Case] = &[
        ("ENV a=b c=d", &[("a", "b", false), ("c", "d", false)]),
        ("ENV a b c", &[("a", "b c", true)]),
        ("ENV a=\"x y\" b='z w'", &[("a", "\"x y\"", false), ("b", "'z w'", false)]),
        ("ENV a=x\\ y", &[("a", "x\\ y", false)]),
        ("ENV a=", &[("a", "", false)]),
        ("LABEL \"com.example\"=\"v 1\" x=y", &[("\"com.example\"", "\"v 1\"", false), ("x", "y", false)]),
        ("LABEL legacy value with spaces", &[("legacy", "value with spaces", true)]),
    ];
    for (line, want) in cases {
        let (Command::Env(kvs) | Command::Label(kvs)) = second(&format!("FROM a\n{line}\n")) else { panic!("{line}") };
        let got: Vec<(&str, &str, bool)> = kvs.iter().map(|k| (k.key.as_str(), k.value.as_str(), k.legacy)).collect();
        assert_eq!(got.as_slice(), *want, "{line}");
    }
}

#[test]
fn arg_forms() {
    let Command::Arg(decls) = second("FROM a\nARG a b=1 c= \"d\"=\"x y\"\n") else { panic!() };
    let got: Vec<(&str, Option<&str>)> = decls.iter().map(|d| (d.name.as_str(), d.default.as_deref())).collect();
    assert_eq!(got, [("a", None), ("b", Some("1")), ("c", Some("")), ("\"d\"", Some("\"x y\""))]);
}

#[test]
fn from_forms() {
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("FROM alpine", "alpine", None, None),
        ("FROM alpine:3 AS Base", "alpine:3", Some("base"), None),
        ("FROM --platform=$BUILDPLATFORM golang as b-1.x", "golang", Some("b-1.x"), Some("$BUILDPLATFORM")),
        ("FROM ${IMG}:${TAG}", "${IMG}:${TAG}", None, None),
    ];
    for (line, image, name, platform) in cases {
        let Command::From(f) = commands(line).remove(0) else { panic!() };
        assert_eq!((f.image.as_str(), f.name.as_deref(), f.platform.as_deref()), (*image, *name, *platform), "{line}");
    }
}

#[test]
fn copy_and_add_flags() {
    let Command::Copy(c) = second(
        "FROM a\nCOPY --from=build --chown=1:2 --chmod=644 --link --parents --exclude=*.md --exclude=.git a b /dst/\n",
    ) else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!((c.chown.as_deref(), c.chmod.as_deref()), (Some("1:2"), Some("644")));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, ["*.md", ".git"]);
    assert_eq!((c.files.sources.as_slice(), c.files.dest.as_str()), (&["a".to_string(), "b".to_string()][..], "/dst/"));

    let Command::Add(a) =
        second("FROM a\nADD --checksum=sha256:abc --keep-git-dir=false --link=false --unpack https://x/y.tar /d\n")
    else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!((a.keep_git_dir, a.unpack, a.link), (Some(false), Some(true), false));

    let Command::Copy(j) = second("FROM a\nCOPY [\"a b\", \"/c d/\"]\n") else { panic!() };
    assert_eq!(
        (j.files.sources.as_slice(), j.files.dest.as_str(), j.files.json),
        (&["a b".to_string()][..], "/c d/", true)
    );
}

#[test]
fn flags_are_listed_as_written() {
    let df = parse("FROM a\nCOPY --from=\"x y\" --link -- --notaflag /d\n").unwrap();
    let ins = &df.instructions[1];
    let flags: Vec<(&str, Option<&str>)> = ins.flags.iter().map(|f| (f.name.as_str(), f.value.as_deref())).collect();
    assert_eq!(flags, [("from", Some("x y")), ("link", None)]);
    let Command::Copy(c) = &ins.command else { panic!() };
    assert_eq!(c.files.sources, ["--notaflag"]);
}

#[test]
fn ignored_flags_like_docker() {
    // Docker never checks the flags of ARG, STOPSIGNAL and HEALTHCHECK NONE.
    for line in ["ARG --bogus x", "STOPSIGNAL --bogus SIGTERM", "HEALTHCHECK --bogus NONE"] {
        parse(&format!("FROM a\n{line}\n")).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[test]
fn run_flags() {
    let Command::Run(run) = second(
        "FROM a\nRUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok --network=none --security=insecure make\n",
    ) else {
        panic!()
    };
    assert_eq!(run.mounts, ["type=cache,target=/root/.cache", "type=secret,id=tok"]);
    assert_eq!((run.network, run.security), (Network::None, Security::Insecure));
    assert_eq!(run.cmd.args, ["make"]);
}

#[test]
fn healthcheck_forms() {
    assert_eq!(second("FROM a\nHEALTHCHECK none\n"), Command::Healthcheck(Healthcheck::None));
    let Command::Healthcheck(Healthcheck::Cmd(h)) = second(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=0 --start-interval=250ms --retries=3 CMD curl -f http://x/ || exit 1\n",
    ) else {
        panic!()
    };
    assert_eq!(h.test, ["CMD-SHELL", "curl -f http://x/ || exit 1"]);
    assert_eq!(h.interval, Duration::from_secs(90));
    assert_eq!(h.timeout, Duration::from_millis(1500));
    assert_eq!(h.start_period, Duration::ZERO);
    assert_eq!(h.start_interval, Duration::from_millis(250));
    assert_eq!(h.retries, 3);
    let Command::Healthcheck(Healthcheck::Cmd(h)) = second("FROM a\nHEALTHCHECK CMD [\"/bin/check\", \"-q\"]\n") else {
        panic!()
    };
    assert_eq!(h.test, ["CMD", "/bin/check", "-q"]);
}

#[test]
fn simple_instructions() {
    let cases: &[(&str, Command)] = &[
        ("WORKDIR /a b", Command::Workdir("/a b".into())),
        ("USER app:app", Command::User("app:app".into())),
        ("STOPSIGNAL SIGKILL", Command::StopSignal("SIGKILL".into())),
        ("MAINTAINER Jane <j@x>", Command::Maintainer("Jane <j@x>".into())),
        ("EXPOSE 8080 443/tcp 80", Command::Expose(vec!["443/tcp".into(), "80".into(), "8080".into()])),
        ("VOLUME /a /b", Command::Volume(vec!["/a".into(), "/b".into()])),
        ("VOLUME [\"/c\", \"/d\"]", Command::Volume(vec!["/c".into(), "/d".into()])),
        ("SHELL [\"powershell\", \"-command\"]", Command::Shell(vec!["powershell".into(), "-command".into()])),
    ];
    for (line, want) in cases {
        assert_eq!(&second(&format!("FROM a\n{line}\n")), want, "{line}");
    }
}

#[test]
fn onbuild() {
    let Command::Onbuild(ob) = second("FROM a\nONBUILD COPY --chown=1 . /app\n") else { panic!() };
    assert_eq!(ob.expression, "COPY --chown=1 . /app");
    assert!(matches!(&ob.trigger.command, Command::Copy(c) if c.chown.as_deref() == Some("1")));
    let Command::Onbuild(ob) = second("FROM a\nonbuild RUN <<EOF\necho hi\nEOF\n") else { panic!() };
    assert_eq!(ob.expression, "RUN <<EOF\necho hi\nEOF");
}

#[test]
fn heredocs() {
    let Command::Run(run) = second("FROM a\nRUN <<EOF\necho $HOME\n  indented\nEOF\n") else { panic!() };
    let doc = &run.cmd.heredocs[0];
    assert_eq!(
        (doc.name.as_str(), doc.expand, doc.chomp, doc.content.as_str()),
        ("EOF", true, false, "echo $HOME\n  indented\n")
    );
    assert_eq!(run.cmd.args, ["<<EOF"]);

    let Command::Run(run) =
        second("FROM a\nRUN <<-'END' 3<<\"TWO\" cat /dev/fd/3\n\techo one\n\tEND\ntwo\nTWO\nRUN after\n")
    else {
        panic!()
    };
    let docs: Vec<(&str, u32, bool, bool, String)> =
        run.cmd.heredocs.iter().map(|d| (d.name.as_str(), d.fd, d.expand, d.chomp, d.text())).collect();
    assert_eq!(
        docs,
        [("END", 0, false, true, "echo one\n".to_string()), ("TWO", 3, false, false, "two\n".to_string())]
    );

    let df = parse("FROM a\nCOPY <<one <<-two /dst/\n1\none\n\t2\n\ttwo\nRUN x\n").unwrap();
    let Command::Copy(c) = &df.instructions[1].command else { panic!() };
    let contents: Vec<(&str, &str)> = c.files.contents.iter().map(|s| (s.path.as_str(), s.data.as_str())).collect();
    assert_eq!(contents, [("one", "1\n"), ("two", "2\n")]);
    assert_eq!((df.instructions[1].line, df.instructions[1].end_line, df.instructions[2].line), (2, 6, 7));

    let Command::Run(run) = second("FROM a\nRUN [\"echo\", \"<<EOF\"]\n") else { panic!() };
    assert!(run.cmd.heredocs.is_empty(), "no heredocs in exec form");
    assert!(error("FROM a\nRUN [\"echo\", \"<<EOF\"]\nEOF\n").contains("line 3: unknown instruction: EOF"));
    let Command::Run(run) = second("FROM a\nRUN echo E\"O\"F <<E\"O\"F\nbody\nEOF\n") else { panic!() };
    assert_eq!((run.cmd.heredocs[0].name.as_str(), run.cmd.heredocs[0].expand), ("EOF", false));
}

#[test]
fn crlf_and_bom() {
    let df = parse("\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n").unwrap();
    assert_eq!(df.instructions[1].original, "RUN x   y");
}
