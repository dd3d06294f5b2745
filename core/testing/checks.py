"""Contract checks, one function per property; each takes a :class:`Case`.

All run on CPU with one thread, on the components' synthetic defaults (dataset configs with
a ``source`` field get ``source = "synthetic"``), shrunk by ``pk_test`` class attributes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pk.core.config import dumps_toml, load_toml, resolve
from pk.core.registry import Registration
from pk.core.testing import strategies as pks
from pk.core.testing.cases import Case

TRAINER_BUDGET = {"max_epochs": 2, "max_steps": 6, "rounds": 2, "epochs": 1, "patience": 100}


# -- helpers ---------------------------------------------------------------------------
def _registry() -> Any:
    from pk.core.plugins import get_registry

    return get_registry()


def _test_params(reg: Registration, section: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if reg.config is None:
        return params
    fields = {f.name for f in dataclasses.fields(reg.config)}
    if section == "dataset" and "source" in fields:
        params["source"] = "synthetic"
    if section == "trainer":
        params.update({k: v for k, v in TRAINER_BUDGET.items() if k in fields})
    params.update(getattr(reg.config, "pk_test", {}) or {})
    return params


def _bases(distribution: str) -> list[str]:
    """The pk-* distributions ``distribution`` requires (its domain bases), transitively."""
    import re
    from importlib import metadata

    out: list[str] = []
    todo = [distribution]
    while todo:
        try:
            reqs = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for req in reqs:
            name = re.split(r"[\s<>=!~\[;(]", req, maxsplit=1)[0]
            if name.startswith("pk-") and name != "pk-core" and name not in out and "extra ==" not in req:
                out.append(name)
                todo.append(name)
    return out


def _companion(kind: str, tasks: tuple[str, ...], prefer: str) -> Registration | None:
    """A registration of ``kind`` sharing a task: from the plugin ``prefer`` itself, then its
    declared pk-* bases, then the core built-ins. Never from an unrelated plugin that happens
    to be installed (``pk_test_with`` names such a companion explicitly)."""
    order = [prefer, *_bases(prefer), "pk-core"]
    regs = [r for r in _registry() if r.kind == kind and r.distribution in order
            and (not tasks or not r.tasks or set(r.tasks) & set(tasks))]
    regs.sort(key=lambda r: (order.index(r.distribution), r.name))
    return regs[0] if regs else None


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def _scratch_dir() -> str:
    """One placeholder ``run.out_dir`` per process for checks that never write a run; removed at exit."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="pk-check-"))
    return _SCRATCH[0].name


def _config(parts: dict[str, Registration], seed: int = 0, out_dir: str | None = None) -> Any:
    raw: dict[str, Any] = {"run": {"seed": seed, "threads": 1, "out_dir": out_dir or _scratch_dir()}}
    for section, reg in parts.items():
        raw[section] = {"name": reg.qualified_name, **_test_params(reg, section)}
    return resolve(raw, _registry(), required=())


def _stack(case: Case, need: tuple[str, ...]) -> dict[str, Registration]:
    """The registration under test plus companions for the sections in ``need``."""
    reg = case.registration
    assert reg is not None
    parts = {reg.kind[:-1]: reg}
    tasks = reg.tasks
    preferred = dict(getattr(reg.config, "pk_test_with", {}) or {}) if reg.config is not None else {}
    for section in need:
        if section in parts:
            continue
        if section in preferred:
            parts[section] = _registry().get(section + "s", preferred[section])
            continue
        comp = _companion(section + "s", tasks, reg.distribution)
        if comp is None:
            pytest.skip(f"no installed {section} shares a task with {reg.name} ({', '.join(tasks) or 'any'})")
        parts[section] = comp
        tasks = tuple(set(tasks) & set(comp.tasks)) if tasks and comp.tasks else (tasks or comp.tasks)
    return parts


def _build_data_model(parts: dict[str, Registration], seed: int = 0) -> tuple[Any, Any]:
    import torch

    from pk.core.runner import Components

    torch.set_num_threads(1)
    comps = Components(_config(parts, seed))
    data = comps.dataset()
    model = comps.model(data.info)
    return data, model


def _first_batch(data: Any, size: int = 4) -> Any:
    split = "train" if "train" in data.splits else data.splits[0]
    return next(iter(data.loader(split, size)))


