"""MIDI to audio with a General MIDI SoundFont: what lets a user hear every MIDI file the product writes.

The renderer is `midirenderer` (a Rust SoundFont synthesizer in a manylinux wheel: no system library, no
network), chosen over pyfluidsynth (needs the system libfluidsynth), symusic's synthesizer (fails under
numpy 2.4) and tinysoundfont (hard-depends on pyaudio). The default bank is the General MIDI SoundFont
that pretty_midi already ships (TimGM6mb.sf2); `audio.soundfont=PATH` takes the user's own.

Formats: `ogg` (Opus, 48 kHz stereo: what browsers and wandb play) by default, `flac` (lossless) and `wav`
(16-bit PCM) on request; their size and speed: `python scripts/benchmark.py audio` (docs/results/audio/). The
synthesizer renders PCM and `soundfile` (libsndfile) encodes Opus and FLAC: midirenderer's own Opus encoder is
not used, its output decoded out of tune (issue 29; tests/generation/test_audio.py checks the pitch of every
format as libsndfile decodes it). The synthesizer stops at the file's last event, so a short tail
(`audio.tail` seconds) is added after it: the last notes ring out instead of being cut.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pretty_midi

from musicvae.config import register_schema
from musicvae.data.cache import find_midi_files
from musicvae.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("ogg", "flac", "wav")
# libsndfile's (major format, subtype) of each encoded format; wav is the synthesizer's own file, written as is.
ENCODINGS = {"ogg": ("OGG", "OPUS"), "flac": ("FLAC", "PCM_16")}
AUDIO_SUFFIXES = tuple(f".{f}" for f in FORMATS)  # what a rendered file may end with
DEFAULT_SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
MIDI_CHANNELS = 15  # pretty_midi gives each non-drum instrument its own channel of 16 (9 is the drums') while they last


@dataclass
class AudioConfig:
    """How MIDI becomes audio (the `audio` node of the sample, train and render configs; `audio=false`: none)."""

    format: str = "ogg"  # ogg (Opus) | flac | wav
    soundfont: str | None = None  # a .sf2 file; None = the General MIDI bank pretty_midi ships
    tail: float = 0.5  # seconds after the last event, so the last notes ring out

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UserError(f"audio.format={self.format!r} is not one of {', '.join(FORMATS)}")
        if self.tail < 0:
            raise UserError(f"audio.tail={self.tail} must be >= 0 (seconds)")

    @classmethod
    def from_value(cls, value: AudioConfig | Mapping | bool | None) -> AudioConfig | None:
        """The config node as given: false / null -> None (no audio), true -> the defaults, a mapping -> its keys."""
        if isinstance(value, AudioConfig) or value is None:
            return value
        if isinstance(value, bool):
            return cls() if value else None
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise UserError(f"audio.{unknown[0]} is not a setting: audio takes {', '.join(cls.__dataclass_fields__)}")
            return cls(**value)
        raise UserError(f"audio={value!r}: use audio=false, or set audio.format / audio.soundfont / audio.tail")

    def path_for(self, midi_path: Path) -> Path:
        """Where the audio of `midi_path` goes: beside it, the same name with the format's suffix."""
        return Path(midi_path).with_suffix(f".{self.format}")


@functools.lru_cache(maxsize=4)
def soundfont_bytes(path: str | None) -> bytes:
    """The SoundFont's bytes (read once per process); UserError when it is missing or not a SoundFont."""
    sf2 = Path(path) if path else DEFAULT_SOUNDFONT
    if not sf2.is_file():
        hint = "set audio.soundfont to a .sf2 file" if path else "reinstall pretty_midi (its wheel ships it)"
        raise UserError(f"SoundFont {sf2} not found: {hint}")
    data = sf2.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise UserError(f"{sf2} is not a SoundFont 2 (.sf2) file: set audio.soundfont to one")
    return data


