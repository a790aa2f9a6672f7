"""Data: prompt templates, tokenization with supervised positions, and each stack's on-disk format."""
