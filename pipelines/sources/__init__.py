"""Connectors: each discovers candidates for a window and fetches their bytes into the raw zone."""
