"""ccd: a call-center daemon for FreeSWITCH."""

__version__ = "0.1.0"
