"""Every requirement an exercise states is checked, and a constant stub scores 0.

Two kinds of tests (issue 15 §6, design in docs/AUTHORING.md "Stated requirements"):

* ``test_constant_stub_scores_zero``: for every registered exercise (new ones join
  automatically), stubs that return a constant — ``None``, ``0.0``, ``{}``, ``[]``, one of
  their arguments unchanged (the input, the unchanged module), zeros or ones shaped like a tensor
  argument — are graded case by case and scored with the grader's own ``aggregate``: each must
  score 0, even on edge cases whose answer happens to be that constant.
* one failing-implementation test per audited requirement: the reference solution (from its
  notebook) broken in exactly that one way loses credit with a message naming the requirement.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from spec_helpers import fails_with
from torch import nn

from course_utils.exercise import CHAPTERS, Exercise, all_exercises, get_exercise
from course_utils.grading.results import CaseResult, ExerciseResult, aggregate
from course_utils.notebooks import read_notebook, solution_namespace

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")

_NS: dict[int, dict[str, Any]] = {}


def solution(exercise_id: str) -> Any:
    """The reference object of an exercise, from its solution notebook (the single source)."""
    chapter = int(exercise_id.split(".")[0])
    if chapter not in _NS:
        _NS[chapter] = solution_namespace(ROOT / "solutions" / f"{CHAPTERS[chapter]}.ipynb")
    return _NS[chapter][get_exercise(exercise_id).target]


# --- constant stubs ---------------------------------------------------------------------------------


def _tensors(args: tuple) -> list[torch.Tensor]:
    return [a for a in args if isinstance(a, torch.Tensor)]


def _constants(args: tuple) -> dict[str, Callable[[tuple], Any]]:
    """Name → how a constant stub answers, given the call's arguments."""
    out: dict[str, Callable[[tuple], Any]] = {
        "None": lambda a: None,
        "0.0": lambda a: 0.0,
        "{}": lambda a: {},
        "[]": lambda a: [],
    }
    for i in range(len(args)):
        out[f"argument {i} unchanged"] = lambda a, i=i: a[i] if i < len(a) else None
    for i in range(len(_tensors(args))):
        out[f"zeros like tensor argument {i}"] = lambda a, i=i: torch.zeros_like(_tensors(a)[i])
        out[f"ones like tensor argument {i}"] = lambda a, i=i: torch.ones_like(_tensors(a)[i])
    return out


def _n_params(fn: Callable) -> int:
    return len([p for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD])


def _stubs(obj: Any) -> dict[str, Any]:
    """Constant stubs shaped like the reference ``obj``: a function, or a subclass of the reference
    class whose own methods (except ``__init__``) all answer with the same kind of constant."""
    if not isinstance(obj, type):
        n = _n_params(obj)
        names = _constants(tuple(torch.zeros(1) for _ in range(n)))
        return {k: (lambda *a, _f=f, **kw: _f(a)) for k, f in names.items()}
    methods = {
        k: v
        for k, v in vars(obj).items()
        if not k.startswith("__")
        and (inspect.isfunction(v) or (isinstance(v, staticmethod) and inspect.isfunction(v.__func__)))
    }
    n = max(_n_params(getattr(obj, k)) for k in methods)
    names = _constants(tuple(torch.zeros(1) for _ in range(n)))
    stubs = {}
    for name, answer in names.items():
        body: dict[str, Any] = {}
        for k, v in methods.items():
            if isinstance(v, staticmethod):  # autograd.Function: drop ctx; backward answers per input
                if issubclass(obj, torch.autograd.Function) and k == "backward":
                    n_in = _n_params(obj.forward) - 1
                    body[k] = staticmethod(lambda ctx, *a, _f=answer, _n=n_in: (_f(a),) + (None,) * (_n - 1))
                else:
                    body[k] = staticmethod(lambda ctx, *a, _f=answer: _f(a))
            else:
                body[k] = lambda self, *a, _f=answer, **kw: _f(a)
        stubs[name] = type(obj.__name__, (obj,), body)
    return stubs


