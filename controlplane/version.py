"""Letterhead's release: tagged in git as the same string (0.1.0 was the first)."""

__version__ = "0.2.0.dev0"
