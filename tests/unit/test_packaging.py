"""What each installed part pulls in when it is imported.

A PC installs only the ``[host]`` extra and a board's archive tools may run on
a bare Python, so an eager import of a device dependency would break an
installation the test venv (which has every extra) cannot see.  Each check
imports in a fresh interpreter, so nothing another test loaded can hide it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from engine.daemon.config import EngineConfig

ROOT = Path(__file__).resolve().parents[2]

# The device side only: none of these is in the [host] extra.
DEVICE_ONLY = ("trio", "functionfs", "libaio", "defusedxml")


def modules_loaded_by(code: str) -> set[str]:
    """The modules that running ``code`` adds to a fresh interpreter's ``sys.modules``."""
    probe = "\n".join(
        [
            "import json, sys",
            "before = set(sys.modules)",
            textwrap.dedent(code),
            "print(json.dumps(sorted(set(sys.modules) - before)))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_pc_tool_pulls_no_device_dependency() -> None:
    loaded = top_level(modules_loaded_by("import mtp_backup.cli"))
    assert "mtp_backup" in loaded
    assert sorted(loaded & set(DEVICE_ONLY)) == []


def test_archive_format_imports_only_the_standard_library() -> None:
    loaded = modules_loaded_by(
        """
        import importlib, pkgutil
        import engine.mbak
        for info in pkgutil.walk_packages(engine.mbak.__path__, "engine.mbak."):
            importlib.import_module(info.name)
        """
    )
    assert {"engine.mbak.tar", "engine.mbak.manifest"} <= loaded
    outside_stdlib = top_level(loaded) - set(sys.stdlib_module_names) - {"engine"}
    assert sorted(outside_stdlib) == []
    # Of the project, only the format and the engine's shared error and type modules.
    project = {name for name in loaded if name.partition(".")[0] == "engine"}
    shared = {"engine", "engine.errors", "engine.types"}
    assert sorted(n for n in project - shared if not n.startswith("engine.mbak")) == []


def test_responder_without_functionfs_until_it_serves_a_gadget() -> None:
    """The command line, the server and the loopback self-check load no FunctionFS.

    Only ``--functionfs`` needs python-functionfs and the kernel AIO library, so a
    machine without libaio.so.1 can still check a config or run ``--loopback``.
    """
    loaded = top_level(
        modules_loaded_by(
            """
            import mtp_responder.cli, mtp_responder.app, mtp_responder.server
            import mtp_responder.transport, mtp_responder.transport.loopback
            """
        )
    )
    assert "mtp_responder" in loaded
    assert sorted(loaded & {"functionfs", "libaio"}) == []


def unit_file(name: str) -> dict[str, list[str]]:
    """A systemd unit's ``key=value`` lines, every value of a repeated key kept."""
    keys: dict[str, list[str]] = {}
    for line in (ROOT / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).extend(value.split())
    return keys


def test_systemd_units_run_the_installed_commands() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = set(tomllib.load(f)["project"]["scripts"])
    for unit in sorted(p.name for p in (ROOT / "systemd").glob("*.service")):
        keys = unit_file(unit)
        assert keys.get("WantedBy"), f"{unit}: not enabled by anything"
        commands = [
            word.lstrip("-").rpartition("/")[2]
            for key, words in keys.items()
            if key.startswith("Exec")
            for word in words
            if word.lstrip("-").startswith("/usr/local/bin/")
        ]
        assert commands, f"{unit}: runs none of the project's commands"
        assert sorted(set(commands) - scripts) == [], unit


def test_systemd_responder_starts_after_the_engine_and_the_gadget() -> None:
    responder = unit_file("mtp-responder.service")
    assert {"mtp-gadget.service", "backup-engine.service"} <= set(responder["After"])
    assert "mtp-gadget.service" in responder["Requires"]
    # The responder serves files without the engine: wanted, not required.
    assert "backup-engine.service" in responder["Wants"]
    assert "backup-engine.service" not in responder.get("Requires", [])


def test_systemd_engine_unit_owns_the_engines_default_directories() -> None:
    engine = unit_file("backup-engine.service")
    assert engine["ExecStart"][-1] == "serve"
    defaults = EngineConfig()
    assert defaults.state_file is not None
    run = Path("/run", *engine["RuntimeDirectory"])
    assert run == defaults.socket_path.parent == defaults.state_file.parent
    assert Path("/var/lib", *engine["StateDirectory"]) == defaults.drives["c"].parent
    assert Path("/var/cache", *engine["CacheDirectory"]) == defaults.spool_dir.parent