def _roundtrip(obj: Any) -> Any:
    """What the grader does with inputs and outputs: torch.save → torch.load(weights_only=True)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def grade(ex: Exercise, obj: Any, cases: list[tuple[dict, Any]]) -> ExerciseResult:
    """Score ``obj`` like the grader: one ``CaseResult`` per case, then ``aggregate``."""
    res = ExerciseResult(ex.id, ex.title, float(ex.points))
    for i, (inputs, expected) in enumerate(cases):
        try:
            got = _roundtrip(ex.run(obj, _roundtrip(inputs)))
        except Exception as err:  # the kernel reports it as an error: no credit
            res.cases.append(CaseResult(i + 1, True, "error", f"{type(err).__name__}: {err}"))
            continue
        try:
            ex.compare(got, copy.deepcopy(expected), inputs)
        except Exception as err:  # the judge turns any comparison failure into "failed"
            res.cases.append(CaseResult(i + 1, True, "failed", str(err)))
            continue
        res.cases.append(CaseResult(i + 1, True, "passed"))
    return aggregate(res)


def loses_credit(ex_id: str, obj: Any, *fragments: str) -> ExerciseResult:
    """Grade ``obj`` on every case like the grader; assert it loses credit with these words."""
    ex = get_exercise(ex_id)
    res = grade(ex, obj, [(c, ex.reference(_roundtrip(c))) for c in ex.cases(hidden=True)])
    assert res.score < ex.points, f"a wrong {ex_id} kept full marks"
    text = "\n".join(c.message for c in res.cases)
    for f in fragments:
        assert f in text, f"messages for a wrong {ex_id} lack {f!r}:\n{text[:2000]}"
    return res


def target_shape(ex: Exercise) -> Any:
    """The reference object with only the solution's first cell and its own cell run (cheap):
    enough to copy its signature, base class and class attributes into stubs."""
    nb = read_notebook(ROOT / "solutions" / f"{ex.chapter}.ipynb")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    defines = re.compile(rf"^(def|class) {re.escape(ex.target)}\b", re.M)
    ns: dict[str, Any] = {"__name__": f"shape_of_{ex.target}"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code[0], "first cell", "exec"), ns)
        exec(compile(next(c for c in code if defines.search(c)), f"cell of {ex.target}", "exec"), ns)
    return ns[ex.target]


@pytest.mark.parametrize("ex_id", [e.id for e in all_exercises()])
def test_constant_stub_scores_zero(ex_id: str) -> None:
    ex = get_exercise(ex_id)
    cases = [(c, ex.reference(_roundtrip(c))) for c in ex.cases(hidden=True)]
    stubs = _stubs(target_shape(ex))
    assert len(stubs) >= 5
    scored = {}
    for name, stub in stubs.items():
        res = grade(ex, stub, cases)
        if res.score != 0:
            scored[name] = [c.index for c in res.cases if c.status == "passed"]
    assert not scored, f"constant stubs of {ex_id} earn credit on cases: {scored}"


# --- chapter 1 ------------------------------------------------------------------------------------


def test_1_1_counting_buffers_fails() -> None:
    """ "Buffers such as BatchNorm's running statistics are not parameters and do not count."""

    def with_buffers(model: torch.nn.Module) -> float:
        ts = list(model.parameters()) + list(model.buffers())
        return sum(int((t == 0).sum()) for t in ts) / sum(t.numel() for t in ts)

    fails_with("1.1", with_buffers, "got", "expected")


def test_1_2_invalid_amount_without_value_error_fails() -> None:
    """ "Raise a ValueError for an amount outside [0, 1] (float) or [0, numel] (int)."""
    ref = solution("1.2")

    def clamps(w: torch.Tensor, amount: int | float) -> torch.Tensor:
        amount = min(max(amount, 0), 1.0 if isinstance(amount, float) else w.numel())
        return ref(w, amount)

    fails_with("1.2", clamps, "amount=1.5 is outside [0, 1]", "requires a ValueError", "no error")

    def type_error(w: torch.Tensor, amount: int | float) -> torch.Tensor:
        if not 0 <= amount <= (1 if isinstance(amount, float) else w.numel()):
            raise TypeError("bad amount")
        return ref(w, amount)

    fails_with("1.2", type_error, "requires a ValueError", "raised TypeError, not ValueError")


def test_1_3_negative_dim_fails() -> None:
    """ "`dim` may be negative."""
    ref = solution("1.3")
    fails_with("1.3", lambda w, a, n, d: ref(w, a, n, max(d, 0)), "mask")


