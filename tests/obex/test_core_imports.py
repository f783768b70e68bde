"""The OBEX core runs on a bare Python: standard library only, nothing of MTP.

The OBEX test client and the PC side may import it where neither trio nor
the responder is installed, so it is checked in a fresh interpreter that no
other test's imports can hide anything from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_obex_core_imports_only_the_standard_library() -> None:
    probe = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        before = set(sys.modules)
        import obex_backup_server.core
        for info in pkgutil.walk_packages(
            obex_backup_server.core.__path__, "obex_backup_server.core."
        ):
            importlib.import_module(info.name)
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "obex_backup_server.core.connection" in loaded
    top = {name.partition(".")[0] for name in loaded}
    assert sorted(top - set(sys.stdlib_module_names) - {"obex_backup_server"}) == []


def test_the_package_ships_in_the_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "obex_backup_server*" in include
