"""The rows of ``tunebridge explain``: a recipe's values as each stack's renderer or trainer sets them."""

from __future__ import annotations

from dataclasses import dataclass

from .mapping import FIELDS, flags_for, get_path


@dataclass(frozen=True)
class ExplainRow:
    field: str
    value: str
    mindformers: str
    mindspeed_llm: str
    torch: str


def _recipe_value(recipe, dotted: str):
    value = recipe
    for key in dotted.split("."):
        value = getattr(value, key, None)
        if value is None:
            return None
    return value


def _effective(recipe, dotted: str):
    """A field's value as the stacks take it: the recipe's, or the default it leaves to tunebridge."""
    if dotted == "train.moe_aux_loss_coeff":
        from .schema import moe_aux_loss_coeff

        return moe_aux_loss_coeff(recipe) if recipe.spec.num_experts else None
    return _recipe_value(recipe, dotted)


def explain_rows(recipe, version: str | None = None) -> list[ExplainRow]:
    from ..backends.mindformers import render as mf
    from ..backends.mindspeed_llm import render as msl
    from ..backends.render import _lora_plan, default_prompt_type
    from ..backends.stacks import get_stack
    from ..train.config import TrainConfig

    version = version or msl.DEFAULT_VERSION
    spec = recipe.spec
    # a family MindFormers cannot run has no MindFormers column (tunebridge explain says why)
    mf_config = (
        None
        if get_stack("mindformers").problem(spec)
        else mf.finetune_config(recipe, spec, _lora_plan(recipe, "mindformers"))
    )
    ctx = msl.Context(recipe, spec, _lora_plan(recipe, "mindspeed-llm"), default_prompt_type(recipe))
    rendered = {line.split(" ", 1)[0]: line for g in msl.TUNE_GROUPS for line in msl.flag_args(ctx, g, version)}
    torch_cfg = TrainConfig.from_recipe(recipe)
    rows = []
    for f in FIELDS:
        value = _effective(recipe, f.recipe)
        if value is None:
            continue
        try:
            mf_value = f"{f.mindformers}: {get_path(mf_config, f.mindformers)}" if f.mindformers and mf_config else "-"
        except KeyError:
            mf_value = "-"
        flags = [rendered[flag] for flag in flags_for(f.recipe, version) if flag in rendered]
        torch_value = "-"
        if f.torch:
            head, _, tail = f.torch.partition(".")
            v = getattr(torch_cfg, head)
            torch_value = f"{f.torch}: {v.get(tail) if tail and isinstance(v, dict) else v}"
        rows.append(ExplainRow(f.recipe, str(value), mf_value, "; ".join(flags) or "-", torch_value))
    return rows