def test_1_4_names_not_ending_in_weight_are_left_alone() -> None:
    """ "parameters whose name ends in `weight` and that have ≥ 2 dimensions"."""

    def contains_weight(model: torch.nn.Module, threshold: float) -> dict:
        masks = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "weight" in name and p.dim() >= 2:
                    masks[name] = (p.abs() >= threshold).float()
                    p.mul_(masks[name])
        return masks

    fails_with("1.4", contains_weight, "you pruned ['weight_scale']", "ends in 'weight'")


def test_1_4_new_parameter_objects_fail() -> None:
    """ "in place (same shapes, same `Parameter` objects)"."""

    def replaces(model: torch.nn.Module, threshold: float) -> dict:
        masks = {}
        modules = dict(model.named_modules())
        for name, p in list(model.named_parameters()):
            if name.endswith("weight") and p.dim() >= 2:
                masks[name] = (p.detach().abs() >= threshold).float()
                owner, attr = name.rsplit(".", 1)
                setattr(modules[owner], attr, torch.nn.Parameter(p.detach() * masks[name]))
        return masks

    fails_with("1.4", replaces, "not the same Parameter objects", "in place")


# --- chapter 2 ------------------------------------------------------------------------------------


def _apply_mask_with(orig_of: Callable, mask_of: Callable) -> Callable:
    """apply_mask built like the solution, with the _orig Parameter and the mask buffer chosen."""

    def apply_mask(module: torch.nn.Module, name: str, mask: torch.Tensor) -> None:
        orig = orig_of(module._parameters.pop(name))
        module.register_parameter(name + "_orig", orig)
        module.register_buffer(name + "_mask", mask_of(mask, orig))

        def recompute(mod: torch.nn.Module, args: tuple) -> None:
            setattr(mod, name, getattr(mod, name + "_orig") * getattr(mod, name + "_mask"))

        recompute(module, ())
        module.register_forward_pre_hook(recompute)

    return apply_mask


def test_2_1_a_copy_of_the_parameter_fails() -> None:
    """ "the original Parameter moves to name + "_orig" (same object …)"."""
    copy_orig = _apply_mask_with(lambda p: torch.nn.Parameter(p.detach().clone()), lambda m, o: m.to(o.dtype))
    fails_with("2.1", copy_orig, "is not the Parameter object", "same object")


def test_2_1_mask_buffer_in_another_dtype_fails() -> None:
    """ "stored as a buffer name + "_mask" (same dtype as the weight)"."""
    as_given = _apply_mask_with(lambda p: p, lambda m, o: m.clone())  # a bool mask stays bool
    fails_with("2.1", as_given, "_mask is torch.bool", "the weight's dtype (torch.float32)")


def test_2_4_without_training_mode_fails() -> None:
    """ "put the model in training mode first"."""
    ref = solution("2.4")

    def stays_in_eval(model, masks, batches, optimizer):
        model.train = lambda mode=True: model  # the reference loop, minus model.train()
        return ref(model, masks, batches, optimizer)

    fails_with("2.4", stays_in_eval, "not in training mode", "model.train()")


# --- chapter 3 ------------------------------------------------------------------------------------


def test_3_2_pruning_type_must_be_unstructured() -> None:
    """ "Because it is "unstructured" it also works with global_unstructured"."""

    class Global(solution("3.2")):
        PRUNING_TYPE = "global"

    fails_with("3.2", Global, "PRUNING_TYPE is 'global' but this method needs 'unstructured'")


def test_3_3_no_value_error_for_a_bad_input_dim_fails() -> None:
    """ "Raise ValueError when t.shape[1] is not a multiple of m"."""
    ref = solution("3.3")

    class Pads(ref):
        def compute_mask(self, t, default_mask):
            if t.dim() >= 2 and t.shape[1] % self.m:
                return default_mask.clone()  # silently keeps everything
            return super().compute_mask(t, default_mask)

    fails_with("3.3", Pads, "['bad input']", "no error")


def test_3_4_without_self_dim_fails() -> None:
    """ "PRUNING_TYPE = "structured" needs the attribute self.dim"."""
    ref = solution("3.4")

    class NoDim(ref):
        def __init__(self, amount, n=2, dim=0, min_channels=1):
            super().__init__(amount, n, dim, min_channels)
            self.axis = self.__dict__.pop("dim")

        def compute_mask(self, t, default_mask):
            self.dim = self.axis
            try:
                return super().compute_mask(t, default_mask)
            finally:
                del self.dim

    fails_with("3.4", NoDim, "cls.apply(module, 'weight', …) raised")


