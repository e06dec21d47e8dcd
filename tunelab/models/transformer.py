"""Decoder-only Transformer over tokens: pre-norm blocks, rotary positions, optional sliding window.

Positions are rotary (no learned table, no hard length limit). With
``window=W`` every token attends to itself and the W-1 tokens before it, in
training and in generation alike, so ``step()`` keeps a ring buffer of W keys
and values and each new token costs the same whatever the length. With
``window=None`` attention is fully causal and the cache grows (by doubling,
so appends stay amortised O(1)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.models.layers import MLP, apply_rotary, rotary_cos_sin

_ROPE_BLOCK = 1024  # positions of cos/sin computed at once during generation


@dataclass
class TransformerConfig:
    """A Transformer run's ``model`` section. ``window``: None for full causal attention; W:
    each token sees the last W tokens, so generation cost stays flat. ``piece_memory``:
    evaluate (and generate --piece-memory) mixed with the memory of the piece so far
    (``tunelab.models.piece_memory``; scoring and sampling only, never training)."""

    family: str = "transformer"
    d_model: int = 256
    layers: int = 2
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    window: int | None = None
    piece_memory: bool = False


@dataclass
class KVCache:
    """Per-layer key/value buffers [B, heads, C, head_dim] and the number of tokens seen.

    ``step()`` updates it in place (and returns it for symmetry with the RNN state).
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    pos: int = 0
    rope: tuple[int, torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"d_model {dim} must split into {heads} heads of even size")
        self.heads, self.head_dim, self.p = heads, dim // heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cos, sin, mask):
        """x: [B, T, D]; cos/sin: [T, hd/2]; mask: None (causal) or BoolTensor[T, T] -> [B, T, D]"""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            dropout_p=self.p if self.training else 0,
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))

    def forward_memory(self, x, cos, sin, mk, mv, mask):
        """Attention over a recurrence memory and the window. x: [B, T, D]; mk/mv: [B, H, M, hd]
        keys (not yet rotated) and values of the M tokens before x; cos/sin: [M + T, hd/2]
        (memory first); mask: BoolTensor[B, 1, T, M + T] -> (y [B, T, D], k [B, H, T, hd]
        not rotated, v [B, H, T, hd]): the window's keys and values for the next memory."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        M = mk.shape[2]
        kk = apply_rotary(torch.cat((mk.to(k.dtype), k), 2), cos, sin)
        vv = torch.cat((mv.to(v.dtype), v), 2)
        y = F.scaled_dot_product_attention(
            apply_rotary(q, cos[M:], sin[M:]),
            kk,
            vv,
            attn_mask=mask,
            dropout_p=self.p if self.training else 0,
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D))), k, v

    def step(self, x, cos, sin, kbuf, vbuf, slot: int, n_valid: int):
        """x: [B, D]; writes this token's k/v at ``slot`` and attends over ``n_valid`` slots."""
        B, D = x.shape
        qkv = self.qkv(x).view(B, 3, self.heads, 1, self.head_dim)
        qk = apply_rotary(qkv[:, :2], cos, sin)  # q and k rotated in one go (fewer ops)
        q = qk[:, 0]
        kbuf[:, :, slot : slot + 1] = qk[:, 1]
        vbuf[:, :, slot : slot + 1] = qkv[:, 2]
        # Slot order does not matter: keys already carry their rotary position.
        y = F.scaled_dot_product_attention(q, kbuf[:, :, :n_valid], vbuf[:, :, :n_valid])
        return self.proj(y.reshape(B, D))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = MLP(dim, ff_mult * dim, dropout)


