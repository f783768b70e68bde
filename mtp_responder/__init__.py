"""An MTP responder for embedded Linux, with device backup and restore."""

__version__ = "0.1.0"
