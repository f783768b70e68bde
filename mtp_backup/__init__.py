"""``mtp-backup``: back up, restore and verify a device from a PC over USB.

Runs on the PC, not on the device: it needs pyusb, the MTP protocol core
(:mod:`mtp_responder.core`), the archive format (:mod:`engine.mbak`) and, for
age-encrypted backups only, :mod:`engine.agefile` (``cryptography``); nothing
of the responder or the engine daemon.
"""
