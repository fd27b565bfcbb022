"""`make bench`: run every tests/benchmarks/bench_*.py, print one table, write bench-results/bench.json."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    sys.path.insert(0, str(HERE))
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    rows = []
    for name in names:
        print(f"running {name} ...", flush=True)
        rows.extend(importlib.import_module(name).run())
    header = f"{'benchmark':<28} {'metric':<34} {'value':>12} {'baseline':<26} {'base value':>12} {'ratio':>7}  target"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(
            f"{r.benchmark:<28} {r.metric:<34} {r.value:>10.4g} {r.unit:<1} {r.baseline:<26} "
            f"{r.baseline_value:>10.4g} {r.unit:<1} {r.ratio:>7.3f}  {r.target}"
        )
    out = HERE.parent.parent / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    print(f"\nwrote {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
