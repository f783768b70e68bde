"""The ``.mbak`` backup archive format: pax tar members, manifest, snapshots.

Standard library only and no I/O: bytes in, records out.  Both the engine
(which writes and restores archives) and the PC tool ``mtp-backup`` (which
verifies and unpacks them) import it, so a PC needs nothing of the device.
"""
