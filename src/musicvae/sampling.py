"""MIDI out of a checkpoint: prior samples, reconstructions, interpolations (`scripts/sample.py`).

A checkpoint carries the model config, the tokenizer and the data settings, so nothing else is needed.
Files written per result: `<mode>_<index>.mid`, `<mode>_<index>.png` (piano roll); an interpolation
also writes `interpolate_grid.png`; every run writes `samples.json` (settings, z norms, token counts,
malformed tokens dropped while decoding).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from musicvae.checkpoint import model_from_checkpoint, read_checkpoint
from musicvae.data import BOS_ID, EOS_ID, PAD_ID
from musicvae.data.datamodule import collate_segments
from musicvae.data.segments import midi_to_segments, midi_to_windows
from musicvae.data.tokenize import tokenizer_from_dict, tokens_to_midi
from musicvae.errors import UserError
from musicvae.generate import SamplingConfig, sample_tokens, slerp
from musicvae.models.vae import MusicVAE

log = logging.getLogger(__name__)
MODES = ("prior", "reconstruct", "interpolate")


@dataclass
class LoadedCheckpoint:
    model: MusicVAE
    tokenizer: object  # miditok tokenizer
    data: dict  # data settings of the training run (bars, hop_bars, max_tokens, ...)
    path: Path


def load_checkpoint(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the model and tokenizer from a training checkpoint; one clear UserError if it can't."""
    ckpt = read_checkpoint(path, device)
    hp = ckpt["hyper_parameters"]
    if not hp.get("tokenizer"):
        raise UserError(f"{path} carries no tokenizer: it cannot be decoded to MIDI")
    model = model_from_checkpoint(ckpt, path).to(device).eval()
    return LoadedCheckpoint(model, tokenizer_from_dict(hp["tokenizer"]), dict(hp.get("data") or {}), Path(path))


# ----- turning z into MIDI files ----------------------------------------------------------------
@torch.no_grad()
def encode_segments(model: MusicVAE, segments: list[list[int]], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token segments (no BOS/EOS) -> mu, logvar (N, c), in batches."""
    mus, logvars = [], []
    device = next(model.parameters()).device
    for i in range(0, len(segments), batch_size):
        tokens, mask = collate_segments([torch.tensor(s) for s in segments[i : i + batch_size]])  # BOS..EOS
        mu, logvar = model.encode(tokens.to(device), mask.to(device))
        mus.append(mu)
        logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


def decode_z(
    model: MusicVAE, z: torch.Tensor, cfg: SamplingConfig, batch_size: int, generator, banned=(PAD_ID, BOS_ID)
) -> list[list[int]]:
    """z (N, c) -> N token lists, decoded in batches."""
    out: list[list[int]] = []
    for i in range(0, len(z), batch_size):
        out += sample_tokens(model, z[i : i + batch_size], cfg, generator=generator, banned=banned)
    return out


def banned_ids(tokenizer) -> list[int]:
    """The tokenizer's special tokens except EOS (PAD, BOS, MASK): never sampled."""
    return [tokenizer.vocab[t] for t in tokenizer.special_tokens if tokenizer.vocab[t] != EOS_ID]


def score_to_pretty_midi(score) -> pretty_midi.PrettyMIDI:
    """A symusic Score as PrettyMIDI, built note by note in seconds.

    Not through `score.dumps_midi()`: symusic 0.6 writes time-signature and tempo events unmerged, so a
    time-signature change after tick 0 gives a negative delta that wraps around (pretty_midi then
    rejects the file as corrupt). Generated tokens put TimeSig changes anywhere.
    """
    sec = score.to("second")
    qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    pm = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    for ts in sec.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(int(ts.numerator), int(ts.denominator), float(ts.time)))
    for track in sec.tracks:
        inst = pretty_midi.Instrument(program=int(track.program), is_drum=bool(track.is_drum), name=track.name)
        for n in track.notes:
            end = float(n.time + max(n.duration, 1e-3))
            inst.notes.append(pretty_midi.Note(int(n.velocity), int(n.pitch), float(n.time), end))
        pm.instruments.append(inst)
    return pm


def tokens_to_pretty_midi(tokenizer, ids: list[int]) -> tuple[pretty_midi.PrettyMIDI, int]:
    """Decode token ids (malformed events dropped) -> (PrettyMIDI, tokens dropped)."""
    score, dropped = tokens_to_midi(tokenizer, ids)
    return score_to_pretty_midi(score), dropped


def write_midi(tokenizer, ids: list[int], path: Path) -> tuple[pretty_midi.PrettyMIDI, int]:
    """Decode token ids to `path` (always a valid MIDI file). Returns it as PrettyMIDI and the tokens dropped."""
    pm, dropped = tokens_to_pretty_midi(tokenizer, ids)
    pm.write(str(path))
    return pm, dropped


def piano_roll_png(pm: pretty_midi.PrettyMIDI, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    _draw_roll(ax, pm, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def grid_png(pms: list[pretty_midi.PrettyMIDI], path: Path, titles: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pms), 1, figsize=(8, 1.8 * len(pms)), squeeze=False)
    for ax, pm, title in zip(axes[:, 0], pms, titles, strict=True):
        _draw_roll(ax, pm, title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _draw_roll(ax, pm: pretty_midi.PrettyMIDI, title: str, fs: int = 16) -> None:
    roll = pm.get_piano_roll(fs=fs) if pm.instruments else np.zeros((128, 1))
    pitches = np.nonzero(roll.sum(1))[0]
    lo, hi = (pitches.min() - 2, pitches.max() + 3) if len(pitches) else (48, 72)
    ax.imshow(roll[lo:hi] > 0, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, roll.shape[1] / fs, lo, hi))  # fmt: skip
    for t in pm.get_downbeats():
        ax.axvline(t, color="tab:blue", lw=0.5, alpha=0.5)
    ax.set_ylabel("pitch")
    ax.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)


