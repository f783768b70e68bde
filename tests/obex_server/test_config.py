"""The server's TOML configuration: defaults, every key checked, errors naming the key."""

from __future__ import annotations

import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from obex_backup_server.config import Address, ConfigError, ObexConfig, parse_address
from tests.engine.helpers import env

REPO = Path(__file__).resolve().parents[2]


def test_an_empty_file_means_every_default() -> None:
    config = ObexConfig.from_dict({})
    assert config.listen == Address("127.0.0.1", 650)
    assert config.tty is None and config.socket is None
    assert config.idle_timeout == 300.0


def test_the_sample_config_loads() -> None:
    config = ObexConfig.load(REPO / "examples" / "obex-backup-server.toml")
    assert config.listen is not None and config.listen.port == 650


def test_keys_are_read() -> None:
    config = ObexConfig.from_dict(
        {
            "obex": {"listen": "[::1]:6500", "tty": "/dev/ttyGS0", "busy_wait": 0},
            "engine": {"socket": "/run/e.sock", "idle_timeout": 30, "spool_dir": "/tmp/s"},
        }
    )
    assert config.listen == Address("::1", 6500) and str(config.listen) == "[::1]:6500"
    assert config.tty == "/dev/ttyGS0" and config.busy_wait == 0.0
    assert config.socket == Path("/run/e.sock") and config.idle_timeout == 30.0


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"obex": {"listen": "host:port"}}, "obex.listen"),
        ({"obex": {"listen": "host:70000"}}, "obex.listen"),
        ({"obex": {"listen": 650}}, "obex.listen"),
        ({"obex": {"listen": ""}}, "obex.listen"),
        ({"obex": {"busy_wait": -1}}, "obex.busy_wait"),
        ({"obex": {"link_timeout": 0}}, "obex.link_timeout"),
        ({"obex": {"max_packet_length": 100}}, "obex.max_packet_length"),
        ({"obex": {"colour": "red"}}, "obex.colour"),
        ({"engine": {"idle_timeout": "soon"}}, "engine.idle_timeout"),
        ({"engine": {"socket": 1}}, "engine.socket"),
        ({"engine": []}, "engine"),
        ({"mtp": {}}, "mtp"),
    ],
)
def test_a_bad_value_is_an_error_naming_its_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ObexConfig.from_dict(data)
    assert str(caught.value).startswith(named + ":"), caught.value


def test_addresses() -> None:
    assert parse_address("k", "0.0.0.0") == Address("0.0.0.0", 650)
    assert parse_address("k", "localhost:0") == Address("localhost", 0)
    with pytest.raises(ConfigError):
        parse_address("k", "[::1")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "obex_backup_server.cli", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )


def test_check_config_prints_the_values_in_effect_as_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[obex]\nlisten = "127.0.0.1:6500"\n')
    result = run_cli("--config", str(path), "--check-config", "--listen", "0.0.0.0:7000")
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    assert printed["obex"]["listen"] == "0.0.0.0:7000"
    assert ObexConfig.from_dict(printed).listen == Address("0.0.0.0", 7000)


def test_check_config_names_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[engine]\nidle_timeout = "soon"\n')
    result = run_cli("--config", str(path), "--check-config")
    assert result.returncode == 2
    assert "engine.idle_timeout" in result.stderr
    missing = run_cli("--config", str(tmp_path / "none.toml"), "--check-config")
    assert missing.returncode == 2 and "none.toml" in missing.stderr


def test_a_transport_that_cannot_start_is_an_error_naming_its_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--config", "/dev/null", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "obex.listen: cannot serve" in result.stderr and "Traceback" not in result.stderr
    path = tmp_path / "c.toml"
    path.write_text(f'[obex]\nlisten = "127.0.0.1:0"\ntty = "{tmp_path / "no-tty"}"\n')
    result = run_cli("--config", str(path))
    assert result.returncode == 1
    assert "obex.tty: cannot serve" in result.stderr and "Traceback" not in result.stderr
