"""End-to-end tests and the VM harness that runs them (see README.md)."""
