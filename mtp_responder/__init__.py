"""An MTP responder for embedded Linux, with device backup and restore."""

from importlib import metadata

try:
    # The version is written once, in pyproject.toml; installing records it.
    __version__ = metadata.version("mtp-responder")
except metadata.PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
