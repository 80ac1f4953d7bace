"""MIDI -> audio: the pitch a listener hears, silence for silence, length, formats, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from audio_checks import decode, pitch_class_profile, shift_correlations, strongest_frequency
from musicvae.errors import UserError
from musicvae.generation.audio import FORMATS, AudioConfig, midi_files, render_file, render_many

# The default format first: it is what users hear, so it is checked before the others.
FORMATS_DEFAULT_FIRST = [AudioConfig().format, *(f for f in FORMATS if f != AudioConfig().format)]


def write_notes(path: Path, notes: list[tuple[int, float, float]], program: int = 0) -> Path:
    """A one-track MIDI of (pitch, start s, end s) notes; no notes -> a file with only its tempo."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes += [pretty_midi.Note(100, p, s, e) for p, s, e in notes]
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


def test_a4_sounds_at_440_hz(tmp_path):
    midi = write_notes(tmp_path / "a4.mid", [(69, 0.0, 1.0)])
    out = render_file(midi, AudioConfig(format="wav"))
    assert out == tmp_path / "a4.wav"
    x, rate = decode(out)
    assert np.abs(x).max() > 0.01  # audible
    assert strongest_frequency(x[: rate], rate) == pytest.approx(440.0, rel=0.02)


def test_another_pitch_moves_the_peak(tmp_path):
    """E5 (659.3 Hz): the peak follows the note, it is not a constant of the synthesizer."""
    midi = write_notes(tmp_path / "e5.mid", [(76, 0.0, 1.0)], program=40)  # violin
    x, rate = decode(render_file(midi, AudioConfig(format="wav")))
    assert strongest_frequency(x[: rate], rate) == pytest.approx(659.3, rel=0.02)


def test_silent_midi_renders_silence_of_its_length(tmp_path):
    """No note, two seconds of meta events (empty bars, as a sample that decoded to nothing can be)."""
    pm = pretty_midi.PrettyMIDI()
    pm.time_signature_changes += [pretty_midi.TimeSignature(4, 4, 0.0), pretty_midi.TimeSignature(3, 4, 2.0)]
    pm.write(str(tmp_path / "silent.mid"))
    x, rate = decode(render_file(tmp_path / "silent.mid", AudioConfig(format="wav", tail=0.0)))
    assert len(x) / rate == pytest.approx(2.0, abs=0.05)
    assert np.abs(x).max() == 0.0


def test_length_is_the_midi_plus_its_tail(tmp_path):
    midi = write_notes(tmp_path / "two.mid", [(60, 0.0, 0.5), (64, 2.0, 3.0)])
    x, rate = decode(render_file(midi, AudioConfig(format="wav", tail=0.5)))
    assert len(x) / rate == pytest.approx(3.5, abs=0.05)
    assert np.abs(x[int(3.05 * rate):]).max() < np.abs(x[: int(3.0 * rate)]).max()  # the release fades


@pytest.mark.parametrize("fmt", FORMATS_DEFAULT_FIRST)
def test_a4_then_a3_in_tune_in_every_format(tmp_path, fmt):
    """A4 for 2 s then A3 for 2 s: 440 and 220 Hz within 2 Hz, 4.5 s long, as decoded by libsndfile.
    (midirenderer's own Opus encoder gave 490 Hz and 302-356 Hz, 4.44 s: the check that would have caught it.)"""
    midi = write_notes(tmp_path / "a4a3.mid", [(69, 0.0, 2.0), (57, 2.0, 4.0)])
    x, rate = decode(render_file(midi, AudioConfig(format=fmt)))
    assert len(x) / rate == pytest.approx(4.5, abs=0.02)
    assert strongest_frequency(x[: 2 * rate], rate) == pytest.approx(440.0, abs=2.0)
    assert strongest_frequency(x[2 * rate : 4 * rate], rate, lo=150.0) == pytest.approx(220.0, abs=2.0)


@pytest.mark.parametrize("fmt", FORMATS_DEFAULT_FIRST)
def test_chord_pitch_classes_survive_every_format(tmp_path, fmt):
    """C major (C4 E4 G4): the decoded audio's pitch-class profile matches the chord, and matches it better
    than the chord moved by any number of semitones (a pitch shift would move the best match)."""
    midi = write_notes(tmp_path / "c.mid", [(60, 0.0, 2.0), (64, 0.0, 2.0), (67, 0.0, 2.0)])
    x, rate = decode(render_file(midi, AudioConfig(format=fmt)))
    profile = pitch_class_profile(x[: 2 * rate], rate)
    chord = np.zeros(12)
    chord[[0, 4, 7]] = 1.0
    r = shift_correlations(profile, chord)
    assert int(np.argmax(r)) == 0 and r[0] > 0.6
    assert set(np.argsort(profile)[-3:]) == {0, 4, 7}


