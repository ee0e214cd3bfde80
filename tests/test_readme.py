"""The README's commands run as written after `detector demo`, in a fresh directory on the SQLite default.

Every line of the README's `sh` blocks is run, in order, in one shell, except the kinds listed in
`NOT_RUN` (each with its reason); a new line is therefore run unless it is one of those. `localhost:8000`
becomes the port of the `detector serve` this test starts (port 8000 may be taken on a shared machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]

NOT_RUN = {
    "pip install": "installs packages",
    "python -m pytest": "the test suite itself",
    "detector demo": "run by this test first, exactly as written",
    "detector serve": "long-running: this test starts one `detector serve` (on a free port) for the others",
    "DETECTOR_SLACK_WEBHOOK_URL=": "`detector serve` with a placeholder Slack webhook",
    "DETECTOR_DATABASE_URL=postgresql": "production examples on the shared PostgreSQL `test` database",
    "export SENTRY_URL": "the CI job template (tests/e2e/test_sentry_cli_releases.py runs the real sentry-cli)",
    "sentry-cli ": "the CI job template, with $VERSION and dist/ of the user's app",
    "detector deploy verify --url https://detector.example.com": "the CI gate template, with $VERSION "
    "(tests/e2e/test_deploy_verdicts.py runs verify against a live server)",
}


def readme_lines() -> list[str]:
    """The command lines of the README's ```sh blocks, in order."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        lines += [line for line in block.splitlines() if line.strip()]
    return lines


def is_run(line: str) -> bool:
    return not any(line.startswith(prefix) or f"&& {prefix}" in line for prefix in NOT_RUN)


def test_the_readme_commands_run_as_written_after_the_demo(tmp_path: Path) -> None:
    lines = readme_lines()
    to_run = [line for line in lines if is_run(line)]
    assert len(to_run) >= 10, to_run  # the API walk-through at least
    assert "detector demo" in "\n".join(lines) and any(line.startswith("detector serve --host") for line in lines)

    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    detector = shutil.which("detector", path=env["PATH"])
    assert detector is not None, "the `detector` console script is not installed (pip install -e '.[dev]')"

    demo = subprocess.run([detector, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-2000:]

    port = free_port()
    log = (tmp_path.parent / f"readme-serve-{port}.log").open("wb")
    server = subprocess.Popen(
        [detector, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and server.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert server.poll() is None, Path(log.name).read_text()[-2000:]
        # curl as written, but an HTTP error fails the line (and pipefail the pipeline)
        script = 'set -euo pipefail\ncurl() { command curl --fail --show-error "$@"; }\n' + "\n".join(
            line.replace("localhost:8000", f"localhost:{port}") for line in to_run
        )
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    out = done.stdout
    assert '"slug": "web"' in out  # project create web --json
    assert '"state":"acknowledged"' in out.replace(" ", "")  # the demo's anomaly, acknowledged through the API
    assert "map is not a function" in out and "detector_" in out
    assert '"status":"failing"' in out.replace(" ", "")  # the demo's bad deploy, as its verdict says
    assert "web@1.1.0 in production: HEALTHY" in out  # `detector deploy verify` of the demo's healthy release
