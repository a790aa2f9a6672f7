"""Checkpoint formats: readers give tensors by name lazily; writers take tensors one at a time.

The names below are what the command line offers; this module imports no framework."""

FORMATS = ("hf", "mcore", "mindformers")            # checkpoints
ADAPTER_FORMATS = ("peft", "mindformers", "mcore")  # LoRA adapters
DTYPE_NAMES = ("fp32", "bf16", "fp16")              # output dtypes, as torch.float32, torch.bfloat16, torch.float16
