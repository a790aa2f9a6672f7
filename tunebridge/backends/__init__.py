"""Backends: each renders a recipe for its stack and/or runs it here (torch, MindFormers, megatron-core)."""
