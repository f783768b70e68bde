"""Object format codes chosen by file name.

Hosts filter on these (Explorer thumbnails, Photos import, gphoto2), so
reporting 0x3000 for everything is not an option.
"""

from __future__ import annotations

import posixpath

from .core.codes import ObjectFormat

_BY_EXTENSION: dict[str, ObjectFormat] = {
    ".txt": ObjectFormat.TEXT,
    ".log": ObjectFormat.TEXT,
    ".csv": ObjectFormat.TEXT,
    ".md": ObjectFormat.TEXT,
    ".htm": ObjectFormat.HTML,
    ".html": ObjectFormat.HTML,
    ".sh": ObjectFormat.SCRIPT,
    ".py": ObjectFormat.SCRIPT,
    ".exe": ObjectFormat.EXECUTABLE,
    ".aif": ObjectFormat.AIFF,
    ".aiff": ObjectFormat.AIFF,
    ".wav": ObjectFormat.WAV,
    ".mp3": ObjectFormat.MP3,
    ".avi": ObjectFormat.AVI,
    ".mpg": ObjectFormat.MPEG,
    ".mpeg": ObjectFormat.MPEG,
    ".asf": ObjectFormat.ASF,
    ".jpg": ObjectFormat.EXIF_JPEG,
    ".jpeg": ObjectFormat.EXIF_JPEG,
    ".tif": ObjectFormat.TIFF,
    ".tiff": ObjectFormat.TIFF,
    ".bmp": ObjectFormat.BMP,
    ".gif": ObjectFormat.GIF,
    ".png": ObjectFormat.PNG,
    ".jp2": ObjectFormat.JP2,
    ".wma": ObjectFormat.WMA,
    ".ogg": ObjectFormat.OGG,
    ".oga": ObjectFormat.OGG,
    ".aac": ObjectFormat.AAC,
    ".m4a": ObjectFormat.AAC,
    ".flac": ObjectFormat.FLAC,
    ".wmv": ObjectFormat.WMV,
    ".mp4": ObjectFormat.MP4_CONTAINER,
    ".m4v": ObjectFormat.MP4_CONTAINER,
    ".mov": ObjectFormat.MP4_CONTAINER,
    ".3gp": ObjectFormat.THREE_GP_CONTAINER,
    ".m3u": ObjectFormat.M3U_PLAYLIST,
    ".xml": ObjectFormat.XML_DOCUMENT,
    ".doc": ObjectFormat.MS_WORD_DOCUMENT,
    ".docx": ObjectFormat.MS_WORD_DOCUMENT,
    ".xls": ObjectFormat.MS_EXCEL_SPREADSHEET,
    ".xlsx": ObjectFormat.MS_EXCEL_SPREADSHEET,
    ".ppt": ObjectFormat.MS_POWERPOINT_PRESENTATION,
    ".pptx": ObjectFormat.MS_POWERPOINT_PRESENTATION,
}

SUPPORTED_FORMATS: tuple[ObjectFormat, ...] = (
    ObjectFormat.UNDEFINED,
    ObjectFormat.ASSOCIATION,
    *sorted(set(_BY_EXTENSION.values())),
)
"""Formats advertised in DeviceInfo (capture and playback)."""


def format_for_name(name: str, is_folder: bool = False) -> ObjectFormat:
    if is_folder:
        return ObjectFormat.ASSOCIATION
    return _BY_EXTENSION.get(posixpath.splitext(name)[1].lower(), ObjectFormat.UNDEFINED)
