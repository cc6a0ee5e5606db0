"""`ssformer config list|show`: the shipped recipes and every default, without running anything."""

from __future__ import annotations

import yaml

from ssformer.cli.main import main
from ssformer.engine.config import DEFAULTS, config_dir, leaves


def test_list_names_every_shipped_recipe(capsys):
    assert main(["config", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(p.stem for p in config_dir().glob("*.yaml"))


def test_show_defaults_and_a_recipe_with_overrides(capsys):
    assert main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == DEFAULTS
    assert main(["config", "show", "camvid_cpu", "--set", "train.lr=0.01"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    recipe = yaml.safe_load((config_dir() / "camvid_cpu.yaml").read_text())
    assert shown["train"]["lr"] == 0.01 and shown["model"]["embed_dim"] == recipe["model"]["embed_dim"]
    assert shown["train"]["eps"] == DEFAULTS["train"]["eps"]  # a default the recipe does not set
    assert shown["data"]["root"] is None  # nothing is validated against the machine


def test_show_errors_name_the_key(capsys):
    assert main(["config", "show", "sample", "--set", "train.lrr=1"]) == 2
    assert "train.lrr" in capsys.readouterr().err
    assert main(["config", "show", "no_such_recipe"]) == 2
    assert "no_such_recipe" in capsys.readouterr().err


def test_show_refuses_a_value_of_the_wrong_type_or_range(capsys):
    for override, allowed in [("model.depths=5", "a list"), ("train.lr=abc", "a number > 0"),
                              ("train.batch_size=0", "an integer >= 1")]:
        assert main(["config", "show", "--set", override]) == 2
        err = capsys.readouterr().err
        assert override.split("=")[0] in err and allowed in err and "Traceback" not in err


def test_the_documented_defaults_are_the_defaults(capsys):
    """docs/training.md shows `ssformer config show`; regenerate the block when a default changes."""
    from tests.conftest import REPO

    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    text = (REPO / "docs" / "training.md").read_text()
    start = text.index("```yaml\n", text.index("## Config sections")) + len("```yaml\n")
    assert text[start:text.index("```", start)] == shown


def test_the_key_table_in_the_docs_is_generated_from_the_config(capsys):
    """docs/training.md holds `ssformer config keys`; regenerate it when a field changes."""
    from tests.conftest import REPO

    assert main(["config", "keys"]) == 0
    printed = capsys.readouterr().out
    text = (REPO / "docs" / "training.md").read_text()
    start = text.index("<!-- ssformer config keys -->\n") + len("<!-- ssformer config keys -->\n")
    assert text[start:text.index("<!-- end of ssformer config keys -->", start)] == printed
    rows = [line for line in printed.splitlines() if line.startswith("| `")]
    assert len(rows) == len(list(leaves())) and "| `train.lr` | `6.0e-05` | a number > 0 |" in printed
