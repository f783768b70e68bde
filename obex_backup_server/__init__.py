"""The OBEX backup server: the board's files over OBEX Folder Browsing.

A second way to back a board up, beside MTP: any stock OBEX client (Debian's
``obexftp``) connects over USB CDC OBEX or TCP, browses the folders, reads
files out and writes them back.  :mod:`.core` speaks the protocol without
doing any I/O; the parts that move bytes drive it.
"""
