"""gadget_config's reading of the TOML config; runs on the host in the unit suite.

Not marked ``e2e``: parsing needs no kernel.  It lives beside the end-to-end
tests because it guards the same file they generate (and the shipped sample).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from gadget_config.settings import ConfigError, default_serial, load, parse
from tests.e2e.guest.support import toml_dumps

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "config" / "mtp-responder.toml"


def test_defaults_give_a_working_development_gadget() -> None:
    s = parse({})
    assert (s.device.vendor_id, s.device.product_id) == (0x1D6B, 0x0100)
    assert s.device.serial == default_serial() and s.device.serial
    assert s.gadget.name == "mtp" and s.gadget.functionfs_mount == "/dev/ffs-mtp"
    assert s.gadget.bcd_usb == 0x0200 and s.gadget.os_desc
    assert s.responder_argv() == [sys.executable, "-m", "mtp_responder.cli",
                                  "--functionfs", "/dev/ffs-mtp"]
    assert s.pid_file == Path("/run/mtp-gadget/mtp.pid")


def test_sample_config_is_read_by_gadget_config_and_the_responder() -> None:
    s = load(SAMPLE)
    assert s.device.manufacturer == "Example Corp"
    assert s.responder_argv()[-4:] == ["--config", str(SAMPLE), "--functionfs", "/dev/ffs-mtp"]
    from mtp_responder.config import load_config

    load_config(SAMPLE)  # the responder rejects unknown keys: [device] must suit both


def test_placeholders_in_the_responder_command(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml_dumps({"gadget": {
        "name": "g1", "functionfs_mount": "/dev/ffs-x",
        "responder_command": ["{python}", "resp.py", "{mount}", "{config}", "{name}"],
    }}))
    assert load(cfg).responder_argv() == [sys.executable, "resp.py", "/dev/ffs-x",
                                          str(cfg), "g1"]


def test_integers_may_be_written_as_strings() -> None:
    s = parse({"device": {"vendor_id": "0x18d1", "bcd_device": 0x0223}})
    assert s.device.vendor_id == 0x18D1 and s.device.bcd_device == 0x0223


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"device": {"max_speed": "warp"}}, "max_speed"),
        ({"device": {"vendor_id": 0x10000}}, "vendor_id"),
        ({"device": {"vendor_id": True}}, "vendor_id"),
        ({"device": {"product": ""}}, "product"),
        ({"gadget": {"name": "a/b"}}, "name"),
        ({"gadget": {"extra_functions": ["acm"]}}, "extra_functions"),
        ({"gadget": {"extra_functions": ["ffs.other"]}}, "extra_functions"),
        ({"gadget": {"function_attributes": {"ecm.usb0": {"dev_addr": "x"}}}},
         "not listed"),
        ({"gadget": {"responder_command": "mtp-responder --x"}}, "list of arguments"),
        ({"gadget": {"functionfs_mount": "relative"}}, "absolute"),
        ({"gadget": {"bcd_usb": 0x0110}}, "bcd_usb"),
        ({"gadget": {"ready_timeout": 0}}, "ready_timeout"),
        ({"gadget": {"extra_function": ["acm.usb0"]}}, "gadget.extra_function: unknown"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(data)


def test_function_attributes_become_strings() -> None:
    s = parse({"gadget": {
        "extra_functions": ["ecm.usb0"],
        "function_attributes": {"ecm.usb0": {"qmult": 5, "dev_addr": "02:00:00:00:00:02"}},
    }})
    assert s.gadget.function_attributes == {
        "ecm.usb0": {"qmult": "5", "dev_addr": "02:00:00:00:00:02"}
    }


def test_unreadable_or_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[device\n")
    with pytest.raises(ConfigError):
        load(bad)


def test_test_config_writer_round_trips() -> None:
    data = {
        "log_level": "info",
        "device": {"vendor_id": 7531, "product": 'quote " and \\ backslash'},
        "gadget": {"extra_functions": ["acm.usb0"], "os_desc": False},
        "providers": {"files": {"storages": [{"path": "/a", "description": "A"}]}},
    }
    assert tomllib.loads(toml_dumps(data)) == data
