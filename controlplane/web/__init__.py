"""Thin blueprints: parse input, call a service, render."""
