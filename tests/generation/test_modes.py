"""scripts/sample.py and musicvae.generation.modes: MIDI out of a checkpoint, and clear errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pretty_midi
import pytest
import torch

from musicvae.data.segments import midi_to_segments
from musicvae.errors import UserError
from musicvae.generation.decode import SamplingConfig, decode_latents, slerp
from musicvae.generation.inference import encode_segments, interpolation_path, load_checkpoint, token_rules
from musicvae.generation.modes import SampleRequest, interpolation_ends, sample
from musicvae.generation.render import write_midi

ROOT = Path(__file__).resolve().parents[2]


def notes(path: Path) -> list[tuple]:
    pm = pretty_midi.PrettyMIDI(str(path))
    return sorted((n.pitch, round(n.start, 4), round(n.end, 4)) for i in pm.instruments for n in i.notes)


def test_prior_samples_are_valid_midi_with_notes_and_pngs(tiny_run, tmp_path):
    summary = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="prior", n=3, out_dir=str(tmp_path), top_p=0.9))
    assert [r["file"] for r in summary["results"]] == ["prior_000.mid", "prior_001.mid", "prior_002.mid"]
    for r in summary["results"]:
        assert notes(tmp_path / r["file"]), f"{r['file']} has no notes"
        assert (tmp_path / r["file"].replace(".mid", ".png")).stat().st_size > 1000
        # under the grammar mask (the default) every token is part of a note or a bar: none dropped
        assert r["tokens"] > 0 and r["malformed_tokens_dropped"] == 0
        assert r["notes"] == len(notes(tmp_path / r["file"]))  # the record counts what the file holds
    assert len(summary["z_norms"]) == 3 and (tmp_path / "samples.json").is_file()


def test_same_seed_same_midi_other_seed_other_midi(tiny_run, tmp_path):
    def run(seed, name):
        sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), n=2, seed=seed, out_dir=str(tmp_path / name), piano_roll=False))
        return [notes(tmp_path / name / f"prior_00{i}.mid") for i in range(2)]

    assert run(0, "a") == run(0, "b")
    assert run(0, "a") != run(1, "c")


def test_z_temperature_scales_the_prior(tiny_run, tmp_path):
    cold = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), n=4, z_temperature=0.1, out_dir=str(tmp_path / "a"),
                                piano_roll=False, max_tokens=8))  # fmt: skip
    hot = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), n=4, z_temperature=1.0, out_dir=str(tmp_path / "b"),
                               piano_roll=False, max_tokens=8))  # fmt: skip
    assert [round(a * 10, 3) for a in cold["z_norms"]] == pytest.approx([round(b, 3) for b in hot["z_norms"]], abs=1e-2)


def test_reconstruct_covers_the_input_window_by_window(tiny_run, tmp_path):
    piece = sorted(tiny_run["midi"].glob("*.mid"))[1]  # 7 bars in 4/4
    summary = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="reconstruct", input=str(piece),
                                   out_dir=str(tmp_path), top_k=1))  # fmt: skip
    assert len(summary["results"]) == 1
    assert notes(tmp_path / "reconstruct_000.mid")
    assert len(summary["z_norms"]) == 1  # one non-overlapping 4-bar window fits in 7 bars


def test_interpolation_ends_are_the_reconstructions_of_the_inputs(tiny_run, tmp_path):
    loaded = load_checkpoint(tiny_run["ckpt"])
    a, b = sorted(tiny_run["midi"].glob("*.mid"))[:2]
    rules = token_rules(loaded.tokenizer)
    ends = interpolation_ends(loaded, str(a), str(b), batch_size=8, rules=rules)  # what mode=interpolate slerps
    z = interpolation_path(ends.mu, 4, ends.segments, rules)
    firsts = [midi_to_segments(p, loaded.tokenizer, loaded.data)[0] for p in (a, b)]
    mu, _ = encode_segments(loaded.model, firsts, batch_size=8, bar_ids=rules.bar_ids)
    assert torch.allclose(z[0], mu[0], atol=1e-6) and torch.allclose(z[-1], mu[1], atol=1e-5)
    greedy = SamplingConfig(top_k=1, max_tokens=128)
    ends = decode_latents(loaded.model, z[[0, -1]], greedy, rules, torch.Generator().manual_seed(0))
    assert ends == decode_latents(loaded.model, mu, greedy, rules, torch.Generator().manual_seed(1))
    summary = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="interpolate", input=str(a), input2=str(b),
                                   steps=4, out_dir=str(tmp_path)))  # fmt: skip
    assert len(summary["results"]) == 4 and (tmp_path / "interpolate_grid.png").stat().st_size > 1000


def interpolate(run: dict, out: Path, seed: int = 0, steps: int = 4, **kw) -> dict:
    a, b = sorted(run["midi"].glob("*.mid"))[:2]
    return sample(SampleRequest(ckpt=str(run["ckpt"]), mode="interpolate", input=str(a), input2=str(b), steps=steps,
                                seed=seed, out_dir=str(out), **kw))  # fmt: skip


def test_interpolation_path_is_unchanged_by_its_ends(tiny_run, tmp_path):
    """The path's tokens at a seed are those the code gave before the ends were written: the latents slerped
    between the first windows' means, decoded from a generator at that seed, nothing drawn before them."""
    loaded = load_checkpoint(tiny_run["ckpt"])
    rules = token_rules(loaded.tokenizer)
    a, b = sorted(tiny_run["midi"].glob("*.mid"))[:2]
    firsts = [midi_to_segments(p, loaded.tokenizer, loaded.data)[0] for p in (a, b)]
    mu, _ = encode_segments(loaded.model, firsts, batch_size=8, bar_ids=rules.bar_ids)
    z = torch.stack([slerp(mu[0], mu[1], t / 3) for t in range(4)])
    w = loaded.window_bars
    expected = decode_latents(loaded.model, z, SamplingConfig(), rules, torch.Generator().manual_seed(7), 8, bars=w,
                              window_bars=w)  # fmt: skip
    summary = interpolate(tiny_run, tmp_path / "run", seed=7, piano_roll=False)
    assert [r["tokens"] for r in summary["results"]] == [len(ids) for ids in expected]
    for i, ids in enumerate(expected):
        write_midi(loaded.tokenizer, ids, tmp_path / f"expected_{i}.mid")
        assert notes(tmp_path / "run" / f"interpolate_00{i}.mid") == notes(tmp_path / f"expected_{i}.mid"), i
    assert len({tuple(notes(tmp_path / f"expected_{i}.mid")) for i in range(4)}) > 1  # sampled, not all alike
    again = interpolate(tiny_run, tmp_path / "again", seed=7, piano_roll=False)
    for name in [r["file"] for r in summary["results"]] + ["recon_a.mid", "recon_b.mid"]:
        assert notes(tmp_path / "run" / name) == notes(tmp_path / "again" / name), name
    assert again["results"] == summary["results"] and again["ends"] == summary["ends"]