# --- chapter 4 ------------------------------------------------------------------------------------


def test_4_1_returning_the_given_layer_fails() -> None:
    """ "returning a **new** layer … Leave bn and layer unchanged"."""
    ref = solution("4.1")

    def reuses(bn, layer):
        folded = ref(bn, layer)
        layer.weight, layer.bias = folded.weight, folded.bias  # the given layer becomes the result
        return layer

    fails_with("4.1", reuses, "changed the bn or layer it was given")


def test_4_1_other_hyper_parameters_fail() -> None:
    """ "of the same type and hyper-parameters"."""
    ref = solution("4.1")

    def stride_one(bn, layer):
        folded = ref(bn, layer)
        if isinstance(folded, nn.Conv2d):
            folded.stride = (1, 1)
        return folded

    fails_with("4.1", stride_one, "kernel/stride/padding/groups", "keep the layer's hyper-parameters")


def test_4_1_no_affine_batchnorm_fails() -> None:
    """ "A BatchNorm built with affine=False has γ = 1, β = 0"."""
    ref = solution("4.1")

    def needs_gamma(bn, layer):
        if bn.weight is None:
            raise AttributeError("'NoneType' object has no attribute 'reshape'")
        return ref(bn, layer)

    res = loses_credit("4.1", needs_gamma, "AttributeError")
    assert [c.status for c in res.cases].count("error") == 1  # exactly the affine=False edge case


def test_4_1_grouped_conv_must_be_refused() -> None:
    """ "Raise it too for groups ≠ 1"."""
    ref = solution("4.1")

    def folds_groups(bn, layer):
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            return copy.deepcopy(layer)
        return ref(bn, layer)

    fails_with("4.1", folds_groups, "groups=2 must raise ValueError")


def test_4_1_missing_bias_fails() -> None:
    """ "always with a bias (b = 0 if the layer had none)"."""
    ref = solution("4.1")

    def keeps_none_bias(bn, layer):
        folded = ref(bn, layer)
        if layer.bias is None:
            folded.bias = None
        return folded

    fails_with("4.1", keeps_none_bias, "no bias")


def test_4_2_reusing_a_matched_module_fails() -> None:
    """ "A module that has been matched is not used again"."""
    ref = solution("4.2")

    def overlapping(model):
        groups = ref(model)
        extra = [g[1:] for g in groups if len(g) == 3]  # BatchNorm2d-ReLU again inside Conv-BN-ReLU
        return groups + extra

    fails_with("4.2", overlapping, "unexpected groups", "not reused")


# --- chapter 5 ------------------------------------------------------------------------------------


def test_5_3_float64_result_fails() -> None:
    """x̂ is float32, "equal to torch.quantize_per_tensor(...).dequantize()"."""
    ref = solution("5.3")
    fails_with("5.3", lambda q, s, z: ref(q, s, z).double(), "x̂ is float32")


def test_5_5_min_max_not_buffers_fails() -> None:
    """ "keep the running minimum and maximum in buffers min_val, max_val"."""
    ref = solution("5.5")

    class PlainAttributes(ref):
        def __init__(self, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False):
            super().__init__(dtype, qscheme, reduce_range)
            lo, hi = self._buffers.pop("min_val"), self._buffers.pop("max_val")
            object.__setattr__(self, "min_val", lo)
            object.__setattr__(self, "max_val", hi)

        def forward(self, x):
            object.__setattr__(self, "min_val", torch.minimum(self.min_val, x.detach().min()))
            object.__setattr__(self, "max_val", torch.maximum(self.max_val, x.detach().max()))
            return x

    fails_with("5.5", PlainAttributes, "buffers min_val, max_val")


def test_5_5_starting_at_zero_fails() -> None:
    """ "(start at ±inf)"."""
    ref = solution("5.5")

    class FromZero(ref):
        def __init__(self, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False):
            super().__init__(dtype, qscheme, reduce_range)
            self.min_val.fill_(0.0)
            self.max_val.fill_(0.0)

    fails_with("5.5", FromZero, "min_val starts at +inf and max_val at -inf")


