"""The OBEX protocol core: codes, headers, packets, the server's state machine.

No I/O: bytes in, events out, events in, bytes out, in the style of h11.  The
server's transport (USB CDC OBEX, TCP) and the test clients drive the same
objects.
"""
