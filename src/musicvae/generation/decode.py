"""Decoding z into token sequences: batched ancestral sampling with a KV cache, top-k / top-p, slerp.

Everything here is tensors in, tensors or token lists out; MIDI and files live in `modes` and `render`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from musicvae.data.loading import bar_index
from musicvae.errors import UserError
from musicvae.models.vae import MusicVAE
from musicvae.tokens import BOS_ID, EOS_ID, PAD_ID


@dataclass
class SamplingConfig:
    """How tokens are drawn; the home of these defaults (SampleRequest, sample.yaml, takes them from here)."""

    temperature: float = 1.0  # token softmax temperature
    top_k: int = 0  # keep the k most likely tokens (0 = off)
    top_p: float = 1.0  # nucleus: smallest set with this much probability (1 = off)
    max_tokens: int = 512  # generated tokens per sequence, EOS included (capped by the model's max_len)

    def __post_init__(self):
        if self.temperature <= 0:
            raise UserError(f"temperature={self.temperature} must be > 0")
        if self.top_k < 0:
            raise UserError(f"top_k={self.top_k} must be >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p={self.top_p} must be in (0, 1] (1 = off)")
        if self.max_tokens < 1:
            raise UserError(f"max_tokens={self.max_tokens} must be at least 1")


# The decoding that shows most of what z holds when a piece is rebuilt from its own latents: sample.py's
# reconstruct, edit, shift and transfer, and the whole-piece fidelity, by default. Greedy (the most likely
# token each step, within the grammar): on whole test chorales it gave in_attention's best per-bar chroma and
# its widest margin over another piece's z of greedy, temperature 0.5 / 0.8 / 1.0 and top-p 0.9, and it is
# deterministic, so two reconstructions of one piece agree (docs/results/reconstruction).
RECONSTRUCTION = SamplingConfig(top_k=1)


@dataclass
class TokenRules:
    """What decoding knows of the tokenizer: ids never drawn, the Bar ids (to count bars, and so to switch
    per-bar latents), and the REMI grammar mask (`musicvae.tokens.grammar.RemiGrammar`) or None."""

    banned: Sequence[int] = (PAD_ID, BOS_ID)  # special tokens that are never training targets (EOS aside)
    bar_ids: Sequence[int] = ()
    grammar: object = field(default=None, repr=False)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. logits: (B, V)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # drop a token when the tokens ranked above it already hold top_p (the first always stays)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop_sorted[..., 0] = False  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


# inference_mode, not no_grad: no version counters or views tracked for autograd at any of the many small
# ops of a one-token step (its gain is small: within run-to-run noise on a CPU).
@torch.inference_mode()
def sample_tokens(
    model: MusicVAE, z: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
    use_cache: bool = True, rules: TokenRules | None = None, bars: int | None = None,
    prompt: torch.Tensor | None = None, attributes: torch.Tensor | None = None, time_sigs: torch.Tensor | None = None,
) -> list[list[int]]:  # fmt: skip
    """z (B, c), or (B, K, c) one per bar -> B token lists (no BOS, no EOS, prompt included), decoded from
    BOS (and the `prompt` (B, P) after it, fed in one cached pass) until EOS or cfg.max_tokens.

    `rules` (default: PAD and BOS banned, nothing else): bars are counted from `rules.bar_ids` as tokens
    are emitted, and bar k's z conditions the positions of bar k, switching in at the k-th Bar token.
    `bars`: the number of bars wanted; a Bar token that would open one more ends the sequence. With
    `rules.grammar`, each step draws only among the tokens the REMI grammar allows after the previous
    ones, so every token becomes part of a note or a bar, and with `bars` there are exactly that many.
    With `use_cache` each step feeds only the newest token (per-layer KV cache); without it every
    step re-runs the whole prefix (the reference the cache is tested and benchmarked against).
    attributes: the classes a model with `model.attributes` decodes with, shaped like z but (..., A).
    time_sigs: (B, K) the TimeSig id each bar must carry, -1: any (the input's skeleton; needs `rules.grammar`).
    """
    model.eval()
    rules = rules or TokenRules()
    bar_ids, grammar = rules.bar_ids, rules.grammar
    b, device = z.shape[0], z.device
    per_bar = z.dim() == 3 and z.shape[1] > 1
    if (per_bar or bars) and not bar_ids:
        raise ValueError("per-bar latents or a bar count need the tokenizer's bar_ids to count bars")
    seq, max_new = _sequence_buffer(model, cfg, b, device, prompt)
    length = seq.shape[1] - max_new
    cache = model.decoder.new_cache(model.conditioning.max_prefix + seq.shape[1]) if use_cache else None
    bar_ids_t = torch.as_tensor(list(bar_ids), dtype=torch.long, device=device)
    position_bars = bar_index(seq, bar_ids_t) if per_bar else None  # (B, T): each position's bar, as tokens come
    opened = torch.isin(seq[:, :length], bar_ids_t).sum(1)  # (B,) Bar tokens so far
    state = _grammar_state(grammar, b, device, bars, max_new, prompt,
                           f"max_tokens={cfg.max_tokens} (model max_len {model.cfg.max_len})", time_sigs)  # fmt: skip
    done = torch.zeros(b, dtype=torch.bool, device=device)
    banned = torch.tensor(list(rules.banned), dtype=torch.long, device=device)
    fed = 0  # positions already in the cache
    for _ in range(max_new):
        start = fed if use_cache else 0
        step_bars = position_bars[:, start:length] if position_bars is not None else None
        logits = model.decode(seq[:, start:length], z, cache, bars=step_bars, attributes=attributes)[:, -1].float()
        fed = length
        logits.index_fill_(1, banned, float("-inf"))
        if state is not None:
            logits.masked_fill_(~grammar.allowed(state), float("-inf"))
        logits.masked_fill_(done[:, None], 0.0)  # finished rows draw anything: it is replaced by PAD
        logits = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p)
        nxt = _draw(logits, generator).masked_fill(done, PAD_ID)  # (B,)
        if per_bar or bars:  # count the bars: to switch latents, or to stop at `bars`
            nxt, opened = _count_bars(nxt, opened, bar_ids_t, bars)
            if position_bars is not None:
                position_bars[:, length] = (opened - 1).clamp(min=0)
        if state is not None:
            grammar.advance(state, nxt)
        seq[:, length] = nxt
        length += 1
        done |= nxt == EOS_ID
        if done.all():
            break
    return [row[: row.index(EOS_ID)] if EOS_ID in row else [t for t in row if t != PAD_ID]
            for row in seq[:, 1:length].tolist()]  # fmt: skip


def _sequence_buffer(model: MusicVAE, cfg: SamplingConfig, b: int, device, prompt: torch.Tensor | None):
    """The (B, 1 + P + max_new) token buffer of a whole decode, allocated once and written in place: BOS, the
    prompt (B, P), then PAD; and max_new, what fits the model's max_len. UserError when nothing fits."""
    n_prompt = 0 if prompt is None else prompt.shape[1]
    max_new = min(cfg.max_tokens, model.cfg.max_len - 1 - n_prompt)  # BOS + prompt + max_new positions fit
    if max_new < 1:
        raise UserError(f"a prompt of {n_prompt} tokens leaves no room in the model's max_len={model.cfg.max_len}")
    seq = torch.full((b, 1 + n_prompt + max_new), PAD_ID, dtype=torch.long, device=device)
    seq[:, 0] = BOS_ID
    if n_prompt:
        seq[:, 1 : 1 + n_prompt] = prompt
    return seq, max_new


def _grammar_state(grammar, b: int, device, bars: int | None, max_new: int, prompt: torch.Tensor | None, budget: str,
                   time_sigs: torch.Tensor | None = None):  # fmt: skip
    """The grammar's decoding state for b rows (None without a grammar), the prompt fed to it; UserError naming
    `budget` when max_new tokens cannot hold the bars asked for."""
    if grammar is None:
        if time_sigs is not None:
            raise ValueError("a skeleton (time_sigs) is kept through the grammar mask: pass rules with a grammar")
        return None
    try:
        state = grammar.start(b, device, bars=bars, max_new=max_new, time_sigs=time_sigs)
    except ValueError as e:
        raise UserError(f"{budget}: {e}") from None
    if prompt is not None and prompt.shape[1]:
        grammar.feed(state, prompt)
    return state


def _count_bars(nxt: torch.Tensor, opened: torch.Tensor, bar_ids: torch.Tensor, bars: int | None):
    """(next tokens (B,), Bar tokens so far (B,)) after this step; with `bars`, a Bar that would open bar
    `bars` + 1 becomes EOS (the sequence ends instead)."""
    is_bar = torch.isin(nxt, bar_ids)
    if bars:
        nxt = torch.where(is_bar & (opened >= bars), torch.full_like(nxt, EOS_ID), nxt)
        is_bar = is_bar & (opened < bars)
    return nxt, opened + is_bar.long()


def decode_latents(
    model: MusicVAE,
    z: torch.Tensor,
    cfg: SamplingConfig,
    rules: TokenRules | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 8,
    bars: int | None = None,
    window_bars: int | None = None,
    attributes: torch.Tensor | None = None,
    time_sigs: torch.Tensor | None = None,
) -> list[list[int]]:
    """z (N, c), one latent per sequence, or (N, K, c), one per bar -> N token lists, in batches.
    attributes: classes (N, [K,] A) for a model with `model.attributes`. time_sigs: (N, K) the TimeSig id of
    each bar, -1: any (an input's skeleton, kept through `rules.grammar`; see `bar_time_sigs`).

    bars: the bars each sequence must hold (per bar: K). window_bars: the most bars one pass decodes (the
    model's training segments: its positions end there). Per-bar latents for more bars than that are
    decoded one sequence at a time in windows: each window continues from the last half of the previous
    one, fed as a prompt with those bars' latents, and adds the bars after it (so 16 bars come out of a
    model trained on 4-bar segments, every bar conditioned on its own z and on the bars before it).
    """
    rules = rules or TokenRules()
    if z.dim() == 3:
        bars = z.shape[1]
    if z.dim() == 2 or window_bars is None or bars <= window_bars:
        out: list[list[int]] = []
        for i in range(0, len(z), batch_size):
            part = None if attributes is None else attributes[i : i + batch_size]
            skeleton = None if time_sigs is None else time_sigs[i : i + batch_size]
            out += sample_tokens(model, z[i : i + batch_size], cfg, generator, rules=rules, bars=bars, attributes=part,
                                 time_sigs=skeleton)  # fmt: skip
        return out
    return [
        _decode_in_windows(model, row, cfg, rules, generator, window_bars, None if attributes is None else attributes[i],
                           None if time_sigs is None else time_sigs[i])  # fmt: skip
        for i, row in enumerate(z)
    ]


def bar_time_sigs(ids: list[int], rules: TokenRules) -> list[int]:
    """The skeleton of a token stream: per bar, the id of the TimeSig right after its Bar (-1 where none)."""
    time_sig_ids = set(rules.grammar.time_sig_ids) if rules.grammar is not None else set()
    return [ids[i + 1] if i + 1 < len(ids) and ids[i + 1] in time_sig_ids else -1
            for i, t in enumerate(ids) if t in rules.bar_ids]  # fmt: skip


def split_bars(ids: list[int], bar_ids: Sequence[int]) -> list[list[int]]:
    """Token ids -> one list per bar, each from its Bar token (tokens before the first Bar join bar 0)."""
    out: list[list[int]] = []
    for t in ids:
        if t in bar_ids or not out:
            out.append([])
        out[-1].append(t)
    return out


def _decode_in_windows(
    model, z: torch.Tensor, cfg, rules: TokenRules, generator, window: int, attributes: torch.Tensor | None = None,
    time_sigs: torch.Tensor | None = None,
) -> list[int]:  # fmt: skip
    """z (K, c) per bar, K > window (attributes (K, A), time_sigs (K,) or None) -> one token list of K bars (see
    `decode_latents`)."""
    if not rules.bar_ids:
        raise ValueError("decoding bars in windows needs the tokenizer's bar_ids")
    k, empty_bar = z.shape[0], [rules.bar_ids[0]]
    done: list[list[int]] = []
    while len(done) < k:
        context = min(len(done), window // 2)
        while context and sum(len(b) for b in done[len(done) - context :]) > (model.cfg.max_len - 1) // 2:
            context -= 1  # dense bars: a shorter prompt, so the new bars keep room
        start, new = len(done) - context, min(window - context, k - len(done))
        prompt = [t for bar in done[start:] for t in bar]
        prompt_t = torch.tensor([prompt], dtype=torch.long, device=z.device) if prompt else None
        part = None if attributes is None else attributes[None, start : len(done) + new]
        skeleton = None if time_sigs is None else time_sigs[None, start : len(done) + new]
        ids = sample_tokens(model, z[None, start : len(done) + new], cfg, generator, rules=rules,
                            bars=context + new, prompt=prompt_t, attributes=part, time_sigs=skeleton)[0]  # fmt: skip
        added = split_bars(ids, rules.bar_ids)[context:]  # the prompt is `context` whole bars
        done += (added + [list(empty_bar) for _ in range(new)])[:new]  # a window that ended early: empty bars
    return [t for bar in done for t in bar]


class NonFiniteModel(UserError):
    """The model's next-token probabilities hold NaN or inf: its weights are not usable."""


def _draw(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from softmax(logits) (B, V) -> (B,); a clear error when they are not finite."""
    probs = torch.softmax(logits, dim=-1)
    try:
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    except RuntimeError:
        if torch.isfinite(probs).all():
            raise
        raise NonFiniteModel(
            "the model gives NaN or infinite next-token probabilities (its weights are not finite: the "
            "training diverged); use an earlier checkpoint, or retrain with a lower optim.lr"
        ) from None


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between a and b (c,) at t in [0, 1] (MusicVAE); linear if nearly parallel."""
    a_n, b_n = a / a.norm().clamp_min(1e-8), b / b.norm().clamp_min(1e-8)
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