def test_opus_is_an_ogg_file_smaller_than_wav(tmp_path):
    midi = write_notes(tmp_path / "a.mid", [(60, 0.0, 1.0), (67, 1.0, 2.0)])
    ogg = render_file(midi, AudioConfig(format="ogg"))
    wav = render_file(midi, AudioConfig(format="wav"))
    assert ogg.suffix == ".ogg" and ogg.read_bytes()[:4] == b"OggS"
    assert b"OpusHead" in ogg.read_bytes()[:200]
    assert ogg.stat().st_size < wav.stat().st_size / 3
    flac = render_file(midi, AudioConfig(format="flac"))
    assert flac.read_bytes()[:4] == b"fLaC" and flac.stat().st_size < wav.stat().st_size
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, then moved into place


def test_corrupt_midi_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file at all")
    with pytest.raises(UserError, match="bad.mid is not a readable MIDI file"):
        render_file(bad, AudioConfig())
    assert not (tmp_path / "bad.ogg").exists()


def test_bad_soundfont_and_settings_are_user_errors(tmp_path):
    midi = write_notes(tmp_path / "a.mid", [(60, 0.0, 0.5)])
    with pytest.raises(UserError, match="nowhere.sf2 not found"):
        render_file(midi, AudioConfig(soundfont=str(tmp_path / "nowhere.sf2")))
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(UserError, match="not a SoundFont"):
        render_file(midi, AudioConfig(soundfont=str(fake)))
    with pytest.raises(UserError, match="audio.format='mp3'"):
        AudioConfig(format="mp3")
    with pytest.raises(UserError, match="audio.volume is not a setting"):
        AudioConfig.from_value({"volume": 2})


def test_config_values_as_hydra_gives_them():
    assert AudioConfig.from_value(False) is None and AudioConfig.from_value(None) is None
    assert AudioConfig.from_value(True) == AudioConfig()
    assert AudioConfig.from_value({"format": "wav", "soundfont": None, "tail": 0.0}) == AudioConfig("wav", None, 0.0)


def test_render_many_skips_and_counts_bad_files(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    good = [write_notes(tmp_path / "d" / f"{i}.mid", [(60 + i, 0.0, 0.3)]) for i in range(2)]
    nested = write_notes(tmp_path / "d" / "sub" / "n.midi", [(62, 0.0, 0.3)])
    (tmp_path / "d" / "broken.mid").write_bytes(b"MThd garbage")
    files = midi_files([tmp_path / "d"])
    assert files == sorted([*good, nested, tmp_path / "d" / "broken.mid"])
    summary = render_many(files, AudioConfig(), progress=False)
    assert sorted(summary.rendered) == sorted(p.with_suffix(".ogg") for p in [*good, nested])
    assert [p for p, _ in summary.failed] == [tmp_path / "d" / "broken.mid"]
    again = render_many(files, AudioConfig(), progress=False)  # nothing new to do but the broken one
    assert len(again.existing) == 3 and not again.rendered and len(again.failed) == 1
    with pytest.raises(UserError, match="no such file or folder"):
        midi_files([tmp_path / "missing"])


@pytest.mark.parametrize("config_name", ["train", "sample"])
def test_yaml_audio_node_holds_the_dataclass_defaults(compose_cfg, config_name):
    """The YAML shows the defaults a user can override; AudioConfig() must be the same (no drift)."""
    import dataclasses

    from omegaconf import OmegaConf

    node = OmegaConf.to_container(compose_cfg(config_name, ["ckpt=x"] if config_name == "sample" else []).audio)
    assert node == dataclasses.asdict(AudioConfig())


def test_yaml_media_and_fidelity_nodes_hold_the_dataclass_defaults(compose_cfg):
    import dataclasses

    from omegaconf import OmegaConf

    from musicvae.evaluation.fidelity import FidelityConfig
    from musicvae.training.media import MediaConfig

    cfg = OmegaConf.to_container(compose_cfg("train"))
    assert cfg["media"] == dataclasses.asdict(MediaConfig())
    fidelity = {k: v for k, v in dataclasses.asdict(FidelityConfig()).items() if k != "seed"}  # seed: the run's
    assert cfg["eval"]["fidelity"] == fidelity


def test_render_script_renders_a_folder_and_names_what_it_skipped(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_script", Path(__file__).parents[2] / "scripts" / "render.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    write_notes(tmp_path / "a.mid", [(60, 0.0, 0.5)])
    (tmp_path / "b.mid").write_bytes(b"")  # empty: not MIDI
    script.main([str(tmp_path), "--format", "wav"])
    out, err = capsys.readouterr()
    assert out.strip() == "audio: 1 rendered, 0 already there, 1 failed"
    assert "b.mid is not a readable MIDI file" in err and "Traceback" not in err
    assert (tmp_path / "a.wav").is_file() and not (tmp_path / "b.wav").exists()
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "nowhere: no such file or folder" in capsys.readouterr().err
