"""The README's first-hour commands, extracted from the README itself and run as pasted, in order.

They run in a copy of the checkout's layout in a temporary folder (the virtual environment and
``../shared`` linked in), after ``linkscan demo``, so nothing is written into the checkout.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED

pytestmark = pytest.mark.integration  # whole runs: not in make test-fast


def first_hour_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- tested: first-hour -->\n```bash\n(.*?)\n```", readme, re.DOTALL)
    assert block, "README.md has no <!-- tested: first-hour --> bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.timeout(1500)
def test_the_first_hour_commands_of_the_readme_run_as_pasted(tmp_path):
    checkout = tmp_path / "work" / "checkout"
    checkout.mkdir(parents=True)
    (tmp_path / "work" / "shared").symlink_to(SHARED)
    (checkout / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_API_URL", "VIRTUAL_ENV"))}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "HF_HUB_OFFLINE": "1"})
    demo = subprocess.run([".venv/bin/linkscan", "demo", "--data", "data"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    commands = first_hour_commands()
    assert commands[0] == "source .venv/bin/activate" and len(commands) >= 6
    script = "set -euo pipefail\n" + "\n".join(commands) + "\n"
    run = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr
    assert (checkout / "data" / "models" / "rfc" / "cpu" / "checkpoints" / "LATEST").is_file()
    assert list((checkout / "data" / "evals").glob("*/report.md"))
