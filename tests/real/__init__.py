"""The real-switch tier: the daemon against a real FreeSWITCH (see README.md here)."""
