"""Catalog, credentials, preferences and routes (filled by the configuration work)."""