def test_5_5_qparams_not_shaped_tensors_fail() -> None:
    """ "returns tensors scale (float32, shape [1]) and zero_point (int, shape [1])"."""
    ref = solution("5.5")

    class Numbers(ref):
        def calculate_qparams(self):
            scale, zp = super().calculate_qparams()
            return float(scale), int(zp)

    fails_with("5.5", Numbers, "scale as a float32 tensor of shape [1]")

    class FloatZeroPoint(ref):
        def calculate_qparams(self):
            scale, zp = super().calculate_qparams()
            return scale, zp.float()

    fails_with("5.5", FloatZeroPoint, "zero_point as an integer tensor of shape [1]")


def test_5_6_changing_the_given_model_fails() -> None:
    """ "leave the model you are given untouched" (the other 5.6 requirements: test_specs_ch05_ptq.py)."""
    import torch.ao.quantization as tq

    from course_utils import quantization

    def in_place(model, loader, backend=None):
        engine = quantization.use_engine(backend)
        m = model.eval() if quantization.has_quant_stubs(model) else tq.QuantWrapper(model.eval()).eval()
        m.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(m, inplace=True)  # observers go into the given model's layers
        with torch.no_grad():
            for x, _ in loader:
                m(x)
        return tq.convert(m, inplace=True)

    loses_credit("5.6", in_place, "the model you were given was changed", "copy.deepcopy(model)")


# --- chapter 6 ------------------------------------------------------------------------------------


def test_6_2_another_loss_fails() -> None:
    """ "trains in place with cross-entropy and any optimizer"."""
    import torch.ao.nn.intrinsic.qat as nniqat
    import torch.ao.quantization as tq

    def mse(model, loader, epochs, fo, fb, lr=1e-3):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        for epoch in range(epochs):
            if fb is not None and epoch >= fb:
                model.apply(nniqat.freeze_bn_stats)
            if fo is not None and epoch >= fo:
                model.apply(tq.disable_observer)
            model.train()
            for x, y in loader:
                opt.zero_grad()
                out = model(x)
                torch.nn.functional.mse_loss(
                    out, torch.nn.functional.one_hot(y, out.shape[1]).float()
                ).backward()
                opt.step()

    fails_with("6.2", mse, "cross-entropy")

    def summed_adam(model, loader, epochs, fo, fb, lr=1e-3):  # any optimizer, any reduction: fine
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for epoch in range(epochs):
            if fb is not None and epoch >= fb:
                model.apply(nniqat.freeze_bn_stats)
            if fo is not None and epoch >= fo:
                model.apply(tq.disable_observer)
            model.train()
            for x, y in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
                opt.step()

    ex = get_exercise("6.2")
    cases = [(c, ex.reference(c)) for c in ex.cases(hidden=True)]
    assert grade(ex, summed_adam, cases).score == ex.points


# --- chapter 7 ------------------------------------------------------------------------------------


def test_7_1_unscaling_into_a_new_tensor_fails() -> None:
    """ "divides every .grad … by S **in place**"."""
    ref = solution("7.1")

    class NewGrad(ref):
        def unscale_(self, optimizer):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad = p.grad.clone()  # same values afterwards, but a new tensor
            return super().unscale_(optimizer)

    fails_with("7.1", NewGrad, "in place")


def test_7_1_skipped_step_returning_something_fails() -> None:
    """ "unless inf/NaN was found, in which case the step is skipped (return None)"."""
    ref = solution("7.1")

    class ReturnsFlag(ref):
        def step(self, optimizer):
            out = super().step(optimizer)
            return "skipped" if self._found_inf.get(id(optimizer)) else out

    fails_with("7.1", ReturnsFlag, "a skipped step() returned", "returns None")


def test_7_2_returning_a_tensor_loss_fails() -> None:
    """ "return the mean unscaled loss (Python float)"."""
    ref = solution("7.2")

    def tensor_loss(*args, **kwargs):
        out = ref(*args, **kwargs)
        return {"loss": torch.tensor(out["loss"]), "skipped": out["skipped"]}

    fails_with("7.2", tensor_loss, "loss: Tensor", "Python float")


