"""Small helpers shared by the benchmark scripts (timing, CPU pinning, output).

Not a benchmark itself. The scripts run as ``python benchmarks/bench_x.py``, which puts this
directory on ``sys.path``, so ``import _util`` works without installing anything.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PIN_ENV = "CONVERSATION_BENCH_PINNED"


@dataclass(frozen=True)
class Timing:
    """Seconds per repeat of one measured callable."""

    name: str
    samples: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the cyclic GC off while timing (as :mod:`timeit` does)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def interleaved(
    candidates: Sequence[tuple[str, Callable[[], object]]], repeats: int, *, pause_gc: bool = True
) -> dict[str, Timing]:
    """Time each callable ``repeats`` times, round-robin, so load drifts hit all alike."""
    samples: dict[str, list[float]] = {name: [] for name, _ in candidates}
    for _ in range(repeats):
        for name, func in candidates:
            if pause_gc:
                with gc_paused():
                    started = time.perf_counter()
                    func()
                    elapsed = time.perf_counter() - started
            else:
                started = time.perf_counter()
                func()
                elapsed = time.perf_counter() - started
            samples[name].append(elapsed)
    return {name: Timing(name, tuple(values)) for name, values in samples.items()}


def pin_to_one_core(enabled: bool = True) -> str:
    """Run this process on one CPU: re-exec under ``taskset -c 0`` if present, else set affinity.

    Returns a note saying what was done, for the printed header.
    """
    if not enabled:
        return "not pinned (--no-pin)"
    if os.environ.get(PIN_ENV) == "1":
        return "pinned with taskset -c 0"
    taskset = shutil.which("taskset")
    if taskset is not None:
        env = dict(os.environ, **{PIN_ENV: "1"})
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(taskset, [taskset, "-c", "0", sys.executable, *sys.argv], env)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
        return "pinned with os.sched_setaffinity({0})"
    return "not pinned (no taskset, no sched_setaffinity)"


def machine_note() -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"{cpus} logical CPUs, {platform.system()} {platform.release()}"
    )


def profile(func: Callable[[], object], top: int, sort: str = "tottime") -> str:
    """Run ``func`` under cProfile; the ``top`` functions by ``sort``, as text."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    func()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    text = out.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 else "n/a"


def memory_mib(pid: int | str = "self", field: str = "VmHWM") -> float:
    """A process's memory figure from ``/proc/PID/status`` in MiB (``VmHWM``: its peak resident
    set, ``VmRSS``: the current one); NaN where /proc is absent."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")
