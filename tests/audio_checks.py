"""What a listener hears, measured on decoded audio: files are decoded by libsndfile (`soundfile`), never by the
code that wrote them. Shared by tests/generation/test_audio.py and tests/generation/test_committed_audio.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import soundfile


def decode(path: Path) -> tuple[np.ndarray, int]:
    """(mono float samples in [-1, 1], sample rate) of an audio file, decoded by libsndfile (not by our code)."""
    x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), rate


def pitch_class_profile(x: np.ndarray, rate: int, lo: float = 100.0, hi: float = 2000.0) -> np.ndarray:
    """(12,) spectral magnitude per pitch class (C = 0), from the FFT bins between lo and hi Hz."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    band = (freqs >= lo) & (freqs <= hi)
    classes = np.round(12 * np.log2(freqs[band] / 440.0) + 69).astype(int) % 12
    return np.bincount(classes, weights=spectrum[band], minlength=12)


def strongest_frequency(x: np.ndarray, rate: int, lo: float = 100.0, hi: float = 2000.0) -> float:
    """The frequency (Hz) of the spectrum's highest peak between lo and hi (on a low piano note that can be
    its 2nd harmonic: test pitch on A4, or raise `lo`)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][spectrum[band].argmax()])


def synthesized(midi: Path) -> tuple[np.ndarray, int]:
    """(mono samples, rate): the synthesizer's own PCM of `midi` (with the default tail), before any encoder:
    what an encoded file must sound like. A pitch-class profile of short music is shaped by the instrument's
    harmonics (a note's 3rd harmonic is its fifth), so encoded audio is compared with this, not with the notes."""
    import io

    import midirenderer

    from musicvae.generation.audio import AudioConfig, midi_with_tail, soundfont_bytes

    data, _ = midi_with_tail(midi, AudioConfig().tail)
    x, rate = soundfile.read(io.BytesIO(bytes(midirenderer.render_wave_from(soundfont_bytes(None), data))),
                             dtype="float32", always_2d=True)  # fmt: skip
    return x.mean(axis=1), rate


def has_notes(midi: Path) -> bool:
    return any(i.notes and not i.is_drum for i in pretty_midi.PrettyMIDI(str(midi)).instruments)


def shift_correlations(audio: np.ndarray, reference: np.ndarray) -> list[float]:
    """Pearson r of an audio pitch-class profile with the reference moved by 0..11 semitones: in tune means
    index 0 is the best match."""
    return [float(np.corrcoef(audio, np.roll(reference, k))[0, 1]) for k in range(12)]
