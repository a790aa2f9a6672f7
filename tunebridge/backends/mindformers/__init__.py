"""MindFormers: render, run, the bridge into .venv-mindspore and the code that runs there (ms/)."""
