"""One parser of the recipe: `fetalhc train`'s flags are TrainConfig's fields, a --config
YAML sets values that flags override, and errors name config keys."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fetalhc.cli.main import build_parser
from fetalhc.cli.train_commands import train_config
from fetalhc.errors import FetalHCError
from fetalhc.training.config import TrainConfig, config_from_mapping


def _parse(*argv: str):
    return build_parser().parse_args(["train", "--out", "run", *argv])


def test_every_field_is_a_flag_with_its_default_in_the_help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for f in fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert "(default: 20)" in text and "(default: 320x224)" in text


def test_flags_override_the_yaml_which_overrides_the_defaults(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        "data: hc18\nsplit: split.csv\nepochs: 7\nlr: 0.001\nimage_size: 160x128\n"
        "skip_rescale: true\n"
    )
    config = train_config(_parse("--config", str(yaml_file), "--epochs", "3", "--batch", "4"))
    assert (config.epochs, config.batch_size, config.lr) == (3, 4, 0.001)
    assert config.image_size == [160, 128] and config.skip_rescale is True
    assert config.strategy == TrainConfig().strategy  # neither given: the default
    off = train_config(_parse("--config", str(yaml_file), "--no-skip-rescale"))
    assert off.skip_rescale is False and off.epochs == 7


def test_flags_alone_and_the_study_yaml_give_the_same_config():
    given = ["--data", "d", "--split", "s", "--train-parts", "train,val", "--bn-mode", "paper"]
    from_flags = train_config(_parse(*given, "--image-size", "96x64", "--lr", "0.01"))
    from_mapping = config_from_mapping(
        {
            "data": "d",
            "split": "s",
            "train_parts": ["train", "val"],
            "bn_mode": "paper",
            "image_size": "96x64",
            "lr": 0.01,
        }
    )
    assert from_flags == from_mapping


@pytest.mark.parametrize(
    "mapping,key",
    [
        ({"image_size": [100, 64]}, "image_size"),
        ({"fraction": 2.0}, "fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"train_parts": ["bogus"]}, "train_parts"),
        ({"lossy": 1}, "lossy"),
        ({"epochs": "ten"}, "epochs"),
    ],
)
def test_library_errors_name_the_config_key(mapping, key):
    with pytest.raises(FetalHCError) as err:
        config_from_mapping(mapping)
    assert key in str(err.value) and "--" not in str(err.value)


def test_missing_data_is_one_clear_line(tmp_path):
    with pytest.raises(FetalHCError, match="give --data"):
        train_config(_parse("--split", "s"))
