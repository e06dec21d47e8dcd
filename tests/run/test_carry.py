"""State carried across windows: streams of consecutive windows (global batch rule, resets at
piece starts), carried state == one long forward pass, exact resume with the state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_train import EOS, cfg_for, make_datadir, metrics
from tunelab.data.dataset import transpose_tables
from tunelab.data.midi import make_codec
from tunelab.data.store import load_datadir
from tunelab.data.streams import PieceStreams, stream_eval_batches, windows_of
from tunelab.kinds import IGNORE
from tunelab.kinds.scoring import piece_nll
from tunelab.models.token_rnn import TokenRNN
from tunelab.models.transformer import Transformer
from tunelab.run.carry import reset_rows, take_rows
from tunelab.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def datadir(tmp_path_factory):
    return make_datadir(tmp_path_factory.mktemp("carry") / "d", n_pieces=12)


def test_streams_follow_pieces_and_split_global_rows_over_ranks(datadir):
    train_split = load_datadir(datadir).split("train")
    tables = transpose_tables(make_codec("steps", 1), 3)
    mk = lambda rank, world: PieceStreams(  # noqa: E731
        train_split.data, train_split.pieces, 16, 4, 7, rank, world, tables
    )
    one, halves = mk(0, 1), [mk(0, 2), mk(1, 2)]
    for step in range(30):
        whole = one.batch(step)
        parts = [h.batch(step) for h in halves]
        for a, b in zip(whole, zip(*parts, strict=True), strict=True):
            assert torch.equal(a, torch.cat(b))  # rank r: global rows [2r, 2r + 2)
    # Each row walks its pieces window by window and is reset exactly at a piece's start.
    for step in range(1, 30):
        for (e0, p0, i0, k0), (e1, p1, i1, k1) in zip(
            one.where(step - 1), one.where(step), strict=True
        ):
            if k1:
                assert (e1, p1, i1, k1) == (e0, p0, i0, k0 + 1)
            else:
                assert k0 == windows_of(train_split.pieces[i0]["length"], 16) - 1
    x, y, reset = one.batch(0)
    assert reset.tolist() == [k == 0 for _, _, _, k in one.where(0)]
    assert ((y == IGNORE) | (y >= 0)).all() and (y != IGNORE).any()
    with pytest.raises(ValueError, match="divisible"):
        PieceStreams(train_split.data, train_split.pieces, 16, 3, 0, 0, 2)


def _models():
    torch.manual_seed(0)
    return {
        "gru": TokenRNN(91, "gru", 16, 24, 2, skip=True),
        "lstm": TokenRNN(91, "lstm", 16, 24, 2),
        "lstm-roll": TokenRNN(91, "lstm", 16, 24, 2, skip=True, roll=True),
        "transformer-memory": Transformer(91, 32, 2, 2, 2, window=12),
    }


@pytest.mark.parametrize("name", ["gru", "lstm", "lstm-roll", "transformer-memory"])
def test_carried_state_equals_one_long_forward(datadir, name):
    """Windows of 7 tokens chained through the carried state score every piece exactly as
    one forward pass over the whole piece does (and as scoring does)."""
    model = _models()[name].eval()
    split = load_datadir(datadir).split("train")
    streams = PieceStreams(split.data, split.pieces, 7, 3, seed=1)
    state = model.init_carry(3)
    nll: dict[tuple[int, int], list[float]] = {}  # (row, piece) -> losses of its windows
    done: list[tuple[int, float]] = []
    with torch.no_grad():
        for step in range(60):
            x, y, reset = streams.batch(step)
            where = streams.where(step)
            state = reset_rows(state, reset)
            logits, state = model(x, None, state=state)
            loss = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), y, ignore_index=IGNORE, reduction="none"
            ).sum(1)
            for r, (_, _, piece, k) in enumerate(where):
                if k == 0:
                    nll[(r, piece)] = []
                if (r, piece) in nll:
                    nll[(r, piece)].append(float(loss[r]))
                    if k == windows_of(split.pieces[piece]["length"], 7) - 1:
                        done.append((piece, sum(nll.pop((r, piece)))))
    assert len(done) >= 10
    for piece, total in done:
        tokens = torch.as_tensor(np.asarray(split.piece(piece), np.int64))
        with torch.no_grad():
            whole = model(tokens[None, :-1])[0]
        ref = torch.nn.functional.cross_entropy(whole, tokens[1:], reduction="sum")
        assert total == pytest.approx(float(ref), rel=1e-5)
        assert float(piece_nll(model, tokens).sum()) == pytest.approx(total, rel=1e-5)


@torch.no_grad()
def test_incremental_generation_equals_forward_with_memory():
    """step() with its bounded cache (W keys per layer) gives the logits that windows of 5
    tokens with the recurrence memory give, over 40 tokens (far past the window of 6)."""
    torch.manual_seed(3)
    model = Transformer(91, 32, 3, 2, 2, window=6).eval()
    x = torch.randint(0, 91, (2, 40))
    state, outs = model.init_carry(2), []
    for s in range(0, 40, 5):
        logits, state = model(x[:, s : s + 5], state=state)
        outs.append(logits)
    cache, steps = model.init_state(2), []
    for t in range(40):
        logits, cache = model.step(x[:, t], cache)
        steps.append(logits)
    assert cache.k[0].shape[2] == 6  # the cache stays bounded: generation cost is flat
    torch.testing.assert_close(torch.stack(steps, 1), torch.cat(outs, 1), rtol=1e-4, atol=1e-5)


def test_stream_eval_batches_cover_every_target_once(datadir):
    split = load_datadir(datadir).split("valid")
    pieces = [np.asarray(p) for p in split] + [np.array([89, 5, 88, EOS])]
    batches = stream_eval_batches(pieces, 5, 2)
    scored = sum(int((y != IGNORE).sum()) for _, y, _ in batches)
    assert scored == sum(len(p) - 1 for p in pieces)


@pytest.mark.parametrize("family", ["token_rnn", "transformer", "roll"])
def test_exact_resume_with_carried_state(datadir, tmp_path, family):
    """16 steps straight == 8, stop, resume to 16, with the state carried across windows: the
    same weights, EMA, carried state and logged curve, bit for bit."""
    extra = [
        "train.carry_state=true",
        "train.seq_len=8",
        "train.batch_size=4",
        "train.decay_steps=16",
        "train.eval_every=4",
        "train.eval_batches=0",
        "train.log_every=1",
        "train.ema=0.9",
        "train.augment_transpose=3",
        "model.dropout=0.2",
        f"model.family={'token_rnn' if family == 'roll' else family}",
        f"model.roll={family == 'roll'}",
        "model.d_model=16",
        "model.heads=2",
        "model.window=8",
    ]
    straight, resumed = tmp_path / "a", tmp_path / "b"
    train(cfg_for(datadir, straight, "train.max_steps=16", *extra))
    assert train(cfg_for(datadir, resumed, "train.max_steps=8", *extra)).step == 8
    assert train(cfg_for(datadir, resumed, "train.max_steps=16", *extra)).step == 16
    a = torch.load(straight / "checkpoints/last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints/last.pt", weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    assert a["carry"] and len(a["carry"]) == len(b["carry"])
    for sa, sb in zip(a["carry"], b["carry"], strict=True):
        assert sa.shape[0] == 4 and sa.abs().sum() > 0
        torch.testing.assert_close(sa, sb, rtol=0, atol=0)
    curve = lambda run: [(r["step"], r.get("loss"), r.get("valid_loss")) for r in metrics(run)]  # noqa: E731
    assert curve(straight) == curve(resumed)


def test_saved_global_rows_split_over_any_number_of_processes():
    """A state saved as 4 global rows resumes on 1, 2 or 4 processes, each taking its rows;
    a state that does not fit (another model or batch) is refused (None)."""
    model = _models()["lstm"]
    saved = [torch.arange(4 * 24, dtype=torch.float32).view(4, 24) + i for i in range(4)]
    for world in (1, 2, 4):
        for rank in range(world):
            got = take_rows(saved, model.init_carry(4 // world), rank, world, "cpu")
            rows = slice(rank * 4 // world, (rank + 1) * 4 // world)
            assert torch.equal(got[1][0], saved[2][rows])  # layer 1's h, this rank's rows
    assert take_rows(saved, model.init_carry(3), 0, 1, "cpu") is None
    assert take_rows(saved[:2], model.init_carry(4), 0, 1, "cpu") is None


def test_carry_config_errors(datadir, tmp_path):
    from tunelab.config import ConfigError

    full = ["train.carry_state=true", "model.family=transformer", "model.window=null"]
    with pytest.raises(ConfigError, match="window"):
        train(cfg_for(datadir, tmp_path / "a", *full, "model.d_model=16", "model.heads=2"))


def test_a_run_saved_before_a_model_key_existed_resumes(datadir, tmp_path):
    """A checkpoint written before ``model.roll`` existed lacks the key: it had the default, so
    the same command resumes it instead of calling it another model."""
    from tunelab.run.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "old"
    assert train(cfg_for(datadir, run, "train.max_steps=2")).step == 2
    last = run / "checkpoints/last.pt"
    ck = load_checkpoint(last)
    del ck["config"]["model"]["roll"]
    save_checkpoint(last, ck)
    assert train(cfg_for(datadir, run, "train.max_steps=4")).step == 4
