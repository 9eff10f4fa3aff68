"""The third-party SCIM compliance checker ``scim2-tester`` (through its CLI, ``scim test``)
against the live gateway's ``/scim/v2``, with a SCIM token made by ``toolgate token create
--role scim``. Every check it runs must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Gateway, run_cli


def test_scim2_tester_passes_every_check(gateway: Gateway) -> None:
    out = run_cli(["token", "create", "--name", "scim2-tester", "--role", "scim"], gateway.env,
                  Path(gateway.env["TOOLGATE_DATA_DIR"]))
    token = out.strip().splitlines()[-1].strip()
    assert token.startswith("tgs_"), out
    scim = Path(sys.executable).parent / "scim"
    r = subprocess.run(
        [str(scim), "--url", f"{gateway.base}/scim/v2", "--header", f"Authorization: Bearer {token}", "test"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    report = r.stdout + r.stderr
    errors = [line for line in report.splitlines() if line.startswith("ERROR")]
    successes = [line for line in report.splitlines() if line.startswith("SUCCESS")]
    assert r.returncode == 0 and not errors, f"scim2-tester failed ({r.returncode}):\n{report[-10000:]}"
    # The checker ran its full suite (discovery, CRUD, filters, PATCH on every attribute).
    assert len(successes) >= 120, f"only {len(successes)} checks ran:\n{report[-4000:]}"