def test_7_2_never_reporting_a_skipped_step_fails() -> None:
    """ "skipped: True when the scaler skipped optimizer.step()"."""
    ref = solution("7.2")

    def never_skipped(*args, **kwargs):
        return {"loss": ref(*args, **kwargs)["loss"], "skipped": False}

    loses_credit("7.2", never_skipped, "skipped=False", "lowers the scale")


def test_7_2_zero_grad_per_micro_batch_fails() -> None:
    """ "zero the gradients once" (the micro-batches accumulate)."""
    ref = solution("7.2")

    def per_micro_batch(model, optimizer, *args, **kwargs):
        forward = model.forward

        def zeroing_forward(x):  # zero_grad before each micro-batch: only the last one's gradient survives
            optimizer.zero_grad()
            return forward(x)

        model.forward = zeroing_forward
        try:
            return ref(model, optimizer, *args, **kwargs)
        finally:
            del model.forward

    loses_credit("7.2", per_micro_batch, "not per micro-batch")


def test_6_1_gradients_for_the_numbers_fail() -> None:
    """ "Return None for the gradients of the four numbers"."""
    ref = solution("6.1")

    class GradForAll(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, zero_point, quant_min, quant_max):
            return ref.forward(ctx, x, scale, zero_point, quant_min, quant_max)

        @staticmethod
        def backward(ctx, grad_output):
            (g, *_) = ref.backward(ctx, grad_output)
            return g, torch.zeros(()), torch.zeros(()), torch.zeros(()), torch.zeros(())

    res = loses_credit("6.1", GradForAll, "RuntimeError")
    assert res.score == 0


# --- chapter 8 ------------------------------------------------------------------------------------


def _soft_target(ts: list, T: float, weights: list | None, *, detach: bool = True, normalize: bool = True):
    """p̄ = Σ w_k·softmax(t_k/T) / Σ w_k as a student might write it, optionally with one mistake."""
    w = torch.ones(len(ts)) if weights is None else torch.tensor(weights)
    w = w / w.sum() if normalize or weights is None else w
    return sum(wi * torch.softmax((t.detach() if detach else t) / T, -1) for wi, t in zip(w, ts))


def _ensemble_loss(p_bar: torch.Tensor, s: torch.Tensor, y: torch.Tensor, T: float, alpha: float):
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / T, -1), p_bar, reduction="batchmean")
    return alpha * T * T * kl + (1 - alpha) * torch.nn.functional.cross_entropy(s, y)


def test_8_1_gradient_reaching_the_teachers_fails() -> None:
    """ "no gradient may reach the teachers' logits (they are fixed targets: detach them)"."""

    def no_detach(s, ts, y, T, alpha, weights=None):
        return _ensemble_loss(_soft_target(ts, T, weights, detach=False), s, y, T, alpha)

    assert loses_credit("8.1", no_detach, "put a .grad on the teachers' logits").score == 0


def test_8_1_averaging_logits_fails() -> None:
    """ "average the teachers' probabilities, not their logits"."""
    ref = solution("8.1")

    def mean_logits(s, ts, y, T, alpha, weights=None):
        w = torch.ones(len(ts)) if weights is None else torch.tensor(weights)
        return ref(s, [sum(wi * t for wi, t in zip(w / w.sum(), ts))], y, T, alpha)

    loses_credit("8.1", mean_logits, "averages the teachers' logits; average their probabilities")


def test_8_1_weights_ignored_or_not_normalized_fail() -> None:
    """ "weights … a list of K non-negative numbers that need not sum to 1 (divide by their sum)"."""
    ref = solution("8.1")
    loses_credit("8.1", lambda s, ts, y, T, a, weights=None: ref(s, ts, y, T, a), "the weights are ignored")

    def unnormalized(s, ts, y, T, alpha, weights=None):
        return _ensemble_loss(_soft_target(ts, T, weights, normalize=False), s, y, T, alpha)

    loses_credit("8.1", unnormalized, "the weights are not normalized")


def test_8_1_loss_not_differentiable_wrt_the_student_fails() -> None:
    """ "the returned scalar tensor stays differentiable w.r.t. student_logits (no .item())"."""
    ref = solution("8.1")

    def detached_student(s, ts, y, T, alpha, weights=None):
        return ref(s.detach(), ts, y, T, alpha, weights)

    assert loses_credit("8.1", detached_student, "no gradient w.r.t. the student logits").score == 0
