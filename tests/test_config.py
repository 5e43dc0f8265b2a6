"""Run config: precedence, parsing of override strings, unknown keys, validation, YAML round trips, recipes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import litezoo
from litezoo import config as C
from litezoo.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence -----------------------------------------------------------------------------------------------


def test_defaults_then_recipe_then_overrides(tmp_path):
    recipe = write(tmp_path / "r.yaml", "optim:\n  lr: 0.05\n  momentum: 0.8\ntrain:\n  epochs: 12\n")
    assert C.resolve().optim.lr == C.OptimConfig().lr == 0.1  # defaults alone
    cfg = C.resolve(recipe)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.train.epochs) == (0.05, 0.8, 12)  # recipe beats defaults
    assert cfg.data.batch_size == C.DataConfig().batch_size  # untouched fields keep defaults
    cfg = C.resolve(recipe, {"optim.lr": "0.2", "epochs": 3})
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.train.epochs) == (0.2, 0.8, 3)  # overrides beat the recipe


def test_override_key_forms_and_aliases():
    cfg = C.resolve(
        overrides={
            "lr": "0.3",  # unique leaf
            "label-smoothing": "0.1",  # dashes are underscores
            "data.batch_size": "64",  # dotted
            "model": "mobilenet_v1_x1_0_cifar",  # alias of model.name
            "data": "/some/folder",  # alias of data.path
            "optimizer": "adamw",  # alias of optim.name
            "schedule": "linear",  # alias of schedule.name
        }
    )
    assert cfg.optim.lr == 0.3 and cfg.train.label_smoothing == 0.1 and cfg.data.batch_size == 64
    assert (cfg.model.name, cfg.data.path, cfg.optim.name, cfg.schedule.name) == (
        "mobilenet_v1_x1_0_cifar",
        "/some/folder",
        "adamw",
        "linear",
    )


def test_section_mapping_override_and_last_one_wins():
    cfg = C.resolve(overrides={"optim": {"lr": 0.02, "nesterov": "yes"}, "optim.lr": 0.04})
    assert cfg.optim.nesterov is True and cfg.optim.lr == 0.04


def test_ambiguous_leaf_and_section_keys_are_errors():
    with pytest.raises(InputError, match="ambiguous.*model.name, optim.name, schedule.name"):
        C.resolve(overrides={"name": "x"})
    with pytest.raises(InputError, match="is a section"):
        C.resolve(overrides={"train": "1"})


# --- type parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("epochs", "7", 7),
        ("epochs", "1e2", 100),  # integer-valued float spelling
        ("lr", "4e-5", 4e-5),
        ("lr", "1", 1.0),
        ("nesterov", "yes", True),
        ("nesterov", "Off", False),
        ("flip", "0", False),
        ("flip", "TRUE", True),
        ("flip", "alternate", "alternate"),
        ("ema_decay", "none", None),
        ("ema_decay", "null", None),
        ("ema_decay", "0.999", 0.999),
        ("image_size", "None", None),
        ("random_resized_crop", "null", None),
        ("random_resized_crop", "1", True),
        ("channels_last", "auto", "auto"),
        ("channels_last", "false", False),
        ("milestones", "0.3,0.6,0.8", (0.3, 0.6, 0.8)),
        ("milestones", "[0.5, 0.75]", (0.5, 0.75)),
        ("betas", "0.8, 0.99", (0.8, 0.99)),
        ("device", "cuda:1", "cuda:1"),
    ],
)
def test_override_strings_are_parsed_to_the_field_type(key, text, expected):
    overrides = {key: text}
    if key == "nesterov":
        overrides["momentum"] = "0.9"
    cfg = C.resolve(overrides=overrides)
    section, name = C.resolve_key(key).split(".")
    value = getattr(getattr(cfg, section), name)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "key, text, message",
    [
        ("epochs", "3.5", "train.epochs: expected an integer"),
        ("epochs", "ten", "train.epochs: expected an integer"),
        ("lr", "fast", "optim.lr: expected a number"),
        ("lr", "nan", "optim.lr must be a finite number"),
        ("flip", "maybe", "data.flip must be true, false or alternate"),
        ("lr", "none", "optim.lr: expected a number"),
        ("betas", "0.9", "optim.betas: expected 2 comma-separated numbers"),
        ("milestones", "0.3,x", "schedule.milestones: expected a number"),
        ("channels_last", "sometimes", "train.channels_last must be auto, true or false"),
    ],
)
def test_unparsable_values_name_the_field(key, text, message):
    with pytest.raises(InputError, match=message):
        C.resolve(overrides={key: text})


def test_yaml_native_types_and_yaml_quirks(tmp_path):
    # PyYAML reads 4e-5 as a string and bare 'off' as False: both must still mean what the user wrote.
    text = "optim:\n  weight_decay: 4e-5\ntrain:\n  amp: off\nschedule:\n  milestones: [0.5]\n"
    recipe = write(tmp_path / "r.yaml", text)
    cfg = C.resolve(recipe)
    assert cfg.optim.weight_decay == 4e-5 and cfg.train.amp == "off" and cfg.schedule.milestones == (0.5,)
    bad = write(tmp_path / "bad.yaml", "train:\n  device: yes\n")
    with pytest.raises(InputError, match="train.device: expected a string.*quote it"):
        C.resolve(bad)


# --- unknown keys ---------------------------------------------------------------------------------------------


def test_unknown_override_suggests_the_close_key():
    with pytest.raises(InputError, match=r"unknown config key 'optim.lrr'; did you mean optim.lr\?"):
        C.resolve(overrides=C.parse_cli_overrides(["--optim.lrr", "0.1"]))
    with pytest.raises(InputError, match="did you mean optim.lr"):  # right leaf, wrong section
        C.resolve(overrides={"train.lr": "0.1"})
    with pytest.raises(InputError, match="did you mean label_smoothing"):
        C.resolve(overrides={"label_smothing": "0.1"})


def test_unknown_yaml_keys_and_sections(tmp_path):
    expected = r"unknown config key 'optim.moment' in .*r1.yaml; did you mean optim\.momentum\?"
    with pytest.raises(InputError, match=expected):
        C.resolve(write(tmp_path / "r1.yaml", "optim:\n  moment: 0.9\n"))
    with pytest.raises(InputError, match=r"unknown config section 'optimizer'.*did you mean optim\?"):
        C.resolve(write(tmp_path / "r2.yaml", "optimizer:\n  lr: 0.1\n"))
    with pytest.raises(InputError, match="must be a mapping"):
        C.resolve(write(tmp_path / "r3.yaml", "optim: 0.1\n"))
    with pytest.raises(InputError, match="not valid YAML"):
        C.resolve(write(tmp_path / "r4.yaml", "optim:\n  lr: [0.1\n"))


def test_missing_recipe_is_an_input_error_with_a_suggestion():
    with pytest.raises(InputError, match="recipe not found.*did you mean mobilenet_v1_cifar10"):
        C.resolve("mobilenet_v1_cifar")


# --- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"epochs": "0"}, "train.epochs"),
        ({"batch_size": "0"}, "data.batch_size"),
        ({"eval_batch_size": "-1"}, "data.eval_batch_size"),
        ({"lr": "0"}, "optim.lr"),
        ({"optimizer": "adam"}, "optim.name"),
        ({"schedule": "exponential"}, "schedule.name"),
        ({"amp": "fp32"}, "train.amp"),
        ({"device": "tpu"}, "train.device"),
        ({"on_nan": "ignore"}, "train.on_nan"),
        ({"label_smoothing": "1.0"}, "train.label_smoothing"),
        ({"label_smoothing": "-0.1"}, "train.label_smoothing"),
        ({"warmup_epochs": "30", "epochs": "30"}, "schedule.warmup_epochs"),
        ({"schedule": "onecycle", "warmup_epochs": "1"}, "schedule.warmup_epochs"),
        ({"momentum": "1.0"}, "optim.momentum"),
        ({"nesterov": "true", "momentum": "0"}, "optim.nesterov"),
        ({"weight_decay": "-1e-4"}, "optim.weight_decay"),
        ({"min_lr": "0.5", "lr": "0.1"}, "schedule.min_lr"),
        ({"milestones": "0.6,0.3"}, "schedule.milestones"),
        ({"schedule": "steps", "milestones": "0.05,0.5", "warmup_epochs": "3", "epochs": "30"}, "schedule.milestones"),
        ({"pct_start": "1.0"}, "schedule.pct_start"),
        ({"ema_decay": "1.0"}, "train.ema_decay"),
        ({"keep": "0"}, "checkpoint.keep"),
        ({"freeze_features": "true"}, "model.freeze_features"),
        ({"num_classes": "0"}, "model.num_classes"),
        ({"progressive_start_size": "4"}, "data.progressive_start_size"),
        ({"progressive_epochs": "0"}, "data.progressive_epochs"),
    ],
)
def test_validation_errors_name_the_field(overrides, field):
    with pytest.raises(InputError) as info:
        C.resolve(overrides=overrides)
    assert field in str(info.value)


def test_validation_reports_every_problem_at_once():
    with pytest.raises(InputError) as info:
        C.resolve(overrides={"lr": "-1", "batch_size": "0", "amp": "fp32"})
    message = str(info.value)
    assert "optim.lr" in message and "data.batch_size" in message and "did you mean off" in message


def test_validate_checks_configs_built_in_code():
    cfg = C.RunConfig()
    cfg.train.epochs = "ten"  # type: ignore[assignment]
    with pytest.raises(InputError, match="train.epochs"):
        C.validate(cfg)
    cfg = C.RunConfig()
    cfg.schedule.milestones = [0.5, 0.9]  # type: ignore[assignment]  # normalised to a tuple
    assert C.validate(cfg).schedule.milestones == (0.5, 0.9)


# --- round trips ----------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_equal(tmp_path):
    cfg = C.resolve(
        "mobilenet_v1_cifar10",
        {"ema_decay": "0.999", "milestones": "0.5,0.7", "betas": "0.8,0.9", "channels_last": "true", "threads": "2"},
    )
    path = C.save_yaml(cfg, tmp_path / "run" / "config.yaml")
    assert C.load_yaml(path) == cfg
    assert C.from_dict(C.to_dict(cfg)) == cfg
    plain = yaml.safe_load(path.read_text())
    assert plain["schedule"]["milestones"] == [0.5, 0.7] and plain["optim"]["betas"] == [0.8, 0.9]
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_save_yaml_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    C.save_yaml(C.resolve(overrides={"epochs": "3"}), path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        C.save_yaml(C.resolve(overrides={"epochs": "4"}), path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # and the temp file is gone


def test_from_dict_is_strict():
    with pytest.raises(InputError, match="did you mean train.epochs"):
        C.from_dict({"train": {"epoch": 3}})
    with pytest.raises(InputError, match="train.epochs must be ≥ 1"):
        C.from_dict({"train": {"epochs": 0}})
    assert C.from_dict({}) == C.RunConfig()


def test_a_bad_epoch_count_is_reported_first_and_alone():
    """`--epochs -1 --warmup-epochs 0.5` used to lead with a warm-up complaint that follows from the bad count."""
    with pytest.raises(InputError) as info:
        C.resolve(overrides={"epochs": "-1", "warmup_epochs": "0.5"})
    assert str(info.value) == "invalid config: train.epochs must be ≥ 1, got -1"


def test_a_warm_up_longer_than_the_run_says_how_to_shorten_it():
    with pytest.raises(InputError, match=r"warmup_epochs \(3.7\) must be less than train.epochs \(1\).*"
                       r"--warmup-epochs 0.23") as info:  # fmt: skip
        C.resolve("fast_cifar10", {"epochs": "1", "warmup_epochs": "3.7"})  # the caller's own warm-up: not changed
    suggested = str(info.value).rsplit(" ", 1)[1]
    assert C.resolve("fast_cifar10", {"epochs": "1", "warmup_epochs": suggested}).schedule.warmup_epochs == 0.23


def test_limit_train_below_the_batch_size_names_the_config_key():
    with pytest.raises(InputError, match=r"data.limit_train \(64\) is smaller than data.batch_size \(128\).*"
                       r"lower data.batch_size to 64 or less") as info:  # fmt: skip
        C.resolve(overrides={"data.limit_train": "64"})
    assert "drop_last" not in str(info.value)
    assert C.resolve(overrides={"data.limit_train": "64", "batch_size": "64"}).data.limit_train == 64


def test_load_yaml_missing_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        C.load_yaml(tmp_path / "nope.yaml")


# --- command-line tokens --------------------------------------------------------------------------------------


def test_parse_cli_overrides():
    tokens = ["--optim.lr", "0.05", "--label-smoothing=0.1", "--lr", "-0.5", "--data", "a=b"]
    assert C.parse_cli_overrides(tokens) == {
        "optim.lr": "0.05",
        "label_smoothing": "0.1",
        "lr": "-0.5",  # a negative number is a value, not a flag
        "data": "a=b",
    }
    with pytest.raises(InputError, match="--nesterov has no value"):
        C.parse_cli_overrides(["--nesterov", "--lr", "0.1"])
    with pytest.raises(InputError, match="--epochs has no value"):
        C.parse_cli_overrides(["--epochs"])
    with pytest.raises(InputError, match="expected an override"):
        C.parse_cli_overrides(["lr", "0.1"])


# --- shipped recipes ------------------------------------------------------------------------------------------

# Values a recipe needs from the user before it is complete (the transfer recipe needs weights to start from).
_REQUIRED = {"dogs_vs_cats_vgg16": {"model.init_from": "vgg16_bn_imagenet.safetensors"}}


# Recipes the README and docs name. The parametrized tests below run over whatever list_recipes() finds; this
# pinned set makes an empty or incomplete package (a wheel without its data files) fail instead of running zero
# cases.
_DOCUMENTED = {
    "shufflenet_v1_cifar10",
    "mobilenet_v1_cifar10",
    "squeezenet_cifar10",
    "dogs_vs_cats_vgg16",
    "fast_cifar10",
    "fast_cifar10_long",
    "fast_cifar10_avx2",
    "light_cifar10",
    "squeezenet_finetune",
    "shufflenet_v2_finetune",
    "efficientnet_finetune",
    "mobilenet_v2_finetune",
    "mobilenet_v3_finetune",
    "vgg_finetune",
}
_SHIPPED = C.list_recipes()


def test_the_documented_recipes_are_shipped():
    assert _DOCUMENTED <= set(_SHIPPED), f"missing recipes: {sorted(_DOCUMENTED - set(_SHIPPED))}"


@pytest.mark.parametrize("name", _SHIPPED)
def test_every_shipped_recipe_loads_validates_and_names_a_real_model(name):
    cfg = C.resolve(name, _REQUIRED.get(name))
    litezoo.model_info(cfg.model.name)  # raises for a model the registry does not know
    assert C.resolve(f"configs/{name}.yaml", _REQUIRED.get(name)) == cfg  # by the README's path form too
    assert C.resolve(Path(str(C.recipe_path(name))), _REQUIRED.get(name)) == cfg  # and by a real file path


def test_recipes_are_package_data_and_the_checkout_link_points_at_them():
    """The recipes live inside the package (so a wheel ships them); <repo>/configs is a link for the README."""
    assert Path(str(C.RECIPE_DIR)).resolve() == (Path(C.__file__).parent / "configs").resolve()
    if (REPO / "configs").exists():  # in a checkout
        assert (REPO / "configs").resolve() == Path(str(C.RECIPE_DIR)).resolve()


def test_readme_path_form_works_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert C.resolve("configs/fast_cifar10.yaml") == C.resolve("fast_cifar10")
    with pytest.raises(InputError, match="recipe not found.*did you mean fast_cifar10"):
        C.resolve("configs/fast_cifar1.yaml")


@pytest.mark.parametrize("name", _SHIPPED)
def test_every_recipe_line_cites_its_source(name):
    for line in C.recipe_path(name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert " # " in line, f"{name}: uncommented setting {line.strip()!r}"


def test_transfer_recipe_needs_weights():
    with pytest.raises(InputError, match="model.init_from"):
        C.resolve("dogs_vs_cats_vgg16")


def test_recipe_values_match_the_tutorials():
    shuffle = C.resolve("shufflenet_v1_cifar10")
    assert (shuffle.model.name, shuffle.optim.lr, shuffle.schedule.min_lr, shuffle.optim.weight_decay) == (
        "shufflenet_v1_g3_x2_0_cifar",
        0.05,
        0.0005,
        4e-5,
    )
    assert (shuffle.train.label_smoothing, shuffle.train.epochs, shuffle.checkpoint.keep) == (0.1, 250, 5)
    mobile = C.resolve("mobilenet_v1_cifar10")
    s = mobile.schedule
    assert (s.name, mobile.optim.lr, s.div_factor, s.final_div_factor, s.pct_start, s.cycle_momentum) == (
        "onecycle",
        0.1,
        25.0,
        1e4,
        0.3,
        True,
    )
    assert (mobile.train.epochs, mobile.data.batch_size, mobile.data.eval_batch_size, mobile.train.amp) == (
        150,
        128,
        100,
        "off",
    )
    squeeze = C.resolve("squeezenet_cifar10")
    assert (squeeze.schedule.name, squeeze.schedule.warmup_epochs, squeeze.optim.lr, squeeze.train.epochs) == (
        "linear",
        5.0,
        0.01,
        30,
    )
    assert (squeeze.data.batch_size, squeeze.optim.weight_decay, squeeze.optim.momentum) == (32, 1e-4, 0.9)


def test_a_run_shortened_below_the_recipes_warmup_keeps_its_share():
    # fast_cifar10 warms up for 3.7 of 16 epochs; --epochs 1 cannot hold that: the share is kept, with a warning.
    with pytest.warns(UserWarning, match=r"warm-up shortened to 0\.231\d epochs"):
        cfg = C.resolve("fast_cifar10", {"train.epochs": "1"})
    assert cfg.train.epochs == 1 and cfg.schedule.warmup_epochs == pytest.approx(3.7 / 16, abs=1e-4)
    # A warm-up that still fits, or one the caller chose, is left alone (and one that does not fit is an error).
    assert C.resolve("fast_cifar10", {"train.epochs": "8"}).schedule.warmup_epochs == 3.7
    with pytest.raises(InputError, match="must be less than train.epochs"):
        C.resolve("fast_cifar10", {"train.epochs": "1", "schedule.warmup_epochs": "3.7"})
