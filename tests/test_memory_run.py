"""pk.core.testing.MemoryRun: the in-memory run handle plugins' tests drive trainers with."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from pk.core.contracts import RunHandle
from pk.core.seed import derive_seed
from pk.core.testing import MemoryRun


def test_memory_run_is_a_run_handle(tmp_path) -> None:
    """Catches a handle missing a method the trainers may call (the Protocol is runtime-checkable)."""
    assert isinstance(MemoryRun(tmp_path), RunHandle)

    class Partial:  # a fake without generator_states: what the copies in plugin tests once were
        dir, config, seed, device = tmp_path, {}, 0, "cpu"

        def generator(self, name): ...

    assert not isinstance(Partial(), RunHandle)


@given(seed=st.integers(0, 2**31), name=st.sampled_from(["shuffle", "dropout", "aggregator"]))
def test_generators_are_seeded_like_a_real_run(seed: int, name: str) -> None:
    run = MemoryRun(seed=seed)
    want = torch.Generator().manual_seed(derive_seed(seed, name))
    assert torch.equal(torch.rand(3, generator=run.generator(name)), torch.rand(3, generator=want))


def test_generator_states_round_trip_and_checkpoints_are_copies(tmp_path) -> None:
    run = MemoryRun(tmp_path, seed=3)
    torch.rand(2, generator=run.generator("shuffle"))
    states = run.generator_states()
    first = torch.rand(4, generator=run.generator("shuffle"))
    run.restore_generator_states(states)
    assert torch.equal(torch.rand(4, generator=run.generator("shuffle")), first)
    state = {"w": torch.zeros(2)}
    run.save_checkpoint(state)
    state["w"] += 1
    assert torch.equal(run.saved[0]["w"], torch.zeros(2)), "a saved checkpoint must not alias the live state"
    assert MemoryRun(tmp_path, resume_from={"epoch": 1}).latest_checkpoint() == {"epoch": 1}
    run = MemoryRun(tmp_path, builders={"aggregator": lambda **kw: kw})
    assert run.build("aggregator", context=1) == {"context": 1} and run.build("calibrator") is None
