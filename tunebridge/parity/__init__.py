"""Parity: verdicts, logits verification, log parsers and reports."""
