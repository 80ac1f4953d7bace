"""What a run plays: samples/ after training (audio, interpolation), media/ and wandb media at validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pretty_midi
import pytest

from musicvae.training.train import train

MEDIA = ("media.every_n_steps=2", "media.n_segments=2", "media.n_prior=1")


def test_end_of_run_samples_play_and_interpolate(tiny_bar_run):
    samples = tiny_bar_run["run_dir"] / "samples"
    for kind in ("input", "reconstruct", "prior"):
        for i in range(2):
            assert (samples / f"{kind}_{i:03d}.ogg").read_bytes()[:4] == b"OggS", f"{kind} {i} has no audio"
    path = sorted(p.name for p in samples.glob("interpolate_*.mid"))
    assert path == [f"interpolate_{k:03d}.mid" for k in range(5)]  # test segment 0 -> 1, both ends included
    assert all((samples / n).with_suffix(".ogg").is_file() and (samples / n).with_suffix(".png").is_file() for n in path)
    bars = [len(pretty_midi.PrettyMIDI(str(samples / n)).get_downbeats()) for n in path]
    assert min(bars) >= 1
    fidelity = json.loads((tiny_bar_run["run_dir"] / "fidelity.json").read_text())
    assert fidelity["n_reconstructions"] == 4  # the interpolation adds files, not fidelity samples


def media_files(run_dir: Path) -> dict[str, list[str]]:
    return {d.name: sorted(p.name for p in d.iterdir()) for d in sorted((run_dir / "media").iterdir())}


def test_validation_media_are_written_every_n_steps_and_training_is_unchanged(train_cfg, tmp_path):
    with_media = train(train_cfg(*MEDIA, "trainer.max_steps=4", "audio={format:wav,soundfont:null,tail:0.5}", f"output_dir={tmp_path / 'a'}"))
    files = media_files(with_media["run_dir"])
    assert list(files) == ["inputs", "step_000002", "step_000004"]  # validations after 2 and 4 steps
    assert files["inputs"] == ["input_000.mid", "input_000.png", "input_000.wav",
                               "input_001.mid", "input_001.png", "input_001.wav"]  # fmt: skip
    assert files["step_000004"] == [
        "prior_000.mid", "prior_000.png", "prior_000.wav", "recon_000.mid", "recon_000.png", "recon_000.wav",
        "recon_001.mid", "recon_001.png", "recon_001.wav", "tokens.html",
    ]  # fmt: skip
    assert "Bar_None" in (with_media["run_dir"] / "media" / "step_000004" / "tokens.html").read_text()
    # its own generator: the run trains exactly as without media
    without = train(train_cfg("trainer.max_steps=4", f"output_dir={tmp_path / 'b'}"))
    assert not (without["run_dir"] / "media").exists()
    assert with_media["metrics"] == pytest.approx(without["metrics"], rel=0, abs=0)


def test_offline_wandb_run_holds_audio_and_piano_roll_media(train_cfg, offline_wandb):
    result = train(train_cfg(*MEDIA, "logger=wandb", "trainer.max_steps=2", "audio={format:ogg,soundfont:null,tail:0.5}"))
    (run,) = (result["run_dir"] / "wandb").glob("offline-run-*")
    # wandb names each file <key>_<its step>_<hash>.<suffix>
    audio = sorted(re.match(r"[a-z]+_\d+", p.name)[0] for p in (run / "files" / "media" / "audio").rglob("*.ogg"))
    images = list((run / "files" / "media" / "images").rglob("*.png"))
    html = list((run / "files" / "media" / "html").rglob("*.html"))
    assert audio == ["input_0", "input_1", "prior_0", "recon_0", "recon_1"]
    assert len(images) == 5 and len(html) == 1
    assert all(p.read_bytes()[:4] == b"OggS" for p in (run / "files" / "media" / "audio").rglob("*.ogg"))


@pytest.mark.parametrize(("start", "first"), [(0, 600), (599, 600), (600, 1200), (1300, 1800)])
def test_a_resumed_run_logs_media_at_the_next_multiple_after_its_step(tmp_path, start, first):
    from types import SimpleNamespace

    from musicvae.training.media import MediaConfig, ValidationMedia

    media = ValidationMedia(MediaConfig(every_n_steps=600), tmp_path, audio=None)
    media.on_fit_start(SimpleNamespace(global_step=start), None)
    assert media.next_step == first
