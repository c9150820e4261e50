#!/usr/bin/env python3
"""docker-py against an engine's Docker API socket: each check asserts a real outcome.

Usage: python3 tests/compat/dockerpy_engine.py SOCKET_PATH

Needs the docker SDK (`pip install docker`) and an image `bb:1` on the engine: a busybox rootfs
(bin/busybox with sh, echo, cat, sleep, ls, id, true, wc, env, grep; etc/passwd, etc/group),
e.g. `berth import bb.tar bb:1` or `docker import bb.tar bb:1`.

Prints one line per check, "ok: NAME" or "FAIL: NAME: why", runs every check that can run
(a check whose precondition failed is reported as FAIL with "skipped"), removes what it made,
and exits 1 if any check failed. Each check has a time limit, so a hung call is a FAIL, not a hang.
"""

import sys
import threading
import time
import traceback

import docker
import docker.errors

IMAGE = "bb:1"
NAME = "py1"
VOLUME = "pyvol"
CALL_TIMEOUT = 30  # seconds, per check

results = []  # (name, ok, detail)


def check(name, fn, timeout=CALL_TIMEOUT):
    """Run fn() in a daemon thread; a False/raising/hung fn is a FAIL. Returns fn's value or None."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except AssertionError as e:
            box["error"] = f"assertion: {e}"
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            box["error"] = f"{type(e).__name__}: {e}"
            box["tb"] = traceback.format_exc(limit=3)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        ok, detail = False, f"timed out after {timeout}s"
    elif "error" in box:
        ok, detail = False, box["error"]
    else:
        ok, detail = True, ""
    results.append((name, ok, detail))
    print(f"ok: {name}" if ok else f"FAIL: {name}: {detail}", flush=True)
    return box.get("value") if ok else None


def skip(name, why):
    results.append((name, False, f"skipped: {why}"))
    print(f"FAIL: {name}: skipped: {why}", flush=True)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def raises(fn, exc_type, status=None):
    """Assert fn() raises exc_type (and, if given, with that HTTP status); return the exception."""
    try:
        fn()
    except exc_type as e:
        if status is not None:
            code = getattr(e, "status_code", None)
            expect(code == status, f"{type(e).__name__} with status {code}, want {status}: {e}")
        return e
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"raised {type(e).__name__} ({e}), want {exc_type.__name__}") from e
    raise AssertionError(f"no exception, want {exc_type.__name__}")


def force_remove_container(client, name_or_id):
    try:
        client.api.remove_container(name_or_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except Exception:  # noqa: BLE001
        pass


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    sock = sys.argv[1]
    print(f"docker-py {docker.__version__} against unix://{sock}", flush=True)

    client = check("DockerClient(unix://...) connects (API version negotiated)",
                   lambda: docker.DockerClient(base_url="unix://" + sock, timeout=CALL_TIMEOUT))
    if client is None:
        skip("all further checks", "no client")
        return finish()

    # Leftovers of an earlier run.
    force_remove_container(client, NAME)
    for v in (VOLUME,):
        try:
            client.api.remove_volume(v, force=True)
        except Exception:  # noqa: BLE001
            pass
    before = set()
    try:
        before = {c["Id"] for c in client.api.containers(all=True)}
    except Exception:  # noqa: BLE001
        pass

    # --- system ---------------------------------------------------------------------------
    def ping():
        expect(client.ping() is True, "ping() is not True")
    check("ping()", ping)

    def version():
        v = client.version()
        api = v.get("ApiVersion")
        expect(isinstance(api, str) and api.count(".") == 1 and api.replace(".", "").isdigit(),
               f"ApiVersion {api!r}")
        expect(tuple(int(x) for x in api.split(".")) >= (1, 24), f"ApiVersion {api} < 1.24")
        return api
    api = check("version()['ApiVersion']", version)
    if api:
        print(f"   server ApiVersion {api}; client uses {client.api.api_version}", flush=True)

    # --- run in the foreground ------------------------------------------------------------
    def run_fg():
        out = client.containers.run(IMAGE, ["sh", "-c", "echo hello; echo err >&2"], remove=True)
        expect(out == b"hello\n", f"returned {out!r}, want b'hello\\n'")
    check("containers.run(..., remove=True) returns stdout only", run_fg)

    def run_fg_fail():
        e = raises(lambda: client.containers.run(IMAGE, ["sh", "-c", "echo oops >&2; exit 4"],
                                                 remove=True),
                   docker.errors.ContainerError)
        expect(e.exit_status == 4, f"exit_status {e.exit_status}, want 4")
        expect(e.stderr == b"oops\n", f"stderr {e.stderr!r}, want b'oops\\n'")
    check("containers.run(exit 4) raises ContainerError with exit 4 and stderr", run_fg_fail)

    # --- detached container -----------------------------------------------------------------
    loop = ["sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"]

    def run_bg():
        return client.containers.run(IMAGE, detach=True, name=NAME, command=loop,
                                     environment={"A": "b"}, labels={"k": "v"})
    c = check("containers.run(detach=True, name, environment, labels)", run_bg)

    if c is not None:
        def reload():
            c.reload()
            expect(c.status == "running", f"status {c.status!r}")
            expect(c.name == NAME, f"name {c.name!r}")
            expect(c.labels.get("k") == "v", f"labels {c.labels!r}")
            expect("A=b" in (c.attrs["Config"].get("Env") or []),
                   f"Config.Env {c.attrs['Config'].get('Env')!r}")
        check("reload(): status running, name, labels, Config.Env", reload)

        def list_label():
            ids = [x.id for x in client.containers.list(filters={"label": "k=v"})]
            expect(c.id in ids, f"{c.id[:12]} not in {ids}")
            ids = [x.id for x in client.containers.list(filters={"label": "k=other"})]
            expect(c.id not in ids, "k=other also lists it")
        check("containers.list(filters={'label': 'k=v'})", list_label)

        def get_by_name():
            expect(client.containers.get(NAME).id == c.id, "get(name) is another container")
        check("containers.get(name)", get_by_name)

        time.sleep(1.2)  # a few log lines

        def exec_exit():
            r = c.exec_run("sh -c 'echo $A; exit 3'")
            expect(r.exit_code == 3, f"exit_code {r.exit_code!r}, want 3")
            expect(r.output == b"b\n", f"output {r.output!r}, want b'b\\n'")
        check("exec_run(\"sh -c 'echo $A; exit 3'\") -> 3, b'b\\n'", exec_exit)

        def exec_demux():
            r = c.exec_run(["cat", "/etc/hostname"], demux=True)
            expect(r.exit_code == 0, f"exit_code {r.exit_code!r}")
            expect(isinstance(r.output, tuple) and len(r.output) == 2, f"output {r.output!r}")
            out, err = r.output
            expect(out == (c.id[:12] + "\n").encode(), f"stdout {out!r}, want {c.id[:12]!r}+'\\n'")
            expect(err is None, f"stderr {err!r}, want None")
        check("exec_run(['cat','/etc/hostname'], demux=True) -> (id[:12]\\n, None)", exec_demux)

        def exec_missing():
            r = c.exec_run("nosuchcmd")
            expect(r.exit_code in (126, 127), f"exit_code {r.exit_code!r}, output {r.output!r}")
        check("exec_run('nosuchcmd') exit_code 126/127", exec_missing)

        def logs_tail():
            out = c.logs(tail=2)
            lines = out.splitlines()
            expect(len(lines) == 2 and all(x.startswith(b"line") for x in lines), f"logs {out!r}")
        check("logs(tail=2) gives 2 lines", logs_tail)

        def logs_follow():
            gen = c.logs(stream=True, follow=True)
            buf = b""
            for chunk in gen:
                buf += chunk
                if buf.count(b"\n") >= 8:
                    break
            gen.close()
            lines = buf.splitlines()[:8]
            expect(len(lines) == 8, f"only {buf!r}")
            expect(all(x.startswith(b"line") for x in lines), f"lines {lines!r}")
            nums = [int(x[4:]) for x in lines]
            expect(nums == list(range(nums[0], nums[0] + 8)), f"not consecutive: {nums}")
            expect(nums[0] == 0, f"follow without tail starts at line{nums[0]}, want line0")
        check("logs(stream=True, follow=True) yields lines", logs_follow)

        def stop():
            c.stop(timeout=1)
        check("stop(timeout=1)", stop)

        def wait():
            st = c.wait()["StatusCode"]
            expect(st in (137, 143), f"StatusCode {st}")
            c.reload()
            expect(c.status == "exited", f"status {c.status!r}")
            return st
        st = check("wait()['StatusCode'] 137/143, status exited", wait)
        if st is not None:
            print(f"   StatusCode {st}", flush=True)

        def remove():
            c.remove()
            raises(lambda: client.containers.get(NAME), docker.errors.NotFound)
        check("remove(); containers.get('py1') raises NotFound", remove)
    else:
        for n in ("reload", "containers.list(label)", "exec_run", "logs", "stop/wait/remove"):
            skip(n, "no detached container")

    # --- images ----------------------------------------------------------------------------
    def images_list():
        imgs = client.images.list()
        tags = [t for i in imgs for t in i.tags]
        expect(IMAGE in tags, f"{IMAGE} not in {tags}")
    check("images.list() has bb:1", images_list)

    def images_get():
        img = client.images.get(IMAGE)
        expect(img.id.startswith("sha256:") and len(img.id) == 71, f"id {img.id!r}")
        expect(IMAGE in img.tags, f"tags {img.tags}")
    check("images.get('bb:1').id", images_get)

    def images_get_missing():
        raises(lambda: client.images.get("nosuch:image"), docker.errors.ImageNotFound)
    check("images.get('nosuch:image') raises ImageNotFound", images_get_missing)

    # --- volumes ---------------------------------------------------------------------------
    def vol_create():
        v = client.volumes.create(VOLUME)
        expect(v.name == VOLUME, f"name {v.name!r}")
        return v
    vol = check("volumes.create('pyvol')", vol_create)

    if vol is not None:
        mounts = {VOLUME: {"bind": "/data", "mode": "rw"}}

        def vol_write():
            out = client.containers.run(IMAGE, ["sh", "-c", "echo persisted > /data/f; echo w"],
                                        volumes=mounts, remove=True)
            expect(out == b"w\n", f"returned {out!r}")
        check("run with volumes={'pyvol': /data rw} writes a file", vol_write)

        def vol_read():
            out = client.containers.run(IMAGE, ["cat", "/data/f"], volumes=mounts, remove=True)
            expect(out == b"persisted\n", f"returned {out!r}")
        check("a second container reads it back", vol_read)

        def vol_remove():
            client.volumes.get(VOLUME).remove()
            raises(lambda: client.volumes.get(VOLUME), docker.errors.NotFound)
        check("volumes.get('pyvol').remove()", vol_remove)
    else:
        skip("volume run/remove", "no volume")

    # --- errors ----------------------------------------------------------------------------
    def run_missing_image():
        e = raises(lambda: client.containers.run("nosuch:image", "true"), docker.errors.APIError)
        print(f"   nosuch:image -> {type(e).__name__} {getattr(e, 'status_code', None)}: "
              f"{e.explanation}", flush=True)
        expect(isinstance(e, docker.errors.ImageNotFound) or
               (e.status_code is not None and e.status_code >= 400),
               f"{type(e).__name__}")
    check("containers.run('nosuch:image') raises ImageNotFound/APIError (pull fails)",
          run_missing_image, timeout=90)

    def create_missing_image_404():
        # The first step of run(): create must answer 404 "No such image", which docker-py
        # turns into ImageNotFound (and so tries a pull).
        raises(lambda: client.containers.create("nosuch:image", "true"),
               docker.errors.ImageNotFound)
    check("containers.create('nosuch:image') raises ImageNotFound (404 'No such image')",
          create_missing_image_404)

    def name_conflict():
        first = client.containers.run(IMAGE, ["sleep", "30"], detach=True, name=NAME)
        try:
            e = raises(lambda: client.containers.run(IMAGE, ["true"], detach=True, name=NAME),
                       docker.errors.APIError, status=409)
            expect(not isinstance(e, docker.errors.NotFound), f"{type(e).__name__}")
        finally:
            first.remove(force=True)
    check("run(name='py1') twice raises APIError 409", name_conflict)

    # --- cleanup ---------------------------------------------------------------------------
    force_remove_container(client, NAME)
    try:
        for ct in client.api.containers(all=True):
            if ct["Id"] not in before and ct.get("Image") in (IMAGE, "nosuch:image"):
                force_remove_container(client, ct["Id"])
    except Exception:  # noqa: BLE001
        pass
    try:
        client.api.remove_volume(VOLUME, force=True)
    except Exception:  # noqa: BLE001
        pass
    return finish()


def finish():
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Threads of timed-out checks may still block on a socket: do not wait for them.
    import os
    os._exit(code)
