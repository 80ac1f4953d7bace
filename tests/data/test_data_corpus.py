"""Exporting the corpus bundled with music21."""

import pytest

from musicvae.data.corpus import _tune_name, check_corpus_name, export_corpus, split_abc_tunes
from musicvae.data.segments import midi_to_segments
from musicvae.errors import UserError

BOOK = """%abc-2.1
L:1/8

X: 12
T: First
K:G
GABc dedB|

X: 13
T: Second
K:D
DEFG A2A2|
"""


def test_abc_tunebook_splits_into_tunes_with_the_header():
    tunes = split_abc_tunes(BOOK)
    assert len(tunes) == 2
    assert all(t.startswith("%abc-2.1\nL:1/8") for t in tunes)
    assert "T: First" in tunes[0] and "T: Second" in tunes[1] and "First" not in tunes[1]


def test_tune_names(tmp_path):
    tunes = split_abc_tunes(BOOK)
    assert _tune_name("oneills1850", tmp_path / "0001-0050.abc", 1, tunes[1]) == "0013"
    assert _tune_name("ryansMammoth", tmp_path / "AcaciaReel.abc", 0, tunes[0]) == "AcaciaReel"


def test_unknown_corpus(tmp_path):
    with pytest.raises(
        UserError, match="unknown corpus 'mozart': the bundled corpora are bach, folk, mixed "
    ):
        export_corpus("mozart", tmp_path)
    check_corpus_name("bach")
    check_corpus_name("mixed")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bach", "folk"])
def test_export_a_few_real_files(name, tmp_path, remi_tokenizer):
    report = export_corpus(name, tmp_path / name, workers=2, limit=4, progress=False)
    files = sorted((tmp_path / name).rglob("*.mid"))
    assert report.exported + len(report.failed) == 4  # music21 cannot expand the repeats of a few tunes
    assert len(files) == report.exported >= 3
    again = export_corpus(name, tmp_path / name, workers=2, limit=4, progress=False)
    assert again.exported == 0  # already there: skipped
    assert not list((tmp_path / name).rglob(".*tmp*"))
    usable = 0
    for path in files:
        try:
            usable += bool(midi_to_segments(path, remi_tokenizer, {"path": str(tmp_path)}))
        except UserError as e:  # music21 writes a few folk tunes with odd bars, e.g. 1/32
            assert "unsupported_time_signature" in str(e)
    assert usable >= 2


@pytest.mark.parametrize(
    ("abc_body", "first_onsets"), [("G|c d e f|g4|", [3, 4, 5]), ("c d e f|g4|", [0, 1, 2])]
)
def test_export_puts_a_pickup_before_the_first_bar_line(tmp_path, abc_body, first_onsets):
    from symusic import Score

    from musicvae.data.corpus import ExportJob, export_one

    out = tmp_path / "tune.mid"
    tune = f"X:1\nT:Pickup\nM:4/4\nL:1/4\nK:C\n{abc_body}\n"
    assert export_one(ExportJob(source="inline", out=str(out), abc_text=tune)) == (str(out), None)
    score = Score(out)
    onsets = sorted({n.time / score.ticks_per_quarter for t in score.tracks for n in t.notes})
    assert onsets[:3] == first_onsets  # the pickup ends where bar 1 starts (beat 4)
    assert [(ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures][:1] == [(0, 4, 4)]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_export_goes_on_past_a_file_that_crashes_its_worker(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    from musicvae.data import corpus

    def fake_jobs(out_dir):
        return [corpus.ExportJob(source=f"tune{i}", out=str(out_dir / f"tune{i}.mid")) for i in range(6)]

    def export_one(job):  # forked workers see this stand-in: no music21 needed
        if job.source == "tune2":
            os._exit(1)
        Path(job.out).write_bytes(b"MThd")
        return job.out, None

    monkeypatch.setitem(corpus.CORPORA, "bach", fake_jobs)
    monkeypatch.setattr(corpus, "export_one", export_one)
    report = corpus.export_corpus("bach", tmp_path, workers=2, limit=6, progress=False, timeout_s=30)
    assert [(out, error.split(":")[0]) for out, error in report.failed] == [("tune2.mid", "worker_crash")]
    assert report.exported == 5 and sorted(p.name for p in tmp_path.glob("*.mid")) == [
        f"tune{i}.mid" for i in (0, 1, 3, 4, 5)
    ]


MIXED_FAMILIES = {"quartets": 16, "keyboard": 22, "polyphony": 85, "folk": 34, "chorales": 23}


@pytest.fixture(scope="module")
def mixed_jobs(tmp_path_factory):
    from musicvae.data.corpus import CORPORA

    out = tmp_path_factory.mktemp("mixed")
    return out, CORPORA["mixed"](out)


def test_mixed_jobs_are_fixed_and_hold_every_family_once(mixed_jobs):
    from collections import Counter
    from pathlib import Path

    from musicvae.data.corpus import CORPORA

    out, jobs = mixed_jobs
    assert CORPORA["mixed"](out) == jobs  # the same selection every time
    outs = [Path(j.out) for j in jobs]
    assert len(set(outs)) == len(outs) == 180  # no two files written to one path
    rel = [p.relative_to(out).parts for p in outs]
    assert Counter(parts[0] for parts in rel) == MIXED_FAMILIES  # as the module doc says
    assert all(len(parts) >= 3 and parts[-1].endswith(".mid") for parts in rel)  # <family>/<composer>/...
    composers = {parts[:2] for parts in rel}
    for family, composer in [("quartets", "beethoven"), ("quartets", "mozart"), ("quartets", "haydn"),
                             ("keyboard", "joplin"), ("polyphony", "palestrina"), ("polyphony", "monteverdi"),
                             ("folk", "ryansMammoth"), ("chorales", "bach")]:  # fmt: skip
        assert (family, composer) in composers
    sources = [j.source for j in jobs if j.abc_text is None]
    assert len(set(sources)) == len(sources)  # one format per piece
    assert not [s for s in sources if s.endswith(".rntxt")]  # analyses, not music
    folk = [j for j in jobs if "/folk/" in j.out]
    assert all(j.abc_text and j.abc_text.lstrip().startswith("X:") for j in folk)  # one tune each


def test_mixed_export_writes_readable_midi_of_each_family(mixed_jobs, tmp_path, monkeypatch, remi_tokenizer):
    """The smallest file of each family (a full export takes minutes): written, read back, tokenized."""
    from pathlib import Path

    from symusic import Score

    from musicvae.data import corpus

    out, jobs = mixed_jobs

    def size(job):
        return len(job.abc_text) if job.abc_text else Path(job.source).stat().st_size

    smallest = {}
    for job in sorted(jobs, key=size):
        smallest.setdefault(Path(job.out).relative_to(out).parts[0], job)
    picked = [
        corpus.ExportJob(job.source, str(tmp_path / Path(job.out).relative_to(out)), job.abc_text)
        for job in smallest.values()
    ]
    monkeypatch.setitem(corpus.CORPORA, "mixed", lambda out_dir: picked)
    report = export_corpus("mixed", tmp_path, workers=2, limit=5, progress=False)
    assert (report.exported, report.failed) == (5, [])
    parts = {}
    for job in picked:
        score = Score(job.out)
        tracks = [t for t in score.tracks if len(t.notes)]
        parts[Path(job.out).relative_to(tmp_path).parts[0]] = len(tracks)
        assert midi_to_segments(job.out, remi_tokenizer, {"path": str(tmp_path)})
    assert parts["folk"] == 1 and parts["quartets"] == 4 and parts["chorales"] >= 4  # one track per part
