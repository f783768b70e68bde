"""An MTP responder for embedded Linux, with device backup and restore."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``__version__``, read on first use.

    The version is written once, in pyproject.toml; installing records it.
    Reading it costs an import of :mod:`importlib.metadata`, which start-up
    (exec to FunctionFS descriptors written) must not pay.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("mtp-responder")
    except metadata.PackageNotFoundError:  # a source tree run without installing it
        version = "0+unknown"
    globals()["__version__"] = version
    return version
