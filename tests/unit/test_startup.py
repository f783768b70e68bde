"""Start-up: the providers, then the FunctionFS descriptors, with little else loaded.

Nothing enumerates until the descriptors are on ep0, and a host whose first
command waits seconds for an answer resets the device, so ``mtp-responder
--functionfs`` loads its providers first and writes the descriptors right
after, without loading what serving does not need yet (construct).  A
provider the configuration gets wrong stops the start before any descriptor
is written, with the one-line message ``--check-config`` gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

NOT_BEFORE_DESCRIPTORS = ("construct",)
LOADED_BEFORE_DESCRIPTORS = ("data_providers.files", "mtp_responder.app")

# Runs mtp-responder on a directory of plain files named like a FunctionFS
# mount's and reports the modules loaded at the moment the descriptors are
# written to ep0; plain files cannot be served, so it stops there.
_PROBE = """
import json, os, sys
from mtp_responder.transport import ffs_function

enter = ffs_function.MTPFunction.__enter__

def written(self):
    enter(self)
    ep0 = os.path.getsize(sys.argv[1] + "/ep0")
    print(json.dumps({"modules": sorted(sys.modules), "ep0": ep0}))
    sys.stdout.flush()
    os._exit(0)

ffs_function.MTPFunction.__enter__ = written
from mtp_responder import cli
sys.exit(cli.main(["--functionfs", sys.argv[1], "--config", sys.argv[2]]))
"""


def _config_file(tmp_path: Path, storage: Path) -> Path:
    path = tmp_path / "mtp-responder.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[providers.files]\nstorages = [{{ path = "{storage}" }}]\n'
    )
    return path


def _probe(tmp_path: Path, config: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    mount = tmp_path / "ffs"
    mount.mkdir()
    for name in ("ep0", "ep1", "ep2", "ep3"):
        (mount / name).write_bytes(b"")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(mount), str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    return result, mount


def test_descriptors_are_written_once_the_providers_are_loaded_and_no_sooner(
    tmp_path: Path,
) -> None:
    (tmp_path / "storage").mkdir()
    result, _mount = _probe(tmp_path, _config_file(tmp_path, tmp_path / "storage"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ep0"] > 0, "nothing was written to ep0"
    modules = set(report["modules"])
    assert set(LOADED_BEFORE_DESCRIPTORS) <= modules, "descriptors written before the providers"
    loaded = [
        m
        for m in modules
        for prefix in NOT_BEFORE_DESCRIPTORS
        if m == prefix or m.startswith(prefix + ".")
    ]
    assert loaded == [], "loaded though serving does not need it yet"


def test_a_provider_the_configuration_gets_wrong_stops_the_start_before_the_descriptors(
    tmp_path: Path,
) -> None:
    result, mount = _probe(tmp_path, _config_file(tmp_path, tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mtp-responder: providers.files")
    assert "missing" in lines[0]
    assert (mount / "ep0").stat().st_size == 0, "descriptors written for a start that failed"
