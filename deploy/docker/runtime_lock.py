"""The image's requirements are the runtime part of the one lock (requirements.lock), hashes and all.

`make lock` resolves requirements-dev.txt (which includes requirements.txt, which includes
requirements-runtime.txt) into requirements.lock with uv; then it resolves requirements-runtime.txt alone,
constrained to the lock (`-c requirements.lock`), into deploy/docker/requirements-runtime.lock: the packages the
runtime requirements need (extras that only dev tools ask for left out) at exactly the lock's versions. This
checks that every entry there is the lock's entry, line for line, hashes included, so the images install exactly
the files the tests ran with and no second closure can drift.

    python deploy/docker/runtime_lock.py  # exit 1, naming the entries, if the two disagree (make lock runs it)

Standard library only, offline: it compares files, it resolves nothing."""
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
RUNTIME_LOCK = Path(__file__).resolve().parent / "requirements-runtime.lock"


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text):
    """{name: [`name==version \\`, `--hash=...` lines]} for every entry of a uv/pip-compile lock."""
    entries, current = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):  # `name==version \` opens an entry
            current = entries[canonical(re.split(r"[=<>!~\[ ;]", line, maxsplit=1)[0])] = [line]
        elif line.strip().startswith("--hash"):
            current.append(line)
    return entries


def disagreements(lock_text=None, runtime_text=None):
    """What in the runtime lock is not the main lock's entry as it stands (empty when they agree)."""
    lock = parse(LOCK.read_text() if lock_text is None else lock_text)
    runtime = parse(RUNTIME_LOCK.read_text() if runtime_text is None else runtime_text)
    problems = [f"{name}: not in requirements.lock" for name in runtime if name not in lock]
    problems += [f"{name}: {runtime[name][0].split()[0]} with {len(runtime[name]) - 1} hashes, the lock has "
                 f"{lock[name][0].split()[0]} with {len(lock[name]) - 1}"
                 for name in runtime if name in lock and runtime[name] != lock[name]]
    return problems


def main():
    problems = disagreements()
    for problem in problems:
        print(f"{RUNTIME_LOCK.relative_to(REPO)} {problem}: run `make lock`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
