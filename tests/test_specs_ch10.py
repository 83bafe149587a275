"""Chapter 10 specs: the solutions pass every case; constant stubs and plausible mistakes fail helpfully."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from spec_helpers import fails_with, run_all_cases
from torch import nn

from course_utils.notebooks import solution_namespace
from course_utils.specs.ch10 import build_structure_model
from course_utils.structured import coupled_group as tp_coupled_group

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sol():
    return solution_namespace(ROOT / "solutions" / "10_real_cnns.ipynb")


@pytest.mark.parametrize(
    ("ex_id", "name"), [("10.1", "coupled_group"), ("10.2", "prune_basic_block"), ("10.3", "fair_latency")]
)
def test_solution_passes_every_case(sol, ex_id, name, one_thread):
    assert run_all_cases(ex_id, sol[name]) >= 5


# --- 10.1 ------------------------------------------------------------------------------------


def test_oracle_group_of_the_resnet18_stem_spans_every_sum_of_layer1():
    model = build_structure_model("resnet18")
    group = tp_coupled_group(model, "conv1", torch.randn(1, 3, 32, 32))
    assert group["conv1"] == group["bn1"] == group["layer1.0.conv2"] == group["layer1.1.bn2"] == "out"
    assert group["layer1.0.conv1"] == group["layer2.0.downsample.0"] == group["layer2.0.conv1"] == "in"
    assert (
        "layer2.0.conv2" not in group and len(group) == 10
    )  # conv1, bn1, 2×(conv2, bn2) out; 2×conv1 + layer2.0.conv1/downsample in


def test_constant_stub_fails():
    fails_with("10.1", lambda model, layer: {}, "missing")


def test_next_layer_only_misses_the_residual_coupling(sol):
    def next_layer_only(model, layer):
        full = sol["coupled_group"](model, layer)
        # the "hand surgery" of chapter 1: the layer, its BN and the convs reading it, no sums
        prefix = layer.rsplit(".", 1)[0]
        return {k: v for k, v in full.items() if k == layer or v == "in" or k.startswith(prefix)}

    fails_with("10.1", next_layer_only, "missing", "residual")


def test_depthwise_as_a_consumer_fails_with_the_side_named(sol):
    def depthwise_is_in(model, layer):
        mods = dict(model.named_modules())
        g = sol["coupled_group"](model, layer)
        return {
            k: ("in" if isinstance(mods[k], nn.Conv2d) and mods[k].groups > 1 and k != layer else v)
            for k, v in g.items()
        }

    fails_with("10.1", depthwise_is_in, "wrong side", "depthwise")


def _tp_group(tp, model, layer):
    """Torch-Pruning's group, computed the way a student who delegates to the oracle would."""
    mods = dict(model.named_modules())
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    group = dg.get_pruning_group(mods[layer], tp.prune_conv_out_channels, idxs=[0])
    names = {m: n for n, m in model.named_modules()}
    return {names[d.target.module]: "out" for d, _ in group if d.target.module in names}


def test_delegating_to_torch_pruning_scores_nothing(sol):
    import torch_pruning as tp_imported_before  # a student's first cell

    def wraps_course_utils(model, layer):
        return tp_coupled_group(model, layer, torch.randn(1, 3, 32, 32))

    def imports_inside(model, layer):
        import torch_pruning as tp

        return _tp_group(tp, model, layer)

    def imported_before(model, layer):
        return _tp_group(tp_imported_before, model, layer)

    def catches_the_refusal(model, layer):
        try:
            return wraps_course_utils(model, layer)
        except Exception:
            return sol["coupled_group"](model, layer)

    for fn in (wraps_course_utils, imports_inside, imported_before, catches_the_refusal):
        fails_with("10.1", fn, "used torch_pruning", "yourself")
    # switched back on afterwards: the oracle (and the lesson) work as before
    import torch_pruning as tp

    assert tp is tp_imported_before
    assert tp_coupled_group(build_structure_model("resnet_mini"), "conv1", torch.randn(1, 3, 32, 32))


def test_flags_name_a_delegation_but_not_the_students_own_function(sol):
    from course_utils.exercise import get_exercise
    from course_utils.grading.flags import exercise_flags

    ex = get_exercise("10.1")
    own = [
        ("def", "def coupled_group(model, layer):\n    return {}"),
        ("check", 'check("10.1", coupled_group)'),
    ]
    assert exercise_flags(ex, own) == []
    delegates = [("imp", "from course_utils.structured import coupled_group as cg")]
    assert (
        exercise_flags(ex, delegates)
        and "course_utils.structured.coupled_group" in exercise_flags(ex, delegates)[0]
    )
    dotted = [("dot", "def coupled_group(m, l):\n    return structured.coupled_group(m, l, None)")]
    assert exercise_flags(ex, dotted)


