//! `RUN --mount` specs and Go durations.

use berth_dockerfile::instruction::parse_go_duration;
use berth_dockerfile::mount::{mount_from, parse_mount, MountType, Sharing};

fn plain(v: &str) -> Result<String, String> {
    Ok(v.to_string())
}

#[test]
fn mounts() {
    let m = parse_mount("type=cache,target=/root/.cache,id=go,sharing=locked,mode=0750,uid=1000", plain).unwrap();
    assert_eq!(
        (m.mount_type, m.target.as_deref(), m.id.as_deref()),
        (MountType::Cache, Some("/root/.cache"), Some("go"))
    );
    assert_eq!((m.sharing, m.mode, m.uid, m.read_only), (Some(Sharing::Locked), Some(0o750), Some(1000), false));

    let m = parse_mount("source=src,target=/src", plain).unwrap();
    assert_eq!((m.mount_type, m.read_only), (MountType::Bind, true));
    let m = parse_mount("type=bind,from=build,src=/out,dst=/in,rw", plain).unwrap();
    assert_eq!((m.from.as_deref(), m.read_only), (Some("build"), false));
    let m = parse_mount("type=tmpfs,target=/t,size=64m", plain).unwrap();
    assert_eq!(m.size_limit, Some(64 << 20));
    let m = parse_mount("type=secret,id=tok,env=TOKEN,required", plain).unwrap();
    assert!(m.required && m.read_only);
    let m = parse_mount("\"target=/a,b\",type=cache", plain).unwrap();
    assert_eq!(m.target.as_deref(), Some("/a,b"));

    let expand = |v: &str| Ok(v.replace("$ID", "expanded"));
    assert_eq!(parse_mount("type=cache,id=$ID,target=/c", expand).unwrap().id.as_deref(), Some("expanded"));

    let errors = [
        ("type=nfs", "unsupported mount type \"nfs\""),
        ("type=bind,mode=0700", "mode not allowed for \"bind\" type mounts"),
        ("type=secret", "invalid secret mount. one of source, target required"),
        ("type=secret,id=a,from=b", "secret mount should not have a from"),
        ("type=bind,required", "unexpected key 'required' for mount type 'bind'"),
        ("type=bind,sharing=shared", "invalid cache sharing set for bind mount"),
        ("type=cache,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("type=cache,ro=maybe", "invalid value for ro: maybe"),
        ("noequals", "invalid field 'noequals' must be a key=value pair"),
        ("type=cache,uid=x", "invalid value x for uid"),
        ("a\"b=c", "bare \" in non-quoted-field"),
    ];
    for (spec, want) in errors {
        let got = parse_mount(spec, plain).unwrap_err();
        assert!(got.contains(want), "{spec}: {got:?} lacks {want:?}");
    }
    assert_eq!(mount_from("type=bind,FROM=build,target=/x").as_deref(), Some("build"));
    assert_eq!(mount_from("type=cache,target=/x"), None);
}

#[test]
fn go_durations() {
    let ok: &[(&str, i128)] = &[
        ("0", 0),
        ("1s", 1_000_000_000),
        ("1.5s", 1_500_000_000),
        (".5ms", 500_000),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        ("2µs", 2_000),
        ("-3m", -180_000_000_000),
        ("+1ns", 1),
    ];
    for (text, nanos) in ok {
        assert_eq!(parse_go_duration(text), Ok(*nanos), "{text}");
    }
    for (text, want) in [
        ("", "time: invalid duration \"\""),
        ("1", "time: missing unit in duration \"1\""),
        ("1d", "time: unknown unit \"d\" in duration \"1d\""),
        (".s", "time: invalid duration \".s\""),
        ("s", "time: invalid duration \"s\""),
    ] {
        assert_eq!(parse_go_duration(text).unwrap_err(), want, "{text:?}");
    }
}