def _tensor_equal(a: Any, b: Any) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(torch.nan_to_num(a.float()), torch.nan_to_num(b.float())))


def _state_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_tensor_equal(a[k], b[k]) for k in a)


# -- every registration ----------------------------------------------------------------
def registration_is_valid(case: Case) -> None:
    reg = case.registration
    assert reg is not None
    assert reg.summary.strip(), f"{reg.name}: summary must not be empty"
    assert reg.load() is not None
    if reg.config is not None:
        defaults = dataclasses.asdict(reg.config())
        section = reg.kind[:-1]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.toml"
            path.write_text(dumps_toml({section: {"name": reg.name, **defaults}}))
            back = load_toml(path)[section]
        back.pop("name")
        expected = {k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults.items() if v is not None}
        assert back == expected, f"{reg.name}: config does not round-trip through TOML"


def entry_module_is_light(case: Case) -> None:
    info = next(p for p in _registry().plugins if p.distribution == case.plugin)
    module = info.module.split(":")[0]
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "heavy=[m for m in ('torch','numpy','torch_geometric','pandas','transformers') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"importing {module} pulls in heavy modules: {out.stdout.strip() or out.stderr[-300:]}"


def recipes_are_valid(case: Case) -> None:
    """Every ``recipes/*.toml`` loads as ``pk batch --dry-run`` would (configs validate, baseline and
    method name runs), and ``quick.toml`` exists."""
    from pk.core.batch import load_batch, recipe_dir

    folder = recipe_dir(case.plugin, _registry())
    recipes = sorted(folder.glob("*.toml"))
    if not recipes:
        pytest.skip(f"{case.plugin} ships no recipes")
    assert (folder / "quick.toml").is_file(), f"{case.plugin}: recipes/quick.toml is missing (the README's main job runs it)"
    for path in recipes:
        load_batch(path, _registry())  # raises ConfigError on any invalid run or [batch] key


# -- datasets --------------------------------------------------------------------------
def dataset_is_deterministic(case: Case) -> None:
    from pk.core.runner import Components

    assert case.registration is not None
    parts = {"dataset": case.registration}
    a = Components(_config(parts, seed=3)).dataset()
    b = Components(_config(parts, seed=3)).dataset()
    assert a.fingerprint() == b.fingerprint(), "same seed gave different data"
    assert tuple(a.splits), "a dataset needs at least one split"


def dataset_splits_are_disjoint(case: Case) -> None:
    from pk.core.runner import Components

    data = Components(_config({"dataset": case.registration})).dataset()  # type: ignore[dict-item]
    if not hasattr(data, "split_keys"):
        pytest.skip("dataset does not expose split_keys()")
    raw = {s: data.split_keys(s) for s in data.splits}
    if any(v is None for v in raw.values()):
        pytest.skip("dataset has no example ids for its splits")
    keys = {s: set(v) for s, v in raw.items()}
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = keys[a] & keys[b]
            assert not both, f"splits {a} and {b} share {len(both)} examples, e.g. {sorted(both, key=repr)[:3]}"


def dataset_batches_fit_info(case: Case) -> None:
    from pk.core.runner import Components

    data = Components(_config({"dataset": case.registration})).dataset()  # type: ignore[dict-item]
    info = data.info
    assert info.task, "DatasetInfo.task must be set"
    assert case.registration is not None
    if case.registration.tasks:
        assert info.task in case.registration.tasks, f"info.task {info.task!r} not among registered tasks"
    batch = _first_batch(data)
    assert batch is not None
    if isinstance(batch, dict) and info.num_items:
        for key in ("seq", "target"):
            if key in batch:
                t = batch[key]
                assert int(t.min()) >= 0 and int(t.max()) <= info.num_items, f"{key} ids outside [0, num_items]"


