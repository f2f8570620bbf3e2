"""`python -m tracehouse.bench` (`make bench`): every benchmark in turn, figures printed."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "tracehouse.bench.run_bench",
    "tracehouse.bench.generator_bench",
    "tracehouse.bench.changepoint_bench",
    "tracehouse.bench.detect_bench",
    "tracehouse.bench.load_bench",
)


def main() -> int:
    """Run each benchmark module's ``main([])`` that exists in this checkout."""
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        print(f"\n=== {name.rsplit('.', 1)[-1]} ===", flush=True)
        module.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
