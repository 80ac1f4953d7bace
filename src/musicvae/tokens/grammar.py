"""A REMI grammar mask for decoding: every sampled token is part of a note or a bar, by construction.

Sampling freely from the decoder can give sequences that miditok cannot use: a Pitch without its
Velocity and Duration, a Position lower than the one before it in the same bar, a Position past the
end of the bar. `tokens_to_midi` drops such tokens (a model trained for 30 steps lost 913 of ~1,400).
`RemiGrammar` gives, at each decoding step, the tokens that REMI allows after the ones before, so the
output decodes whole, and with `bars=K` holds exactly K bars.

The grammar, as miditok 3.1's REMI writes it for the configs shipped in configs/tokenizer (checked
on the Bach chorales and on hand-made scores with empty bars, time signature changes and drums):

    sequence := bar+ EOS                 (after BOS the first token is a Bar)
    bar      := Bar TimeSig? (Position note+)*   (TimeSig after every Bar when use_time_signatures)
    note     := Program? Pitch Velocity? Duration?   (Program with use_programs; Velocity and
                                          Duration when the config has them)

- miditok writes a TimeSig after every Bar, even when the metre does not change, and an empty bar is
  just `Bar TimeSig`. It moves a time signature change to the next bar line, so a TimeSig never
  occurs inside a bar. The Bar's TimeSig gives the bar's length.
- Position values strictly increase within a bar and stay inside it: a bar holds
  ceil(ticks_per_bar / ticks_per_pos) positions, computed as REMI's `_tokens_to_score` does
  (e.g. 32 for 4/4, 24 for 3/4, 96 for 12/8 at 8 positions per beat). A Position past the bar's end
  would land the note in a later bar; one at or below the previous Position would go back in time.
- Every note follows a Position (miditok's own type graph also lets a Pitch follow a TimeSig, at
  position 0; its encoder never writes that, so neither do we). Several notes may share a Position.
- With programs, `Program_-1` (drums) comes before a PitchDrum token (a Pitch without PitchDrum
  tokens) and every other program before a Pitch; without programs there are no drums in the stream,
  so PitchDrum tokens are never allowed.
- EOS may follow a complete bar header or a complete note (an event boundary), never a Position or
  an unfinished note. With `bars=K`, Bar is allowed while fewer than K bars are open and EOS only
  once K are. After EOS only PAD. PAD, BOS and MASK are never allowed otherwise.
- With a token budget (`max_new`), a token is allowed only if the tokens that must follow it (the rest
  of its note, `Bar TimeSig` per missing bar, EOS) still fit: the mask closes a row in time, padding
  it with empty bars if it must.
- With a skeleton (`time_sigs`, one TimeSig id per bar and row), bar k's TimeSig is the one given: a
  piece reconstructed from its input keeps the input's metre bar for bar (with `bars=K`, its bar count
  too), rather than drawing each bar's metre and shifting every later bar against the input.

The state of a row is the kind of its last token, the last Position in the bar, the bar's length,
the bars opened and the tokens emitted. Each step is a handful of batched tensor ops (lookups into
per-kind masks and per-id tables built once): no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import miditok
import torch
from miditok.constants import TIME_SIGNATURE

from musicvae.tokens.tokenize import bar_timing

# Kind of a row's last token: the grammar's states.
START, BAR, BAR_READY, POSITION, PROGRAM, PROGRAM_DRUM, PITCH, VELOCITY, NOTE, DONE = range(10)
N_KINDS = 10
_FAR = 1 << 40  # "no limit" for the budget and the bar count; finish cost of EOS and PAD

# Token types REMI writes for the options we support (anything else in the vocabulary is refused).
_KNOWN_TYPES = {"PAD", "BOS", "EOS", "MASK", "Bar", "TimeSig", "Position", "Program", "Pitch", "PitchDrum"}
_KNOWN_TYPES |= {"Velocity", "Duration"}
# Options that add token types or change the grammar; none is enabled in configs/tokenizer.
_UNSUPPORTED_FLAGS = (
    "use_chords",
    "use_rests",
    "use_tempos",
    "use_key_signatures",
    "use_sustain_pedals",
    "use_pitch_bends",
    "use_control_changes",
    "use_pitch_intervals",
    "program_changes",
)


@dataclass
class GrammarState:
    """The grammar state of B rows; every field is a (B,) tensor on the decoding device.

    `budget` is None when the row has no token budget (start(max_new=None)).
    """

    kind: torch.Tensor  # long: kind of the last token (START, BAR, ..., DONE)
    pos: torch.Tensor  # long: the last Position value in the current bar, -1 before any
    bar_len: torch.Tensor  # long: positions in the current bar (from its TimeSig)
    bars: torch.Tensor  # long: Bar tokens so far
    emitted: torch.Tensor  # long: decoding steps since start() (prompt tokens given to feed() excluded)
    done: torch.Tensor  # bool: EOS emitted
    bar_max: torch.Tensor  # long: Bar allowed while bars < bar_max
    eos_min: torch.Tensor  # long: EOS allowed once bars >= eos_min
    budget: torch.Tensor | None  # long: steps allowed from start(), EOS included
    time_sigs: torch.Tensor | None = None  # (B, K) long: the TimeSig id bar k must carry (-1: any); None: any


@dataclass(frozen=True)
class _Tables:
    """The per-kind masks and per-id lookups, on one device."""

    next: torch.Tensor  # (N_KINDS, V) bool: tokens allowed after a token of each kind
    info: torch.Tensor  # (V, 4) long: kind, Position value (-1 Bar, -2 other), bar length (0: keep), is Bar
    finish: torch.Tensor  # (V,) long: tokens needed after this one to end its note or bar header
    pos_values: torch.Tensor  # (P,) long: value of each Position token, in vocabulary order
    finish_kind: torch.Tensor  # (N_KINDS,) long: tokens needed after a token of each kind


class RemiGrammar:
    """The REMI grammar of one miditok tokenizer, as batched masks for decoding (see the module doc).

    Built once per tokenizer: reads its vocabulary (token types and values) and its config
    (use_time_signatures, use_programs, use_velocities, note durations, beat_res). ValueError for a
    tokenizer other than REMI or an option this grammar does not model.
    """

    def __init__(self, tokenizer):
        _check_supported(tokenizer)
        config = tokenizer.config
        types, values = self._read_vocabulary(tokenizer)
        self.use_time_signatures = bool(config.use_time_signatures)
        self.use_programs = bool(config.use_programs)
        durations = bool(config.using_note_duration_tokens)
        velocities = bool(config.use_velocities)
        # the tokens a note needs after its Pitch, and a note's length in tokens
        attributes = int(velocities) + int(durations)
        note_len = int(self.use_programs) + 1 + attributes
        self.bar_cost = 1 + int(self.use_time_signatures)  # Bar [TimeSig]: an empty bar

        # Length of a bar in positions, as REMI's _tokens_to_score counts ticks (it ignores positions
        # beyond the vocabulary's, which are for the longest bar anyway).
        self.default_bar_len = bar_timing(tokenizer, *TIME_SIGNATURE).positions

        kind_of = {"Position": POSITION, "TimeSig": BAR_READY, "EOS": DONE, "PAD": DONE}
        kind_of["Bar"] = BAR if self.use_time_signatures else BAR_READY
        kind_of["Pitch"] = kind_of["PitchDrum"] = PITCH if attributes else NOTE
        kind_of["Velocity"] = VELOCITY if durations else NOTE
        kind_of["Duration"] = NOTE
        finish_of = {START: 0, BAR: int(self.use_time_signatures), BAR_READY: 0, POSITION: note_len}
        finish_of |= {PROGRAM: note_len - 1, PROGRAM_DRUM: note_len - 1, PITCH: attributes, VELOCITY: 1}
        finish_of |= {NOTE: 0, DONE: 0}
        info, finish = self._token_tables(tokenizer, types, values, kind_of, finish_of)

        # Position ids are contiguous in miditok's REMI vocabulary: a slice is cheaper than an index.
        self._time_sig_ids = torch.tensor([i for i, ty in enumerate(types) if ty == "TimeSig"], dtype=torch.long)
        pos_ids = [i for i, ty in enumerate(types) if ty == "Position"]
        contiguous = pos_ids == list(range(pos_ids[0], pos_ids[-1] + 1)) if pos_ids else False
        self._pos_cols = slice(pos_ids[0], pos_ids[-1] + 1) if contiguous else torch.tensor(pos_ids)

        nxt = self._transitions(types, velocities, bool(config.use_pitchdrum_tokens))
        finish_kind = torch.tensor([finish_of[k] for k in range(N_KINDS)])
        self._cpu = _Tables(nxt, info, finish, info[pos_ids, 1].clone(), finish_kind)
        self._by_device: dict[torch.device, _Tables] = {torch.device("cpu"): self._cpu}

    def _read_vocabulary(self, tokenizer) -> tuple[list[str], list[str]]:
        """Token names, the special and Bar ids; ValueError for a vocabulary the grammar does not model.
        Returns each token's type and value ('Pitch', '60')."""
        names = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
        if [tokenizer.vocab[name] for name in names] != list(range(len(names))):
            raise ValueError("RemiGrammar needs token ids 0..V-1")
        self.vocab_size = len(names)
        self.names = names
        types = [name.split("_", 1)[0] for name in names]
        values = [name.split("_", 1)[1] for name in names]
        unknown = sorted(set(types) - _KNOWN_TYPES)
        if unknown:
            raise ValueError(f"RemiGrammar does not model the token type(s) {', '.join(unknown)}")
        for special in ("PAD", "BOS", "EOS"):
            if f"{special}_None" not in tokenizer.vocab:
                raise ValueError(f"RemiGrammar needs a {special} token (tokenizer special_tokens)")
        self.pad_id, self.bos_id, self.eos_id = (tokenizer.vocab[f"{s}_None"] for s in ("PAD", "BOS", "EOS"))
        bars = [i for i, ty in enumerate(types) if ty == "Bar"]
        if len(bars) != 1:
            raise ValueError(f"RemiGrammar needs exactly one Bar token, the vocabulary has {len(bars)}")
        self.bar_id = bars[0]
        return types, values

    def _token_tables(self, tokenizer, types, values, kind_of, finish_of) -> tuple[torch.Tensor, torch.Tensor]:
        """Per token (V, 4): its kind, the Position it sets (-1: a new bar, any; -2: keep the row's), the bar
        length in positions it sets (a Bar without TimeSig tokens: 4/4's; 0: none), 1 for a Bar; and (V,) the
        tokens still needed after it to finish what it started."""
        info = torch.zeros(self.vocab_size, 4, dtype=torch.long)
        info[:, 1] = -2  # keep the row's Position value
        finish = torch.zeros(self.vocab_size, dtype=torch.long)
        for i, (ty, value) in enumerate(zip(types, values, strict=True)):
            if ty == "Program":
                kind = PROGRAM_DRUM if int(value) == -1 else PROGRAM
            else:
                kind = kind_of.get(ty, START)  # BOS, MASK: never allowed, so never advanced on
            info[i, 0] = kind
            finish[i] = -_FAR if ty in ("EOS", "PAD") else finish_of[kind]
            if ty == "Position":
                info[i, 1] = int(value)
            elif ty == "Bar":
                info[i, 1] = -1  # a new bar: any Position may come
                info[i, 2] = 0 if self.use_time_signatures else self.default_bar_len
                info[i, 3] = 1
            elif ty == "TimeSig":
                info[i, 2] = bar_timing(tokenizer, *(int(v) for v in value.split("/"))).positions
        return info, finish

    def _transitions(self, types, velocities: bool, pitchdrum_tokens: bool) -> torch.Tensor:
        """(N_KINDS, V) bool: the tokens allowed after a token of each kind."""

        def ids(*wanted: str) -> list[int]:
            return [i for i, ty in enumerate(types) if ty in wanted]

        note_start = ids("Program") if self.use_programs else ids("Pitch")
        nxt = torch.zeros(N_KINDS, self.vocab_size, dtype=torch.bool)
        nxt[START, self.bar_id] = True
        nxt[BAR, ids("TimeSig")] = True
        nxt[BAR_READY, ids("Position")] = True
        nxt[BAR_READY, [self.bar_id, self.eos_id]] = True
        nxt[POSITION, note_start] = True
        nxt[PROGRAM, ids("Pitch")] = True
        nxt[PROGRAM_DRUM, ids("PitchDrum") if pitchdrum_tokens else ids("Pitch")] = True
        nxt[PITCH, ids("Velocity") if velocities else ids("Duration")] = True
        nxt[VELOCITY, ids("Duration")] = True
        nxt[NOTE] = nxt[BAR_READY]
        nxt[NOTE, note_start] = True
        nxt[DONE, self.pad_id] = True
        return nxt

    def _tables(self, device: torch.device) -> _Tables:
        tables = self._by_device.get(device)
        if tables is None:
            c = self._cpu
            tables = _Tables(*(t.to(device) for t in (c.next, c.info, c.finish, c.pos_values, c.finish_kind)))
            self._by_device[device] = tables
        return tables

    def tokens_needed(self, bars: int | None = None) -> int:
        """Fewest tokens a sequence can have (EOS included): `bars` empty bars (None: one), then EOS."""
        return self.bar_cost * (1 if bars is None else bars) + 1

    def start(
        self,
        batch: int,
        device: torch.device | str = "cpu",
        bars: int | None = None,
        max_new: int | None = None,
        time_sigs: torch.Tensor | None = None,
    ) -> GrammarState:
        """State right after BOS for `batch` rows.

        bars: the exact number of bars every row must hold (None: one or more, EOS allowed at any event
        boundary after the first bar). max_new: tokens the decoder may still emit per row, EOS included
        (None: no budget); the mask then closes each row in time: it always ends with EOS within max_new
        tokens and, with `bars`, with exactly `bars` bars (finishing a started note, then empty bars).
        time_sigs: (batch, K) long, the TimeSig id each row's bar k (0-based) must carry, -1 where any may come
        (the skeleton of an input piece: see the module doc); bars past the K-th are free.
        ValueError when max_new cannot hold the bars asked for, or a time_sigs id is not a TimeSig.
        """
        if bars is not None and (int(bars) != bars or bars < 1):
            raise ValueError(f"bars={bars} must be a positive whole number (or None)")
        need = self.tokens_needed(bars)
        if max_new is not None and max_new < need:
            what = f"{bars} bar(s)" if bars is not None else "one bar"
            raise ValueError(
                f"max_new={max_new} is too small: {what} need at least {need} tokens "
                f"({'Bar TimeSig' if self.use_time_signatures else 'Bar'} per bar, then EOS)"
            )
        device = torch.device(device)
        if time_sigs is not None:
            time_sigs = self._check_time_sigs(time_sigs, batch, device)

        def full(value: int) -> torch.Tensor:
            return torch.full((batch,), value, dtype=torch.long, device=device)

        return GrammarState(
            kind=full(START),
            pos=full(-1),
            bar_len=full(self.default_bar_len),
            bars=full(0),
            emitted=full(0),
            done=torch.zeros(batch, dtype=torch.bool, device=device),
            bar_max=full(_FAR if bars is None else int(bars)),
            eos_min=full(1 if bars is None else int(bars)),
            budget=None if max_new is None else full(int(max_new)),
            time_sigs=time_sigs,
        )

    def _check_time_sigs(self, time_sigs, batch: int, device: torch.device) -> torch.Tensor:
        """time_sigs as a (batch, K) long tensor on `device`; ValueError unless each id is a TimeSig or -1."""
        time_sigs = torch.as_tensor(time_sigs, dtype=torch.long, device=device)
        if time_sigs.dim() != 2 or time_sigs.shape[0] != batch:
            raise ValueError(f"time_sigs of shape {tuple(time_sigs.shape)}: expected ({batch}, K)")
        given = time_sigs[time_sigs >= 0].unique().cpu()
        if not self.use_time_signatures and given.numel():
            raise ValueError("time_sigs: this tokenizer writes no TimeSig tokens")
        stray = given[~torch.isin(given, self._time_sig_ids)]
        if stray.numel():
            raise ValueError(f"time_sigs holds {self.names[int(stray[0])]!r}, not a TimeSig token")
        return time_sigs

    def allowed(self, state: GrammarState) -> torch.Tensor:
        """(B, V) bool: True where the token may be emitted next."""
        return self._allowed(state, use_budget=True)

    def _allowed(self, state: GrammarState, use_budget: bool) -> torch.Tensor:
        t = self._tables(state.kind.device)
        ok = t.next[state.kind]  # (B, V), a fresh tensor
        # Positions strictly after the last one, inside the bar
        in_bar = (t.pos_values > state.pos[:, None]) & (t.pos_values < state.bar_len[:, None])  # (B, P)
        ok[:, self._pos_cols] &= in_bar
        ok[:, self.bar_id] &= state.bars < state.bar_max
        ok[:, self.eos_id] &= state.bars >= state.eos_min
        if state.time_sigs is not None and state.time_sigs.shape[1]:
            self._keep_skeleton(ok, state)
        if use_budget and state.budget is not None:
            # After token x the row needs finish[x] more tokens, bar_cost per missing bar, and EOS; x
            # itself takes one: allowed if 1 + finish[x] + bar_cost * missing' + 1 <= steps left.
            left = state.budget - state.emitted  # (B,)
            missing = (state.eos_min - state.bars).clamp_min(0)
            spare = left - 2 - self.bar_cost * missing  # (B,)
            # a Bar is itself one of the missing bars
            bar_spare = spare + self.bar_cost * (missing > 0)
            bar_ok = ok[:, self.bar_id] & (t.finish[self.bar_id] <= bar_spare)
            ok &= t.finish <= spare[:, None]
            ok[:, self.bar_id] = bar_ok
        return ok

    def _keep_skeleton(self, ok: torch.Tensor, state: GrammarState) -> None:
        """In place on `ok` (B, V): where a row's open bar has a TimeSig in the skeleton, only that one."""
        k = state.time_sigs.shape[1]
        bar = (state.bars - 1).clamp(0, k - 1)  # the open bar (its TimeSig comes right after its Bar)
        forced = torch.where(state.bars <= k, state.time_sigs.gather(1, bar[:, None]).squeeze(1), -1)  # (B,)
        ids = self._time_sig_ids.to(ok.device)
        keep = (forced[:, None] < 0) | (ids[None, :] == forced[:, None])  # (B, n_time_sigs)
        ok[:, ids] &= keep

    def advance(self, state: GrammarState, tokens: torch.Tensor) -> None:
        """Update `state` in place with the emitted tokens (B,) long (done rows: PAD, ignored)."""
        t = self._tables(state.kind.device)
        tokens = tokens.masked_fill(state.done, self.pad_id)
        kind, pos, bar_len, is_bar = t.info[tokens].unbind(1)  # (B,) each
        state.kind = kind
        state.pos = torch.where(pos >= -1, pos, state.pos)
        state.bar_len = torch.where(bar_len > 0, bar_len, state.bar_len)
        state.bars = state.bars + is_bar
        state.emitted = state.emitted + 1
        state.done = kind == DONE

    def feed(self, state: GrammarState, tokens: torch.Tensor) -> None:
        """Advance through a prompt (B, P) long (no BOS), token by token; it does not use the budget.

        ValueError if a prompt token breaks the grammar, or if the budget left cannot close a row
        from where the prompt leaves it.
        """
        tokens = torch.as_tensor(tokens, dtype=torch.long, device=state.kind.device)
        if tokens.dim() != 2 or tokens.shape[0] != state.kind.shape[0]:
            raise ValueError(f"prompt of shape {tuple(tokens.shape)}: expected ({state.kind.shape[0]}, P)")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"prompt ids must lie in [0, {self.vocab_size})")
        emitted = state.emitted
        for j in range(tokens.shape[1]):
            step = tokens[:, j]
            ok = self._allowed(state, use_budget=False).gather(1, step[:, None]).squeeze(1)
            if not bool(ok.all()):
                row = int((~ok).nonzero()[0, 0])
                raise ValueError(
                    f"prompt row {row}, token {j} ({self.names[int(step[row])]}) breaks the REMI grammar"
                )
            self.advance(state, step)
        state.emitted = emitted
        if state.budget is not None:
            short = ~state.done & (self._needed(state) > state.budget - state.emitted)
            if bool(short.any()):
                row = int(short.nonzero()[0, 0])
                raise ValueError(
                    f"prompt row {row} needs {int(self._needed(state)[row])} more tokens to close, "
                    f"max_new leaves {int(state.budget[row] - state.emitted[row])}"
                )

    def _needed(self, state: GrammarState) -> torch.Tensor:
        """(B,) long: fewest tokens that close each row (rest of the note, missing bars, EOS)."""
        finish = self._tables(state.kind.device).finish_kind[state.kind]
        missing = (state.eos_min - state.bars).clamp_min(0)
        return torch.where(state.done, 0, finish + self.bar_cost * missing + 1)

    @property
    def time_sig_ids(self) -> list[int]:
        """The vocabulary's TimeSig ids."""
        return self._time_sig_ids.tolist()

    def bars_opened(self, state: GrammarState) -> torch.Tensor:
        """(B,) long: Bar tokens emitted so far."""
        return state.bars


