"""Checkpoints load with weights_only=True: ours all do, and one carrying a pickled callable is refused."""

from __future__ import annotations

import pytest
import torch

from musicvae.errors import UserError
from musicvae.models.checkpoint import SAFE_GLOBALS, read_checkpoint


class Payload:
    """What an attacker's checkpoint carries: an object whose unpickling calls something."""

    def __reduce__(self):
        return (print, ("code ran while the checkpoint was read",))


@pytest.mark.parametrize("run", ["tiny_run", "tiny_bar_run", "tiny_attr_run"])
def test_every_checkpoint_we_write_loads_with_weights_only(run, request):
    ckpt = request.getfixturevalue(run)["ckpt"]
    assert SAFE_GLOBALS == []  # nothing beyond tensors and plain data, so nothing to allow
    loaded = torch.load(ckpt, weights_only=True)  # torch's own check, no allow-list at all
    assert read_checkpoint(ckpt)["hyper_parameters"] == loaded["hyper_parameters"]


def test_a_checkpoint_with_a_pickled_callable_is_refused_by_sampling_and_by_resuming(tiny_run, tmp_path, capsys,
                                                                                      compose_cfg):  # fmt: skip
    from musicvae.generation.inference import load_checkpoint
    from musicvae.training.train import train

    evil = torch.load(tiny_run["ckpt"], weights_only=True)
    evil["hyper_parameters"]["note"] = Payload()
    torch.save(evil, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match=r"evil.ckpt holds a pickled Python object \(print\)"):
        load_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="weights_only=True"):
        train(compose_cfg("train", [f"ckpt_path={tmp_path / 'evil.ckpt'}", f"output_dir={tmp_path / 'run'}"]))
    assert "code ran" not in capsys.readouterr().out