# --- 10.2 ------------------------------------------------------------------------------------


def test_constant_stubs_fail(sol):
    fails_with("10.2", lambda block, keep_mid, keep_out: block, "shape")
    fails_with("10.2", lambda block, keep_mid, keep_out: None, "Return the pruned block")


def test_forgetting_running_stats_fails_naming_them(sol):
    def no_running_stats(block, keep_mid, keep_out):
        new = sol["prune_basic_block"](block, keep_mid, keep_out)
        new.bn1.running_mean = block.bn1.running_mean[: len(keep_mid)].clone()  # first k, not the kept ones
        return new

    fails_with("10.2", no_running_stats, "bn1.running_mean")


def test_in_place_and_missing_error_fail(sol):
    def in_place(block, keep_mid, keep_out):
        new = sol["prune_basic_block"](block, keep_mid, keep_out)
        block.conv1.weight.data.zero_()
        return new

    fails_with("10.2", in_place, "was modified")

    def no_error(block, keep_mid, keep_out):
        return sol["prune_basic_block"](block, keep_mid, keep_out if block.downsample is not None else None)

    fails_with("10.2", no_error, "ValueError")


def test_forgetting_the_downsample_fails(sol):
    def no_downsample(block, keep_mid, keep_out):
        new = sol["prune_basic_block"](block, keep_mid, None)
        if keep_out is not None:
            out = torch.tensor(keep_out)
            new.conv2.weight = nn.Parameter(new.conv2.weight.data[out].clone())
            for name in ("weight", "bias"):
                setattr(new.bn2, name, nn.Parameter(getattr(new.bn2, name).data[out].clone()))
            new.bn2.running_mean, new.bn2.running_var = new.bn2.running_mean[out], new.bn2.running_var[out]
        return new

    fails_with("10.2", no_downsample, "downsample")


# --- 10.3 ------------------------------------------------------------------------------------


def test_latency_constant_stub_fails():
    fails_with(
        "10.3",
        lambda models, x, threads=1, warmup=2, repeats=7: dict.fromkeys(models, 0.0),
        "calls per model",
    )


def _variant(sol, **change):
    base = sol["fair_latency"]

    def harness(models, x, threads=1, warmup=2, repeats=7):
        if change.get("no_warmup"):
            warmup = 0
        if change.get("no_eval"):
            for m in models.values():
                m.train()
            names = list(models)
            times = {n: [] for n in names}
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            with torch.inference_mode():
                for n in names:
                    for _ in range(warmup):
                        models[n](x)
                for _ in range(repeats):
                    for n in names:
                        t0 = time.perf_counter()
                        models[n](x)
                        times[n].append((time.perf_counter() - t0) * 1e3)
            torch.set_num_threads(before)
            return {n: sorted(t)[len(t) // 2] for n, t in times.items()}
        if change.get("sequential"):
            return {n: base({n: m}, x, threads, warmup, repeats)[n] for n, m in models.items()}
        if change.get("mean"):
            out = {}
            for m in models.values():
                m.eval()
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            times = {n: [] for n in models}
            with torch.inference_mode():
                for n in models:
                    for _ in range(warmup):
                        models[n](x)
                for _ in range(repeats):
                    for n in models:
                        t0 = time.perf_counter()
                        models[n](x)
                        times[n].append((time.perf_counter() - t0) * 1e3)
            torch.set_num_threads(before)
            for n, t in times.items():
                out[n] = sum(t) / len(t)
            return out
        if change.get("seconds"):
            return {n: v / 1e3 for n, v in base(models, x, threads, warmup, repeats).items()}
        if change.get("keep_threads"):
            res = base(models, x, threads, warmup, repeats)
            torch.set_num_threads(threads)
            return res
        return base(models, x, threads, warmup, repeats)

    return harness


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("no_warmup", "calls per model"),
        ("no_eval", "training mode"),
        ("sequential", "interleaved"),
        ("mean", "median"),
        ("seconds", "milliseconds"),
        ("keep_threads", "restore"),
    ],
)
def test_unfair_harnesses_fail(sol, change, fragment):
    fails_with("10.3", _variant(sol, **{change: True}), fragment)


def test_grad_enabled_fails():
    def with_grad(models, x, threads=1, warmup=2, repeats=7):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        times = {n: [] for n in models}
        for m in models.values():
            m.eval()
        for n in models:
            for _ in range(warmup):
                models[n](x)
        for _ in range(repeats):
            for n in models:
                t0 = time.perf_counter()
                models[n](x)
                times[n].append((time.perf_counter() - t0) * 1e3)
        torch.set_num_threads(before)
        return {n: sorted(t)[len(t) // 2] for n, t in times.items()}

    fails_with("10.3", with_grad, "autograd")
