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


def midi_pitch_class_profile(midi: Path) -> np.ndarray:
    """(12,) seconds sounded per pitch class (C = 0) of the MIDI's pitched notes (drums left out)."""
    profile = np.zeros(12)
    for inst in pretty_midi.PrettyMIDI(str(midi)).instruments:
        for note in [] if inst.is_drum else inst.notes:
            profile[note.pitch % 12] += note.end - note.start
    return profile


def shift_correlations(audio: np.ndarray, reference: np.ndarray) -> list[float]:
    """Pearson r of an audio pitch-class profile with the reference moved by 0..11 semitones: in tune means
    index 0 is the best match."""
    return [float(np.corrcoef(audio, np.roll(reference, k))[0, 1]) for k in range(12)]
