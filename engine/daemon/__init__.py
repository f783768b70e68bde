"""The backup engine process (``backup-engine serve``): owners, modes, transfers.

Nothing outside the engine imports this package except the CLI that starts it;
backup servers talk to it through :mod:`engine.client`, data-owner apps
through :mod:`engine.sdk`.
"""
