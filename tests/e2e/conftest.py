"""Fixtures for end-to-end tests, which run inside the VM started by the harness.

Tests here are marked ``e2e`` and deselected from the normal unit run by the
project's pytest addopts.  ``python -m tests.e2e.harness`` boots the guest and runs
``pytest -m e2e tests/e2e`` there, once on a high-speed link and once more on a
SuperSpeed link for tests also marked ``superspeed``.  Tests marked
``client_race``, ``long`` or ``large`` run only when asked for
(``--client-races``, ``--long``, ``--large``).

Fixture API (see ``tests/e2e/guest/support.py`` for the classes):

* ``link_speed`` -- ``"high-speed"`` or ``"super-speed"`` for this boot.
* ``test_logs`` -- a per-test directory in the run's results (visible on the host).
* ``guest_tmp`` -- a per-test directory on the guest's tmpfs (storages, payloads).
* ``tools`` -- :class:`Tools`: ``tools.run(argv, timeout=, name=, check=)`` runs a
  command (``mtp-*``, ``gphoto2``, ``lsusb``...) with a timeout and logs it.
* ``make_gadget(responder_command=..., extra_functions=..., config=...)`` -- writes
  a config, runs ``mtp-gadget up``, waits until the device enumerates and returns
  a :class:`Gadget`; every gadget is brought down (``mtp-gadget down``) after the
  test, which then also checks nothing was left behind.
* ``echo_gadget`` -- a gadget whose function is ``guest/ffs_echo.py``.
* ``mtp_gadget`` -- a gadget running the real responder (``mtp_responder.cli``)
  with one storage directory on the guest tmpfs (``mtp_gadget.storage``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # plain `pytest` (not `python -m pytest`) does not add it
    sys.path.insert(0, _REPO)

from tests.e2e.guest.support import (  # noqa: E402
    GUEST_ENV,
    IN_GUEST,
    LINK,
    RESULTS,
    Gadget,
    Tools,
    base_config,
    echo_responder_command,
    fresh_dir,
    fresh_libusb_context_per_find,
    functionfs_mount_points,
    leftover_gadgets,
    mtp_responder_command,
    safe_name,
    toml_dumps,
)

MakeGadget = Callable[..., Gadget]


if IN_GUEST:
    fresh_libusb_context_per_find()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "superspeed: e2e test that the harness also runs on a SuperSpeed link",
    )
    config.addinivalue_line(
        "markers",
        "large: e2e test moving objects of 4 GiB or more, or a large backup (make e2e-large)",
    )
    config.addinivalue_line(
        "markers",
        "long: e2e test of minutes: kills at every restore point, resumed and encrypted "
        "backups, the CDC OBEX gadget (make e2e-long)",
    )


@pytest.fixture(autouse=True)
def _must_run_in_guest(request: pytest.FixtureRequest) -> None:
    """A silently skipped end-to-end test proves nothing, so refuse loudly."""
    if request.node.get_closest_marker("e2e") is None:
        return
    if not IN_GUEST:
        pytest.fail(
            f"end-to-end tests run only inside the test VM ({GUEST_ENV}=1 is not set): "
            "use `make e2e` or `python -m tests.e2e.harness`",
            pytrace=False,
        )
    if not Path("/sys/class/udc").is_dir() or not os.listdir("/sys/class/udc"):
        pytest.fail("no UDC in the guest (dummy_hcd not loaded?)", pytrace=False)


@pytest.fixture(scope="session")
def link_speed() -> str:
    return LINK


@pytest.fixture
def test_logs(request: pytest.FixtureRequest) -> Path:
    name = safe_name(request.node.nodeid.split("::", 1)[-1])
    return fresh_dir(RESULTS / "logs" / LINK / name)


@pytest.fixture
def guest_tmp(request: pytest.FixtureRequest) -> Path:
    return fresh_dir(Path("/tmp/e2e") / safe_name(request.node.name))


@pytest.fixture
def tools(test_logs: Path, guest_tmp: Path) -> Tools:
    # A private HOME: gphoto2 and libmtp write settings there, and the real /root
    # is the host's, shared over 9p.
    home = guest_tmp / "home"
    home.mkdir()
    return Tools(test_logs, env={"HOME": str(home)})


@pytest.fixture
def make_gadget(tools: Tools, test_logs: Path, guest_tmp: Path) -> Iterator[MakeGadget]:
    made: list[Gadget] = []

    def make(
        *,
        responder_command: Sequence[str] | None = None,
        extra_functions: Sequence[str] = (),
        config: dict[str, Any] | None = None,
        name: str | None = None,
        up: bool = True,
    ) -> Gadget:
        gname = name or f"e2e{len(made)}"
        data = base_config(
            name=gname,
            work_dir=guest_tmp,
            log_dir=test_logs / gname,
            responder_command=responder_command or echo_responder_command(),
            extra_functions=extra_functions,
        )
        for table, values in (config or {}).items():
            if isinstance(values, dict):
                data.setdefault(table, {}).update(values)
            else:
                data[table] = values
        (test_logs / gname).mkdir(parents=True, exist_ok=True)
        gadget = Gadget(
            tools=tools,
            config=data,
            config_path=guest_tmp / f"{gname}.toml",
            work_dir=guest_tmp,
            log_dir=test_logs,
        )
        gadget.write_config()
        made.append(gadget)
        if up:
            gadget.up()
        return gadget

    yield make

    problems = []
    for gadget in reversed(made):
        result = gadget.down(check=False)
        if result.returncode != 0:
            problems.append(result.describe())
    leftovers = leftover_gadgets()
    mounts = functionfs_mount_points()
    if leftovers or mounts:
        # Leave the next test a clean slate even if this one broke something.
        for name in leftovers:
            cfg = guest_tmp / f"forced-down-{name}.toml"
            cfg.write_text(toml_dumps({"gadget": {"name": name}}))
            Tools(test_logs).run(
                [sys.executable, "-m", "gadget_config.cli", "--config", cfg, "down"],
                name="forced-down",
            )
        problems.append(f"left behind: gadgets {leftovers}, functionfs mounts {mounts}")
    if problems:
        pytest.fail("gadget teardown: " + "\n".join(problems), pytrace=False)


@pytest.fixture
def echo_gadget(make_gadget: MakeGadget) -> Gadget:
    return make_gadget(responder_command=echo_responder_command())


@pytest.fixture
def mtp_gadget(make_gadget: MakeGadget, guest_tmp: Path) -> Gadget:
    storage = guest_tmp / "storage"
    storage.mkdir()
    state = guest_tmp / "responder-state"
    state.mkdir()
    gadget = make_gadget(
        responder_command=mtp_responder_command(),
        config={
            "device": {"product": "MTP E2E Device"},
            "state_dir": str(state),
            "providers": {
                "files": {"storages": [{"path": str(storage), "description": "E2E Storage"}]}
            },
        },
    )
    gadget.storage = storage  # type: ignore[attr-defined]
    return gadget
