"""The engine's wire protocol: framing, values and the request multiplexer.

Shared by the engine daemon, its client library (:mod:`engine.client`) and the
data-owner SDK (:mod:`engine.sdk`), the three parties on the engine's socket.
"""
