"""Export a corpus bundled in music21's wheel to MIDI files (no network needed).

- `bach`: the chorales of `music21.corpus.getComposer('bach')`, one MIDI per chorale →
  `<out>/<stem>.mid` (the Roman-numeral analyses and second copies in another format are left out).
- `folk`: the ABC tunebooks ryansMammoth and oneills1850; an ABC file may hold many tunes (an
  opus): one MIDI per tune → `<out>/ryansMammoth/<file stem>.mid`, `<out>/oneills1850/<tune number>.mid`
  (oneills1850 transcribes some tunes twice, in overlapping files: the first one is kept).
- `mixed`: music whose texture varies, for attribute control (per-bar rhythm and polyphony classes: the
  chorales alone are four voices nearly everywhere and leave polyphony classes empty; folk tunes are one
  voice). 180 files (`MIXED_SOURCES`), each → `<out>/<family>/<composer>/<path in its folder>.mid`:
  `quartets` (16: Beethoven 4, Mozart 5, Haydn 4 and Robert Schumann 3 quartet movements), `keyboard`
  (22: piano pieces, songs with piano, a trio sonata, a clarinet concertino: every such file),
  `polyphony` (85: Palestrina 55 of 1,318 (every 24th), Monteverdi madrigals 13, trecento 9, Josquin
  4, Ciconia, da Luca, Lusitano, Webern 1 each), `folk/ryansMammoth` (34 tunes: every 32nd) and
  `chorales/bach` (23: every 18th). Subsets are every k-th file of a sorted list (fixed). With 2-bar
  windows (configs/data/mixed.yaml), every one of the 8 classes of rhythm and of polyphony holds at
  least 6.9% of the training bars under both attribute definitions; more folk tunes or chorales
  would fill a class with their tied values (1 or 4 voices, eighth notes) and empty its neighbours.

A first bar that is a pickup (anacrusis) is moved to the end of a whole bar, so that the MIDI bar
lines fall on the music's bar lines (music21 writes the pickup from tick 0).

`export_corpus` is idempotent and safe to interrupt: it skips files already exported, writes each
file under a temporary name and renames it when complete, and marks a finished export with
`<out>/.export.json` so that later runs return at once. An export made by an older recipe
(`EXPORT_VERSION`) is deleted and made again.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from musicvae.data.parallel import parallel_map, track_progress
from musicvae.errors import UserError

log = logging.getLogger(__name__)

FOLK_BOOKS = {"ryansMammoth": "file", "oneills1850": "tune_number"}  # book → how tunes are named
MARKER = ".export.json"
EXPORT_VERSION = 3  # bump when the choice or naming of exported files changes


@dataclass(frozen=True)
class ExportJob:
    """One MIDI file to write: from a corpus file (`source`) or from one tune's ABC text."""

    source: str
    out: str
    abc_text: str | None = None


@dataclass(frozen=True)
class ExportReport:
    corpus: str
    out_dir: Path
    total: int  # MIDI files the corpus gives (exported now or before)
    exported: int  # written by this call
    failed: list[tuple[str, str]]  # (output file, error)


# music21's Bach folder also holds Roman-numeral analyses (.rntxt: block chords, not the chorales);
# a few chorales come in two formats: one file per chorale, by preference of format.
BACH_FORMATS = (".mxl", ".xml", ".krn")


def _bach_jobs(out_dir: Path) -> list[ExportJob]:
    from music21 import corpus

    sources = [Path(p) for p in corpus.getComposer("bach") if Path(p).suffix in BACH_FORMATS]
    best: dict[str, Path] = {}
    for path in sorted(sources, key=lambda p: BACH_FORMATS.index(p.suffix)):
        best.setdefault(path.stem, path)
    return [ExportJob(source=str(p), out=str(out_dir / f"{stem}.mid")) for stem, p in sorted(best.items())]


def split_abc_tunes(text: str) -> list[str]:
    """An ABC tunebook → one text per tune (each starts at an `X:` line, with the file header)."""
    parts = re.split(r"(?m)^(?=X:)", text)
    header, tunes = parts[0], parts[1:]
    header = header if header.strip() else ""
    return [header + tune for tune in tunes]


