//! Stages, args, references and the build plan.

use std::collections::BTreeMap;

use berth_dockerfile::expand::Vars;
use berth_dockerfile::instruction::Command;
use berth_dockerfile::stages::{self, Base, PlanOptions, Platform, Source};
use berth_dockerfile::{parse, split_stages, BuildPlan};

fn amd64() -> Platform {
    Platform { os: "linux".into(), architecture: "amd64".into(), variant: String::new() }
}

fn opts(target: Option<&str>, args: &[(&str, &str)]) -> PlanOptions {
    PlanOptions {
        target: target.map(str::to_string),
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        build_platform: amd64(),
        target_platform: Platform { os: "linux".into(), architecture: "arm".into(), variant: "v7".into() },
    }
}

fn plan(text: &str, target: Option<&str>, args: &[(&str, &str)]) -> Result<BuildPlan, String> {
    let df = parse(text).map_err(|e| e.to_string())?;
    let st = split_stages(&df).map_err(|e| e.to_string())?;
    stages::plan(&st, &opts(target, args), df.escape).map_err(|e| e.to_string())
}

#[test]
fn split_and_errors() {
    let df = parse("ARG A=1\nARG B\nFROM x AS one\nRUN a\nFROM one\nRUN b\n").unwrap();
    let st = split_stages(&df).unwrap();
    let metas: Vec<&str> = st.meta_args.iter().map(|m| m.decl.name.as_str()).collect();
    assert_eq!(metas, ["A", "B"]);
    assert_eq!(st.stages.len(), 2);
    assert_eq!((st.stages[1].index, st.stages[1].line, st.stages[1].instructions.len()), (1, 5, 1));
    assert_eq!(st.stages[1].display_name(), "stage-1");

    let e = split_stages(&parse("ARG A\nRUN x\nFROM y\n").unwrap()).unwrap_err();
    assert_eq!(e.to_string(), "line 2: no build stage in current context");
    let e = split_stages(&parse("ARG A\n").unwrap()).unwrap_err();
    assert_eq!(e.to_string(), "dockerfile contains no stages to build");
}

#[test]
fn from_resolution() {
    let p = plan(
        "ARG TAG=3.19\nARG REG\nFROM alpine:$TAG AS Base\nFROM BASE AS two\nFROM scratch\nFROM ${REG:-docker.io}/lib/x:${TAG%.*}\nFROM later\nFROM x AS later\n",
        None,
        &[],
    )
    .unwrap();
    let bases: Vec<&Base> = p.stages.iter().map(|s| &s.base).collect();
    assert_eq!(
        bases,
        [
            &Base::Image("alpine:3.19".into()),
            &Base::Stage(0),
            &Base::Scratch,
            &Base::Image("docker.io/lib/x:3".into()),
            &Base::Image("later".into()),
            &Base::Image("x".into()),
        ]
    );
    assert_eq!(p.stages[3].from_args.iter().map(String::as_str).collect::<Vec<_>>(), ["REG", "TAG"]);
}

#[test]
fn build_args_override_meta_args() {
    let p = plan("ARG V=1\nARG W=$V-x\nFROM img:$W\n", None, &[("V", "9")]).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("img:9-x".into()));
    let p = plan("ARG V=1\nFROM img:$V\n", None, &[("V", "")]).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("img:".into()));
}

#[test]
fn predefined_platform_args() {
    let p = plan("FROM --platform=$BUILDPLATFORM golang AS build\nFROM img:$TARGETARCH$TARGETVARIANT\n", None, &[])
        .unwrap();
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(p.stages[1].base, Base::Image("img:armv7".into()));
    for (k, v) in [("TARGETPLATFORM", "linux/arm/v7"), ("BUILDOS", "linux"), ("TARGETSTAGE", "default")] {
        assert_eq!(berth_dockerfile::Env::get(&p.global_args, k), Some(v), "{k}");
    }
    assert!(plan("FROM --platform=$NOPE x\n", None, &[])
        .unwrap_err()
        .contains("empty platform value from expression $NOPE"));
    assert!(plan("FROM $NOPE\n", None, &[]).unwrap_err().contains("base name ($NOPE) should not be blank"));
}

#[test]
fn copy_from_sources() {
    let p = plan(
        "FROM a AS build\nFROM b\nCOPY --from=BUILD /x /x\nCOPY --from=0 /y /y\nCOPY --from=nginx:latest /z /z\nCOPY --from=later /w /w\nRUN --mount=from=build,target=/m --mount=type=cache,target=/c true\nFROM c AS later\n",
        Some("stage-1"),
        &[],
    );
    assert!(p.unwrap_err().contains("target stage \"stage-1\" could not be found"));
    let p = plan(
        "FROM a AS build\nFROM b AS app\nCOPY --from=BUILD /x /x\nCOPY --from=0 /y /y\nCOPY --from=nginx:latest /z /z\nCOPY --from=later /w /w\nRUN --mount=from=build,target=/m --mount=type=cache,target=/c true\nFROM c AS later\n",
        Some("APP"),
        &[],
    )
    .unwrap();
    let deps: Vec<(&Source, usize)> = p.stages[1].dependencies.iter().map(|d| (&d.source, d.line)).collect();
    assert_eq!(
        deps,
        [
            (&Source::Stage(0), 3),
            (&Source::Stage(0), 4),
            (&Source::Image("nginx:latest".into()), 5),
            (&Source::Stage(2), 6),
            (&Source::Stage(0), 7),
        ]
    );
    assert_eq!(p.target, 1);
    assert_eq!(p.order, [0, 2, 1]);
}

