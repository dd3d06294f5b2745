"""Oracle acceptance: how often does "mean zoo p(y) >= 0.5" disagree with the pilot's "p_SVC(y) >= 0.5" (both on top of
every oracle's argmax == y) on the images the latent search visits? Digits, PCA-24, zoo SVC/kNN/LogReg,
plain MLP target (32 hidden units, 300 full-batch Adam steps), seed 0.

    PK_LOAD_PLUGINS=pk-oracle,pk-fl python bench/oracle_tau.py   (needs the shared sklearn_digits; ~30 s)
"""
from __future__ import annotations

import torch
from pk_oracle.evaluators.assets import build_generator, build_oracles
from pk_oracle.evaluators.common import data_bounds, gather, make_logits_fn
from pk_oracle.evaluators.search import latent_search
from pk_oracle.models.oracles import OracleZoo
from pk_oracle.plugin import FMRConfig

from pk.core.builtins.components import MLP
from pk.core.config import resolve
from pk.core.plugins import get_registry
from pk.core.runner import Components

torch.set_num_threads(1)
raw = {"dataset": {"name": "sklearn-digits", "source": "file", "num_valid": 100, "num_test": 719},
       "model": {"name": "mlp", "hidden": [32], "dropout": 0.0}, "trainer": {"name": "supervised"}}
res = resolve(raw, get_registry())
data = Components(res).dataset()
xtr, ytr = gather(data, "train")
xte, yte = gather(data, "test")
torch.manual_seed(0)
model = MLP(64, 10, [32], 0.0, "relu")
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(300):
    opt.zero_grad()
    model.loss({"x": xtr, "y": ytr}).backward()
    opt.step()
model.eval()
oracles = build_oracles(["svc", "knn", "logreg"], xtr, ytr, data.info, 0, model_epochs=0, clip_path="", run=None)
cfg = FMRConfig()
gen = build_generator(cfg, xtr, [1, 8, 8], data_bounds(xtr), 0)
flat = xte.reshape(len(xte), -1)
logits_fn = make_logits_fn(model, list(xte.shape[1:]))
# visit points: x* from searches with budgets 0..40 under the permissive rule (argmax only), then compare rules there
zoo_any = OracleZoo(oracles, rule="all", tau=0.0)
pts, ys = [], []
for b in (0, 1, 2, 3, 5, 8, 40):
    r = latent_search(logits_fn, gen, zoo_any, flat, yte, step_size=0.25, budget=b, batch_size=512)
    pts.append(r.x_star)
    ys.append(yte)
x, y = torch.cat(pts), torch.cat(ys)
proba = torch.stack([o.predict_proba(x) for o in oracles])  # [3, N, K]
agree = (proba.argmax(-1) == y).all(0)
p_y = proba.gather(2, y.view(1, -1, 1).expand(3, -1, 1)).squeeze(2)
mean_rule = agree & (p_y.mean(0) >= 0.5)
svc_rule = agree & (p_y[0] >= 0.5)
n = int(agree.sum())
print(f"points visited {len(y)}, all-argmax agree {n}")
print(f"accepted by mean-p rule {int(mean_rule.sum())}, by SVC-p rule {int(svc_rule.sum())}, "
      f"mean-only {int((mean_rule & ~svc_rule).sum())}, svc-only {int((svc_rule & ~mean_rule).sum())}")
print(f"disagreement among argmax-agreeing points: {float((mean_rule ^ svc_rule)[agree].float().mean()):.4f}")
