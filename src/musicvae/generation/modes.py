"""MIDI out of a checkpoint, the `scripts/sample.py` modes: prior, reconstruct, interpolate, edit, shift, transfer.

A checkpoint carries the model config, the tokenizer and the data settings, so nothing else is needed
(loading, encoding and decoding live in `musicvae.generation.inference`). Files written per result:
`<mode>_<index>.mid`, `<mode>_<index>.png` (piano roll), `<mode>_<index>.ogg` (its audio, musicvae.generation.audio;
`audio=false`: none, `audio.format=wav`: WAV); every run writes `samples.json` (settings,
z norms, token counts, bars, malformed tokens dropped while decoding). An interpolation also writes its
ends, so the path can be judged against what it was encoded from: `input_a.mid` / `input_b.mid`, the
window of each input that was encoded (the path starts from one's posterior mean and ends at the
other's), and `recon_a.mid` / `recon_b.mid`, those windows reconstructed from z = mu (a PNG each), all
listed under "ends" in samples.json; and `interpolate_grid.png`, one figure: input A | recon A | the
path's steps | recon B | input B.

With one latent per bar (`model.latent=bar`) every mode works bar by bar: `prior bars=16` draws 16 bar
latents; `reconstruct` encodes every bar of the piece and decodes the whole piece; `interpolate` moves
each bar's latent from one piece's to the other's; `edit edit_bars=5-8 source=b.mid` swaps those bars'
latents for b's. More bars than the model's training segments are decoded in windows that continue
from the previous one (`musicvae.generation.decode.decode_latents`). `shift attribute=note_density amount=1.5`
reconstructs a piece with every latent moved along an attribute vector (`musicvae.generation.attribute_vectors`);
`transfer rhythm=+2` re-decodes it with changed attribute classes (a model with `model.attributes`).
Decoding follows the REMI grammar unless `grammar=false`, so every token is part of a note or a bar
and the bar count is exact; the modes that start from an input keep its skeleton (`skeleton=true`: output bar
k carries input bar k's time signature) and decode greedily unless asked otherwise (`RECONSTRUCTION`).

Each mode is one class registered in `SAMPLERS` (`@register("name")`, as the conditionings): it checks the
request and the checkpoint, draws its latents and decodes them (`Sampler.draw`), and writes what it adds
to the results (`Sampler.write_extras`); `sample` runs the one `mode=` names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from musicvae.config import register_schema
from musicvae.data.segments import midi_to_windows
from musicvae.errors import UserError
from musicvae.generation.attribute_vectors import AttributeVectors, vectors_path
from musicvae.generation.audio import AudioConfig
from musicvae.generation.decode import (
    RECONSTRUCTION,
    SamplingConfig,
    TokenRules,
    decode_latents,
)
from musicvae.generation.inference import (
    EncodedPiece,
    LoadedCheckpoint,
    apply_class_changes,
    count_bars,
    decode_piece,
    encode_piece,
    encode_segments,
    interpolation_path,
    load_checkpoint,
    piece_bar_latents,
    reconstruct_segments,
    token_rules,
)
from musicvae.generation.render import grid_png, tokens_to_pretty_midi, write_sample
from musicvae.models.vae import MusicVAE
from musicvae.tokens.attribute_classes import N_CLASSES
from musicvae.tokens.attributes import ATTRIBUTES

log = logging.getLogger(__name__)


# ----- the request ----------------------------------------------------------------------------------
@dataclass
class SampleRequest:
    """What `scripts/sample.py` asks for (configs/sample.yaml). Each field means one thing; the modes that
    read it are named beside it. Each mode's own checks: its class below (`SAMPLERS`)."""

    CONFIG_EXCLUDE = ("audio",)  # the audio node is AudioConfig's (schema/audio)

    ckpt: str  # a training run's checkpoint: it carries the model config, tokenizer and data settings
    mode: str = "prior"  # prior | reconstruct | interpolate | edit | shift | transfer
    out_dir: str = "outputs/samples"
    n: int = 4  # prior: how many samples
    input: str | None = None  # reconstruct / interpolate / edit / shift / transfer: a MIDI file
    input2: str | None = None  # interpolate: the other end
    source: str | None = None  # edit: the piece whose bar latents replace the input's (model.latent=bar)
    # prior: bars per sample, a number (default: the training segments'; more with model.latent=bar)
    bars: int | None = None
    # edit: the bars whose latents the source's replace, 1-based, both included: 5-8, or one bar: 5
    edit_bars: str | int | None = None
    grammar: bool = True  # mask the tokens the REMI grammar forbids: every token part of a note or a bar, exact bars
    # reconstruct / edit / shift / transfer (with grammar): output bar k keeps the input's bar k time signature, so
    # the piece comes back in its metre with its bar count; false: the decoder draws each bar's TimeSig
    skeleton: bool = True
    # shift: the attribute vector to move z along (scripts/attributes.py first): rhythm | polyphony |
    # note_density | mean_pitch | pitch_range
    attribute: str | None = None
    amount: float = 1.0  # shift: z + amount x the vector
    # transfer (and prior), for a model trained with model.attributes: "+2" / "-1" shift the input's class
    # of that attribute, 5 sets it (classes 0..7); scripts/sample.py keeps the sign as typed (rhythm=+2);
    # prior takes absolute classes only (the others drawn uniformly)
    rhythm: int | str | None = None
    polyphony: int | str | None = None
    note_density: int | str | None = None
    mean_pitch: int | str | None = None
    pitch_range: int | str | None = None
    steps: int = 5  # interpolate: outputs, both ends included
    sample_z: bool = False  # reconstruct / shift / transfer: z ~ q(z|x) instead of z = mu
    z_temperature: float = 1.0  # prior: z ~ N(0, z_temperature² I) (MusicVAE's temperature on the prior)
    # decoding (what each does: SamplingConfig, musicvae.generation.decode, the home of the defaults). null: the
    # mode's own: prior and interpolate SamplingConfig's; reconstruct, edit, shift and transfer RECONSTRUCTION's,
    # the setting that shows most of what z holds (docs/results/reconstruction)
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int = SamplingConfig.max_tokens
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"  # cpu | cuda (cuda:N for one GPU)
    piano_roll: bool = True  # a PNG per result (and a grid for interpolate)
    audio: AudioConfig | dict | bool | None = True  # audio beside every MIDI; false: none (musicvae.generation.audio)
    # torch.compile the model first: a long compile once, then faster steps (long or many samples)
    compile: bool = False

    def __post_init__(self):
        self.audio = AudioConfig.from_value(self.audio)
        if self.mode not in SAMPLERS:
            raise UserError(f"mode={self.mode!r} is not one of {', '.join(SAMPLERS)}")
        SAMPLERS[self.mode].check_request(self)
        if self.n < 1 or self.batch_size < 1:
            raise UserError("n and batch_size must be at least 1")
        if self.z_temperature < 0:
            raise UserError(f"z_temperature={self.z_temperature} must be >= 0")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"device={self.device!r}: use cpu or cuda (cuda:N for one GPU)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device={self.device}: no CUDA GPU is visible here; use device=cpu")

    def sampling(self) -> SamplingConfig:
        """The decoding settings of this request: what it sets, the mode's defaults for the rest."""
        mode = SAMPLERS[self.mode].default_sampling
        given = {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
        return replace(mode, **{k: v for k, v in given.items() if v is not None}, max_tokens=self.max_tokens)

    def class_changes(self) -> dict[str, tuple[bool, int]]:
        """{attribute: (relative, value)} from rhythm=+2 (relative) / rhythm=5 (absolute), ...; UserError if malformed."""
        changes = {}
        for name in ATTRIBUTES:
            raw = getattr(self, name)
            if raw is None:
                continue
            text = str(raw).strip()
            try:
                value = int(text)
            except ValueError:
                raise UserError(f"{name}={raw!r}: a class 0-{N_CLASSES - 1}, or a shift like +2 / -1") from None
            relative = text[0] in "+-"
            if not relative and not 0 <= value < N_CLASSES:
                raise UserError(f"{name}={value} is out of range: classes are 0-{N_CLASSES - 1} (+N / -N shift them)")
            changes[name] = (relative, value)
        return changes

    def bar_range(self) -> tuple[int, int]:
        """mode=edit: edit_bars=5-8 (1-based, both included) or edit_bars=5 -> (first, last)."""
        text = str(self.edit_bars) if self.edit_bars is not None else ""
        first, _, last = text.partition("-")
        try:
            first_bar, last_bar = int(first), int(last or first)
        except ValueError:
            raise UserError(f"edit_bars={self.edit_bars!r}: mode=edit needs the bars to replace, as edit_bars=5-8 (1-based)") from None
        if not 1 <= first_bar <= last_bar:
            raise UserError(f"edit_bars={self.edit_bars!r}: a range of bars from 1, first <= last (e.g. edit_bars=5-8)")
        return first_bar, last_bar


# ----- the modes: one registered class each -------------------------------------------------------------
SAMPLERS: dict[str, type[Sampler]] = {}  # mode name -> its class, in the order `mode=` lists them


def register(name: str):
    """Class decorator: make `cls` the sampler of `mode=name`."""

    def add(cls: type[Sampler]) -> type[Sampler]:
        SAMPLERS[name] = cls
        cls.mode = name
        return cls

    return add


@dataclass
class SamplingJob:
    """What every mode draws with: the checkpoint, the request, its decoding settings, token rules, generator."""

    loaded: LoadedCheckpoint
    req: SampleRequest
    sampling: SamplingConfig
    rules: TokenRules
    gen: torch.Generator


class Drawn(NamedTuple):
    """A mode's results before they are written."""

    results: list[list[int]]  # token ids of each result (R lists)
    z: torch.Tensor  # the latents they were decoded from: (R, c), or (R, K, c) per bar


class Sampler:
    """One `mode=`: checks the request and the checkpoint, draws latents and decodes them; a new mode is one
    subclass registered with `@register("name")`."""

    mode = "base"
    needs_input = True  # reads input=a.mid
    takes_bars = False  # reads bars=N
    takes_edit_bars = False  # reads edit_bars=5-8
    takes_attributes = True  # works with a model trained with model.attributes
    default_sampling = SamplingConfig()  # its decoding defaults (a request's temperature / top_k / top_p override them)

    @classmethod
    def check_request(cls, req: SampleRequest) -> None:
        """UserError for a request this mode cannot run (before any checkpoint is read)."""
        if cls.needs_input and not req.input:
            raise UserError(f"mode={cls.mode} needs input=path/to/a.mid")
        req.class_changes()  # checks their form
        if req.bars is not None and not cls.takes_bars:
            raise UserError(f"bars={req.bars!r} is mode=prior's number of bars")
        if req.edit_bars is not None and not cls.takes_edit_bars:
            raise UserError(f"edit_bars={req.edit_bars!r} is for mode=edit (mode=prior takes a number of bars: bars=16)")

    def check_model(self, req: SampleRequest, model: MusicVAE) -> None:
        """UserError when the checkpoint cannot do what the request asks (its latents, its attributes)."""
        if model.cfg.attributes and not self.takes_attributes:
            raise UserError(f"mode={self.mode} does not take a model trained with model.attributes yet: use reconstruct, transfer, shift or prior")

    def draw(self, job: SamplingJob) -> Drawn:
        """The mode's latents and their decoded token ids."""
        raise NotImplementedError

    def write_extras(self, job: SamplingJob, out: Path, summary: dict, pms: list) -> None:
        """Files beyond the results (an interpolation's ends), recorded in `summary`."""


@register("prior")
class PriorSampler(Sampler):
    """n draws of z ~ N(0, z_temperature² I): one per sample, or one per bar (`bars` of them)."""

    needs_input = False
    takes_bars = True

    @classmethod
    def check_request(cls, req: SampleRequest) -> None:
        super().check_request(req)
        if req.bars is not None and (not isinstance(req.bars, int) or req.bars < 1):
            raise UserError(f"bars={req.bars!r}: a number of bars >= 1 (mode=edit takes its range as edit_bars=5-8)")
        if any(relative for relative, _ in req.class_changes().values()):
            raise UserError("mode=prior takes absolute classes (rhythm=5): there is no input to shift from")

    def draw(self, job: SamplingJob) -> Drawn:
        results, z = prior(job.loaded, job.req, job.sampling, job.rules, job.gen)
        return Drawn(results, z)


@register("reconstruct")
class ReconstructSampler(Sampler):
    """The whole input piece, encoded (z = mu, or z ~ q(z|x) with sample_z) and decoded."""

    default_sampling = RECONSTRUCTION

    def draw(self, job: SamplingJob) -> Drawn:
        z, piece = reconstruct_file(job.loaded, job.req.input, job.sampling, job.req, job.gen, job.rules)
        return Drawn([piece], z)  # one piece, whole


@register("interpolate")
class InterpolateSampler(Sampler):
    """`steps` points slerped from the input's first window's posterior mean to input2's; also writes the
    ends (the windows encoded and their reconstructions) and one grid figure."""

    takes_attributes = False

    def __init__(self):
        self.ends: InterpolationEnds | None = None
        self.recons: list[list[int]] = []

    @classmethod
    def check_request(cls, req: SampleRequest) -> None:
        super().check_request(req)
        if not req.input2:
            raise UserError("mode=interpolate needs input2=path/to/b.mid (it interpolates from input to input2)")
        if req.steps < 2:
            raise UserError(f"steps={req.steps}: an interpolation needs at least 2 steps (both ends)")

    def draw(self, job: SamplingJob) -> Drawn:
        loaded, req, model = job.loaded, job.req, job.loaded.model
        self.ends = interpolation_ends(loaded, req.input, req.input2, req.batch_size, job.rules)
        z = interpolation_path(self.ends.mu, req.steps, self.ends.segments, job.rules)
        bars = None if model.per_bar else loaded.window_bars
        results = decode_latents(model, z, job.sampling, job.rules, job.gen, req.batch_size, bars=bars,
                                 window_bars=loaded.window_bars)  # fmt: skip
        # The ends' reconstructions draw from the same generator *after* the path, so the path's tokens at a
        # seed are what they were before the ends were written (and do not depend on them).
        self.recons = reconstruct_segments(model, self.ends.segments, self.ends.mu, job.sampling, job.rules, job.gen,
                                           req.batch_size)  # fmt: skip
        return Drawn(results, z)

    def write_extras(self, job: SamplingJob, out: Path, summary: dict, pms: list) -> None:
        req = job.req
        summary["ends"], end_pms, end_titles = write_interpolation_ends(
            job.loaded.tokenizer, self.ends, self.recons, (req.input, req.input2), out, job.rules, req.piano_roll,
            req.audio)  # fmt: skip
        if req.piano_roll:  # one figure: input A | recon A | the path | recon B | input B
            path_titles = [f"step {k}: α = {k / (req.steps - 1):.2f}" for k in range(req.steps)]
            grid_png([*end_pms[:2], *pms, *end_pms[2:]], out / "interpolate_grid.png",
                     [*end_titles[:2], *path_titles, *end_titles[2:]])  # fmt: skip
            summary["grid"] = "interpolate_grid.png"


@register("edit")
class EditSampler(Sampler):
    """The input's bar latents with bars `edit_bars` replaced by the source's same bars, decoded (model.latent=bar)."""

    default_sampling = RECONSTRUCTION

    takes_attributes = False
    takes_edit_bars = True

    @classmethod
    def check_request(cls, req: SampleRequest) -> None:
        if req.bars is not None:  # the key of the range before edit_bars
            raise UserError(f"bars={req.bars!r} is mode=prior's number of bars (mode=edit takes its range as edit_bars={req.bars})")
        super().check_request(req)
        if not req.source:
            raise UserError("mode=edit needs source=path/to/b.mid (whose bars replace the input's)")
        req.bar_range()  # checks the form

    def check_model(self, req: SampleRequest, model: MusicVAE) -> None:
        if not model.per_bar:
            raise UserError(f"mode=edit swaps bar latents: {req.ckpt} has one latent per segment (train with model.latent=bar)")
        super().check_model(req, model)

    def draw(self, job: SamplingJob) -> Drawn:
        loaded, req = job.loaded, job.req
        piece = encode_piece(loaded, req.input, req.batch_size, job.rules)  # tokenized and encoded once
        z = edit_z(loaded, req.input, req.source, req.bar_range(), req.batch_size, job.rules, piece)
        results = [decode_piece(loaded, piece, z[0], job.sampling, job.rules, job.gen, req.batch_size,
                                skeleton=req.skeleton)]  # fmt: skip
        return Drawn(results, z)


@register("shift")
class ShiftSampler(Sampler):
    """The input reconstructed with every latent moved by `amount` x the checkpoint's vector of `attribute`."""

    default_sampling = RECONSTRUCTION

    @classmethod
    def check_request(cls, req: SampleRequest) -> None:
        super().check_request(req)
        if not req.attribute:
            raise UserError("mode=shift needs attribute=NAME (e.g. note_density) and amount=X")

    def draw(self, job: SamplingJob) -> Drawn:
        shift = attribute_shift(job.loaded, job.req)
        z, piece = reconstruct_file(job.loaded, job.req.input, job.sampling, job.req, job.gen, job.rules, shift=shift)
        return Drawn([piece], z)


@register("transfer")
class TransferSampler(Sampler):
    """The input re-decoded from its own z with changed attribute classes (a model with model.attributes)."""

    default_sampling = RECONSTRUCTION

    @classmethod
    def check_request(cls, req: SampleRequest) -> None:
        super().check_request(req)
        if not req.class_changes():
            raise UserError("mode=transfer needs a class change, e.g. rhythm=+2 polyphony=-1 (relative) or rhythm=5")

    def draw(self, job: SamplingJob) -> Drawn:
        req = job.req
        z, piece = reconstruct_file(job.loaded, req.input, job.sampling, req, job.gen, job.rules,
                                    changes=req.class_changes())  # fmt: skip
        return Drawn([piece], z)


MODES = tuple(SAMPLERS)  # prior, reconstruct, interpolate, edit, shift, transfer


def sample(req: SampleRequest) -> dict:
    """Run one sampling request; write MIDI, piano rolls and samples.json into req.out_dir."""
    loaded = load_checkpoint(req.ckpt, req.device)
    model, tok = loaded.model, loaded.tokenizer
    if req.compile:
        model.compile_parts(frozen=True)  # weights fixed from here: inductor may treat them as constants
    torch.manual_seed(req.seed)
    gen = torch.Generator(device=req.device).manual_seed(req.seed)
    job = SamplingJob(loaded, req, req.sampling(), token_rules(tok, req.grammar), gen)
    out = Path(req.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sampler = SAMPLERS[req.mode]()
    sampler.check_model(req, model)
    check_classes(req, model)
    drawn = sampler.draw(job)
    summary, pms = write_results(req, loaded, drawn.results, drawn.z, out, job.rules)
    sampler.write_extras(job, out, summary, pms)
    (out / "samples.json").write_text(json.dumps(summary, indent=2))
    dropped = sum(r["malformed_tokens_dropped"] for r in summary["results"])
    log.info("wrote %d %s result(s) to %s (%d malformed tokens dropped)", len(drawn.results), req.mode, out, dropped)
    return summary


def check_classes(req: SampleRequest, model: MusicVAE) -> None:
    """UserError when the request asks for attribute classes the checkpoint's decoder was not trained with."""
    changes = req.class_changes()
    if changes and not model.cfg.attributes:
        raise UserError(f"{req.ckpt} was trained without model.attributes: its decoder cannot be told classes (retrain with model.attributes=[rhythm,polyphony])")
    unknown = sorted(set(changes) - set(model.cfg.attributes))
    if unknown:
        raise UserError(f"{unknown[0]}: {req.ckpt} was trained with attributes {list(model.cfg.attributes)} only")


def write_results(req: SampleRequest, loaded: LoadedCheckpoint, results, z: torch.Tensor, out: Path, rules):
    """Each result's MIDI (+ piano roll, audio) as <mode>_NNN -> (samples.json's summary, their PrettyMIDIs)."""
    records, pms = [], []
    for i, ids in enumerate(results):
        name = f"{req.mode}_{i:03d}"
        record, pm = write_result(loaded.tokenizer, ids, out, name, rules, name if req.piano_roll else None, req.audio)
        records.append(record)
        pms.append(pm)
    z_norms = [round(float(v), 4) for v in z.flatten(1).norm(dim=-1)]  # per result (all its bars' latents)
    return {"checkpoint": str(loaded.path), "settings": asdict(req), "sampling": asdict(req.sampling()),
            "z_norms": z_norms, "results": records}, pms


def prior(loaded: LoadedCheckpoint, req: SampleRequest, cfg: SamplingConfig, rules: TokenRules, gen):
    """n draws of z ~ N(0, z_temperature² I): one per sample, or one per bar -> (token lists, z)."""
    model, device = loaded.model, req.device
    bars = req.bars or (loaded.window_bars if model.per_bar else None)  # one latent per segment: as many as come
    if model.per_bar:
        z = torch.randn(req.n, bars, model.cfg.latent_dim, generator=gen, device=device) * req.z_temperature
    else:
        if bars and bars > loaded.window_bars:
            raise UserError(
                f"bars={bars}: a model with one latent per segment decodes at most its {loaded.window_bars}-bar "
                "segments in one pass; train with model.latent=bar for longer pieces"
            )
        z = torch.randn(req.n, model.cfg.latent_dim, generator=gen, device=device) * req.z_temperature
    attributes = None
    if model.cfg.attributes:  # classes drawn uniformly (each holds 1/8 of the training latents), or as asked
        drawn = torch.randint(0, N_CLASSES, (*z.shape[:-1], len(model.cfg.attributes)), generator=gen, device=device)
        attributes = apply_class_changes(drawn, model.cfg.attributes, req.class_changes())
    results = decode_latents(model, z, cfg, rules, gen, req.batch_size, bars=bars, window_bars=loaded.window_bars,
                             attributes=attributes)  # fmt: skip
    return results, z


def attribute_shift(loaded: LoadedCheckpoint, req: SampleRequest) -> torch.Tensor:
    """mode=shift: amount x the checkpoint's vector of the attribute, (c,)."""
    vectors = AttributeVectors.load(vectors_path(loaded.path))
    if vectors.latent != loaded.model.cfg.latent or vectors.vectors.shape[-1] != loaded.model.cfg.latent_dim:
        raise UserError(f"{vectors_path(loaded.path)} was computed for another model: run scripts/attributes.py again")
    return req.amount * vectors.vector(req.attribute).to(req.device)


def reconstruct_file(
    loaded: LoadedCheckpoint, path: str, cfg: SamplingConfig, req: SampleRequest, gen, rules,
    shift: torch.Tensor | None = None, changes: dict[str, tuple[bool, int]] | None = None,
):  # fmt: skip
    """Encode and decode a whole piece (`encode_piece`, `decode_piece`): (z, the piece's ids); z = mu, or
    z ~ q(z|x) with sample_z, and `shift` (c,) added to every latent. A model with attributes decodes with the
    input's own classes, `changes` applied (mode=transfer). With req.skeleton each output bar keeps the input
    bar's time signature."""
    model = loaded.model
    piece = encode_piece(loaded, path, req.batch_size, rules)
    z = MusicVAE.reparameterize(piece.mu, piece.logvar) if req.sample_z else piece.mu
    z = z if shift is None else z + shift
    classes = None if piece.classes is None else apply_class_changes(piece.classes, model.cfg.attributes, changes or {})
    ids = decode_piece(loaded, piece, z, cfg, rules, gen, req.batch_size, classes, skeleton=req.skeleton)
    return (z[None] if model.per_bar else z), ids


class InterpolationEnds(NamedTuple):
    """What an interpolation runs between: the first window of each input, as encoded."""

    segments: list[list[int]]  # the two windows' tokens (no BOS/EOS)
    start_bars: list[int]  # where each window starts in its piece (0-based bar)
    mu: torch.Tensor  # their posterior means: (2, c), or (2, K, c) per bar


def interpolation_ends(loaded: LoadedCheckpoint, a: str, b: str, batch_size: int, rules: TokenRules) -> InterpolationEnds:
    """The first window of `a` and of `b` (as the data settings cut them) and their posterior means."""
    windows = [midi_to_windows(p, loaded.tokenizer, loaded.data) for p in (a, b)]
    first = [w.segments[0].tolist() for w in windows]
    mu, _ = encode_segments(loaded.model, first, batch_size, rules.bar_ids)  # (2, c) or (2, K, c)
    return InterpolationEnds(first, [int(w.start_bars[0]) for w in windows], mu)


def write_result(
    tok, ids: list[int], out: Path, name: str, rules: TokenRules, title: str | None, audio: AudioConfig | None = None
):  # fmt: skip
    """`name`.mid (and `name`.png titled `title`, unless None; its audio, unless None)
    -> (its samples.json record, PrettyMIDI)."""
    pm, dropped = tokens_to_pretty_midi(tok, ids)
    sound = write_sample(pm, out / f"{name}.mid", title, audio)
    record = {"file": f"{name}.mid", "tokens": len(ids), "bars": count_bars(ids, rules),
              "notes": sum(len(x.notes) for x in pm.instruments), "malformed_tokens_dropped": dropped}  # fmt: skip
    if sound is not None:
        record["audio"] = sound.name
    return record, pm


def write_interpolation_ends(
    tok, ends: InterpolationEnds, recons: list[list[int]], paths: tuple[str, str], out: Path, rules: TokenRules,
    piano_roll: bool, audio: AudioConfig | None = None,
):  # fmt: skip
    """input_a/b.mid (the encoded windows) and recon_a/b.mid (decoded from z = mu), PNGs with piano_roll
    -> (their samples.json records, PrettyMIDIs and titles), in grid order: input A, recon A, recon B, input B."""
    written = {}
    for i, side in enumerate("AB"):
        first, last = ends.start_bars[i] + 1, ends.start_bars[i] + count_bars(ends.segments[i], rules)
        where = f"{Path(paths[i]).name}, bars {first}-{last}"  # 1-based, both included
        for kind, ids, title in (("input", ends.segments[i], f"input {side}: {where} (as encoded)"),
                                 ("recon", recons[i], f"recon {side} (z = μ of input {side})")):  # fmt: skip
            name = f"{kind}_{side.lower()}"
            record, pm = write_result(tok, ids, out, name, rules, title if piano_roll else None, audio)
            record = {"role": f"{kind} {side}", **record, **({"png": f"{name}.png"} if piano_roll else {}),
                      "source": str(paths[i]), "source_bars": f"{first}-{last}"}  # fmt: skip
            if kind == "recon":
                record["z_norm"] = round(float(ends.mu[i].flatten().norm()), 4)
            written[name] = record, pm, title
    order = [written[n] for n in ("input_a", "recon_a", "recon_b", "input_b")]
    return [r for r, _, _ in order], [pm for _, pm, _ in order], [t for _, _, t in order]


def edit_z(
    loaded: LoadedCheckpoint, path: str, source: str, bar_range: tuple[int, int], batch_size: int, rules,
    piece: EncodedPiece | None = None,
) -> torch.Tensor:  # fmt: skip
    """The input's bar latents (1, N, c) with bars first..last (1-based) replaced by the source's same bars.
    piece: the input already encoded (`encode_piece`), so it is not read again."""
    first, last = bar_range
    z = (piece or encode_piece(loaded, path, batch_size, rules)).mu.clone()
    z_source, _ = piece_bar_latents(loaded, source, batch_size, rules)
    for name, n in ((path, len(z)), (source, len(z_source))):
        if last > n:
            raise UserError(f"bars={first}-{last}: {name} has {n} bars")
    z[first - 1 : last] = z_source[first - 1 : last]
    return z[None]


register_schema("sample", SampleRequest)
