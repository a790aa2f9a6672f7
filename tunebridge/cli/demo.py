"""``tunebridge demo``: the end-to-end demo on embedded data and the embedded tiny base model."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="end to end on the embedded tiny model: data, conversion, LoRA on three "
        "stacks, evaluation, every parity check, a report",
    )
    p.add_argument(
        "--out", default="out/demo", help="demo directory (default out/demo; refused if it exists, unless --force)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing demo directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..workflows.demo import run_demo

    try:
        _, all_passed = run_demo(args.out, force=args.force)
    except KeyboardInterrupt:  # the demo writes its steps' outputs in place, not as one atomic directory
        raise KeyboardInterrupt(f"{args.out} holds the demo's work so far; run it again with --force") from None
    return 0 if all_passed else 1
