"""Run a MindFormers YAML the way MindFormers' ``run_mindformer.py`` does, for the options tunebridge's scripts pass.

``run_mindformer.py`` lives in MindFormers' repository, not in the ``mindformers`` wheel; the rendered run and eval
scripts call ``python "$RUN_MINDFORMER" ...`` (default: ``run_mindformer.py`` of the checkout they run in), and
where there is no checkout (CI, ``tunebridge run``) ``RUN_MINDFORMER`` names this file. Its path is the same:

    MindFormerConfig(config, run_mode) -> command-line overrides -> set_output_path(output_dir)
    -> build_context(config) -> Trainer(config) -> .train() (run_mode train / finetune), .evaluate(), .predict()

Options: ``--config --run_mode --load_checkpoint --src_strategy_path_or_dir --auto_trans_ckpt --use_parallel
--train_dataset_dir --eval_dataset_dir --predict_data --output_dir`` as in ``run_mindformer.py``, and any nested key
as ``--a.b.c VALUE`` (parsed with MindFormers' own ``parse_value``). A relative ``--config`` is taken from the
working directory (``run_mindformer.py`` takes it from its own directory: the scripts pass absolute paths).

This file sits alone in its directory so that running it puts nothing else on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import sys


def _flag(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return text.lower() == "true"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run_mode", choices=("train", "finetune", "eval", "predict"))
    p.add_argument("--load_checkpoint")
    p.add_argument("--src_strategy_path_or_dir")
    p.add_argument("--auto_trans_ckpt", type=_flag)
    p.add_argument("--use_parallel", type=_flag)
    p.add_argument("--train_dataset_dir")
    p.add_argument("--eval_dataset_dir")
    p.add_argument("--predict_data", nargs="+")
    p.add_argument("--output_dir")
    args, rest = p.parse_known_args(argv)
    if len(rest) % 2 or any(not key.startswith("--") for key in rest[::2]):
        p.error(f"extra options must be '--a.b.c VALUE' pairs, got {rest}")
    return args, [(key[2:], value) for key, value in zip(rest[::2], rest[1::2])]


def configure(args: argparse.Namespace, extra: list[tuple[str, str]]):
    """The MindFormerConfig with the command line applied, as run_mindformer.py applies it."""
    from mindformers.tools.register import MindFormerConfig
    from mindformers.tools.utils import parse_value

    path = os.path.abspath(args.config)
    config = MindFormerConfig(path, run_mode=args.run_mode) if args.run_mode else MindFormerConfig(path)
    for key in ("load_checkpoint", "src_strategy_path_or_dir", "auto_trans_ckpt", "use_parallel", "output_dir"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    if args.train_dataset_dir:
        config.train_dataset.data_loader.dataset_dir = args.train_dataset_dir
    if args.eval_dataset_dir:
        config.eval_dataset.data_loader.dataset_dir = args.eval_dataset_dir
    if config.run_mode == "predict":
        data = args.predict_data
        config.input_data = data[0].replace(r"\n", "\n") if data and len(data) == 1 else data
    for dotted, value in extra:
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            if key not in node:
                raise SystemExit(f"launch_mindformers: {key} is not a key of the config (in --{dotted})")
            node = node[key]
        node[leaf] = parse_value(value)
    return config


def main(argv: list[str]) -> None:
    args, extra = parse(argv)
    config = configure(args, extra)
    from mindformers.core.context import build_context
    from mindformers.trainer import Trainer
    from mindformers.utils.file_utils import set_output_path

    set_output_path(config.output_dir)
    build_context(config)
    trainer = Trainer(config)
    if config.run_mode in ("train", "finetune"):
        trainer.train()
    elif config.run_mode == "eval":
        trainer.evaluate(eval_checkpoint=config.load_checkpoint)
    elif config.run_mode == "predict":
        trainer.predict(
            predict_checkpoint=config.load_checkpoint,
            input_data=config.input_data,
            batch_size=config.predict_batch_size,
        )
    else:
        raise SystemExit(f"launch_mindformers: run_mode {config.run_mode!r} (train, finetune, eval, predict)")


if __name__ == "__main__":
    main(sys.argv[1:])
