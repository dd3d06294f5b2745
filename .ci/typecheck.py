"""Type-check pk.core, pk.cli and every plugin's plugin.py (its typed hooks and configs) with mypy.

The editable install maps ``pk.core`` -> core/ and ``pk.cli`` -> cli/ through an import hook
that mypy cannot see, so this links them into a temporary ``pk/`` namespace and checks it.

    .venv/bin/python .ci/typecheck.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "pk"
        pkg.mkdir()
        for name in ("core", "cli"):
            (pkg / name).symlink_to(ROOT / name, target_is_directory=True)
        plugin_srcs = sorted(str(p.parent.parent) for p in ROOT.glob("plugins/*/src/*/plugin.py"))
        plugin_modules = [f"{Path(p).parent.name}.plugin" for p in sorted(ROOT.glob("plugins/*/src/*/plugin.py"))]
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "-p", "pk.core", "-p", "pk.cli"]
        for module in plugin_modules:
            cmd += ["-m", module]
        env = {**os.environ, "MYPYPATH": os.pathsep.join([tmp, *plugin_srcs])}
        return subprocess.call(cmd, cwd=tmp, env=env)


if __name__ == "__main__":
    sys.exit(main())