def test_interpolation_writes_the_inputs_and_their_reconstructions(tiny_run, tmp_path, monkeypatch):
    import musicvae.generation.modes as sampling

    loaded = load_checkpoint(tiny_run["ckpt"])
    rules = token_rules(loaded.tokenizer)
    a, b = sorted(tiny_run["midi"].glob("*.mid"))[:2]
    calls = []  # what the reconstructions are decoded from (the real function still decodes them)
    real = sampling.reconstruct_segments
    monkeypatch.setattr(sampling, "reconstruct_segments", lambda *args: calls.append(args) or real(*args))
    summary = interpolate(tiny_run, tmp_path, steps=5, top_k=1)  # greedy: decoding is a function of z
    ends = {r["role"]: r for r in summary["ends"]}
    assert list(ends) == ["input A", "recon A", "recon B", "input B"]  # the grid's order
    for role, r in ends.items():
        name = role.replace(" ", "_").lower()
        assert r["file"] == f"{name}.mid" and r["png"] == f"{name}.png"
        assert notes(tmp_path / r["file"]) and (tmp_path / r["png"]).stat().st_size > 1000
        assert r["source"] == str(a if role.endswith("A") else b) and r["source_bars"] == "1-4"
        assert r["bars"] == 4 and r["malformed_tokens_dropped"] == 0
    assert summary["grid"] == "interpolate_grid.png" and (tmp_path / "samples.json").is_file()
    assert json.loads((tmp_path / "samples.json").read_text())["ends"] == summary["ends"]
    # input A / B: the first window of each file, the tokens that were encoded
    firsts = [midi_to_segments(p, loaded.tokenizer, loaded.data)[0] for p in (a, b)]
    for side, segment in zip("ab", firsts, strict=True):
        write_midi(loaded.tokenizer, segment, tmp_path / f"seg_{side}.mid")
        assert notes(tmp_path / f"input_{side}.mid") == notes(tmp_path / f"seg_{side}.mid")
    # recon A / B: those windows decoded from z = their posterior means, which the path starts and ends at
    ((_, segments, z, *_),) = calls
    mu, _ = encode_segments(loaded.model, firsts, batch_size=8, bar_ids=rules.bar_ids)
    assert segments == firsts and torch.equal(z, mu)
    assert notes(tmp_path / "recon_a.mid") == notes(tmp_path / "interpolate_000.mid")  # greedy: the same decode
    assert notes(tmp_path / "recon_b.mid") == notes(tmp_path / "interpolate_004.mid")
    assert [ends["recon A"]["z_norm"], ends["recon B"]["z_norm"]] == pytest.approx(summary["z_norms"][::4], abs=1e-3)
    # the grid: one figure of input A | recon A | 5 steps | recon B | input B (its height counts the panels)
    height = plt.imread(tmp_path / "interpolate_grid.png").shape[0]
    three = interpolate(tiny_run, tmp_path / "three", steps=3, top_k=1)
    assert len(three["results"]) == 3 and len(three["ends"]) == 4
    per_panel = (height - plt.imread(tmp_path / "three" / "interpolate_grid.png").shape[0]) / 2
    assert height == pytest.approx(per_panel * 9, rel=0.05)


