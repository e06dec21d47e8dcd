"""The ``Kind`` contract: everything the training loop, ``generate``, ``evaluate``, the
checkpoint ranking, the report and the checkpoint loader ask of a kind of data.

A kind is built from a data directory's ``meta.json`` (``tunelab.kinds.kind_for``) and decides
all that depends on the data; the loops above it never branch on which kind they hold.
``Kind`` states the contract as a ``typing.Protocol`` (structural: the kinds do not inherit
it). Abilities only some kinds have (music metrics, a transposition mixture, the piece memory,
a WAV preview of a written piece, frames' extra plan options and audit flag) are methods and
attributes of every kind: ``KindDefaults`` gives their neutral answer, and a kind that has the
ability overrides it. So a caller asks the kind, never ``hasattr`` or ``kind.name``.

Shapes: B batch rows, T time steps, V classes (``vocab_size``; for frames the features per
frame), N audio samples. A *piece* is what the kind generates, reads and writes: an int token
array [T] for ``tokens``, a ``Clip`` for the audio kinds. Parameters before a ``/`` are passed
by position, so each kind names them for what they are (``tokens``, ``clips``, ``logits``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Kind(Protocol):
    """One kind of data the models see (``tokens``, ``mulaw``, ``frames``)."""

    name: ClassVar[str]  # the kind's name, as in the MODELS table ("tokens", ...)
    suffix: ClassVar[str]  # of the files ``generate`` writes (".mid", ".wav")
    plan_options: ClassVar[tuple[str, ...]]  # keyword options ``plan`` takes beyond the five
    extra_flags: ClassVar[
        tuple[str, ...]
    ]  # audit flags beyond the common ones (frames: mean_frame)
    meta: dict  # the data's meta.json, plus what the kind derived (saved in every checkpoint)
    vocab_size: int  # the model's input/output width: classes, or features per frame
    n_labels: int  # label classes the model is conditioned on (0: unconditioned)
    label_names: list[str]

    @classmethod
    def for_model(cls, model_cfg: Any, meta: dict) -> Kind:
        """The kind of ``model_cfg`` (a family's config dataclass or its dict) on data
        described by ``meta`` (frames: the model config chooses the frame form, size and hop)."""
        ...

    @property
    def sample_suffixes(self) -> tuple[str, ...]:
        """File suffixes ``evaluate --samples`` reads (".mid", ".midi"; the audio formats)."""
        ...

    # -- data and training ------------------------------------------------------------
    def signature(self) -> dict:
        """What a resumed run's data must share with the data it started on."""
        ...

    def check_data(self, data_meta: dict, where: Any) -> None:
        """ValueError (naming ``where``) unless ``data_meta`` is data this run can score."""
        ...

    def train_batches(
        self, split: Any, t: Any, seed: int, rank: int, world: int, receptive_field: int | None
    ) -> Callable[[int], tuple]:
        """step -> (x, y, label) as a pure function of the step: x [B, T(+context)], y [B, T]
        (LongTensor for classes, FloatTensor[B, T, V] for frames), label LongTensor[B] or None;
        token runs with carried state add a BoolTensor[B] reset flag. ``t``: TrainConfig."""
        ...

    def valid_batches(self, split: Any, t: Any, receptive_field: int | None) -> list[tuple]:
        """The fixed validation batches, each shaped as ``train_batches`` returns."""
        ...

    def loss(
        self, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None = None, /
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, count) of the model's output ``out`` (logits [B, T, V] or predicted
        frames [B, T, V]) against ``y``; ``x`` is the input (token runs: the grammar bias).
        Called with positions only: the kinds name the output for what it is (logits)."""
        ...

    def valid_figures(self, loss: float, /) -> dict:
        """Extra figures of a validation loss for metrics.jsonl (mu-law: bits per sample)."""
        ...

    def preview(self, model: torch.nn.Module, device: Any) -> tuple[np.ndarray, int] | None:
        """A short sample for TensorBoard: (float audio [N], sample rate), or None."""
        ...

    # -- scoring ------------------------------------------------------------------------
    def likelihood(
        self, model: torch.nn.Module, split: Any, /, device: Any = "cpu", progress: bool = False
    ) -> dict:
        """Every piece of ``split`` scored whole: ``nll_per_token``, ``tokens`` and the kind's own
        accounting (``tunelab.evaluate``'s docstring)."""
        ...

    def baseline(self, datadir: Any, split: str) -> dict:
        """A trivial model's figures on ``split``, under keys containing ``baseline``."""
        ...

    def inference_model(self, model: torch.nn.Module, shifts: int) -> torch.nn.Module | None:
        """``model`` as its mixture over transpositions by -shifts..shifts semitones (None: the
        kind has no such mixture)."""
        ...

    def memory_model(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """``model`` mixed with the memory of the piece so far (None: the kind has none)."""
        ...

    # -- generation ---------------------------------------------------------------------
    def plan(
        self,
        seconds: float | None,
        steps: int | None,
        primer: Any,
        label: str | None,
        sampling: Any,
    ) -> Any:
        """One ``generate`` call resolved (length, primer, label ids); ValueError for options
        the kind does not take. Kinds with ``plan_options`` take those as keywords too."""
        ...

    def sample(
        self,
        model: torch.nn.Module,
        plan: Any,
        n: int,
        seed: int,
        sampling: Any,
        device: Any,
        progress: bool,
        timing: dict | None,
        save_every: float | None = None,
        partial: Callable[[int], Path] | None = None,
    ) -> list:
        """``n`` pieces; piece i depends only on (seed, i). ``timing`` (a dict) receives the
        loop's figures; audio kinds rewrite ``partial(i)`` every ``save_every`` seconds."""
        ...

    # -- audits and files ---------------------------------------------------------------
    def reference(self, data_dir: Any) -> tuple[Any, str]:
        """(the training data's copy-audit index, where it came from), or (None, reason)."""
        ...

    def pack_reference(self, data_dir: Any) -> tuple[tuple[dict, dict] | None, str]:
        """((arrays, info), where) of the copy-audit index as a bundle stores it (plain
        numpy arrays and JSON-able info: no pickle), or (None, reason) without the data."""
        ...

    def reference_from_pack(self, arrays: dict, info: dict) -> Any:
        """The copy-audit index rebuilt from ``pack_reference``'s output (a bundle's)."""
        ...

    def primer_from_training(self, plan: Any, index: Any) -> dict | None:
        """The primer's copy audit, {"from_training": bool, "audit": {...}}, or None."""
        ...

    def audit(self, pieces: Sequence, /, plan: Any, index: Any) -> list[dict]:
        """One audit per piece (of what follows the primer), each with its ``flags``."""
        ...

    def music_metrics(
        self, pieces: Sequence, /, index: Any, *, sets: bool = True
    ) -> tuple[list[dict], dict]:
        """Music statistics per piece and for the set (distances to ``index`` when given);
        ``sets=False``: the per-piece figures only (the set's ``{}``), for callers that
        discard the set (``generate``), since the set figures can cost seconds."""
        ...

    def read(self, path: Path) -> Any:
        """A file as a piece (ValueError naming the file when it cannot be read)."""
        ...

    def thresholds(self) -> dict:
        """The audit thresholds behind the flags, recorded in ``eval/samples.json``."""
        ...

    def describe(self, piece: Any, /) -> dict:
        """Duration and size of a piece, for its sidecar."""
        ...

    def write(self, piece: Any, /, path: Path, side: dict) -> list[Path]:
        """The piece at ``path`` and ``side`` beside it as ``<path>.json``; the files written."""
        ...

    def write_preview(self, piece: Any, /, path: Path, side: dict) -> None:
        """A listenable copy beside a written piece (MIDI: a WAV rendered with the SoundFont)."""
        ...


class KindDefaults:
    """The neutral answers of the optional parts of ``Kind``; a kind overrides what it has."""

    plan_options: ClassVar[tuple[str, ...]] = ()  # plan() takes only the five common inputs
    extra_flags: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def for_model(cls, model_cfg: Any, meta: dict) -> Any:
        """The data's meta alone decides the kind."""
        return cls(meta)

    def valid_figures(self, loss: float) -> dict:
        return {}

    def preview(self, model: torch.nn.Module, device: Any) -> tuple[np.ndarray, int] | None:
        return None  # nothing to listen to

    def baseline(self, datadir: Any, split: str) -> dict:
        return {}

    def inference_model(self, model: torch.nn.Module, shifts: int) -> torch.nn.Module | None:
        return None

    def memory_model(self, model: torch.nn.Module) -> torch.nn.Module | None:
        return None

    def music_metrics(self, pieces: Sequence, index: Any, *, sets: bool = True):
        return [{} for _ in pieces], {}

    def write_preview(self, piece: Any, path: Path, side: dict) -> None:
        return None  # the written file is already audio
