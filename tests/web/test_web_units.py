"""The web app's own unit tests (Vitest: the API client, money and time formatting, entry paths), run by pytest so
`make test` runs them too."""
import shutil
import subprocess

import pytest

from tools.stack import REPO

WEB = REPO / "web"


def test_the_web_units_pass_under_vitest():
    if not (WEB / "node_modules" / ".bin" / "vitest").exists():
        pytest.fail("web/node_modules is missing: run `make install` (npm ci in web/)")
    npx = shutil.which("npx")
    assert npx, "npx (Node.js) is missing: apt-get install nodejs npm"
    run = subprocess.run([npx, "vitest", "run", "--reporter=dot"], cwd=WEB, capture_output=True, text=True,
                         timeout=300, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "CI": "1", "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert " passed" in run.stdout and " failed" not in run.stdout, run.stdout[-2000:]
