"""Code that runs inside the test VM: fixtures support, the echo function, the demo."""
