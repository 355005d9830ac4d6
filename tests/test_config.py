import dataclasses

import pytest

from kinema.config import CONFIGS_DIR, Recipe, find_recipe, load_config, save_config
from kinema.errors import ConfigError
from kinema.train.recipes import recipe_schema


def test_defaults_without_a_recipe():
    assert load_config(Recipe) == Recipe()


def test_every_bundled_recipe_loads():
    recipes = sorted(CONFIGS_DIR.glob("*.yaml"))
    assert recipes
    for path in recipes:
        schema = recipe_schema(path)
        assert isinstance(load_config(schema, path), schema)
    names = ("shapes", "vae_shapes", "t2v_shapes", "world_breakout", "curate")
    assert [recipe_schema(name).__name__ for name in names] == [
        "Recipe",
        "VAERecipe",
        "T2VRecipe",
        "WorldRecipe",
        "CurateRecipe",
    ]


def test_recipe_by_name_and_overrides():
    recipe = load_config(Recipe, "shapes", ["train.lr=3e-4", "data.frames=9", "data.shapes.held_out=[]"])
    assert recipe.train.lr == 3e-4
    assert recipe.data.frames == 9
    assert recipe.data.shapes.held_out == []
    assert recipe.train.out_dir == "runs/shapes"  # from the YAML


def test_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        load_config(Recipe, "shapes", ["train.lrr=1"])
    message = str(error.value)
    assert "'train.lrr'" in message
    assert all(key in message for key in ("lr", "batch_size", "steps", "out_dir", "seed"))


def test_unknown_key_in_the_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  framez: 3\n")
    with pytest.raises(ConfigError, match=r"'data.framez'.*valid keys in 'data': source, width"):
        load_config(Recipe, path)


def test_unknown_section():
    with pytest.raises(ConfigError, match="valid keys in the top level: data, train"):
        load_config(Recipe, None, ["model.dim=3"])


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [("train.lr=fast", "train.lr", "float"), ("data.frames=1.5", "data.frames", "int")],
)
def test_wrong_type_names_key_and_type(override, key, expected):
    with pytest.raises(ConfigError) as error:
        load_config(Recipe, None, [override])
    assert f"'{key}'" in str(error.value)
    assert f"valid {expected}" in str(error.value)


@pytest.mark.parametrize("override", ["train.lr", "=3"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(Recipe, None, [override])


def test_out_of_range_value_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train.lr must be positive"):
        load_config(Recipe, None, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"data.frames must be positive"):
        load_config(Recipe, None, ["data.frames=0"])


def test_bad_yaml_and_missing_recipe(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Recipe, bad)
    with pytest.raises(ConfigError, match=r"recipe 'nope' not found \(bundled recipes: .*shapes"):
        find_recipe("nope")


def test_saved_config_loads_back_identically(tmp_path):
    recipe = load_config(Recipe, "shapes", ["train.seed=7", "data.shapes.max_objects=1"])
    path = save_config(recipe, tmp_path / "run" / "config.yaml")
    assert load_config(Recipe, path) == recipe
    assert dataclasses.asdict(load_config(Recipe, path))["train"]["seed"] == 7
