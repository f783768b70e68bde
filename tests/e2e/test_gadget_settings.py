"""gadget_config's reading of the TOML config; runs on the host in the unit suite.

Not marked ``e2e``: parsing needs no kernel.  It lives beside the end-to-end
tests because it guards the same file they generate (and the shipped sample).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from gadget_config.settings import ConfigError, load, parse
from mtp_responder.config import load_config, parse_config
from mtp_responder.device_config import default_serial
from tests.e2e.guest.support import toml_dumps

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "config" / "mtp-responder.toml"


def test_defaults_give_a_working_development_gadget() -> None:
    s = parse({})
    assert (s.device.vendor_id, s.device.product_id) == (0x1D6B, 0x0100)
    assert s.device.serial == default_serial() and s.device.serial
    assert s.gadget.name == "mtp" and s.gadget.functionfs_mount == "/dev/ffs-mtp"
    assert s.gadget.bcd_usb == 0x0200 and s.gadget.os_desc
    assert s.responder_argv() == [
        sys.executable,
        "-m",
        "mtp_responder.cli",
        "--functionfs",
        "/dev/ffs-mtp",
    ]
    assert s.pid_file == Path("/run/mtp-gadget/mtp.pid")


def test_sample_config_is_read_by_gadget_config_and_the_responder() -> None:
    s = load(SAMPLE)
    assert s.device.manufacturer == "Example Corp"
    assert s.responder_argv()[-4:] == ["--config", str(SAMPLE), "--functionfs", "/dev/ffs-mtp"]
    load_config(SAMPLE)  # the responder rejects unknown keys: [device] must suit both


def identity(device: object) -> tuple[object, ...]:
    """What a host sees of the device over USB and in MTP's DeviceInfo."""
    return tuple(getattr(device, key) for key in ("manufacturer", "product", "serial", "version"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[device]\nserial = ''\n",
        '[device]\nmanufacturer = "Acme"\nproduct = "Frame"\nserial = "X1"\nversion = "2.3"\n',
    ],
    ids=["empty file", "empty serial", "every string set"],
)
def test_usb_and_mtp_describe_the_device_alike(tmp_path: Path, text: str) -> None:
    """mtp-gadget's descriptors and the responder's DeviceInfo come from one parse."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    gadget, responder = load(path).device, load_config(path).device
    assert identity(gadget) == identity(responder)
    assert gadget == responder
    assert gadget.serial == ("X1" if "X1" in text else default_serial())


def test_a_sample_device_is_described_alike_by_both() -> None:
    assert load(SAMPLE).device == load_config(SAMPLE).device
    assert identity(load(SAMPLE).device) == (
        "Example Corp",
        "Example MTP Device",
        default_serial(),
        "1.0",
    )


def test_placeholders_in_the_responder_command(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        toml_dumps(
            {
                "gadget": {
                    "name": "g1",
                    "functionfs_mount": "/dev/ffs-x",
                    "responder_command": ["{python}", "resp.py", "{mount}", "{config}", "{name}"],
                }
            }
        )
    )
    assert load(cfg).responder_argv() == [sys.executable, "resp.py", "/dev/ffs-x", str(cfg), "g1"]


def test_usb_ids_are_toml_integers_for_both_readers() -> None:
    """A string would pass one reader and stop the other; both refuse it, naming the key."""
    s = parse({"device": {"vendor_id": 0x18D1, "bcd_device": 0x0223}})
    assert s.device.vendor_id == 0x18D1 and s.device.bcd_device == 0x0223
    message = "device.vendor_id: expected int, got str"
    with pytest.raises(ConfigError, match=message):
        parse({"device": {"vendor_id": "0x18d1"}})
    with pytest.raises(ConfigError, match=message):
        parse_config({"device": {"vendor_id": "0x18d1"}})


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
        ({"gadget": {"function_attributes": {"ecm.usb0": {"dev_addr": "x"}}}}, "not listed"),
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
    s = parse(
        {
            "gadget": {
                "extra_functions": ["ecm.usb0"],
                "function_attributes": {"ecm.usb0": {"qmult": 5, "dev_addr": "02:00:00:00:00:02"}},
            }
        }
    )
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
