"""Checkpoint and adapter conversion between the stacks' formats, merging, format detection."""
