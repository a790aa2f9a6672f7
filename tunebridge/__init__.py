"""tunebridge: one fine-tuning recipe for MindFormers, MindSpeed-LLM and PyTorch."""

__version__ = "0.1.0"
