"""Code that runs inside the MindSpore environment (.venv-mindspore), reached through tunebridge.backends.mindformers.bridge.

Modules here import mindspore / mindformers and never torch.
"""
