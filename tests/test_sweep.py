"""`tunebridge sweep`: a grid over recipe fields, run on torch or rendered, reported as a table and a plot."""
from __future__ import annotations

import json

import pytest

from tunebridge.cli import main
from tunebridge.errors import TunebridgeError
from tunebridge.recipe.schema import load_recipe
from tunebridge.workflows.sweep import grid, parse_axis, with_values

RECIPE = "recipes/tiny-parity-lora.yaml"


def test_axes_and_grid():
    axes = [parse_axis("finetune.lora.rank=4,8,16"), parse_axis("train.lr=1e-5,5.0e-5")]
    assert axes[0].values == (4, 8, 16)
    points = grid(axes)
    assert len(points) == 6 and points[1] == {"finetune.lora.rank": 4, "train.lr": 5e-5}
    point = with_values(load_recipe(RECIPE), points[-1])
    assert point.finetune.lora.rank == 16 and point.train.lr == 5e-5
    assert point.param_report("torch").trainable_params == 22_528  # 16 x (64 + 64 + 160 + 64) x 4 layers


def test_bad_axes_name_the_field():
    with pytest.raises(TunebridgeError, match="expected FIELD=V1,V2"):
        parse_axis("finetune.lora.rank")
    with pytest.raises(TunebridgeError, match="no field 'rnk'"):
        with_values(load_recipe(RECIPE), {"finetune.lora.rnk": 4})
    with pytest.raises(TunebridgeError, match="train.lr=fast"):
        with_values(load_recipe(RECIPE), {"train.lr": "fast"})


def test_sweep_runs_the_grid_and_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", RECIPE, "--set", "finetune.lora.rank=4,8", "--max-steps", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["trainable_params"] for r in rows] == [5_632, 11_264]
    assert [r["instantiated"] for r in rows] == [5_632, 11_264]
    assert all(len(r["losses"]) == 2 for r in rows)
    assert (out / "sweep.png").stat().st_size > 1000 and "| finetune.lora.rank=4 |" in (out / "sweep.md").read_text()
    assert main(["sweep", RECIPE, "--set", "finetune.lora.rank=4", "--render", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_sweep_render_only(tmp_path):
    out = tmp_path / "r"
    assert main(["sweep", RECIPE, "--set", "train.lr=1e-4,2e-4", "--render", "--out", str(out)]) == 0
    yaml = (out / "point-01" / "mindformers" / "finetune_tiny-parity-lora-lr0.0002.yaml").read_text()
    assert "learning_rate: 0.0002" in yaml