class Transformer(nn.Module):
    """Causal Transformer LM. forward(x: LongTensor[B, T]) -> logits FloatTensor[B, T, V]."""

    def __init__(  # defaults: TransformerConfig's
        self,
        vocab_size: int,
        d_model: int = TransformerConfig.d_model,
        layers: int = TransformerConfig.layers,
        heads: int = TransformerConfig.heads,
        ff_mult: int = TransformerConfig.ff_mult,
        dropout: float = TransformerConfig.dropout,
        window: int | None = TransformerConfig.window,
        rope_base: float = 10000.0,
    ):
        super().__init__()
        if window is not None and window < 1:
            raise ValueError("window must be >= 1 or None")
        self.vocab_size, self.window, self.rope_base = vocab_size, window, rope_base
        self.embed = nn.Embedding(vocab_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, ff_mult, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied: fewer parameters, better on small data
        self.apply(self._init)
        for b in self.blocks:  # keep the residual stream's variance flat with depth
            nn.init.normal_(b.attn.proj.weight, std=0.02 / math.sqrt(2 * layers))
            nn.init.normal_(b.mlp.proj.weight, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @classmethod
    def from_config(
        cls, cfg: TransformerConfig | Mapping, vocab_size: int, n_labels: int = 0
    ) -> Transformer:
        """``cfg``: the config, or a mapping of some of its keys (the others: defaults).
        ``n_labels`` is accepted for the common interface; token models are unconditioned."""
        c = cfg if isinstance(cfg, TransformerConfig) else TransformerConfig(**cfg)
        return cls(
            vocab_size,
            d_model=c.d_model,
            layers=c.layers,
            heads=c.heads,
            ff_mult=c.ff_mult,
            dropout=c.dropout,
            window=c.window,
        )

    @property
    def receptive_field(self) -> int | None:
        """Tokens an output can see: a windowed layer sees W-1 tokens back through the
        previous layer's outputs, so layers * (W - 1) + 1; None for full attention."""
        if self.window is None:
            return None
        return len(self.blocks) * (self.window - 1) + 1

    @property
    def max_forward_len(self) -> int | None:
        """Longest input scored in one forward(): full attention needs memory ~ T^2, so longer
        pieces are scored with step() and the cache; None when windowed (chunks are exact)."""
        return 4096 if self.window is None else None

    @property
    def head_dim(self) -> int:
        return self.embed.embedding_dim // self.blocks[0].attn.heads

    def _mask(self, T: int, device) -> torch.Tensor | None:
        """None (plain causal) or BoolTensor[T, T], True where query i may see key j."""
        if self.window is None or T <= self.window:
            return None
        i = torch.arange(T, device=device)[:, None]
        j = torch.arange(T, device=device)[None, :]
        return (j <= i) & (j > i - self.window)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, state=None):
        """x: LongTensor[B, T] -> logits FloatTensor[B, T, V] (position t predicts token t+1).
        ``label`` is ignored (token models are unconditioned). With ``state`` (a recurrence
        memory, see ``init_carry``): ``(logits, memory after this window)``."""
        if state is not None:
            return self._forward_memory(x, state)
        T = x.shape[1]
        cos, sin = rotary_cos_sin(
            torch.arange(T, device=x.device), self.head_dim, self.rope_base, self.ln_f.weight.dtype
        )
        mask = self._mask(T, x.device)
        h = self.drop(self.embed(x))
        for b in self.blocks:
            h = h + b.attn(b.ln1(h), cos, sin, mask)
            h = h + b.mlp(b.ln2(h))
        return self.head(self.ln_f(h))

    # -- recurrence memory (train.carry_state) -------------------------------------
    def init_carry(self, batch_size: int, device: torch.device | str | None = None) -> dict:
        """An empty recurrence memory, Transformer-XL style: per layer the keys (before
        rotation) and values of the last ``window`` tokens, k/v: [B, heads, W, head_dim], and
        n: LongTensor[B], how many of them belong to the current piece (zeros: none)."""
        if self.window is None:
            raise ValueError("a recurrence memory needs model.window (the attention span)")
        p = self.embed.weight
        shape = (batch_size, self.blocks[0].attn.heads, self.window, self.head_dim)
        dev = device or p.device
        z = lambda: torch.zeros(shape, device=dev, dtype=p.dtype)  # noqa: E731
        return {
            "k": [z() for _ in self.blocks],
            "v": [z() for _ in self.blocks],
            "n": torch.zeros(batch_size, dtype=torch.long, device=dev),
        }

    def _forward_memory(self, x: torch.Tensor, mem: dict) -> tuple[torch.Tensor, dict]:
        """The window x [B, T] after the memory's M = W tokens: each token attends to the W
        tokens ending at itself (memory included, as far as it belongs to the piece), which
        is exactly what forward() over the whole piece and step() compute. Positions: the
        memory sits at 0..M-1 and the window at M..M+T-1 (rotary: only offsets matter)."""
        B, T = x.shape
        M = W = self.window
        cos, sin = rotary_cos_sin(
            torch.arange(M + T, device=x.device),
            self.head_dim,
            self.rope_base,
            self.ln_f.weight.dtype,
        )
        i = torch.arange(T, device=x.device)[:, None] + M
        j = torch.arange(M + T, device=x.device)[None, :]
        in_span = (j <= i) & (j > i - W)  # [T, M + T]
        in_piece = j[None] >= M - mem["n"][:, None, None]  # [B, 1, M + T]
        mask = (in_span[None] & in_piece)[:, None]  # [B, 1, T, M + T]
        h = self.drop(self.embed(x))
        new_k, new_v = [], []
        for b, mk, mv in zip(self.blocks, mem["k"], mem["v"], strict=True):
            y, k, v = b.attn.forward_memory(b.ln1(h), cos, sin, mk, mv, mask)
            h = h + y
            h = h + b.mlp(b.ln2(h))
            new_k.append(torch.cat((mk.to(k.dtype), k), 2)[:, :, -M:])
            new_v.append(torch.cat((mv.to(v.dtype), v), 2)[:, :, -M:])
        n = (mem["n"] + T).clamp(max=M)
        return self.head(self.ln_f(h)), {"k": new_k, "v": new_v, "n": n}

    # -- generation ---------------------------------------------------------------
    def init_state(
        self, batch_size: int, device: torch.device | str | None = None, label=None
    ) -> KVCache:
        p = self.embed.weight
        heads = self.blocks[0].attn.heads
        cap = self.window or 256
        shape = (batch_size, heads, cap, self.head_dim)
        dev = device or p.device
        mk = lambda: torch.zeros(shape, device=dev, dtype=p.dtype)  # noqa: E731
        return KVCache([mk() for _ in self.blocks], [mk() for _ in self.blocks])

    def _rope_at(self, cache: KVCache, pos: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        start = pos - pos % _ROPE_BLOCK
        if cache.rope is None or cache.rope[0] != start:
            positions = torch.arange(start, start + _ROPE_BLOCK, device=device)
            cos, sin = rotary_cos_sin(
                positions, self.head_dim, self.rope_base, self.ln_f.weight.dtype
            )
            cache.rope = (start, cos, sin)
        _, cos, sin = cache.rope
        i = pos - start
        return cos[i : i + 1], sin[i : i + 1]

    def step(self, x: torch.Tensor, state: KVCache) -> tuple[torch.Tensor, KVCache]:
        """x: LongTensor[B] -> (logits FloatTensor[B, V], state); equal to forward() token by token."""
        pos = state.pos
        cap = state.k[0].shape[2]
        if self.window is not None:
            slot, n_valid = pos % self.window, min(pos + 1, self.window)
        else:
            if pos == cap:  # grow by doubling: amortised O(1) appends
                state.k = [torch.cat((k, torch.zeros_like(k)), dim=2) for k in state.k]
                state.v = [torch.cat((v, torch.zeros_like(v)), dim=2) for v in state.v]
            slot, n_valid = pos, pos + 1
        cos, sin = self._rope_at(state, pos, x.device)
        h = self.embed(x)
        for b, kbuf, vbuf in zip(self.blocks, state.k, state.v, strict=True):
            h = h + b.attn.step(b.ln1(h), cos, sin, kbuf, vbuf, slot, n_valid)
            h = h + b.mlp.proj(F.gelu(b.mlp.fc(b.ln2(h))))  # skip the no-op eval dropout
        state.pos = pos + 1
        return self.head(self.ln_f(h)), state
