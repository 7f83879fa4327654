"""What this machine charges for the same Python work, busy and in short bursts.

    .venv/bin/python bench/machine.py

A server under light load works in short bursts between waits; under heavy load it works
without pause. On some machines (virtual ones especially) the same instructions cost more CPU
time after a wait: caches and branch predictors have gone cold, and a halted virtual CPU has
to be woken. This prints the CPU time of one fixed unit of pure-Python work run back to back,
then with a sleep after each unit. Where the two differ a lot, CPU per workflow measured at a
low rate is not comparable with CPU per workflow at a high one (see docs/performance.md).
"""

from __future__ import annotations

import time


def unit() -> int:
    """About 100-200 us of interpreter work: arithmetic in a loop, nothing to wait for."""
    total = 0
    for i in range(2_000):
        total += i * i
    return total


def cpu_us_per_unit(count: int, sleep_s: float) -> float:
    started = time.process_time()
    for _ in range(count):
        unit()
        if sleep_s:
            time.sleep(sleep_s)
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    print("CPU time of one unit of pure-Python work (lower is faster):")
    back_to_back = min(cpu_us_per_unit(3_000, 0.0) for _ in range(3))
    print(f"  back to back            {back_to_back:7.1f} us")
    for sleep_ms in (1, 5):
        bursts = cpu_us_per_unit(2_000 // sleep_ms, sleep_ms / 1000)
        print(
            f"  with {sleep_ms} ms sleeps between {bursts:7.1f} us "
            f"({bursts / back_to_back:.2f}x back to back)"
        )


if __name__ == "__main__":
    main()
