"""Object properties: what each one is, how it is read from an ObjectEntry.

One table drives GetObjectPropsSupported, GetObjectPropDesc,
GetObjectPropValue and GetObjectPropList, so the four can never disagree.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .core.codes import AssociationType, DataType, FormFlag, ObjectFormat, ObjectProp
from .core.datasets import encode_string, encode_value, format_date, scalar_packer
from .provider import ObjectEntry


@dataclass(frozen=True, slots=True)
class ObjectView:
    """An entry with the framework's numbers attached."""

    entry: ObjectEntry
    handle: int
    storage_id: int
    parent_handle: int


@dataclass(frozen=True, slots=True)
class PropDef:
    code: ObjectProp
    datatype: DataType
    settable: bool
    default: Any
    getter: Callable[[ObjectView], Any]
    form_flag: FormFlag = FormFlag.NONE
    form: bytes = b""


def _name(v: ObjectView) -> str:
    return v.entry.name


def _puid(v: ObjectView) -> int:
    return v.entry.puid


PROPERTIES: dict[int, PropDef] = {
    p.code: p
    for p in (
        PropDef(ObjectProp.STORAGE_ID, DataType.UINT32, False, 0, lambda v: v.storage_id),
        PropDef(ObjectProp.OBJECT_FORMAT, DataType.UINT16, False, 0, lambda v: v.entry.format),
        PropDef(
            ObjectProp.PROTECTION_STATUS,
            DataType.UINT16,
            False,
            0,
            lambda v: 1 if v.entry.read_only else 0,
            FormFlag.ENUMERATION,
            struct.pack("<HHH", 2, 0, 1),
        ),
        PropDef(
            ObjectProp.OBJECT_SIZE,
            DataType.UINT64,
            False,
            0,
            lambda v: 0 if v.entry.is_folder else v.entry.size,
        ),
        PropDef(
            ObjectProp.ASSOCIATION_TYPE,
            DataType.UINT16,
            False,
            0,
            lambda v: AssociationType.GENERIC_FOLDER if v.entry.is_folder else 0,
        ),
        PropDef(ObjectProp.ASSOCIATION_DESC, DataType.UINT32, False, 0, lambda v: 0),
        PropDef(ObjectProp.OBJECT_FILE_NAME, DataType.STR, True, "", _name),
        PropDef(
            ObjectProp.DATE_CREATED,
            DataType.STR,
            False,
            "",
            lambda v: format_date(v.entry.ctime),
            FormFlag.DATE_TIME,
        ),
        PropDef(
            ObjectProp.DATE_MODIFIED,
            DataType.STR,
            True,
            "",
            lambda v: format_date(v.entry.mtime),
            FormFlag.DATE_TIME,
        ),
        PropDef(ObjectProp.PARENT_OBJECT, DataType.UINT32, False, 0, lambda v: v.parent_handle),
        PropDef(ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER, DataType.UINT128, False, 0, _puid),
        PropDef(ObjectProp.NAME, DataType.STR, True, "", _name),
        PropDef(ObjectProp.DISPLAY_NAME, DataType.STR, False, "", _name),
        PropDef(
            ObjectProp.NON_CONSUMABLE,
            DataType.UINT8,
            False,
            0,
            lambda v: 0,
            FormFlag.ENUMERATION,
            struct.pack("<HBB", 2, 0, 1),
        ),
        PropDef(
            ObjectProp.HIDDEN,
            DataType.UINT16,
            False,
            0,
            lambda v: 1 if v.entry.hidden else 0,
            FormFlag.ENUMERATION,
            struct.pack("<HHH", 2, 0, 1),
        ),
    )
}

SUPPORTED_CODES: tuple[int, ...] = tuple(PROPERTIES)


def prop_desc(definition: PropDef, format_code: int) -> bytes:
    """The ObjectPropDesc dataset (format-independent for our property set)."""
    del format_code
    return b"".join(
        (
            struct.pack(
                "<HHB", definition.code, definition.datatype, 1 if definition.settable else 0
            ),
            encode_value(definition.datatype, definition.default),
            struct.pack("<IB", 0, definition.form_flag),
            definition.form,
        )
    )


def prop_value(definition: PropDef, view: ObjectView) -> Any:
    if definition.code == ObjectProp.OBJECT_FORMAT and view.entry.is_folder:
        return ObjectFormat.ASSOCIATION
    return definition.getter(view)


def _value_encoder(datatype: int) -> Callable[[Any], bytes]:
    """The quickest equivalent of ``encode_value(datatype, ·)``."""
    packer = scalar_packer(datatype)
    if packer is not None:
        return packer
    if datatype == DataType.STR:
        return encode_string
    return functools.partial(encode_value, datatype)


def _getter(definition: PropDef) -> Callable[[ObjectView], Any]:
    """``prop_value(definition, ·)`` without the per-call test when it is not needed."""
    if definition.code == ObjectProp.OBJECT_FORMAT:
        return functools.partial(prop_value, definition)
    return definition.getter


_U32 = struct.Struct("<I")


def encode_prop_list(views: Sequence[ObjectView], definitions: Sequence[PropDef]) -> bytes:
    """The ObjectPropList dataset of ``definitions`` for each of ``views``.

    The same bytes as :func:`~.core.datasets.build_prop_list` of one
    :class:`~.core.datasets.PropListItem` per (view, definition), which the
    tests check against the construct declaration; built without an item
    object or a datatype lookup per element, because a host listing a folder
    asks for ten thousand objects times fifteen properties at once.
    """
    columns = [
        (struct.pack("<HH", d.code, d.datatype), _getter(d), _value_encoder(d.datatype))
        for d in definitions
    ]
    parts: list[bytes] = [_U32.pack(len(views) * len(columns))]
    append = parts.append
    pack_handle = _U32.pack
    for view in views:
        handle = pack_handle(view.handle)
        for code_and_type, get, encode in columns:
            append(handle)
            append(code_and_type)
            append(encode(get(view)))
    return b"".join(parts)
