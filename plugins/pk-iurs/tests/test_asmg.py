"""ASMG's mechanism: the generator starts as IU, learns the NEXT period's model, carries its
hidden state across windows, and each output is trained on the block after its input model."""

from __future__ import annotations

import torch
from pk_iurs.data import build_stream_synthetic
from pk_iurs.models.growth import set_item_count
from pk_iurs.plugin import ASMGConfig
from pk_iurs.trainers.asmg import EMB, ASMGTrainer, ModelGenerator, align_window, loss_weights, meta_train


def _drifting_models(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Parameter dicts theta_j = base + j * d (item row 0 stays the zero padding row)."""
    g = torch.Generator().manual_seed(seed)
    base_emb, base_w = torch.randn(6, 2, generator=g), torch.randn(3, generator=g)
    base_emb[0] = 0
    d_emb, d_w = torch.tensor([0.3, -0.2]), torch.tensor([0.25, 0.1, -0.3])
    out = []
    for j in range(n):
        emb = base_emb + j * d_emb
        emb[0] = 0
        out.append({EMB: emb, "w": base_w + j * d_w})
    return out


def _gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(((a[EMB][1:] - b[EMB][1:]) ** 2).sum() + ((a["w"] - b["w"]) ** 2).sum()) ** 0.5


def test_generator_starts_as_the_last_fine_tuned_model() -> None:
    """Residual output with zero output weights: every output equals its input model, so an
    untrained ASMG serves exactly IU's model. Catches a random output layer at start."""
    gen = ModelGenerator(2, {"w": torch.Size([3])}, hidden=4, residual=True)
    window = _drifting_models(3)
    outputs, _ = gen(window, gen.zero_state(6))
    for out, src in zip(outputs, window, strict=True):
        assert torch.equal(out[EMB], src[EMB]) and torch.equal(out["w"], src["w"])


def test_meta_training_on_the_next_period_learns_to_extrapolate() -> None:
    """Models drift linearly. Output k (after reading theta_j) is trained against theta_{j+1};
    on an unseen window the served model must be much closer to the next model than IU's
    (the last input) is. Training output k against its own period (theta_j) -- the bug of
    scoring on the block the model was tuned on -- learns the identity and fails this."""
    models = _drifting_models(9)
    torch.manual_seed(0)
    gen = ModelGenerator(2, {"w": torch.Size([3])}, hidden=4, residual=True)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    s = 3

    def loss_of(k: int, params: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((params[EMB][1:] - target[EMB][1:]) ** 2).sum() + ((params["w"] - target["w"]) ** 2).sum()

    for _ in range(60):
        for end in range(s - 1, 6):  # windows theta_{end-2..end}; targets theta_{end-1..end+1}
            window = models[end - s + 1:end + 1]
            targets = [[models[end - s + 2 + k]] * 5 for k in range(s)]
            meta_train(gen, window, gen.zero_state(6), targets, loss_of, loss_weights(s, "linear"), opt)
    with torch.no_grad():
        outputs, _ = gen(models[5:8], gen.zero_state(6))  # unseen window theta_5..7 -> serve for period 8
    iu_gap = _gap(models[7], models[8])
    assert _gap(outputs[-1], models[8]) < 0.25 * iu_gap, (_gap(outputs[-1], models[8]), iu_gap)


def test_hidden_state_carried_across_windows_equals_one_long_run() -> None:
    """Sliding the window and restarting from the state after the model that left it gives
    the same last output as running the GRU over the whole history (the release saves h
    after the first step). Catches restarting from zero or from the state after the LAST model."""
    torch.manual_seed(1)
    gen = ModelGenerator(2, {"w": torch.Size([3])}, hidden=4, residual=False)
    models = _drifting_models(6)
    with torch.no_grad():
        full, _ = gen(models, gen.zero_state(6))
        last, _ = gen(models[4:6], _state_before(gen, models, 4))  # window [4, 5] after sliding 4 times
    assert torch.allclose(last[-1]["w"], full[-1]["w"], atol=1e-6)
    assert torch.allclose(last[-1][EMB], full[-1][EMB], atol=1e-6)


def _state_before(gen: ModelGenerator, models: list[dict[str, torch.Tensor]], i: int) -> dict[str, torch.Tensor]:
    """The state after models[0..i-1], built only from windows' ``first`` states (the carry rule)."""
    state = gen.zero_state(6)
    for j in range(i):
        _, state = gen(models[j:j + 2], state)
    return state


def test_align_window_back_fills_rows_from_the_first_later_model() -> None:
    old = {EMB: torch.full((3, 2), 1.0), "w": torch.zeros(1)}
    mid = {EMB: torch.full((5, 2), 2.0), "w": torch.zeros(1)}
    current = {EMB: torch.full((7, 2), 9.0), "w": torch.zeros(1)}
    a, b = align_window([old, mid], current)
    assert a[EMB][:3].eq(1).all() and a[EMB][3:5].eq(2).all() and a[EMB][5:].eq(9).all()
    assert b[EMB][:5].eq(2).all() and b[EMB][5:].eq(9).all()


def test_each_window_output_is_trained_on_the_block_after_its_model(tmp_path, small, model_for, fake_run) -> None:
    """Instrument the stream: at block t with the chain M̂_{t-3..t-1}, the meta phase must ask
    for blocks t-2, t-1 (and reuse block t's rows) -- the blocks AFTER each input model --
    and never for t+1. Catches pairing an output with its own model's block (t-3, ...)."""
    stream = build_stream_synthetic(small.__class__(**{**vars(small), "blocks": 6}), seed=0)
    model = model_for(stream)
    trainer = ASMGTrainer(ASMGConfig(pretrain_epochs=1, batch_size=32, seq_length=3))
    run = fake_run(tmp_path)
    set_item_count(model, stream.known[0])
    trainer.pretrain(model, stream, run)
    trainer.after_update(model, stream, 0, run)
    for t in (1, 2, 3):
        set_item_count(model, stream.known[t])
        trainer.update(model, stream, t, run)
    assert [j for j, _ in trainer.chain] == [1, 2, 3]
    asked: list[list[int]] = []
    orig = stream.train_rows

    def train_rows(blocks):
        asked.append(list(blocks))
        return orig(blocks)

    stream.train_rows = train_rows
    set_item_count(model, stream.known[4])
    trainer.update(model, stream, 4, run)
    assert asked == [[4], [2], [3]], asked
    assert [j for j, _ in trainer.chain] == [2, 3, 4]
