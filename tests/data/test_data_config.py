"""DataConfig: its defaults are configs/data/base.yaml's, its checks name the key."""

from pathlib import Path

import pytest

from musicvae.data.config import DataConfig
from musicvae.errors import UserError


def test_data_configs_hold_no_default_of_their_own(compose_cfg):
    """DataConfig is the one home of the data defaults: data=midi_dir composes to them (what a plain-dict
    config without Hydra gets too), apart from the folder it is given and the cache dir it wires from paths."""
    cfg = compose_cfg("train", ["data=midi_dir", "data.path=/some/folder"])
    composed = DataConfig.from_cfg(cfg.data)
    assert composed == DataConfig.from_cfg({"name": "midi_dir", "path": "/some/folder", "cache_dir": composed.cache_dir})
    assert composed.file_timeout_s == 120 and composed.attributes == DataConfig.attributes


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