# ----- the three modes ---------------------------------------------------------------------------
@dataclass
class SampleRequest:
    """What `scripts/sample.py` asks for (configs/sample.yaml)."""

    ckpt: str
    mode: str = "prior"
    out_dir: str = "outputs/samples"
    n: int = 4  # prior: number of samples
    input: str | None = None  # reconstruct / interpolate
    input2: str | None = None  # interpolate
    steps: int = 5  # interpolate: outputs including both ends
    sample_z: bool = False  # reconstruct: z ~ q(z|x) instead of z = mu
    z_temperature: float = 1.0  # prior: std of z (MusicVAE's temperature on the prior)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"
    piano_roll: bool = True
    compile: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode in ("reconstruct", "interpolate") and not self.input:
            raise UserError(f"mode={self.mode} needs input=path/to/a.mid")
        if self.mode == "interpolate" and not self.input2:
            raise UserError("mode=interpolate needs input2=path/to/b.mid (it interpolates from input to input2)")
        if self.mode == "interpolate" and self.steps < 2:
            raise UserError(f"steps={self.steps}: an interpolation needs at least 2 steps (both ends)")
        if self.n < 1 or self.batch_size < 1:
            raise UserError("n and batch_size must be at least 1")
        if self.z_temperature < 0:
            raise UserError(f"z_temperature={self.z_temperature} must be >= 0")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"device={self.device!r}: use cpu or cuda (cuda:N for one GPU)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device={self.device}: no CUDA GPU is visible here; use device=cpu")


def sample(req: SampleRequest) -> dict:
    """Run one sampling request; write MIDI, piano rolls and samples.json into req.out_dir."""
    loaded = load_checkpoint(req.ckpt, req.device)
    model, tok = loaded.model, loaded.tokenizer
    if req.compile:
        model.compile_parts()
    torch.manual_seed(req.seed)
    gen = torch.Generator(device=req.device).manual_seed(req.seed)
    cfg = SamplingConfig(req.temperature, req.top_k, req.top_p, req.max_tokens)
    banned = banned_ids(tok)
    out = Path(req.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if req.mode == "prior":
        z = torch.randn(req.n, model.cfg.latent_dim, generator=gen, device=req.device) * req.z_temperature
        results = decode_z(model, z, cfg, req.batch_size, gen, banned)
    elif req.mode == "reconstruct":
        z, piece = reconstruct_file(loaded, req.input, cfg, req, gen, banned)
        results = [piece]  # one piece, its windows reassembled in order
    else:
        z = interpolation_z(loaded, req.input, req.input2, req.steps, req.batch_size)
        results = decode_z(model, z, cfg, req.batch_size, gen, banned)

    records, pms = [], []
    for i, ids in enumerate(results):
        name = f"{req.mode}_{i:03d}"
        pm, dropped = write_midi(tok, ids, out / f"{name}.mid")
        pms.append(pm)
        if req.piano_roll:
            piano_roll_png(pm, out / f"{name}.png", title=name)
        records.append({"file": f"{name}.mid", "tokens": len(ids), "notes": sum(len(x.notes) for x in pm.instruments),
                        "malformed_tokens_dropped": dropped})  # fmt: skip
    if req.mode == "interpolate" and req.piano_roll:
        titles = [f"t = {k / (req.steps - 1):.2f}" for k in range(req.steps)]
        grid_png(pms, out / "interpolate_grid.png", titles)
    z_norms = [round(float(v), 4) for v in z.norm(dim=-1)]
    summary = {"checkpoint": str(loaded.path), "settings": asdict(req), "z_norms": z_norms, "results": records}
    (out / "samples.json").write_text(json.dumps(summary, indent=2))
    dropped = sum(r["malformed_tokens_dropped"] for r in records)
    log.info("wrote %d %s result(s) to %s (%d malformed tokens dropped)", len(records), req.mode, out, dropped)
    return summary


def reconstruct_file(loaded: LoadedCheckpoint, path: str, cfg: SamplingConfig, req: SampleRequest, gen, banned):
    """Cut `path` into the model's non-overlapping bar windows, encode, decode each: (z, the piece's ids).

    Windows the data rules drop (no notes) keep their place in time as empty bars, so a piece with a
    silent stretch is not pulled together. Bars after the last whole window are not reconstructed.
    """
    bars = int(loaded.data.get("bars", 4))
    windows = midi_to_windows(path, loaded.tokenizer, loaded.data, hop_bars=bars)
    mu, logvar = encode_segments(loaded.model, [w.tolist() for w in windows.segments], req.batch_size)
    z = MusicVAE.reparameterize(mu, logvar) if req.sample_z else mu
    decoded = decode_z(loaded.model, z, cfg, req.batch_size, gen, banned)
    bar = loaded.tokenizer.vocab["Bar_None"]
    ids, next_bar = [], 0
    for start, window in zip(windows.start_bars, decoded, strict=True):
        ids += [bar] * (start - next_bar) + window  # empty bars stand in for dropped windows
        next_bar = start + bars
    return z, ids


def interpolation_z(loaded: LoadedCheckpoint, a: str, b: str, steps: int, batch_size: int) -> torch.Tensor:
    """Slerp between the posterior means of the first window of `a` and of `b`: (steps, c), ends included."""
    first = [midi_to_segments(p, loaded.tokenizer, loaded.data)[0] for p in (a, b)]
    mu, _ = encode_segments(loaded.model, first, batch_size)
    return torch.stack([slerp(mu[0], mu[1], k / (steps - 1)) for k in range(steps)])