def midi_with_tail(midi_path: Path, tail: float) -> tuple[bytes, float]:
    """The MIDI file's bytes, lasting `tail` seconds past its end -> (bytes, seconds in all).

    The synthesizer stops at the last note, so the length is held by one note on a muted channel of its own
    (volume and expression 0, velocity 1: exactly silent) from 0 to the end plus the tail: the last notes
    ring out, and a file without notes renders as silence of its length. UserError (naming the file) when
    it cannot be read as MIDI.
    """
    try:
        pm = pretty_midi.PrettyMIDI(str(midi_path))
    except FileNotFoundError:
        raise UserError(f"{midi_path}: no such file") from None
    except Exception as e:  # pretty_midi/mido raise many types for a corrupt file
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise UserError(f"{midi_path} is not a readable MIDI file ({why}); check or remove it") from None
    length = pm.get_end_time() + tail
    if length > 0 and sum(not i.is_drum for i in pm.instruments) < MIDI_CHANNELS:  # a channel of its own is free
        timer = pretty_midi.Instrument(program=0, name="length")
        timer.control_changes += [pretty_midi.ControlChange(7, 0, 0.0), pretty_midi.ControlChange(11, 0, 0.0)]
        timer.notes.append(pretty_midi.Note(velocity=1, pitch=60, start=0.0, end=length))
        pm.instruments.append(timer)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue(), length


def write_audio(wav: bytes, fmt: str, out: Path) -> None:
    """The synthesizer's WAV bytes -> `out` in `fmt`, whole or not at all (a reader never sees half a file).

    Encoded formats go through libsndfile to a file path (its Vorbis encoder writing to memory crashed here)."""
    import soundfile

    tmp = out.with_name(f".{out.name}.tmp")
    if fmt in ENCODINGS:
        pcm, rate = soundfile.read(io.BytesIO(wav), dtype="float32")  # (samples, channels)
        major, subtype = ENCODINGS[fmt]
        soundfile.write(tmp, pcm, rate, format=major, subtype=subtype)
    else:
        tmp.write_bytes(wav)
    tmp.replace(out)


def render_file(midi_path: Path | str, cfg: AudioConfig, out: Path | None = None) -> Path:
    """Render one MIDI file to audio (beside it unless `out`) -> the audio's path.

    UserError naming the file when it is not MIDI or the SoundFont is unusable.
    """
    import midirenderer

    midi_path = Path(midi_path)
    out = Path(out) if out else cfg.path_for(midi_path)
    midi, _ = midi_with_tail(midi_path, cfg.tail)
    sf2 = soundfont_bytes(cfg.soundfont)
    try:
        wav = bytes(midirenderer.render_wave_from(sf2, midi))
    except RuntimeError as e:  # what the synthesizer refuses after pretty_midi read the file
        raise UserError(f"{midi_path} could not be rendered ({e})") from None
    write_audio(wav, cfg.format, out)
    return out


def render_quietly(midi_path: Path, cfg: AudioConfig | None) -> Path | None:
    """render_file for the product's own outputs: None without audio; a failure is a warning, not a crash
    (the MIDI is what was asked for, the audio a convenience beside it)."""
    if cfg is None:
        return None
    try:
        return render_file(midi_path, cfg)
    except UserError as e:
        log.warning("no audio for %s: %s", midi_path, e)
        return None


@dataclass
class RenderSummary:
    """What a batch render did: files written, files already rendered, files that failed (path, why)."""

    rendered: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def line(self) -> str:
        return f"{len(self.rendered)} rendered, {len(self.existing)} already there, {len(self.failed)} failed"


def midi_files(paths: Iterable[Path | str]) -> list[Path]:
    """The MIDI files named by `paths`: files as given, folders searched recursively (sorted).
    UserError for a path that does not exist or a folder holding no MIDI."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = [p / f for f in find_midi_files(p)]
            if not inside:
                raise UserError(f"no .mid/.midi files under {p}")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return found


def render_many(paths: Iterable[Path], cfg: AudioConfig, overwrite: bool = False, progress: bool = True) -> RenderSummary:
    """Render every file (beside it), a progress bar on stderr; a bad file is counted and skipped, the others
    go on."""
    from musicvae.data.parallel import track_progress

    summary = RenderSummary()
    paths = list(paths)
    soundfont_bytes(cfg.soundfont)  # a bad SoundFont is one error up front, not one per file
    for midi in track_progress(paths, len(paths), "render", enabled=progress and len(paths) > 1):
        if not overwrite and cfg.path_for(midi).exists():
            summary.existing.append(midi)
            continue
        try:
            summary.rendered.append(render_file(midi, cfg))
        except UserError as e:
            summary.failed.append((midi, str(e)))
    return summary


register_schema("audio", AudioConfig)
