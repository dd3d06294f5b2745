"""ECL-SR / CL4SRec model properties on tiny shapes: parameter sharing, gradient paths,
discriminator labels, [MASK] exclusion, padding invariance, the SASRec special case, seeds."""

from __future__ import annotations

import pytest
import torch
from pk_eclsr.models.cl4srec import CL4SRec
from pk_eclsr.models.eclsr import ECLSR
from pk_seqrec.models.encoder import TransformerEncoder
from pk_seqrec.models.sasrec import SASRec

N, L = 25, 8
SIZES = {"hidden": 16, "layers": 2, "heads": 2, "inner": 32}


def _batch(seed: int = 0, rows: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seq = torch.zeros(rows, L, dtype=torch.long)
    targets = torch.zeros(rows, L, dtype=torch.long)
    for r in range(rows):
        n = int(torch.randint(2, L + 1, (1,), generator=g))
        items = torch.randint(1, N + 1, (n + 1,), generator=g)
        seq[r, L - n :], targets[r, L - n :] = items[:-1], items[1:]
    return {"seq": seq, "targets": targets, "target": targets[:, -1], "len": (seq != 0).sum(1)}


def _eclsr(**kwargs: float | str) -> ECLSR:
    torch.manual_seed(0)
    return ECLSR(N, L, **{**SIZES, **kwargs})  # type: ignore[arg-type]


def test_discriminator_is_the_encoder_and_the_table_is_shared() -> None:
    model = _eclsr()
    assert model.generator.item_embedding is model.item_embedding
    encoders = [m for m in model.modules() if isinstance(m, TransformerEncoder)]
    assert len(encoders) == 2 and model.encoder in encoders and model.generator.encoder in encoders
    assert model.item_embedding.num_embeddings == N + 2


def test_discriminator_gradient_reaches_the_encoder_but_not_the_generator() -> None:
    model = _eclsr(weight_con=0.0)
    model.train()
    terms = model.loss_terms(_batch())
    terms["disc"].backward()
    enc_grad = model.encoder.attention[0].query.weight.grad
    assert enc_grad is not None and float(enc_grad.abs().sum()) > 0
    generator_only = [p for n, p in model.generator.named_parameters() if not n.startswith("item_embedding")]
    assert generator_only and all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in generator_only)


