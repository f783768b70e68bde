"""The config loaders and the registration parser, fed random documents.

A config mistake must end in one line naming the key (a ``ConfigError``), never
in a traceback; a broken ``backup_registration.xml`` disables its owner with a
reason and never raises.  The documents are random TOML built from the loaders'
own key names (so the checks behind the parse are reached) and random bytes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.daemon.config import ConfigError as EngineConfigError
from engine.daemon.config import EngineConfig
from engine.daemon.registration import load_registration
from gadget_config import settings as gadget_settings
from mtp_responder.app import Responder
from mtp_responder.config import ConfigError, load_config

from .budget import budget, counted

KEYS = [
    "log_level", "state_dir", "device", "transport", "providers", "gadget", "files",
    "storages", "path", "description", "enabled", "plugin", "manufacturer", "product",
    "serial", "vendor_id", "product_id", "buffer_size", "blocks_in_flight", "name", "udc",
    "max_power", "os_desc", "extra_functions", "function_attributes", "responder_command",
    "socket_path", "state_file", "spool_dir", "drives", "excluded_drives", "client_uids",
    "idle_timeout", "central_repository_sid", "bin_dirs", "ready_timeout", "c", "e",
    "backup_restore", "read_only", "x",
]  # fmt: skip
PLUGINS = ["files", "backup_restore", "nosuch", "nosuch.module:X", "json:loads", "os:sep", ""]


def _toml_string(text: str) -> str:
    return (
        '"' + "".join(c if c.isalnum() or c in " ./_-é" else f"\\u{ord(c):04x}" for c in text) + '"'
    )


scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.sampled_from(["true", "false", "1.5", "-0.0", "inf", "nan", "1979-05-27"]),
    st.sampled_from([*PLUGINS, "/tmp", "", "debug", "a\x00b", "0FA00001", "zz", "root"]).map(
        _toml_string
    ),
    st.text(max_size=12).map(_toml_string),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"
        )
    ),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    lines = [
        f"{k} = {v}"
        for k, v in draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=5)).items()
    ]
    for table in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
        lines.append(f"[{table}]")
        lines += [
            f"{k} = {v}"
            for k, v in draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=4)).items()
        ]
    text = "\n".join(lines).encode()
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.binary(max_size=20))
    return text


def _in_scratch(run: object) -> None:
    """Run with a scratch directory as cwd, so relative paths land nowhere that matters."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            run(Path(tmp))  # type: ignore[operator]
        finally:
            os.chdir(here)


@budget(150, weight=0.3)
@given(doc=documents())
@counted("config: mtp-responder (load + check)")
def test_responder_config_is_a_config_error_or_a_responder(doc: bytes) -> None:
    def run(tmp: Path) -> None:
        path = tmp / "mtp-responder.toml"
        path.write_bytes(doc)
        try:
            Responder(load_config(path))
        except ConfigError as exc:
            assert str(exc).strip()

    _in_scratch(run)


@budget(150, weight=0.3)
@given(doc=documents())
@counted("config: backup-engine")
def test_engine_config_is_a_config_error_or_a_config(doc: bytes) -> None:
    def run(tmp: Path) -> None:
        path = tmp / "engine.toml"
        path.write_bytes(doc)
        try:
            EngineConfig.load(path)
        except EngineConfigError as exc:
            assert exc.message.strip()

    _in_scratch(run)


@budget(150, weight=0.3)
@given(doc=documents())
@counted("config: mtp-gadget")
def test_gadget_settings_are_a_config_error_or_settings(doc: bytes) -> None:
    def run(tmp: Path) -> None:
        path = tmp / "gadget.toml"
        path.write_bytes(doc)
        try:
            gadget_settings.load(path)
        except gadget_settings.ConfigError as exc:
            assert str(exc).strip()

    _in_scratch(run)


TAGS = ["backup_registration", "passive_backup", "active_backup", "include_directory",
        "include_file", "exclude", "proxy_data_manager", "dbms_backup", "restore",
        "public_backup", "system_backup", "x"]  # fmt: skip
ATTRS = ["name", "version", "process_name", "SID", "policy", "requires_reboot",
         "active_type", "callback_delay_time", "supports_incremental", "x"]  # fmt: skip
attr_values = st.one_of(
    st.sampled_from(
        [
            "1.0",
            "\\",
            "c:\\private\\0FA00001\\a\\",
            "..\\..\\x",
            "0x0FA00001",
            "yes",
            "no",
            "abc",
            "",
            "-1",
            "99999999999999999999",
        ]
    ),
    st.text(max_size=10),
)


def _xml_text(text: str) -> str:
    return "".join(c if c.isalnum() or c in " ./_-:\\" else f"&#{ord(c)};" for c in text)


elements = st.recursive(
    st.builds(
        lambda tag, attrs: (
            f"<{tag}" + "".join(f' {k}="{_xml_text(v)}"' for k, v in attrs.items()) + "/>"
        ),
        st.sampled_from(TAGS),
        st.dictionaries(st.sampled_from(ATTRS), attr_values, max_size=3),
    ),
    lambda inner: st.builds(
        lambda tag, kids: f"<{tag}>" + "".join(kids) + f"</{tag}>",
        st.sampled_from(TAGS),
        st.lists(inner, max_size=4),
    ),
    max_leaves=12,
)
prologs = st.sampled_from(
    [
        "",
        '<?xml version="1.0"?>',
        '<?xml version="1.0" encoding="bogus"?>',
        '<?xml version="1.0" encoding="latin-1"?>',
        '<!DOCTYPE x [<!ENTITY a "b">]>',
    ]
)


@budget(150, weight=0.3)
@given(
    prolog=prologs,
    body=elements,
    root=st.dictionaries(st.sampled_from(ATTRS), attr_values, max_size=2),
    noise=st.one_of(st.just(b""), st.binary(max_size=30)),
)
@counted("registration: backup_registration.xml")
def test_registration_never_raises(
    prolog: str, body: str, root: dict[str, str], noise: bytes
) -> None:
    attrs = "".join(f' {k}="{_xml_text(v)}"' for k, v in root.items())
    doc = f"{prolog}<backup_registration{attrs}>{body}</backup_registration>".encode() + noise
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backup_registration.xml"
        path.write_bytes(doc)
        load_registration(0x0FA00001, [path])