def _tune_name(book: str, path: Path, index: int, tune: str) -> str:
    """ryansMammoth: one tune per file, named after it; oneills1850: by tune number (X: field)."""
    number = re.search(r"(?m)^X:\s*(\d+)", tune)
    if FOLK_BOOKS[book] == "tune_number" and number:
        return f"{int(number.group(1)):04d}"
    return path.stem if index == 0 else f"{path.stem}-{index:03d}"


def _folk_book_jobs(book: str, out_dir: Path) -> list[ExportJob]:
    """One job per tune of a tunebook in FOLK_BOOKS → `<out_dir>/<book>/<name>.mid`; a tune transcribed
    twice (oneills1850 has overlapping files) is kept once."""
    from music21 import corpus

    jobs: dict[str, ExportJob] = {}
    for path in sorted(Path(p) for p in corpus.getWork(book)):
        for index, tune in enumerate(split_abc_tunes(path.read_text(encoding="latin-1"))):
            out = out_dir / book / f"{_tune_name(book, path, index, tune)}.mid"
            jobs.setdefault(str(out), ExportJob(source=str(path), out=str(out), abc_text=tune))
    return list(jobs.values())


def _folk_jobs(out_dir: Path) -> list[ExportJob]:
    return [job for book in FOLK_BOOKS for job in _folk_book_jobs(book, out_dir)]


@dataclass(frozen=True)
class MixedSource:
    """One source of the `mixed` corpus: music21 files → `<out>/<family>/<name>/<path in the folder>.mid`.

    `name` is a music21 corpus folder (`corpus.getComposer`); `pattern` keeps the files whose path in
    that folder matches it and none of `exclude` (fnmatch); `every` keeps every k-th of them (sorted
    by path): a fixed subset. Two names reuse the other corpora's jobs: a tunebook of FOLK_BOOKS (one
    job per tune, as `folk`) and `bach` (the chorales of `_bach_jobs`).
    """

    family: str
    name: str
    every: int = 1
    pattern: str = "*"
    exclude: tuple[str, ...] = ()


# Scores, one format per piece (a piece in two formats: the first of these); .rntxt are analyses.
SCORE_FORMATS = (".mxl", ".musicxml", ".xml", ".krn", ".abc")


