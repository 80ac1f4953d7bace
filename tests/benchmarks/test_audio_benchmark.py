"""The audio benchmark renders every file in each format and reports speed against the music's length."""

import re

import pretty_midi
import pytest

from musicvae.benchmarks.audio import main
from musicvae.errors import UserError


def test_audio_benchmark_reports_each_format(tmp_path, capsys):
    for i in range(2):
        pm = pretty_midi.PrettyMIDI()
        pm.instruments.append(pretty_midi.Instrument(0))
        pm.instruments[0].notes.append(pretty_midi.Note(80, 60 + i, 0.0, 1.5))
        pm.write(str(tmp_path / f"{i}.mid"))
    main("", [f"path={tmp_path}", "files=2"])
    out = capsys.readouterr().out
    rows = {m[1]: float(m[2]) for m in re.finditer(r"│\s+(ogg|wav)\s+│\s+([\d.]+)\s+│", out)}
    assert rows == {"ogg": 4.0, "wav": 4.0}  # music seconds: 2 files x (1.5 s + the 0.5 s tail)
    assert not list(tmp_path.glob("*.ogg"))  # rendered into a temporary folder, not beside the inputs
    with pytest.raises(UserError, match="does not exist"):
        main("", [f"path={tmp_path / 'nope'}"])
