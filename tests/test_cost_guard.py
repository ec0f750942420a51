"""The cost guard's verdict (benchmarks/cost_guard.py, issue 35): over 3x a job's baseline CPU
seconds fails, a changed structural fact fails, both within bounds pass."""

import cost_guard

BASE = {"jobs": {"a": {"cpu_s": 10.0, "facts": {"chunks": 1, "compiles": 5}}}}


def verdict(cpu, facts, partial=False):
    return cost_guard.compare({"a": {"cpu_s": cpu, "facts": facts}}, BASE, 3.0, partial)


def test_the_guard_fails_past_three_times_the_baseline_or_on_a_changed_fact():
    table, ok = verdict(29.9, {"chunks": 1, "compiles": 5})
    assert ok and "| a | 29.90 | 10.00 | 2.99 |" in table
    table, ok = verdict(30.1, {"chunks": 1, "compiles": 5})
    assert not ok and "FAIL: 3.0x slower" in table
    table, ok = verdict(1.0, {"chunks": 2, "compiles": 5})  # faster, but chunked now
    assert not ok and "FAIL: chunks 1 -> 2" in table
    assert verdict(1.0, {"chunks": 1, "compiles": 7}, partial=True)[1]  # --only: order-dependent
    assert not cost_guard.compare({"b": {"cpu_s": 1.0, "facts": {}}}, BASE, 3.0, False)[1]  # new