# -- models ----------------------------------------------------------------------------
def _check_task_shape(task: str, out: Any, batch: Any, info: Any) -> None:
    import torch

    if task == "classification":
        n = batch["y"].shape[0]
        assert tuple(out.shape) == (n, info.num_classes), f"classification output {tuple(out.shape)} != ({n}, {info.num_classes})"
    elif task.endswith("next-item") and out.dim() == 2:
        assert out.shape[-1] == info.num_items + 1, f"next-item output last dim {out.shape[-1]} != num_items+1"
        assert bool(torch.isneginf(out[:, 0]).all()), "next-item padding column 0 must be -inf"
        out = out[:, 1:]
    elif task == "node-classification":
        assert tuple(out.shape) == (batch.num_nodes, info.num_classes)
    elif task == "graph-classification":
        assert tuple(out.shape) == (batch.num_graphs, info.num_classes)
    assert bool(torch.isfinite(out).all()), "model output has non-finite values"


def model_output_has_task_shape(case: Case) -> None:
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    model.eval()
    batch = _first_batch(data)
    with torch.no_grad():
        out = model.predict(batch)
    _check_task_shape(data.info.task, out, batch, data.info)


def model_is_deterministic(case: Case) -> None:
    import torch

    parts = _stack(case, ("dataset",))
    data1, m1 = _build_data_model(parts, seed=5)
    data2, m2 = _build_data_model(parts, seed=5)
    assert _state_equal(m1.state_dict(), m2.state_dict()), "same seed gave different initial parameters"
    m1.eval()
    m2.eval()
    with torch.no_grad():
        a, b = m1.predict(_first_batch(data1)), m2.predict(_first_batch(data2))
    assert _tensor_equal(a, b), "same seed and input gave different outputs"


def model_state_dict_round_trips(case: Case) -> None:
    import io

    import torch

    parts = _stack(case, ("dataset",))
    data, m1 = _build_data_model(parts, seed=1)
    _, m2 = _build_data_model(parts, seed=2)
    buf = io.BytesIO()
    torch.save(m1.state_dict(), buf)
    buf.seek(0)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    m1.eval()
    m2.eval()
    batch = _first_batch(data)
    with torch.no_grad():
        assert _tensor_equal(m1.predict(batch), m2.predict(batch)), "outputs differ after state_dict save/load"


def model_loss_backpropagates(case: Case) -> None:
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    model.train()
    loss = model.loss(_first_batch(data, 8))
    assert loss.dim() == 0, f"loss must be a scalar, got shape {tuple(loss.shape)}"
    assert bool(torch.isfinite(loss)), "loss is not finite"
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), "no gradient reached any parameter"


# -- trainers --------------------------------------------------------------------------
def _train_once(parts: dict[str, Registration], out_dir: str, seed: int = 0, run_dir: Any = None, resume: bool = False) -> Any:
    from pk.core.console import Reporter
    from pk.core.runner import train

    resolved = _config(parts, seed=seed, out_dir=out_dir)
    return train(resolved, run_dir=run_dir, resume=resume, argv=["pk-check"], reporter=Reporter("quiet"))


def trainer_is_deterministic(case: Case) -> None:
    parts = _stack(case, ("dataset", "model"))
    with tempfile.TemporaryDirectory() as tmp:
        _, r1 = _train_once(parts, os.path.join(tmp, "a"))
        _, r2 = _train_once(parts, os.path.join(tmp, "b"))
    assert r1["metrics"] == r2["metrics"], "two runs with the same seed logged different final metrics"


def trainer_resume_is_exact(case: Case) -> None:
    from pk.core.io import load_tensors
    from pk.core.run import Run

    parts = _stack(case, ("dataset", "model"))
    builder = case.registration.load()  # type: ignore[union-attr]
    if not getattr(builder, "resumable", False):
        pytest.skip("trainer is not resumable")
    with tempfile.TemporaryDirectory() as tmp:
        path_full, full = _train_once(parts, os.path.join(tmp, "full"))
        original = Run.save_checkpoint
        calls = {"n": 0}

        def interrupting(self: Any, state: dict[str, Any], tag: str = "last") -> Any:
            out = original(self, state, tag)
            calls["n"] += 1
            if tag == "last" and calls["n"] == 1:
                raise KeyboardInterrupt
            return out

        Run.save_checkpoint = interrupting  # type: ignore[method-assign]
        try:
            with contextlib.suppress(KeyboardInterrupt):  # the interruption we injected
                _train_once(parts, os.path.join(tmp, "cut"))
                pytest.skip("trainer saved no 'last' checkpoint before finishing; nothing to resume")
        finally:
            Run.save_checkpoint = original  # type: ignore[method-assign]
        cut_dir = next(Path(tmp, "cut").iterdir())
        from pk.core.console import Reporter
        from pk.core.plugins import get_registry
        from pk.core.runner import prepare_resume, train

        resolved = prepare_resume(cut_dir, get_registry())
        _, resumed = train(resolved, run_dir=cut_dir, resume=True, reporter=Reporter("quiet"))
        a = load_tensors(path_full / "checkpoints" / "model.pt")["model"]
        b = load_tensors(cut_dir / "checkpoints" / "model.pt")["model"]
    assert resumed["metrics"] == full["metrics"], "resumed run ended with different metrics than an uninterrupted one"
    assert _state_equal(a, b), "resumed run ended with different parameters than an uninterrupted one"


