"""The MTP protocol core: codes, containers, datasets and the transaction state machine.

No I/O and no trio: bytes in, events out, in both roles.  The responder's
server, the loopback test initiator and the PC tool ``mtp-backup`` all drive
the same objects.
"""