def _check_supported(tokenizer) -> None:
    """ValueError unless the tokenizer is a plain REMI with only the options this grammar models."""
    if type(tokenizer) is not miditok.REMI:
        raise ValueError(
            f"RemiGrammar supports miditok's REMI tokenizer only, not {type(tokenizer).__name__}"
        )
    if tokenizer.is_multi_voc or tokenizer.is_trained:
        raise ValueError("RemiGrammar needs an untrained REMI tokenizer with one vocabulary (no BPE/Unigram)")
    config = tokenizer.config
    enabled = [flag for flag in _UNSUPPORTED_FLAGS if getattr(config, flag, False)]
    params = config.additional_params
    if params.get("use_bar_end_tokens"):
        enabled.append("use_bar_end_tokens")
    if params.get("max_bar_embedding") is not None:
        enabled.append("max_bar_embedding")
    if enabled:
        raise ValueError(f"RemiGrammar does not support the tokenizer option(s) {', '.join(enabled)}")
    if config.use_programs and not config.one_token_stream_for_programs:
        raise ValueError(
            "RemiGrammar needs one token stream with use_programs (one_token_stream_for_programs)"
        )
    programs = set(config.programs) if config.use_programs else {0}
    with_duration = programs & set(config.use_note_duration_programs)
    if with_duration and with_duration != programs:
        raise ValueError(
            "RemiGrammar needs Duration tokens for all programs or none (use_note_duration_programs: all)"
        )