def test_interpolation_without_piano_rolls_still_writes_its_ends_and_their_audio(tiny_run, tmp_path):
    summary = interpolate(tiny_run, tmp_path, steps=2, piano_roll=False, max_tokens=64)
    assert [r["file"] for r in summary["ends"]] == ["input_a.mid", "recon_a.mid", "recon_b.mid", "input_b.mid"]
    assert all("png" not in r for r in summary["ends"]) and "grid" not in summary
    midi = {"interpolate_000", "interpolate_001", "input_a", "input_b", "recon_a", "recon_b"}
    assert {p.name for p in tmp_path.iterdir()} == {
        "samples.json", *(f"{m}.mid" for m in midi), *(f"{m}.ogg" for m in midi)
    }  # audio beside every MIDI, by default
    assert [r["audio"] for r in summary["ends"]] == ["input_a.ogg", "recon_a.ogg", "recon_b.ogg", "input_b.ogg"]
    assert all((tmp_path / f"{m}.ogg").read_bytes()[:4] == b"OggS" for m in midi)


def test_audio_false_writes_none_and_wav_lasts_as_long_as_its_midi(tiny_run, tmp_path):
    import wave

    none = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), n=1, out_dir=str(tmp_path / "none"), audio=False))
    assert "audio" not in none["results"][0]
    assert not [p for p in (tmp_path / "none").iterdir() if p.suffix in (".ogg", ".wav")]
    wav = sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), n=2, out_dir=str(tmp_path / "wav"), top_p=0.9,
                               audio={"format": "wav", "soundfont": None, "tail": 0.25}))  # fmt: skip
    for record in wav["results"]:
        with wave.open(str(tmp_path / "wav" / record["audio"])) as f:
            seconds = f.getnframes() / f.getframerate()
        end = pretty_midi.PrettyMIDI(str(tmp_path / "wav" / record["file"])).get_end_time()
        assert end > 0 and seconds == pytest.approx(end + 0.25, abs=0.03)


def test_missing_and_broken_checkpoints_are_clear_errors(tiny_run, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UserError, match="not a musicvae training checkpoint"):
        load_checkpoint(other)
    old = torch.load(tiny_run["ckpt"], weights_only=True)
    old["musicvae"]["format"] = 0
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(UserError, match="checkpoint format 0"):
        load_checkpoint(tmp_path / "old.ckpt")


