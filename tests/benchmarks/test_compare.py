"""`python scripts/benchmark.py compare`: our VAE beside the same VAE from x-transformers, at tiny sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from musicvae.benchmarks.compare import (
    CompareBenchSize,
    XTransformersVAE,
    _alternate,
    n_params,
    our_vae,
    run_compare_benchmark,
)
from musicvae.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(
    d_model=32, layers=1, heads=2, latent_dim=8, vocab_size=40, batch_size=2, seq_len=12, steps=3, warmup=1,
    sample_batch=2, sample_length=10, uncached_length=6, repeats=2,
)  # fmt: skip


def run_script(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """scripts/benchmark.py in a fresh interpreter, one thread; `prelude` runs first (to hide a package)."""
    code = f"import runpy, sys\n{prelude}\nsys.argv = ['benchmark.py', *sys.argv[1:]]\n"
    code += "runpy.run_path('scripts/benchmark.py', run_name='__main__')"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_x_transformers_decoder_depends_on_z_when_teacher_forced_and_when_generating():
    torch.manual_seed(0)
    model = XTransformersVAE(CompareBenchSize(**TINY), max_len=16).eval()
    tokens = torch.randint(3, 40, (2, 9))
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    assert not torch.allclose(model.decode(tokens, z1), model.decode(tokens, z2), atol=1e-4)

    # The cached loop must pass z at every step: cached == uncached for one seed, and z changes the draw.
    def draw(z: torch.Tensor, cache_kv: bool) -> torch.Tensor:
        torch.manual_seed(1)
        return model.generate(z, 12, cache_kv=cache_kv)

    cached = draw(z1, True)
    assert cached.shape == (2, 12) and not torch.isin(cached, torch.tensor([0, 1, 2])).any()  # no PAD/BOS/EOS
    assert torch.equal(cached, draw(z1, False))
    assert not torch.equal(cached, draw(z2 * 3, True))


@pytest.mark.parametrize(
    "size",
    [
        {},  # the size: d_model 256, 4 + 4 layers, 4 heads
        {"d_model": 128, "layers": 2},
        {"d_model": 128, "layers": 2, "pooling": "mean"},
    ],
)
def test_both_sides_have_the_same_size(size):
    cfg = CompareBenchSize(**size)
    ours_model = our_vae(cfg, 257)
    dropouts = {k: v for k, v in vars(ours_model.cfg).items() if k.endswith("dropout")}
    # every dropout at 0: attn_dropout too, where the model has it
    assert "dropout" in dropouts and set(dropouts.values()) == {0.0}
    ours, theirs = n_params(ours_model), n_params(XTransformersVAE(cfg, 257))
    assert abs(ours - theirs) / ours < 0.03, (ours, theirs)


def slowed(monkeypatch, cls: type, methods: tuple[str, ...], seconds: float) -> None:
    """Make `cls.<method>` take `seconds` longer: a delay the benchmark must see on that side only."""
    import time

    for name in methods:
        real = getattr(cls, name)

        def late(self, *args, _real=real, **kwargs):
            time.sleep(seconds)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, late)


@pytest.mark.parametrize("slow_side", ["x_transformers", "musicvae"])
def test_a_delay_put_on_one_side_shows_in_its_speed_and_in_the_ratios(monkeypatch, slow_side):
    """The benchmark measures what it says: 40 ms added to every step of one side (its forward when
    training, its generate when sampling) makes that side's median at least 40 ms and turns the ratios
    (ours / theirs) clearly against it, while the other side stays fast. Nothing here restates the code's
    arithmetic: a benchmark that timed the wrong call, mixed the sides or inverted a ratio fails."""
    from musicvae.models.vae import MusicVAE

    delay = 0.04
    if slow_side == "x_transformers":
        slowed(monkeypatch, XTransformersVAE, ("forward", "generate"), delay)
    else:
        import time

        from musicvae.benchmarks import compare

        slowed(monkeypatch, MusicVAE, ("forward",), delay)
        real = compare.sample_tokens

        def late_sampling(*args, **kwargs):
            time.sleep(delay)
            return real(*args, **kwargs)

        monkeypatch.setattr(compare, "sample_tokens", late_sampling)
    result = run_compare_benchmark(CompareBenchSize(**TINY))
    train, sample = result["train"], result["sample"]
    other = "musicvae" if slow_side == "x_transformers" else "x_transformers"
    assert train[slow_side]["seconds_median"] >= delay and train[other]["seconds_median"] < delay
    assert sample[slow_side]["seconds_median"] >= delay
    assert train["musicvae"]["runs"] == train["x_transformers"]["runs"] == TINY["steps"]
    if slow_side == "x_transformers":
        assert train["ratio"] > 1.5 and sample["ratio"] > 1.0  # ours / theirs: ours is the faster
    else:
        assert train["ratio"] < 1 / 1.5 and sample["ratio"] < 1.0
    assert abs(train["params"]["musicvae"] - train["params"]["x_transformers"]) < 0.05 * train["params"]["musicvae"]


def test_what_selects_the_parts():
    result = run_compare_benchmark(CompareBenchSize(**{**TINY, "what": "train"}))
    assert "train" in result and "sample" not in result
    result = run_compare_benchmark(CompareBenchSize(**{**TINY, "what": "sample", "uncached_length": 0}))
    assert "train" not in result and "cache_speedup" not in result["sample"]


def test_sides_alternate_and_swap_who_goes_first():
    calls = []
    runs = {name: (lambda name=name: calls.append(name) or 1.0) for name in ("ours", "theirs")}
    times = _alternate(runs, 3)
    assert calls == ["ours", "theirs", "theirs", "ours", "ours", "theirs"]
    assert times == {"ours": [1.0] * 3, "theirs": [1.0] * 3}


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="what='nope' is not one of train, sample, both"):
        CompareBenchSize(what="nope")
    with pytest.raises(UserError, match="uncached_length=600 must be between 0"):
        CompareBenchSize(uncached_length=600)


def test_missing_x_transformers_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "x_transformers", None)  # `import x_transformers` now fails
    with pytest.raises(UserError, match=r'pip install -e "\.\[bench\]"'):
        run_compare_benchmark(CompareBenchSize(**TINY))


def test_script_without_x_transformers_prints_one_line_and_exits_2():
    # musicvae itself imports without it: only running the benchmark needs it
    proc = run_script("compare", prelude="sys.modules['x_transformers'] = None")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        'error: x-transformers is not installed; the side-by-side benchmark needs it: pip install -e ".[bench]"'
    ]


@pytest.mark.slow  # a benchmark end to end (x-transformers' and our model timed)
def test_script_compare_runs_and_prints_the_ratios():
    proc = run_script("compare", *(f"{k}={v}" for k, v in TINY.items()))
    assert proc.returncode == 0, proc.stderr
    ratios = [float(r) for r in re.findall(r"ratio\s+([0-9.]+)x", proc.stdout)]
    assert len(ratios) == 2 and all(r > 0 for r in ratios), proc.stdout
    assert re.search(r"speed-up\s+[0-9.]+x", proc.stdout), proc.stdout
    assert "M ours vs" in proc.stdout and "M x-transformers" in proc.stdout


@pytest.mark.slow  # torch.compile of both sides: ~2 min on a 2-core CPU
def test_compiled_comparison_runs_both_parts():
    result = run_compare_benchmark(CompareBenchSize(**TINY, compile=True))
    assert result["settings"]["compile"] is True
    assert result["train"]["ratio"] > 0 and result["sample"]["ratio"] > 0 and result["sample"]["cache_speedup"] > 0
