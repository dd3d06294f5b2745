"""The whole test suite: pk-core's tests, then each plugin's tests in its own process with
only that plugin (and the pk plugins it depends on) loaded, so no plugin passes thanks to
another's registrations. A plugin whose tests collect nothing fails (pytest exit 5).

    .venv/bin/python .ci/test.py [--fast] [pytest args...]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def pk_deps(plugin: Path, seen: set[str] | None = None) -> list[str]:
    """The plugin's distribution plus every pk-* distribution it depends on, recursively."""
    seen = seen if seen is not None else set()
    data = tomllib.loads((plugin / "pyproject.toml").read_text())
    name = data["project"]["name"]
    if name in seen:
        return []
    seen.add(name)
    out = [name]
    for dep in data["project"].get("dependencies", []):
        dist = re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0]
        if dist.startswith("pk-") and dist != "pk-core" and (ROOT / "plugins" / dist).is_dir():
            out += pk_deps(ROOT / "plugins" / dist, seen)
    return out


def run(label: str, args: list[str], env: dict[str, str]) -> tuple[int, dict[str, int], float]:
    print(f"\n=== {label}: pytest {' '.join(args)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    sys.stdout.write(proc.stdout[-6000:] if proc.returncode in (0, 5) else proc.stdout)
    sys.stdout.write(proc.stderr[-3000:])
    counts: dict[str, int] = {}
    last = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or [""]
    for n, word in SUMMARY.findall(last[0]):
        word = "errors" if word.startswith("error") else word
        counts[word] = counts.get(word, 0) + int(n)
    return proc.returncode, counts, took


def main() -> int:
    extra = [a for a in sys.argv[1:] if a != "--fast"]
    base_env = {**os.environ, "PK_HYPOTHESIS_PROFILE": os.environ.get("PK_HYPOTHESIS_PROFILE", "pk-ci")}
    common = ["-q", "-p", "no:cacheprovider", "-m", "not slow", *extra]
    jobs = [("pk-core", ["tests", *common], base_env)]
    for plugin in sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()):
        env = {**base_env, "PK_LOAD_PLUGINS": ",".join(pk_deps(plugin))}
        jobs.append((plugin.name, [str(plugin / "tests"), "--rootdir", str(plugin), *common], env))
    totals: dict[str, int] = {}
    failed = []
    for label, args, env in jobs:
        rc, counts, took = run(label, args, env)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        status = "ok" if rc == 0 else ("no tests collected" if rc == 5 else f"exit {rc}")
        print(f"--- {label}: {status} in {took:.0f}s {counts}", flush=True)
        if rc != 0:
            failed.append(label)
    print("\nsuites failed: " + (", ".join(failed) if failed else "none"))
    print(f"{totals.get('passed', 0)} passed, {totals.get('failed', 0) + totals.get('errors', 0)} failed, "
          f"{totals.get('skipped', 0)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