# -- aggregators -----------------------------------------------------------------------
def _aggregator(case: Case) -> Any:
    from pk.core.contracts import ServerContext
    from pk.core.runner import Components

    reg = case.registration
    assert reg is not None
    comps = Components(_config({"aggregator": reg}))
    ctx = pks.server_context()
    assert isinstance(ctx, ServerContext)
    agg = comps.build("aggregator", context=ctx)
    kind = getattr(agg, "kind", "weights")
    if kind not in ("weights", "delta"):
        pytest.skip(f"aggregator kind {kind!r} does not combine model states; the state-dict properties do not apply")
    return agg


def _close(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.allclose(a[k].double(), b[k].double(), atol=tol, rtol=tol) for k in a)


def aggregator_fixed_point(case: Case) -> None:
    @given(st.integers(1, 6), st.integers(0, 2**31 - 1))
    def prop(n: int, seed: int) -> None:
        agg = _aggregator(case)
        glob = pks.model_state(seed)
        client = pks.model_state(seed + 1)
        out, _ = agg.aggregate(glob, [(copy.deepcopy(client), 1.0 + i, {"client": i}) for i in range(n)])
        assert _close(out, client), "aggregating identical updates must return that update"

    prop()


def aggregator_permutation_invariant(case: Case) -> None:
    @given(st.integers(2, 6), st.integers(0, 2**31 - 1), st.randoms(use_true_random=False))
    def prop(n: int, seed: int, rnd: Any) -> None:
        agg = _aggregator(case)
        glob = pks.model_state(seed)
        ups = pks.client_updates(seed, n)
        shuffled = list(ups)
        rnd.shuffle(shuffled)
        a, _ = agg.aggregate(glob, ups)
        b, _ = _aggregator(case).aggregate(glob, shuffled)
        assert _close(a, b, 1e-4), "client order changed the aggregate"

    prop()


def aggregator_weight_scale_invariant(case: Case) -> None:
    @given(st.integers(1, 5), st.integers(0, 2**31 - 1), st.floats(0.1, 10.0))
    def prop(n: int, seed: int, c: float) -> None:
        glob = pks.model_state(seed)
        ups = pks.client_updates(seed, n)
        a, _ = _aggregator(case).aggregate(glob, ups)
        b, _ = _aggregator(case).aggregate(glob, [(s, w * c, m) for s, w, m in ups])
        assert _close(a, b, 1e-4), "scaling every weight by the same factor changed the aggregate"

    prop()


def aggregator_rejects_empty(case: Case) -> None:
    agg = _aggregator(case)
    glob = pks.model_state(0)
    _expect_value_error(lambda: agg.aggregate(glob, []), "an empty round must raise ValueError")
    if getattr(agg, "weighted", True):
        _expect_value_error(lambda: agg.aggregate(glob, [(pks.model_state(1), 0.0, {})]), "zero total weight must raise ValueError")


def _expect_value_error(fn: Any, message: str) -> None:
    try:
        fn()
    except ValueError:
        return
    raise AssertionError(message)


def aggregator_does_not_mutate(case: Case) -> None:
    glob = pks.model_state(0)
    ups = pks.client_updates(0, 3)
    glob_copy, ups_copy = copy.deepcopy(glob), copy.deepcopy(ups)
    _aggregator(case).aggregate(glob, ups)
    assert _state_equal(glob, glob_copy), "aggregate mutated the global state"
    for (a, wa, _), (b, wb, _) in zip(ups, ups_copy):
        assert wa == wb and _state_equal(a, b), "aggregate mutated a client update"


