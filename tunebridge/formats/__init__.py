"""Checkpoint formats: readers give tensors by name lazily; writers take tensors one at a time."""
