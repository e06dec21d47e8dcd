"""WaveNet over 8-bit mu-law audio: dilated causal convolutions, gated units, skip connections.

Layout is channels-last throughout ([B, T, C]): the input layer is an embedding, and every
convolution is an ``nn.Linear`` — a dilated causal convolution of width K is one matmul over
the K time-shifted copies of its input concatenated on the channel axis. On the CPU this is
faster than ``nn.Conv1d`` (no im2col, no transposes) and its weight is already in the
[out, K*R] tap-major layout that ``step()`` and the fused generator use.

Each layer l (dilation d, residual x [B, T, R]):

    z = conv_l([x[t-(K-1)d], ..., x[t-d], x[t]]) + cond_l(label)        [B, T, 2G]
    h = tanh(z[..., :G]) * sigmoid(z[..., G:])                            [B, T, G]
    res, skip_l = out_l(h)                                                [B, T, R], [B, T, S]
    x = (x + res) * sqrt(1/2)

and the logits are post2(relu(post1(relu(sum_l skip_l)))). The filter and gate halves share
one matmul, and the residual and skip 1x1 convolutions share another. The last layer has no
residual output (nothing reads it), so every parameter gets a gradient (DDP-friendly).

Generation: ``step()`` keeps, per layer, a ring buffer of that layer's last (K-1)*d inputs,
so each new sample costs the same whatever has been generated before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

_RES_SCALE = math.sqrt(0.5)  # keeps the residual stream's variance flat with depth


@dataclass
class WaveNetConfig:
    """A WaveNet run's ``model`` section (``WaveNet``'s arguments say what each key does):
    dilations 1, 2, ..., 2^(layers_per_stack-1) per stack; ``gc_channels``: the label
    embedding added to every layer's filter and gate (0: no conditioning)."""

    family: str = "wavenet"
    residual_channels: int = 32
    gate_channels: int = 32
    skip_channels: int = 512
    stacks: int = 5
    layers_per_stack: int = 10
    kernel_size: int = 2
    bias: bool = True
    gc_channels: int = 32


@dataclass
class WaveNetState:
    """Incremental state for n streams.

    queues: per layer a ring buffer FloatTensor[n, (K-1)*d, R] of that layer's past inputs;
        the input of time p sits in slot p % ((K-1)*d). Zeros = forward()'s causal padding.
    cond: FloatTensor[n, L, 2G], each layer's conv bias plus its label projection.
    pos: number of samples fed so far.
    """

    queues: list[torch.Tensor]
    cond: torch.Tensor
    pos: int = 0


