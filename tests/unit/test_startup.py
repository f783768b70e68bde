"""Start-up: the FunctionFS descriptors first, the providers while the host enumerates.

Nothing enumerates until the descriptors are on ep0, so ``mtp-responder
--functionfs`` writes them with as little of itself loaded as possible, and
loads the providers afterwards.  A command that arrives before they are ready
waits for them; a provider the configuration gets wrong still stops the start
with the one-line message ``--check-config`` gives.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from mtp_responder import cli
from mtp_responder.config import parse_config
from mtp_responder.core.codes import OperationCode
from mtp_responder.provider import DataProvider, ProviderContext, Storage
from mtp_responder.testing.initiator import Initiator
from mtp_responder.transport.functionfs import FunctionFSTransport
from mtp_responder.transport.loopback import LoopbackTransport, loopback_pair

REPO = Path(__file__).resolve().parents[2]

NOT_BEFORE_DESCRIPTORS = (
    "trio",
    "construct",
    "importlib.metadata",
    "mtp_responder.app",
    "mtp_responder.server",
    "mtp_responder.operations",
    "mtp_responder.core.datasets",
    "mtp_responder.transport.functionfs",
    "data_providers",
    "engine",
)

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
cli.main(["--functionfs", sys.argv[1], "--config", sys.argv[2]])
"""


def _config_file(tmp_path: Path, storage: Path) -> Path:
    path = tmp_path / "mtp-responder.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[providers.files]\nstorages = [{{ path = "{storage}" }}]\n'
    )
    return path


def test_descriptors_are_written_before_trio_the_core_or_a_provider_loads(
    tmp_path: Path,
) -> None:
    mount = tmp_path / "ffs"
    mount.mkdir()
    for name in ("ep0", "ep1", "ep2", "ep3"):
        (mount / name).write_bytes(b"")
    (tmp_path / "storage").mkdir()
    config = _config_file(tmp_path, tmp_path / "storage")
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
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ep0"] > 0, "nothing was written to ep0"
    loaded = [
        m
        for m in report["modules"]
        for prefix in NOT_BEFORE_DESCRIPTORS
        if m == prefix or m.startswith(prefix + ".")
    ]
    assert loaded == []


class _GadgetStandIn(LoopbackTransport):
    """The loopback link with the FunctionFS transport's ``serve``."""

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


class SlowProvider(DataProvider):
    """A provider whose loading takes until the test lets it finish."""

    release = threading.Event()
    loading = threading.Event()

    def __init__(self, name: str, options: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(name, options, context)
        SlowProvider.loading.set()
        if not SlowProvider.release.wait(timeout=30):
            raise RuntimeError("the test never let the provider finish loading")

    def storages(self) -> list[Storage]:
        return []


def _args(config: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=config, log_level=None)


async def test_a_command_sent_while_the_providers_load_waits_for_them(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "providers": {
                "files": {"storages": [{"path": str(tmp_path / "storage")}]},
                "slow": {"plugin": f"{__name__}:SlowProvider"},
            },
        }
    )
    SlowProvider.release.clear()
    SlowProvider.loading.clear()
    link, host = loopback_pair()
    device = _GadgetStandIn(link._link)
    mtp = Initiator(host)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cli._run_functionfs, _args(), config, cast(FunctionFSTransport, device))
        await trio.to_thread.run_sync(SlowProvider.loading.wait, 10)
        # The host's first command comes while a provider is still loading.
        tid = await mtp.command(OperationCode.OPEN_SESSION, 1)
        await trio.sleep(0.2)
        assert host.in_queued == 0, "answered before the providers were ready"
        SlowProvider.release.set()
        with trio.fail_after(10):
            response = await mtp.read_response(tid)
        assert response.ok
        mtp.tid = tid + 1
        assert len(await mtp.storage_ids()) == 1
        nursery.cancel_scope.cancel()


async def test_a_provider_refused_after_the_descriptors_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "providers": {"files": {"storages": [{"path": str(tmp_path / "missing")}]}},
        }
    )
    link, _host = loopback_pair()
    with trio.fail_after(10):
        status = await cli._run_functionfs(
            _args(), config, cast(FunctionFSTransport, _GadgetStandIn(link._link))
        )
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mtp-responder: providers.files")
    assert "missing" in lines[0]