#[test]
fn reference_errors() {
    let cases: &[(&str, &str)] = &[
        ("FROM a AS s0\nCOPY --from=s0 /a /b\n", "line 2: circular dependency detected on stage: s0"),
        ("FROM a\nCOPY --from=0 /a /b\n", "circular dependency detected on stage: stage-0"),
        (
            "FROM a AS s0\nCOPY --from=s2 f /\nFROM a AS s1\nCOPY --from=s0 f /\nFROM a AS s2\nCOPY --from=s1 f /\n",
            "line 2: circular dependency detected on stage: s0",
        ),
        ("FROM a\nFROM b\nCOPY --from=5 /a /b\n", "line 3: invalid stage index 5"),
        ("FROM a\nCOPY --from=-1 /a /b\n", "invalid stage index -1"),
        ("ARG S=x\nFROM a\nCOPY --from=$S /a /b\n", "variable expansion is not supported for --from"),
    ];
    for (text, want) in cases {
        let got = plan(text, None, &[]).unwrap_err();
        assert!(got.contains(want), "{text:?}: {got:?} lacks {want:?}");
    }
}

#[test]
fn target_closure_and_order() {
    let text = "FROM a AS base\nFROM base AS deps\nFROM a AS tools\nFROM base AS test\nCOPY --from=deps / /\nFROM base AS final\nCOPY --from=tools / /\nCOPY --from=deps / /\n";
    let cases: &[(Option<&str>, usize, &[usize])] =
        &[(None, 4, &[0, 1, 2, 4]), (Some("test"), 3, &[0, 1, 3]), (Some("base"), 0, &[0]), (Some("TOOLS"), 2, &[2])];
    for (target, index, order) in cases {
        let p = plan(text, *target, &[]).unwrap();
        assert_eq!((p.target, p.order.as_slice()), (*index, *order), "{target:?}");
    }
    let p = plan("FROM a AS one\nCOPY --from=two / /\nFROM b AS two\n", Some("one"), &[]).unwrap();
    assert_eq!(p.order, [1, 0], "forward references build the source first");
}

fn walk(text: &str, base_env: &[(&str, &str)], build_args: &[(&str, &str)]) -> Vec<stages::Step> {
    let df = parse(text).unwrap();
    let st = split_stages(&df).unwrap();
    let args: BTreeMap<String, String> = build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let predefined = stages::predefined_args(&amd64(), &amd64(), None, &args);
    let global = stages::global_args(&st, &predefined, &args, df.escape).unwrap();
    let base: Vars = base_env.iter().copied().collect();
    stages::walk_stage(st.stages.last().unwrap(), &base, &global, &args, df.escape).unwrap()
}

fn workdir_of(step: &stages::Step) -> &str {
    match &step.instruction.command {
        Command::Workdir(w) => w,
        other => panic!("{other:?}"),
    }
}

#[test]
fn arg_scoping() {
    // A global arg is invisible in a stage until redeclared.
    let steps = walk("ARG V=global\nFROM a\nWORKDIR /$V\nARG V\nWORKDIR /$V\n", &[], &[]);
    assert_eq!((workdir_of(&steps[0]), workdir_of(&steps[2])), ("/", "/global"));
    // A build arg beats the default; a default beats the global value.
    let steps = walk("ARG V=global\nFROM a\nARG V=local\nWORKDIR /$V\n", &[], &[]);
    assert_eq!(workdir_of(&steps[1]), "/local");
    let steps = walk("ARG V=global\nFROM a\nARG V=local\nWORKDIR /$V\n", &[], &[("V", "cli")]);
    assert_eq!(workdir_of(&steps[1]), "/cli");
    // An undeclared build arg is not visible; predefined ones need ARG in a stage too.
    let steps = walk("FROM a\nWORKDIR /$X/$TARGETARCH\nARG TARGETARCH\nWORKDIR /$TARGETARCH\n", &[], &[("X", "1")]);
    assert_eq!((workdir_of(&steps[0]), workdir_of(&steps[2])), ("//", "/amd64"));
    // ARG defaults see earlier ENV; base image env is visible.
    let steps = walk("FROM a\nENV E=e\nARG A=$E-$PATH\nWORKDIR /$A\n", &[("PATH", "/bin")], &[]);
    assert_eq!(workdir_of(&steps[2]), "/e-/bin");
}

#[test]
fn env_same_line_and_later_lines() {
    let steps = walk("FROM a\nENV a=1\nENV a=2 b=$a\nWORKDIR /$a/$b\n", &[], &[]);
    assert_eq!(workdir_of(&steps[2]), "/2/1");
    assert_eq!(berth_dockerfile::Env::get(&steps[2].vars, "b"), Some("1"));
}

#[test]
fn proxy_args_need_no_declaration() {
    let args: BTreeMap<String, String> = [("HTTP_PROXY", "http://p:3128"), ("no_proxy", "local"), ("OTHER", "x")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    let proxies = stages::proxy_args(&args);
    let got: Vec<(&str, &str)> = proxies.iter().collect();
    assert_eq!(got, [("HTTP_PROXY", "http://p:3128"), ("no_proxy", "local")]);
}