class WaveNet(nn.Module):
    """Autoregressive WaveNet. forward(x: LongTensor[B, T]) -> logits FloatTensor[B, T, classes].

    Args:
        classes: number of quantisation levels (input ids and output classes), 256 for 8-bit mu-law.
        residual_channels: R, width of the residual stream.
        gate_channels: G, width of the filter and of the gate (the conv has 2G outputs).
        skip_channels: S, width of the skip sum and of the first post layer.
        stacks: number of dilation cycles.
        layers_per_stack: layers per cycle, dilations 1, 2, ..., 2^(layers_per_stack-1).
        kernel_size: K, width of the dilated causal convolutions (>= 2).
        bias: biases in the convolutions.
        n_labels: number of global labels (0: unconditional).
        gc_channels: width of the label embedding (0: unconditional).
    """

    res_scale = _RES_SCALE  # read off the model by the fused kernel (wavenet_gen imports no model)
    # What the inputs of the conv, 1x1 and post matmuls pass through: None, or (in a rounded
    # copy, ``wavenet_gen.round_weights``) the rounding a fused generator applies to them.
    round_input = None

    def __init__(  # defaults: WaveNetConfig's
        self,
        classes: int = 256,
        residual_channels: int = WaveNetConfig.residual_channels,
        gate_channels: int = WaveNetConfig.gate_channels,
        skip_channels: int = WaveNetConfig.skip_channels,
        stacks: int = WaveNetConfig.stacks,
        layers_per_stack: int = WaveNetConfig.layers_per_stack,
        kernel_size: int = WaveNetConfig.kernel_size,
        bias: bool = WaveNetConfig.bias,
        n_labels: int = 0,
        gc_channels: int = WaveNetConfig.gc_channels,
    ):
        super().__init__()
        if kernel_size < 2:
            raise ValueError("kernel_size must be >= 2")
        if stacks < 1 or layers_per_stack < 1:
            raise ValueError("stacks and layers_per_stack must be >= 1")
        R, G, S, K = residual_channels, gate_channels, skip_channels, kernel_size
        self.classes, self.residual_channels, self.gate_channels = classes, R, G
        self.skip_channels, self.kernel_size = S, K
        self.dilations = [2**i for _ in range(stacks) for i in range(layers_per_stack)]
        self.receptive_field = (K - 1) * sum(self.dilations) + 1
        self.conditioned = n_labels > 0 and gc_channels > 0
        L = len(self.dilations)

        self.embed = nn.Embedding(classes, R)
        self.convs = nn.ModuleList(nn.Linear(K * R, 2 * G, bias=bias) for _ in range(L))
        # Residual and skip 1x1 convs fused: outputs [res (R) | skip (S)]; the last layer: skip only.
        self.outs = nn.ModuleList(
            nn.Linear(G, (R if i < L - 1 else 0) + S, bias=bias) for i in range(L)
        )
        self.label_embed = nn.Embedding(n_labels, gc_channels) if self.conditioned else None
        # Every layer's label 1x1 projection in one matmul: [B, gc] -> [B, L * 2G].
        self.cond_proj = nn.Linear(gc_channels, L * 2 * G, bias=False) if self.conditioned else None
        self.post1 = nn.Linear(S, S, bias=bias)
        self.post2 = nn.Linear(S, classes, bias=bias)

    @classmethod
    def from_config(
        cls, cfg: WaveNetConfig | Mapping, vocab_size: int, n_labels: int = 0
    ) -> WaveNet:
        """``cfg``: the config, or a mapping of some of its keys (the others: defaults)."""
        c = cfg if isinstance(cfg, WaveNetConfig) else WaveNetConfig(**cfg)
        return cls(
            vocab_size,
            residual_channels=c.residual_channels,
            gate_channels=c.gate_channels,
            skip_channels=c.skip_channels,
            stacks=c.stacks,
            layers_per_stack=c.layers_per_stack,
            kernel_size=c.kernel_size,
            bias=c.bias,
            n_labels=n_labels,
            gc_channels=c.gc_channels,
        )

    def _cond(self, label: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Per-layer label projection FloatTensor[n, L, 2G], or None when unconditioned."""
        if not self.conditioned:
            if label is not None:
                raise ValueError(
                    "this WaveNet has no label conditioning (n_labels=0); pass label=None"
                )
            return None
        if label is None:
            raise ValueError("this WaveNet is label-conditioned: pass label=LongTensor[B]")
        if label.shape != (n,):
            raise ValueError(f"label must have shape ({n},), got {tuple(label.shape)}")
        return self.cond_proj(self.label_embed(label)).view(n, len(self.convs), -1)

    # -- training -----------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None = None, tail: int | None = None
    ) -> torch.Tensor:
        """x: LongTensor[B, T], label: LongTensor[B] -> logits FloatTensor[B, T, classes].

        Causal: position t sees x[..t] (at most the last receptive_field samples) and predicts
        x[t+1]. Positions before the first receptive_field - 1 see zero padding.
        ``tail=N``: logits of the last N positions only, [B, N, classes]; the skip path and the
        post layers then run only there (training scores only where the whole receptive field
        is inside the window, so the first receptive_field - 1 outputs are never needed).
        """
        B, T = x.shape
        t0 = 0 if tail is None else T - tail
        K, G, R, S = (
            self.kernel_size,
            self.gate_channels,
            self.residual_channels,
            self.skip_channels,
        )
        cond = self._cond(label, B)
        h = self.embed(x)
        skip = None
        for i, (conv, out, d) in enumerate(zip(self.convs, self.outs, self.dilations, strict=True)):
            if K == 2:  # the common case: one shifted copy
                taps = (F.pad(h, (0, 0, d, 0))[:, :T], h)
            else:
                hp = F.pad(h, (0, 0, (K - 1) * d, 0))
                taps = tuple(hp[:, k * d : k * d + T] for k in range(K - 1)) + (h,)
            z = conv(self._in(torch.cat(taps, dim=-1), "rows"))
            if cond is not None:
                z = z + cond[:, None, i]
            g = self._in(torch.tanh(z[..., :G]) * torch.sigmoid(z[..., G:]), "gate")
            last = i == len(self.convs) - 1
            if t0 == 0:  # one matmul for [res | skip]
                o = out(g)
                s = o if last else o[..., R:]
                res = None if last else o[..., :R]
            else:  # res everywhere (the next layer reads it), skip only in the tail
                w, b = out.weight, out.bias
                s = F.linear(g[:, t0:], w[-S:], None if b is None else b[-S:])
                res = None if last else F.linear(g, w[:R], None if b is None else b[:R])
            skip = s if skip is None else skip + s
            if res is not None:
                h = (h + res) * _RES_SCALE
        return self._post(skip)

    def _in(self, x: torch.Tensor, site: str) -> torch.Tensor:
        """x as a matmul reads it (``round_input(x, site)``; site: "rows" for the conv's
        input, "gate" for the 1x1's, "post" for the head's)."""
        return x if self.round_input is None else self.round_input(x, site)

    def _post(self, skip: torch.Tensor) -> torch.Tensor:
        """The logits from the skip sum: post2(relu(post1(relu(skip))))."""
        return self.post2(self._in(F.relu(self.post1(self._in(F.relu(skip), "post"))), "post"))

    # -- generation ---------------------------------------------------------------
    def init_state(
        self, n: int, device: torch.device | str | None = None, label: torch.Tensor | None = None
    ) -> WaveNetState:
        """Zero state for n streams (what forward() starts from); label: LongTensor[n] if conditioned."""
        p = self.embed.weight
        device = device or p.device
        K, R, G, L = self.kernel_size, self.residual_channels, self.gate_channels, len(self.convs)
        queues = [
            torch.zeros(n, (K - 1) * d, R, device=device, dtype=p.dtype) for d in self.dilations
        ]
        with torch.no_grad():
            cond = torch.zeros(n, L, 2 * G, device=device, dtype=p.dtype)
            for i, conv in enumerate(self.convs):
                if conv.bias is not None:
                    cond[:, i] += conv.bias
            lab = self._cond(None if label is None else label.to(device), n)
            if lab is not None:
                cond += lab
        return WaveNetState(queues, cond, 0)

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: WaveNetState) -> tuple[torch.Tensor, WaveNetState]:
        """x: LongTensor[n] -> (logits FloatTensor[n, classes], state); equal to forward() step by step.

        Updates the state's ring buffers in place.
        """
        K, R, G, pos = self.kernel_size, self.residual_channels, self.gate_channels, state.pos
        last = len(self.convs) - 1
        h = self.embed(x)
        skip = None
        for i, (conv, out, d, q) in enumerate(
            zip(self.convs, self.outs, self.dilations, state.queues, strict=True)
        ):
            n_slots = (K - 1) * d
            # The input of time pos - (K-1-k)*d sits in slot (pos + k*d) % n_slots.
            taps = [q[:, (pos + k * d) % n_slots] for k in range(K - 1)]
            z = torch.addmm(
                state.cond[:, i], self._in(torch.cat(taps + [h], dim=1), "rows"), conv.weight.t()
            )
            q[:, pos % n_slots] = h  # overwrites the oldest tap, read above
            g = self._in(torch.tanh(z[:, :G]) * torch.sigmoid(z[:, G:]), "gate")
            o = out(g)
            s = o[:, R:] if i < last else o
            skip = s if skip is None else skip + s
            if i < last:
                h = (h + o[:, :R]) * _RES_SCALE
        state.pos = pos + 1
        return self._post(skip), state

    generator_weights = ("float32", "bfloat16", "int8")  # how generator() can store weights

    def generator(self, n: int, label: torch.Tensor | None = None, weights: str = "float32"):
        """The fused numba generator for n streams (``tunelab.models.wavenet_gen``)."""
        from tunelab.models.wavenet_gen import FusedWaveNet

        return FusedWaveNet(self, n, label, weights=weights)

    def rounded(self, weights: str) -> nn.Module:
        """A copy holding the weights generator(weights=weights) multiplies by."""
        from tunelab.models.wavenet_gen import round_weights

        return round_weights(self, weights)