def test_bad_requests_are_clear_errors(tiny_run, tmp_path):
    with pytest.raises(UserError, match="input2"):
        SampleRequest(ckpt="x", mode="interpolate", input="a.mid")
    with pytest.raises(UserError, match="mode="):
        SampleRequest(ckpt="x", mode="dream")
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(UserError, match="bad.mid"):
        sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="reconstruct", input=str(bad), out_dir=str(tmp_path)))


def test_sample_script_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/sample.py", f"ckpt={tmp_path / 'missing.ckpt'}", f"out_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "missing.ckpt does not exist" in proc.stderr


def test_malformed_token_sequences_still_write_valid_midi(remi_tokenizer, tmp_path):
    g = torch.Generator().manual_seed(0)
    vocab = len(remi_tokenizer)
    total_dropped = 0
    for i in range(30):
        ids = torch.randint(0, vocab, (int(torch.randint(0, 80, (), generator=g)),), generator=g).tolist()
        pm, dropped = write_midi(remi_tokenizer, ids, tmp_path / f"{i}.mid")
        assert pretty_midi.PrettyMIDI(str(tmp_path / f"{i}.mid")).get_end_time() == pytest.approx(pm.get_end_time(), abs=0.01)
        total_dropped += dropped
    assert total_dropped > 0  # random tokens are mostly malformed: they are dropped and counted
    # A time-signature change after the start (symusic 0.6 writes such files corrupt) reads back.
    ts = [remi_tokenizer.vocab[t] for t in ("Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60", "Velocity_63",
                                            "Duration_1.0.8", "Bar_None", "TimeSig_3/4", "Position_0", "Pitch_62",
                                            "Velocity_63", "Duration_1.0.8")]  # fmt: skip
    write_midi(remi_tokenizer, ts, tmp_path / "ts.mid")
    assert len(notes(tmp_path / "ts.mid")) == 2


def test_reconstruction_keeps_a_silent_stretch_in_place(tiny_run, tmp_path, monkeypatch):
    import musicvae.generation.inference as inference
    import musicvae.generation.modes as sampling

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    piano = pretty_midi.Instrument(program=0)
    for beat in list(range(0, 16)) + list(range(32, 48)):  # bars 0-3 and 8-11; bars 4-7 are silent
        piano.notes.append(pretty_midi.Note(80, 60 + beat % 5, beat * 0.5, beat * 0.5 + 0.5))
    pm.instruments.append(piano)
    pm.write(str(tmp_path / "gap.mid"))
    # One marker token per decoded window, so the reassembly itself is what is checked.
    monkeypatch.setattr(inference, "reconstruct_segments", lambda model, segs, z, *args: [[1000 + i] for i in range(len(z))])
    loaded = load_checkpoint(tiny_run["ckpt"])
    req = SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="reconstruct", input=str(tmp_path / "gap.mid"))
    rules = token_rules(loaded.tokenizer)
    z, results = sampling.reconstruct_file(loaded, str(tmp_path / "gap.mid"), SamplingConfig(), req, None, rules)
    bar = loaded.tokenizer.vocab["Bar_None"]
    assert len(z) == 2  # the silent window is not encoded
    assert results == [1000, bar, bar, bar, bar, 1001]  # ... but its four bars keep their place


def test_each_mode_decodes_with_its_own_defaults_unless_asked():
    from dataclasses import replace

    from musicvae.generation.decode import RECONSTRUCTION, SamplingConfig

    def sampling(**kw):
        return SampleRequest(ckpt="x.ckpt", **kw).sampling()

    assert sampling(mode="prior") == SamplingConfig()
    assert sampling(mode="interpolate", input="a.mid", input2="b.mid") == SamplingConfig()
    for mode, extra in (("reconstruct", {}), ("shift", {"attribute": "rhythm"}), ("transfer", {"rhythm": "+1"}),
                        ("edit", {"source": "b.mid", "edit_bars": "1"})):  # fmt: skip
        assert sampling(mode=mode, input="a.mid", **extra) == RECONSTRUCTION, mode
    asked = sampling(mode="reconstruct", input="a.mid", temperature=0.9, top_k=0, top_p=0.95, max_tokens=100)
    assert asked == replace(RECONSTRUCTION, temperature=0.9, top_k=0, top_p=0.95, max_tokens=100)
