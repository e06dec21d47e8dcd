"""Decoding constraints: which token may come next, so invalid output is impossible at any length.

A constraint is a small state machine over token ids. Its state per sequence is a handful of
Python ints (last key of the current step, keys in the step, steps so far, ...); the allowed
next tokens for a state are a precomputed additive bias row (0 allowed, -inf forbidden), so the
sampling loop adds one [B, V] tensor to the logits and never loops over the vocabulary.

Rules (token layout in ``tunelab.data.midi``):

``steps``   after BOS or STEP: any key, STEP, or EOS (when the length rule allows it);
            after key k: keys below k (pitch strictly descending, no repeats) or STEP;
            at most ``meta["max_polyphony"]`` keys in one step; EOS only at a step boundary;
            BOS never after the first token.
``onsets``  as ``steps`` (struck and held keys share the descending order and the polyphony
            cap), and a held key only if that key sounded in the previous step.
``remi``    MidiTok REMI types in order: BOS, then bars of ``Bar (Position (Pitch Velocity
            Duration)+)*``; Position strictly increasing within a bar; at most ``max_polyphony``
            notes per position; EOS only after a Bar or a complete note. Token types other than
            Bar/Position/Pitch/Velocity/Duration (PAD, and any the codec does not emit) are masked.

EOS policy (``mode``, chosen per sequence by the sampler): ``FORBID`` until the requested length,
``FORCE`` once it is reached (the piece ends at the next boundary: steps/onsets allow only EOS
at a step boundary; remi forbids a new Bar and allows EOS), ``ALLOW`` lets the model choose
(used by ``check_tokens``). Every rule keeps a finite way forward, so generation always ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

FORBID, ALLOW, FORCE = 0, 1, 2
N_KEYS = 88


def _bias(allowed: np.ndarray) -> torch.Tensor:
    """bool array -> float32 tensor of 0 (allowed) / -inf (forbidden)."""
    return torch.from_numpy(np.where(allowed, 0.0, -np.inf).astype(np.float32))


@dataclass
class GridState:
    """Per-sequence state for steps/onsets; lists have one entry per batch row."""

    last: list[int]  # key index of the last key in the current step; N_KEYS at a boundary
    count: list[int]  # keys in the current step
    steps: list[int]  # STEP tokens so far
    done: list[bool]  # EOS emitted
    prev: list[set] = field(default_factory=list)  # onsets: keys sounding in the previous step
    cur: list[set] = field(default_factory=list)  # onsets: keys sounding in the current step
    held_bias: torch.Tensor | None = None  # onsets: [B, V], -inf on held ids not allowed now


class GridConstraint:
    """Constraint for the ``steps`` and ``onsets`` encodings (see module docstring)."""

    def __init__(self, meta: dict):
        self.vocab_size = V = int(meta["vocab_size"])
        sp = meta["specials"]
        self.step_id, self.bos, self.eos = int(sp["step"]), int(sp["bos"]), int(sp["eos"])
        self.onsets = meta.get("encoding") == "onsets"
        self.blocks = 2 if self.onsets else 1
        if self.step_id != N_KEYS * self.blocks:
            raise ValueError(f"unexpected token layout: STEP id {self.step_id}")
        self.max_poly = P = int(np.clip(int(meta.get("max_polyphony") or N_KEYS), 1, N_KEYS))
        allowed = np.zeros((N_KEYS + 1, P + 1, 3, V), bool)
        for last in range(N_KEYS + 1):
            for c in range(P + 1):
                row = np.zeros(V, bool)
                if c < P:
                    for b in range(self.blocks):
                        row[b * N_KEYS : b * N_KEYS + last] = True  # keys strictly below
                boundary = last == N_KEYS
                for mode in (FORBID, ALLOW, FORCE):
                    r = row.copy()
                    if boundary and mode == FORCE:
                        r[:] = False
                        r[self.eos] = True
                    else:
                        r[self.step_id] = True
                        r[self.eos] = boundary and mode == ALLOW
                    allowed[last, c, mode] = r
        # row index: (last * (P + 1) + count) * 3 + mode; keys the training data never
        # played are never sampled (as for REMI's instruments)
        self.allowed = _without_unseen(allowed.reshape(-1, V), meta, (self.bos, self.eos))
        self.table = _bias(self.allowed)
        held = np.ones(V, bool)
        held[N_KEYS : 2 * N_KEYS] = False
        self._held_none = _bias(held)  # onsets: no held key allowed

    def to(self, device) -> GridConstraint:
        """Keep the bias tables on ``device`` (the logits' device)."""
        self.table, self._held_none = self.table.to(device), self._held_none.to(device)
        return self

    def new_state(self, batch: int) -> GridState:
        st = GridState(
            last=[N_KEYS] * batch, count=[0] * batch, steps=[0] * batch, done=[False] * batch
        )
        if self.onsets:
            st.prev = [set() for _ in range(batch)]
            st.cur = [set() for _ in range(batch)]
            st.held_bias = self._held_none.repeat(batch, 1)
        return st

    def time_steps(self, st: GridState, b: int) -> int:
        return st.steps[b]

    def at_boundary(self, st: GridState, b: int) -> bool:
        return st.last[b] == N_KEYS

    def advance(self, st: GridState, b: int, tok: int) -> None:
        """Update row ``b`` after ``tok`` (the BOS that starts a piece changes nothing)."""
        if tok == self.step_id:
            st.steps[b] += 1
            st.last[b], st.count[b] = N_KEYS, 0
            if self.onsets:
                st.prev[b], st.cur[b] = st.cur[b], set()
                row = self._held_none.clone()
                if st.prev[b]:
                    row[[N_KEYS + k for k in st.prev[b]]] = 0.0
                st.held_bias[b] = row
        elif tok == self.eos:
            st.done[b] = True
        elif 0 <= tok < self.step_id:
            k = tok % N_KEYS
            st.last[b] = k
            st.count[b] = min(st.count[b] + 1, self.max_poly)
            if self.onsets:
                st.cur[b].add(k)

    def bias(self, st: GridState, modes: list[int]) -> torch.Tensor:
        """Additive mask FloatTensor[B, V] for the next token of every row."""
        P1 = self.max_poly + 1
        idx = [(st.last[b] * P1 + st.count[b]) * 3 + m for b, m in enumerate(modes)]
        rows = self.table[idx[0] : idx[0] + 1] if len(idx) == 1 else self.table[idx]
        return rows + st.held_bias if self.onsets else rows

    def why_not(self, st: GridState, b: int, tok: int) -> str | None:
        """Reason why ``tok`` is invalid next (EOS policy ``ALLOW``), or None."""
        if tok == self.bos:
            return "BOS inside the piece"
        if tok == self.eos:
            return None if st.last[b] == N_KEYS else "EOS in the middle of a step"
        if tok == self.step_id:
            return None
        k = tok % N_KEYS
        if st.count[b] >= self.max_poly:
            return f"more than {self.max_poly} keys in one step (max_polyphony)"
        if k >= st.last[b]:
            return "key not strictly below the previous key of its step"
        if self.onsets and tok >= N_KEYS and k not in st.prev[b]:
            return "held key that did not sound in the previous step"
        return None


@dataclass
class RemiState:
    kind: list[int]  # grammar state (see RemiConstraint)
    pos: list[int]  # last Position index in the current bar, -1 right after a Bar
    count: list[int]  # notes at the current position
    bars: list[int]
    done: list[bool]


def _without_unseen(allowed: np.ndarray, meta: dict, keep: tuple[int, ...]) -> np.ndarray:
    """``allowed`` ([..., V] bool) without the tokens the training data never used
    (meta ``unseen_tokens``: an instrument, a drum, a position it never had), except where a
    state would be left with no token at all. Data prepared before the key: unchanged."""
    unseen = np.zeros(allowed.shape[-1], bool)
    unseen[[i for i in meta.get("unseen_tokens") or [] if 0 <= i < len(unseen)]] = True
    unseen[list(keep)] = False
    masked = allowed & ~unseen
    return np.where(masked.any(-1, keepdims=True), masked, allowed)


class RemiConstraint:
    """Constraint for MidiTok REMI token streams (see module docstring)."""

    START, BAR, POS, PITCH, VEL, NOTE, PROG = range(7)  # PROG: after a Program (remi-programs)

    def __init__(self, meta: dict):
        names = list(meta["token_names"])
        self.vocab_size = V = len(names)
        sp = meta["specials"]
        self.bos, self.eos = int(sp["bos"]), int(sp["eos"])
        self.max_poly = int(np.clip(int(meta.get("max_polyphony") or 128), 1, 128))
        spq = int(meta.get("steps_per_quarter", 24))
        self.steps_per_bar = 4 * spq
        # A drum note (remi-programs with drums kept) is a PitchDrum token where a Pitch goes.
        typ = np.array([n.split("_", 1)[0].replace("PitchDrum", "Pitch") for n in names])
        self.pos_of = np.full(V, -1, np.int64)
        for i, n in enumerate(names):
            if n.startswith("Position_"):
                self.pos_of[i] = int(n.split("_", 1)[1])
        self.type_of = typ
        is_ = {t: typ == t for t in ("Bar", "Position", "Pitch", "Velocity", "Duration", "Program")}
        # With programs each note is Program, Pitch, ...: a Program opens a note, a Pitch follows.
        opens = is_["Program"] if is_["Program"].any() else is_["Pitch"]
        self.has_vel, self.has_dur = bool(is_["Velocity"].any()), bool(is_["Duration"].any())
        after_pitch = "Velocity" if self.has_vel else ("Duration" if self.has_dur else None)
        after_vel = "Duration" if self.has_dur else None
        eos = np.zeros(V, bool)
        eos[self.eos] = True
        note_end = opens | is_["Position"] | is_["Bar"]
        nexts = {
            self.START: is_["Bar"],
            self.BAR: is_["Bar"] | is_["Position"],
            self.POS: opens,
            self.PROG: is_["Pitch"],
            self.PITCH: is_[after_pitch] if after_pitch else note_end,
            self.VEL: is_[after_vel] if after_vel else note_end,
            self.NOTE: note_end,
        }
        allowed = np.zeros((7, 3, V), bool)
        for s, row in nexts.items():
            can_end = s in (self.BAR, self.NOTE)
            allowed[s, FORBID] = row
            allowed[s, ALLOW] = row | (eos if can_end else False)
            allowed[s, FORCE] = (row & ~is_["Bar"]) | (eos if can_end else False)
        # The grammar judges a stream (check_tokens): a token the training data never used is
        # still valid MIDI, and reading a sample back can give one (a duration that the
        # written file's note overlaps change). Sampling also avoids the unseen tokens.
        self.grammar = allowed
        self.allowed = allowed = _without_unseen(allowed, meta, (self.bos, self.eos))
        self.table = _bias(allowed.reshape(-1, V))
        n_pos = int(self.pos_of.max()) + 2 if (self.pos_of >= 0).any() else 1
        # pos_bias[p + 1]: positions <= p forbidden; poly_bias[1]: no more Pitch at this position
        pos_ok = np.ones((n_pos, V), bool)
        for p in range(n_pos):
            pos_ok[p] = ~((self.pos_of >= 0) & (self.pos_of <= p - 1))
        self.pos_bias = _bias(pos_ok)
        self.poly_bias = _bias(np.stack([np.ones(V, bool), ~opens]))
        self._kind_after = {"Bar": self.BAR, "Position": self.POS, "Pitch": self.PITCH}
        self._kind_after["Program"] = self.PROG
        self._kind_after["Velocity"] = self.VEL if after_vel else self.NOTE
        self._kind_after["Duration"] = self.NOTE
        if not after_pitch:
            self._kind_after["Pitch"] = self.NOTE

    def to(self, device) -> RemiConstraint:
        self.table, self.pos_bias = self.table.to(device), self.pos_bias.to(device)
        self.poly_bias = self.poly_bias.to(device)
        return self

    def new_state(self, batch: int) -> RemiState:
        return RemiState(
            kind=[self.START] * batch,
            pos=[-1] * batch,
            count=[0] * batch,
            bars=[0] * batch,
            done=[False] * batch,
        )

    def time_steps(self, st: RemiState, b: int) -> int:
        return st.bars[b] * self.steps_per_bar

    def at_boundary(self, st: RemiState, b: int) -> bool:
        return st.kind[b] in (self.BAR, self.NOTE)

    def advance(self, st: RemiState, b: int, tok: int) -> None:
        if tok == self.eos:
            st.done[b] = True
            return
        t = self.type_of[tok] if 0 <= tok < self.vocab_size else ""
        if t not in self._kind_after:
            return
        st.kind[b] = self._kind_after[t]
        if t == "Bar":
            st.bars[b] += 1
            st.pos[b], st.count[b] = -1, 0
        elif t == "Position":
            st.pos[b], st.count[b] = int(self.pos_of[tok]), 0
        elif t == "Pitch":
            st.count[b] += 1

    def bias(self, st: RemiState, modes: list[int]) -> torch.Tensor:
        B = len(modes)
        idx = [st.kind[b] * 3 + modes[b] for b in range(B)]
        full = [int(st.count[b] >= self.max_poly) for b in range(B)]
        pos = [st.pos[b] + 1 for b in range(B)]
        return self.table[idx] + self.pos_bias[pos] + self.poly_bias[full]

    def why_not(self, st: RemiState, b: int, tok: int) -> str | None:
        if tok == self.bos:
            return "BOS inside the piece"
        if not self.grammar[st.kind[b], ALLOW, tok]:
            return f"token type {self.type_of[tok]} not allowed here"
        if self.pos_of[tok] >= 0 and self.pos_of[tok] <= st.pos[b]:
            return "Position not after the previous Position of its bar"
        if self.type_of[tok] == "Pitch" and st.count[b] >= self.max_poly:
            return f"more than {self.max_poly} notes at one position (max_polyphony)"
        return None


Constraint = GridConstraint | RemiConstraint


def make_constraint(meta: dict) -> Constraint:
    """The constraint for a data set's encoding (from its meta.json)."""
    enc = meta.get("encoding", "steps")
    if enc in ("steps", "onsets"):
        return GridConstraint(meta)
    if enc in ("remi", "remi-programs"):
        return RemiConstraint(meta)
    raise ValueError(f"no decoding constraint for encoding {enc!r}")


def check_tokens(tokens, meta: dict, max_problems: int = 20) -> list[str]:
    """Problems of a token stream (empty list: valid). Checks the same rules the sampler enforces.

    A valid stream is BOS, a body the constraint allows, then EOS, with nothing after it and
    every id in ``0 .. vocab_size-1``. At most ``max_problems`` are listed, then a count.
    """
    c = make_constraint(meta)
    toks = np.asarray(tokens, np.int64).tolist()
    names = list(meta.get("token_names") or [])
    problems: list[str] = []
    extra = 0

    def add(msg: str) -> None:
        nonlocal extra
        if len(problems) < max_problems:
            problems.append(msg)
        else:
            extra += 1

    if not toks:
        return ["empty token stream"]
    if toks[0] != c.bos:
        add("does not start with BOS")
    st = c.new_state(1)
    for i, t in enumerate(toks[1:] if toks[0] == c.bos else toks, start=int(toks[0] == c.bos)):
        if st.done[0]:
            add(f"token {i}: {len(toks) - i} tokens after EOS")
            break
        if not 0 <= t < c.vocab_size:
            add(f"token {i}: id {t} outside the vocabulary 0..{c.vocab_size - 1}")
            continue
        why = c.why_not(st, 0, t)
        if why:
            name = names[t] if t < len(names) else str(t)
            add(f"token {i} ({name}): {why}")
        c.advance(st, 0, t)
    if not st.done[0]:
        add("no EOS at the end")
    if extra:
        problems.append(f"... and {extra} more problems")
    return problems
