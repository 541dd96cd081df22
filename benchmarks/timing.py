"""Rates from timed windows. Figures measured in one run take turns window by window, so that a
change in the load of a shared machine falls on all of them alike and their ratios hold."""
import statistics
import time


def window(run, work_per_call, seconds):
    """Work per second (images, FLOPs...) of calling run() for at least `seconds`."""
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * work_per_call / (time.perf_counter() - start)


def timed(run, work_per_call, warmup=2):
    """A window function (seconds -> rate) for interleaved(), after warm-up calls (tracing,
    first allocations)."""
    for _ in range(warmup):
        run()
    return lambda seconds: window(run, work_per_call, seconds)


def interleaved(windows, rounds, seconds):
    """{name: window function} -> {name: median rate over `rounds` windows of each}."""
    rates = {name: [] for name in windows}
    for _ in range(rounds):
        for name, measure in windows.items():
            rates[name].append(measure(seconds))
    return {name: statistics.median(r) for name, r in rates.items()}
