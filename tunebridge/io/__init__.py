"""File-system helpers."""
