"""DataConfig: its defaults are configs/data/base.yaml's, its checks name the key."""

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from musicvae.data.config import DataConfig
from musicvae.errors import UserError


def test_defaults_match_base_yaml(configs_dir):
    """A plain-dict config (no Hydra) gets the same settings as data=midi_dir."""
    base = OmegaConf.load(configs_dir / "data" / "base.yaml")
    checked = 0
    for field in dataclasses.fields(DataConfig):
        value = OmegaConf.to_container(base, resolve=False).get(field.name)
        if field.name not in base or value == "???" or "${" in str(value):
            continue  # required in YAML, or set from paths.*
        if field.name == "attributes":  # a node of its own: read as DataConfig reads it
            read = DataConfig.from_cfg({"attributes": value})
            assert (read.attributes, read.allow_empty_attribute_classes) == (
                DataConfig.attributes, DataConfig.allow_empty_attribute_classes)  # fmt: skip
        else:
            assert value == field.default, field.name
        checked += 1
    assert checked >= 16 and base.file_timeout_s == DataConfig.file_timeout_s == 120


@pytest.mark.parametrize("value", [0, -1])
def test_file_timeout_must_be_positive_or_null(value):
    with pytest.raises(UserError, match="data.file_timeout_s must be > 0 or null"):
        DataConfig.from_cfg({"file_timeout_s": value})
    assert DataConfig.from_cfg({"file_timeout_s": None}).file_timeout_s is None


def test_default_cache_dir_follows_the_data_dir_as_the_yaml_does(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICVAE_DATA_DIR", str(tmp_path))
    assert DataConfig.from_cfg({}).cache_dir == str(tmp_path / "cache")  # configs/paths: ${oc.env:MUSICVAE_DATA_DIR,data}
    monkeypatch.delenv("MUSICVAE_DATA_DIR")
    assert DataConfig.from_cfg({}).cache_dir == str(Path("data") / "cache")
