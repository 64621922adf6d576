"""The pure rules: no I/O, no clock, no globals (see tests/test_layout.py)."""
