"""Daemon logs -> typed events -> database rows: parsers, the transaction assembler, ingestion."""
