"""The benchmark's verdict table lists issue 14's time targets for the rank-3 workloads."""

from benchmarks.run import evaluate_targets


def _result(ratios: dict) -> dict:
    return {"workloads": {name: {"ratio": r, "time": {}, "tracemalloc": {}}
                          for name, r in ratios.items()}}


def test_attention_and_layer_norm_time_targets_are_judged():
    res = _result({"attention": {"numpy": 1.19, "numba": 1.05},
                   "layer_norm": {"numpy": 1.3, "numba": 0.9}})
    verdicts = {t["target"]: t["verdict"] for t in evaluate_targets(res)}
    assert verdicts["attention: numpy ≤ 1.2×"] == "met"
    assert verdicts["attention: numba ≤ 1.0×"] == "missed by 1.05×"
    assert verdicts["layer_norm: numpy ≤ 1.2×"] == "missed by 1.08×"
    assert verdicts["layer_norm: numba ≤ 1.0×"] == "met"


def test_a_workload_not_run_is_not_judged():
    res = _result({"attention": {"numpy": 1.0, "numba": 1.0}})
    assert not any(t["target"].startswith("layer_norm") for t in evaluate_targets(res))
