"""Webmail: a blueprint served on every brand host at `/` (to come)."""