def _score_files(name: str, pattern: str, exclude: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(file, path in its composer folder) of `name`'s scores matching `pattern`, sorted by path."""
    from music21 import corpus

    folder = Path(corpus.__file__).parent / name  # music21/corpus/<name>/
    files = [Path(p) for p in corpus.getComposer(name) if Path(p).suffix in SCORE_FORMATS]
    best: dict[Path, tuple[Path, Path]] = {}
    for path in sorted(files, key=lambda p: SCORE_FORMATS.index(p.suffix)):
        rel = path.relative_to(folder)
        wanted = fnmatch.fnmatch(rel.as_posix(), pattern)
        if wanted and not any(fnmatch.fnmatch(rel.as_posix(), x) for x in exclude):
            best.setdefault(rel.with_suffix(""), (path, rel))
    return [best[key] for key in sorted(best)]


def _source_jobs(source: MixedSource, out_dir: Path) -> list[ExportJob]:
    """`source`'s jobs, writing under `<out_dir>/<family>/<name>/`."""
    folder = out_dir / source.family
    if source.name in FOLK_BOOKS:
        jobs = _folk_book_jobs(source.name, folder)
    elif source.name == "bach":
        jobs = _bach_jobs(folder / "bach")
    else:
        jobs = [
            ExportJob(source=str(path), out=str((folder / source.name / rel).with_suffix(".mid")))
            for path, rel in _score_files(source.name, source.pattern, source.exclude)
        ]
    return jobs[:: source.every]


def mixed_jobs_from(sources: Iterable[MixedSource], out_dir: Path) -> list[ExportJob]:
    """The jobs of several sources, in their order (the `mixed` corpus: `MIXED_SOURCES`)."""
    return [job for source in sources for job in _source_jobs(source, out_dir)]


def _mixed_jobs(out_dir: Path) -> list[ExportJob]:
    return mixed_jobs_from(MIXED_SOURCES, out_dir)


# music21 cannot write these as MIDI ("cannot expand Stream: badly formed repeats"): left out, as is
# Chopin's one mazurka (the same) and Beethoven's whole quartets in one file (opus18no4 takes minutes).
UNEXPANDABLE = ("k458/movement1.*", "k458/movement2.*", "opus74no1/movement3.*", "opus74no1/movement4.*")
KEYBOARD_COMPOSERS = (
    "beach corelli cpebach handel johnson_j_r joplin leadSheet liliuokalani schoenberg schubert "
    "schumann_clara verdi weber"
).split()
MIXED_SOURCES = (
    # string quartet movements: textures from one voice to dense chords
    MixedSource("quartets", "beethoven", every=4, pattern="opus*/movement*"),
    MixedSource("quartets", "mozart", every=3, exclude=("k545*", *UNEXPANDABLE)),
    MixedSource("quartets", "haydn", every=2, exclude=UNEXPANDABLE),
    MixedSource("quartets", "schumann_robert", every=2, pattern="opus41no1/*"),
    # keyboard pieces, songs with piano, a trio sonata, a concertino: every file
    *(MixedSource("keyboard", name) for name in KEYBOARD_COMPOSERS),
    MixedSource("keyboard", "mozart", pattern="k545*"),
    MixedSource("keyboard", "schumann_robert", exclude=("opus41no1/*",)),
    # Renaissance and medieval vocal polyphony (2 to 6 voices entering and leaving)
    MixedSource("polyphony", "palestrina", every=24),
    MixedSource("polyphony", "monteverdi", every=4),
    MixedSource("polyphony", "trecento", every=12),
    MixedSource("polyphony", "josquin", every=2),
    *(MixedSource("polyphony", name) for name in ("ciconia", "luca", "lusitano", "webern")),
    # monophonic fiddle tunes and four-part chorales: a few, or their tied values would fill whole classes
    MixedSource("folk", "ryansMammoth", every=32),
    MixedSource("chorales", "bach", every=18),
)

CORPORA: dict[str, Callable[[Path], list[ExportJob]]] = {
    "bach": _bach_jobs,
    "folk": _folk_jobs,
    "mixed": _mixed_jobs,
}


def check_corpus_name(name: str) -> None:
    if name not in CORPORA:
        raise UserError(
            f"unknown corpus {name!r}: the bundled corpora are {', '.join(CORPORA)} "
            "(or use your own folder: data=midi_dir data.path=/some/folder)"
        )


def _dedupe_time_signatures(score) -> None:
    """music21 sometimes puts one TimeSignature object in several measures; MIDI export then fails."""
    from music21 import meter

    seen: set[int] = set()
    for stream in score.recurse(streamsOnly=True, includeSelf=True):
        for ts in list(stream.getElementsByClass(meter.TimeSignature)):
            if id(ts) in seen:
                stream.replace(ts, copy.deepcopy(ts))
            seen.add(id(ts))


def _parse(job: ExportJob):
    from music21 import converter, stream

    if job.abc_text is None:
        score = converter.parse(job.source)
    else:
        score = converter.parse(job.abc_text, format="abc")
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    return score


def pickup_quarters(score) -> float:
    """Quarter notes missing from the first bar of a music21 score (an anacrusis), 0.0 if it is whole."""
    from music21 import meter, stream

    part = score.parts[0] if score.hasPartLikeStreams() else score
    measures = part.getElementsByClass(stream.Measure)
    if not measures:
        return 0.0
    first = measures[0]
    signature = first.timeSignature or first.getContextByClass(meter.TimeSignature)
    if signature is None:
        return 0.0
    return max(0.0, float(signature.barDuration.quarterLength - first.duration.quarterLength))


def shift_pickup(midi_path: Path, quarters: float) -> None:
    """Delay the music by `quarters` so an anacrusis ends where bar 1 starts (metre, tempo, key stay at 0).

    music21 writes a pickup bar from tick 0, which would put every later bar line off the beat.
    """
    from symusic import Score

    score = Score.from_midi(midi_path.read_bytes())  # from bytes: the temporary name has no .mid suffix
    ticks = round(quarters * score.ticks_per_quarter)
    shifted = score.shift_time(ticks)
    for events in (shifted.time_signatures, shifted.tempos, shifted.key_signatures):
        if len(events) and events[0].time == ticks:
            events[0].time = 0
    midi_path.write_bytes(shifted.dumps_midi())


def _write_midi(score, path: Path) -> None:
    try:
        score.write("midi", fp=str(path))
    except Exception:
        _dedupe_time_signatures(score)
        score.write("midi", fp=str(path))
    pickup = pickup_quarters(score)
    if pickup:
        shift_pickup(path, pickup)


def export_one(job: ExportJob) -> tuple[str, str | None]:
    """Write one MIDI file atomically: (output path, error message or None)."""
    out = Path(job.out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_midi(_parse(job), tmp)
        os.replace(tmp, out)
        return job.out, None
    except Exception as e:  # music21 raises many kinds; one bad tune must not stop the export
        tmp.unlink(missing_ok=True)
        return job.out, f"{type(e).__name__}: {str(e)[:200]}"


def _read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _remove_outdated_export(out_dir: Path) -> None:
    """An export by an older recipe (other files, other names): delete it to export afresh."""
    log.info("%s was exported by an older version of musicvae: exporting it again", out_dir)
    for path in out_dir.rglob("*.mid"):
        path.unlink()
    (out_dir / MARKER).unlink()


def _remove_stale_temp_files(paths: Iterable[Path]) -> None:
    for folder in {p.parent for p in paths}:
        for tmp in folder.glob(".*.mid.tmp-*") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)


def _lost(job: ExportJob, reason: str, detail: str) -> tuple[str, str]:
    """A tune that killed its worker process or ran past the time limit: failed, like an error."""
    return job.out, f"{reason}: {detail}"


def export_corpus(
    name: str,
    out_dir: str | Path,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
    timeout_s: float | None = None,
) -> ExportReport:
    """Export corpus `name` (bach | folk | mixed) into `out_dir`, in `workers` processes, with a progress bar.

    `limit` exports only the first N files (tests); a limited export leaves no completion marker.
    A file that crashes its worker or takes over `timeout_s` seconds (None: no limit) is listed as failed.
    """
    check_corpus_name(name)
    out_dir = Path(out_dir)
    marker = _read_marker(out_dir)
    if marker is not None and marker.get("version") != EXPORT_VERSION:
        _remove_outdated_export(out_dir)
    elif marker is not None and marker.get("corpus") == name and limit is None:
        failed = [tuple(f) for f in marker.get("failed", [])]
        return ExportReport(name, out_dir, marker["total"], 0, failed)  # type: ignore[arg-type]
    jobs = CORPORA[name](out_dir)[:limit]
    _remove_stale_temp_files(Path(j.out) for j in jobs)
    todo = [j for j in jobs if not Path(j.out).exists()]
    if todo:
        log.info("exporting %d %s files from the music21 corpus to %s", len(todo), name, out_dir)
    failed = []
    with parallel_map(export_one, todo, workers, timeout_s=timeout_s, on_failure=_lost) as results:
        for out, error in track_progress(results, len(todo), f"export {name}", enabled=progress):
            if error:
                failed.append((str(Path(out).relative_to(out_dir)), error))
    if limit is None:
        _write_marker(out_dir, name, len(jobs), sorted(failed))
    return ExportReport(name, out_dir, len(jobs), len(todo) - len(failed), sorted(failed))


def _write_marker(out_dir: Path, name: str, total: int, failed: list) -> None:
    import music21

    out_dir.mkdir(parents=True, exist_ok=True)
    marker = {
        "corpus": name,
        "version": EXPORT_VERSION,
        "total": total,
        "failed": failed,
        "music21": music21.__version__,
    }
    tmp = out_dir / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1))
    os.replace(tmp, out_dir / MARKER)