def aggregator_robust_bounded(case: Case) -> None:
    import torch

    agg = _aggregator(case)
    if not getattr(agg, "robust", False):
        pytest.skip("aggregator does not declare robust = True")

    @given(st.integers(0, 2**31 - 1), st.floats(1e3, 1e6))
    def prop(seed: int, scale: float) -> None:
        honest = pks.client_updates(seed, 7)
        bad = [({k: v + scale for k, v in s.items()}, w, {"malicious": True}) for s, w, _ in pks.client_updates(seed + 1, 2)]
        out, _ = _aggregator(case).aggregate(pks.model_state(seed), honest + bad)
        for k in out:
            stack = torch.stack([s[k].double() for s, _, _ in honest])
            lo, hi = stack.min(0).values, stack.max(0).values
            assert bool(((out[k].double() >= lo - 1e-6) & (out[k].double() <= hi + 1e-6)).all()), (
                f"{k}: output leaves the honest clients' range with 2 of 9 clients adversarial"
            )

    prop()


# -- calibrators -----------------------------------------------------------------------
def _calibrator(case: Case) -> Any:
    from pk.core.runner import Components

    return Components(_config({"calibrator": case.registration})).build("calibrator")  # type: ignore[dict-item]


def _calibrated(cal: Any, scores: Any, mask: Any, layer: int) -> Any:
    import torch

    s = cal.adjust_scores(scores, mask, layer=layer) if hasattr(cal, "adjust_scores") else scores
    s = s.masked_fill(~mask, float("-inf"))
    attn = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return cal.calibrate(attn, mask, layer=layer) if hasattr(cal, "calibrate") else attn


def calibrator_keeps_rows_stochastic(case: Case) -> None:
    import torch

    cal = _calibrator(case)
    if hasattr(cal, "eval"):
        cal.eval()

    @given(pks.attention_inputs(num_heads=getattr(cal, "num_heads", None), max_len=getattr(cal, "max_len", None)))
    def prop(inputs: tuple[Any, Any, int]) -> None:
        scores, mask, layer = inputs
        layer = min(layer, max(0, int(getattr(cal, "num_layers", 1)) - 1))
        with torch.no_grad():
            attn = _calibrated(cal, scores, mask, layer)
        assert attn.shape == scores.shape, "calibration changed the attention shape"
        assert bool((attn >= 0).all()), "negative attention weight"
        assert bool((attn[~mask.expand_as(attn)] == 0).all()), "masked keys must get exactly 0"
        rows = mask.expand_as(attn).any(-1)
        sums = attn.sum(-1)
        assert torch.allclose(sums[rows], torch.ones_like(sums[rows]), atol=1e-5), "rows must sum to 1 over unmasked keys"

    prop()


def calibrator_neutral_is_identity(case: Case) -> None:
    import torch

    cal = _calibrator(case)
    if not getattr(cal, "neutral", False):
        pytest.skip("calibrator's default config does not declare itself neutral")
    scores, mask, _ = pks.attention_example(seed=0, num_heads=getattr(cal, "num_heads", None), max_len=getattr(cal, "max_len", None))
    plain = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1).nan_to_num(0.0)
    with torch.no_grad():
        assert torch.allclose(_calibrated(cal, scores, mask, 0), plain, atol=1e-6)


# -- evaluators ------------------------------------------------------------------------
def evaluator_metrics_in_range(case: Case) -> None:
    from pk.core.run import Run
    from pk.core.runner import Components

    parts = _stack(case, ("dataset", "model"))
    results = []
    for _ in range(2):
        resolved = _config(parts, seed=0)
        comps = Components(resolved)
        data = comps.dataset()
        model = comps.model(data.info)
        model.eval()
        evaluator = comps.build("evaluator")
        with tempfile.TemporaryDirectory() as tmp:
            results.append(evaluator.evaluate(model, data, Run(Path(tmp), resolved, builder=comps.build)))
    declared = dict(evaluator.metrics)
    for name, value in results[0].items():
        if name in declared:
            lo, hi, _ = declared[name]
            assert lo - 1e-9 <= value <= hi + 1e-9, f"metric {name}={value} outside its declared range [{lo}, {hi}]"
    assert results[0] == results[1], "evaluator is not deterministic under a seed"
