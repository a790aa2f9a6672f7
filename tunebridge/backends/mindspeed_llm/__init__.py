"""MindSpeed-LLM: render, run, launch, and the megatron-core reference (megatron/)."""