def test_generator_loss_trains_the_generator_and_shared_table() -> None:
    model = _eclsr(weight_con=0.0)
    model.train()
    model.loss_terms(_batch())["gen"].backward()
    assert float(model.generator.encoder.attention[0].query.weight.grad.abs().sum()) > 0
    assert float(model.item_embedding.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("strategy", ["sample", "prob"])
def test_discriminator_labels_mark_exactly_the_substituted_positions(strategy: str) -> None:
    model = _eclsr(mask_strategy=strategy, mask_ratio=0.4)
    model.train()
    batch = _batch(3)
    terms = model.loss_terms(batch)
    seq, positions, sub, labels = terms["_seq"], terms["_positions"], terms["_substituted"], terms["_labels"]
    assert torch.equal(seq[:, -L:], batch["seq"]) and not bool(seq[:, :-L].any())
    assert torch.equal(sub[~positions], seq[~positions]), "substitution touched unmasked positions"
    assert bool((sub[positions] >= 1).all() and (sub[positions] <= N).all()), "filled padding or [MASK]"
    assert torch.equal(labels.bool(), positions & (sub != seq))
    assert terms["_prob"].shape == seq.shape


def test_correct_reconstruction_counts_as_original() -> None:
    """A generator that always returns the original item leaves the target all-original."""
    model = _eclsr(weight_con=0.0)
    model.train()
    batch = _batch(5)

    def oracle(seq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return seq.sum() * 0.0, seq.clone()

    model._generate = oracle  # type: ignore[method-assign]
    terms = model.loss_terms(batch)
    assert bool(terms["_positions"].any()), "ECL always masks at least one position"
    assert not bool(terms["_labels"].any())


def test_no_substituted_positions_gives_an_all_original_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Substitution probability 0 (no position selected): every discriminator label is 0."""
    import pk_eclsr.models.eclsr as mod

    monkeypatch.setattr(mod, "substitution_positions", lambda seq, *a, **k: torch.zeros_like(seq, dtype=torch.bool))
    model = _eclsr(weight_con=0.0)
    model.train()
    batch = _batch(7)
    terms = model.loss_terms(batch)
    assert torch.equal(terms["_substituted"], batch["seq"]) and not bool(terms["_labels"].any())
    assert float(terms["gen"].detach()) == 0.0


def test_mask_row_is_excluded_from_recommendation_scores() -> None:
    for model in (_eclsr(), _cl4srec()):
        model.eval()
        batch = _batch(1)
        with torch.no_grad():
            before = model.predict(batch)
            model.item_embedding.weight[N + 1] += 100.0
            after = model.predict(batch)
        assert before.shape == (6, N + 1) and bool(torch.isneginf(before[:, 0]).all())
        assert torch.equal(before, after)


def test_left_padding_and_causality() -> None:
    model = _eclsr()
    model.eval()
    batch = _batch(2)
    with torch.no_grad():
        scores = model.predict(batch)
        wider = model.predict({"seq": torch.nn.functional.pad(batch["seq"], (5, 0))})
        h = model.encode(batch["seq"])
        changed = batch["seq"].clone()
        changed[:, -1] = (changed[:, -1] % N) + 1
        h_changed = model.encode(changed)
    torch.testing.assert_close(scores, wider, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h[:, :-1], h_changed[:, :-1], rtol=1e-5, atol=1e-5)


def test_zero_auxiliary_weights_give_exactly_sasrecs_step() -> None:
    model = _eclsr(weight_con=0.0, weight_disc=0.0, weight_gen=0.0, dropout=0.3, attn_dropout=0.3)
    sasrec = SASRec(N, L, dropout=0.3, attn_dropout=0.3, **SIZES)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("generator.", "discriminator_head."))}
    state["item_embedding.weight"] = state["item_embedding.weight"][: N + 1]
    sasrec.load_state_dict(state)
    model.train()
    sasrec.train()
    batch = _batch(4)
    torch.manual_seed(11)
    ours = model.loss(batch)
    torch.manual_seed(11)
    theirs = sasrec.loss(batch)
    assert torch.equal(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(model.encoder.attention[1].value.weight.grad,
                               sasrec.encoder.attention[1].value.weight.grad)


def test_contrastive_view_works_when_k_exceeds_the_batch_width() -> None:
    model = _eclsr(contrast_k=12, weight_disc=0.0, weight_gen=0.0)  # k > L: every real position pooled
    model.train()
    terms = model.loss_terms(_batch(6))
    assert torch.isfinite(terms["con"]) and float(terms["con"].detach()) > 0


def _cl4srec() -> CL4SRec:
    torch.manual_seed(0)
    return CL4SRec(N, L, **SIZES)


@pytest.mark.parametrize("factory", [_eclsr, _cl4srec])
def test_training_loss_is_deterministic_under_a_seed(factory) -> None:  # type: ignore[no-untyped-def]
    losses = []
    for _ in range(2):
        model = factory()
        model.train()
        torch.manual_seed(3)
        losses.append(model.loss(_batch(8)))
    assert torch.equal(losses[0], losses[1])
    torch.manual_seed(4)
    assert not torch.equal(losses[0], factory().train().loss(_batch(8))), "the step ignores its randomness"


def test_cl4srec_adds_the_contrastive_term() -> None:
    torch.manual_seed(0)
    model = CL4SRec(N, L, cl_weight=0.5, **SIZES)
    model.train()
    torch.manual_seed(1)
    terms = model.loss_terms(_batch(9))
    torch.manual_seed(1)
    total = model.loss(_batch(9))
    torch.testing.assert_close(total, terms["rec"] + 0.5 * terms["cl"])
    assert float(terms["cl"].detach()) > 0
