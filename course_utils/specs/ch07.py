"""Exercise specs for chapter 7 — automatic mixed precision.

7.1 ``DynamicLossScaler``: replayed over ≥ 20 optimizer steps (with inf and NaN gradients,
some steps clipped after ``unscale_``) next to ``torch.amp.GradScaler("cpu")`` with the same
settings. 7.2 ``train_step_amp_accum``: one bf16 autocast + GradScaler optimizer step from k
micro-batches (accumulated scaled gradients, one unscale_/clip/step/update) next to PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..exercise import Exercise, assert_same

# --- 7.1 DynamicLossScaler ----------------------------------------------------------------------

_SETTINGS = [  # init_scale, growth_factor, backoff_factor, growth_interval (all exact in binary)
    (2.0**16, 2.0, 0.5, 3),
    (8.0, 2.0, 0.5, 2),
    (2.0**10, 4.0, 0.25, 4),
    (2.0**5, 1.5, 0.5, 3),
    (2.0**12, 2.0, 0.125, 5),
]


def _scaler_case(seed: int) -> dict:
    """≥ 20 steps; about a quarter have an inf/-inf/NaN gradient entry, some clip after unscale_."""
    g = torch.Generator().manual_seed(seed)
    init, growth, backoff, interval = _SETTINGS[seed % len(_SETTINGS)]
    n = 22 + seed % 7
    bad = torch.rand(n, generator=g) < 0.25
    bad[3] = bad[4] = True  # two overflows in a row: backoff twice, tracker reset
    bad[0] = False
    ws, kinds = [], []
    for t in range(n):
        w = torch.randn(6, generator=g)
        kind = "finite"
        if bad[t]:
            kind = ["inf", "-inf", "nan"][int(torch.randint(3, (1,), generator=g))]
            w[int(torch.randint(6, (1,), generator=g))] = float(kind)
        ws.append(w)
        kinds.append(kind)
    clip = (torch.rand(n, generator=g) < 0.3).tolist()
    return {
        "settings": {
            "init_scale": init,
            "growth_factor": growth,
            "backoff_factor": backoff,
            "growth_interval": interval,
        },
        "p0": torch.randn(6, generator=g),
        "ws": ws,
        "kinds": kinds,
        "clip": clip,
    }


def _scaler_edge_cases() -> list[dict]:
    """Scales near float32's max: finite gradients overflow when scaled (real fp16 life), and
    growth must stop where the next scale would be inf (GradScaler keeps the old scale)."""
    overflow = _scaler_case(7)
    overflow["settings"] = {
        "init_scale": 2.0**126,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2,
    }
    overflow["ws"] = [w.nan_to_num(nan=1.0, posinf=5.0, neginf=-5.0) * 8 for w in overflow["ws"]]
    overflow["kinds"] = ["finite"] * len(overflow["ws"])
    ceiling = _scaler_case(8)
    ceiling["settings"] = {
        "init_scale": 2.0**126,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2,
    }
    ceiling["p0"] = ceiling["p0"] * 1e-30
    ceiling["ws"] = [w.nan_to_num(nan=1.0, posinf=5.0, neginf=-5.0) * 1e-30 for w in ceiling["ws"]]
    ceiling["kinds"] = ["finite"] * len(ceiling["ws"])
    return [overflow, ceiling]


def _read_scale(scaler: Any) -> float:
    """The current scale, read through ``scale()`` so the API stays scale/unscale_/step/update."""
    return float(scaler.scale(torch.ones((), dtype=torch.float32)))


def _replay(make_scaler, inputs: dict) -> dict:
    """The training loop both scalers go through; records what a person would check."""
    scaler = make_scaler(**inputs["settings"])
    p = nn.Parameter(inputs["p0"].clone())
    opt = torch.optim.SGD([p], lr=0.05)
    scales, skipped, unscaled = [_read_scale(scaler)], [], []
    in_place, skipped_returns = [], []
    for w, clip in zip(inputs["ws"], inputs["clip"]):
        opt.zero_grad(set_to_none=True)
        loss = (p * w).sum() + 0.5 * (p**2).sum()
        scaler.scale(loss).backward()
        grad, ptr = p.grad, p.grad.data_ptr()
        if clip:
            scaler.unscale_(opt)
            if torch.isfinite(p.grad).all():
                unscaled.append(p.grad.detach().clone())
            nn.utils.clip_grad_norm_([p], max_norm=1.0)
        before = p.detach().clone()
        returned = scaler.step(opt)
        in_place.append(p.grad is grad and p.grad.data_ptr() == ptr)
        skipped.append(bool(torch.equal(before, p.detach())))
        if skipped[-1]:
            skipped_returns.append(
                None if returned is None else f"{type(returned).__name__} {returned!r}"[:60]
            )
        scaler.update()
        scales.append(_read_scale(scaler))
    return {
        "scales": scales,
        "skipped": skipped,
        "unscaled_grads": unscaled,
        "params": p.detach().clone(),
        "unscale_ divides .grad in place": all(in_place),
        "step() return values of skipped steps": skipped_returns,
    }


def _scaler_run(cls, inputs: dict) -> dict:
    return _replay(cls, inputs)


def _scaler_reference(inputs: dict) -> dict:
    return _replay(lambda **kw: torch.amp.GradScaler("cpu", **kw), inputs)


def _scaler_compare(got: Any, expected: dict, inputs: dict) -> None:
    """Step by step: the first step whose skip decision or scale differs, with the reason."""
    if not isinstance(got, dict) or set(got) != set(expected):
        assert_same(got, expected, inputs)
    kinds = inputs["kinds"]
    s = inputs["settings"]
    cfg = (
        f"(init_scale={s['init_scale']:g}, growth_factor={s['growth_factor']}, "
        f"backoff_factor={s['backoff_factor']}, growth_interval={s['growth_interval']})"
    )
    if got["scales"][0] != expected["scales"][0]:
        raise AssertionError(
            f"before any step, scale(1.0) gave {got['scales'][0]:g} but should be init_scale = "
            f"{expected['scales'][0]:g} {cfg}. scale(loss) must return loss * current scale."
        )
    for t, (gs, es) in enumerate(zip(got["skipped"], expected["skipped"])):
        grads = "finite" if kinds[t] == "finite" else f"containing {kinds[t]}"
        if gs != es:
            what = "skipped" if gs else "applied"
            raise AssertionError(
                f"step {t}: you {what} the optimizer step, GradScaler('cpu') "
                f"{'skipped' if es else 'applied'} it (gradients {grads}, scaled by "
                f"{expected['scales'][t]:g}). step() must skip exactly when unscaled gradients "
                "contain inf or NaN, and must not unscale twice after an explicit unscale_()."
            )
        gv, ev = got["scales"][t + 1], expected["scales"][t + 1]
        if abs(gv - ev) > 1e-6 * abs(ev):
            raise AssertionError(
                f"after update() at step {t} (gradients {grads}): your scale is {gv:g}, "
                f"GradScaler('cpu') has {ev:g} {cfg}. Scales so far: "
                f"{[f'{v:g}' for v in expected['scales'][: t + 2]]}.\n"
                "On inf/NaN: scale *= backoff_factor and reset the growth counter; after "
                "growth_interval finite steps in a row: scale *= growth_factor (only if the result is "
                "still finite in float32, else keep the scale) and reset the counter."
            )
    if not got["unscale_ divides .grad in place"]:
        raise AssertionError(
            "unscale_ replaced p.grad by a new tensor: divide every .grad by the scale *in place* "
            "(p.grad.mul_(1 / scale) under torch.no_grad()), as GradScaler does."
        )
    if any(r is not None for r in got["step() return values of skipped steps"]):
        bad = next(r for r in got["step() return values of skipped steps"] if r is not None)
        raise AssertionError(f"a skipped step() returned {bad}: when inf/NaN was found, step() returns None.")
    assert_same(got["unscaled_grads"], expected["unscaled_grads"], inputs, path="grads after unscale_")
    assert_same(got["params"], expected["params"], inputs, path="final parameters", rtol=1e-5, atol=1e-6)


# --- 7.2 AMP with gradient accumulation ---------------------------------------------------------


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


_SIZES = [  # micro-batch sizes of one optimizer step, per case
    [8, 8, 8],
    [6, 6],
    [8],
    [5, 3, 8],  # unequal: each micro-batch weighs n_i / N
    [4, 4, 4, 4],
]


def _step_case(seed: int) -> dict:
    """5 optimizer steps of k micro-batches; max_norm alternates between clipping and not."""
    g = torch.Generator().manual_seed(seed)
    sizes = _SIZES[seed % len(_SIZES)]
    n_steps = 5
    init_scale = [2.0**127, 2.0**16, 2.0**127, 2.0**8, 2.0**12][seed % 5]
    amp = 30 if init_scale > 2.0**100 else 3  # large inputs: gradients overflow at 2^127
    return {
        "init_scale": init_scale,
        "optimizer": "adam" if seed % 5 == 4 else "sgd",
        "max_norms": [[0.25, 1e3][(t + seed) % 2] for t in range(n_steps)],
        "weights_seed": 1000 + seed,
        "xs": [[torch.randn(n, 16, generator=g) * amp for n in sizes] for _ in range(n_steps)],
        "ys": [[torch.randint(5, (n,), generator=g) for n in sizes] for _ in range(n_steps)],
    }


def _step_replay(step_fn, inputs: dict) -> dict:
    torch.manual_seed(inputs["weights_seed"])
    model = _TinyNet()
    if inputs["optimizer"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=inputs["init_scale"], growth_interval=2)
    dtypes: set[str] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: dtypes.add(str(out.dtype).replace("torch.", "")))
        for m in (model.fc1, model.fc2)
    ]
    out: dict = {"losses": [], "skipped": [], "scales": [], "params": [], "types": set(), "error": ""}
    calls: list[str] = []
    for name in ("step", "update"):  # count the scaler calls of each optimizer step
        method = getattr(scaler, name)
        setattr(scaler, name, lambda *a, _m=method, _n=name, **kw: (calls.append(_n), _m(*a, **kw))[1])
    out["calls"] = []
    try:
        for xs, ys, max_norm in zip(inputs["xs"], inputs["ys"], inputs["max_norms"]):
            calls.clear()
            res = step_fn(model, opt, scaler, list(zip(xs, ys)), "cpu", torch.bfloat16, max_norm)
            out["calls"].append(f"scaler.step x{calls.count('step')}, scaler.update x{calls.count('update')}")
            if not isinstance(res, dict) or set(res) != {"loss", "skipped"}:
                out["types"].add(f"not a dict with keys 'loss' and 'skipped': {type(res).__name__}")
                break
            out["types"].add(f"loss: {type(res['loss']).__name__}, skipped: {type(res['skipped']).__name__}")
            out["losses"].append(float(res["loss"]))
            out["skipped"].append(bool(res["skipped"]))
            out["scales"].append(float(scaler.get_scale()))
            out["params"].append({k: v.detach().clone() for k, v in model.state_dict().items()})
    except RuntimeError as err:
        if "unscale_() has already been called" not in str(err):
            raise
        out["error"] = (
            f"PyTorch raised {str(err)!r}: call scaler.unscale_(optimizer) ONCE per optimizer step, "
            "after the loop over the micro-batches (the gradients of every micro-batch accumulate "
            "in .grad, still scaled, until then)."
        )
    finally:
        for h in hooks:
            h.remove()
    return {
        "error": out["error"],
        "linear_output_dtypes": sorted(dtypes),
        "returned types": sorted(out["types"]),
        "scaler calls per optimizer step": out["calls"],
        "losses": out["losses"],
        "skipped": out["skipped"],
        "scales": out["scales"],
        "params after each step": out["params"],
    }


def _step_run(fn, inputs: dict) -> dict:
    return _step_replay(
        lambda m, o, s, mb, dev, dt, mn: fn(m, o, s, mb, device_type=dev, dtype=dt, max_norm=mn), inputs
    )


def _pytorch_amp_accum_step(model, optimizer, scaler, micro_batches, device_type, dtype, max_norm) -> dict:
    """PyTorch's AMP recipe with gradient accumulation (loss_i · n_i/N; one unscale_/clip/step/update)."""
    total = sum(len(y) for _, y in micro_batches)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for x, y in micro_batches:
        with torch.autocast(device_type, dtype=dtype):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss * (len(y) / total)).backward()
        loss_sum += loss.item() * len(y)
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return {"loss": loss_sum / total, "skipped": scaler.get_scale() < before}


def _step_reference(inputs: dict) -> dict:
    return _step_replay(_pytorch_amp_accum_step, inputs)


def _step_compare(got: Any, expected: dict, inputs: dict) -> None:
    if not isinstance(got, dict) or set(got) != set(expected):
        assert_same(got, expected, inputs)
    if got["error"]:
        raise AssertionError(got["error"])
    if got["returned types"] != expected["returned types"]:
        raise AssertionError(
            f"you returned {got['returned types']}: return {{'loss': <Python float>, 'skipped': <bool>}} "
            "(loss_sum / N from loss.item(); skipped as a bool), as the exercise asks."
        )
    if got["linear_output_dtypes"] != expected["linear_output_dtypes"]:
        raise AssertionError(
            f"the Linear layers produced {got['linear_output_dtypes']} outputs, expected "
            f"{expected['linear_output_dtypes']}: run each forward pass (and the loss) inside "
            "`with torch.autocast(device_type, dtype=dtype):`."
        )
    k = len(inputs["xs"][0])
    if len(got["scales"]) != len(expected["scales"]):
        assert_same(got["scales"], expected["scales"], inputs, path="scale after each step")
    for t, es in enumerate(expected["scales"]):  # step t: its loss depends only on steps < t
        used = expected["scales"][t - 1] if t else inputs["init_scale"]
        gc, ec = got["scaler calls per optimizer step"][t], expected["scaler calls per optimizer step"][t]
        if gc != ec:
            raise AssertionError(
                f"optimizer step {t} ({k} micro-batches): you called {gc}, PyTorch's recipe {ec}. "
                "Call scaler.step(optimizer) and scaler.update() ONCE per optimizer step, after the "
                "loop over the micro-batches: an overflow must back the scale off once, not once "
                "per micro-batch."
            )
        gs = got["scales"][t]
        if gs != es:
            raise AssertionError(
                f"optimizer step {t} ({k} micro-batches): the scale after it is {gs:g}, PyTorch's "
                f"recipe gives {es:g} (it was {used:g}): your accumulated gradient "
                f"{'overflowed' if gs < es else 'stayed finite'} where PyTorch's "
                f"{'did not' if gs < es else 'overflowed'}. Zero the gradients once per optimizer "
                "step (not per micro-batch: .grad must accumulate over all of them) and weight each "
                "micro-batch's scaled loss by n_i / N (1/k for equal sizes)."
            )
        gl, el = got["losses"][t], expected["losses"][t]
        if abs(gl - el) > 1e-3 * abs(el) + 1e-4:
            hint = ""
            if k > 1 and abs(gl - k * el) <= 1e-2 * abs(k * el):
                hint = (
                    " — that is the SUM of the micro-batch losses; return their mean (weighted by n_i / N)."
                )
            elif not math.isfinite(gl) or gl > 100 * max(abs(el), 1e-3):
                hint = " — that looks like the *scaled* loss; return the unscaled loss (loss.item())."
            raise AssertionError(
                f"optimizer step {t}: you returned loss {gl:.6g}, expected the mean loss over the "
                f"{k} micro-batches {el:.6g}{hint}"
            )
        if got["skipped"][t] != expected["skipped"][t]:
            raise AssertionError(
                f"optimizer step {t}: you returned skipped={got['skipped'][t]}, PyTorch's recipe "
                f"gives {expected['skipped'][t]} (same scales): a step is skipped exactly when "
                "scaler.update() lowers the scale (compare scaler.get_scale() before scaler.step "
                "and after scaler.update())."
            )
        try:
            assert_same(
                got["params after each step"][t],
                expected["params after each step"][t],
                inputs,
                path=f"parameters after optimizer step {t}",
                rtol=1e-3,
                atol=1e-5,
            )
        except AssertionError as err:
            clipped = inputs["max_norms"][t] < 1
            raise AssertionError(
                f"{err}\nThe parameters after optimizer step {t} (max_norm {inputs['max_norms'][t]:g}, "
                f"{'clipping' if clipped else 'no clipping'}) differ. Zero the gradients once per "
                "optimizer step (not per micro-batch: .grad must accumulate over all of them); "
                "scale each micro-batch's loss by n_i / N (1/k for equal sizes) so the step equals "
                "one step on the concatenated batch; clip only after scaler.unscale_(optimizer) "
                "(clipping scaled gradients clips the wrong norm)."
            ) from None


EXERCISES = [
    Exercise(
        id="7.1",
        title="DynamicLossScaler",
        target="DynamicLossScaler",
        points=3,
        make_case=_scaler_case,
        run=_scaler_run,
        reference=_scaler_reference,
        compare=_scaler_compare,
        public_seeds=(0, 1),
        hidden_seeds=(2, 3, 4, 1000),
        edge_cases=_scaler_edge_cases,
        hint="keep the scale, a growth counter and, per optimizer, whether unscale_ already ran and "
        "whether it found inf/NaN (torch.isfinite). update() resets the per-step state.",
    ),
    Exercise(
        id="7.2",
        title="AMP with gradient accumulation",
        target="train_step_amp_accum",
        points=3,
        make_case=_step_case,
        run=_step_run,
        reference=_step_reference,
        compare=_step_compare,
        public_seeds=(0, 1),
        hidden_seeds=(2, 3, 4, 1000),
        hint="zero_grad once; per micro-batch: autocast forward + loss, "
        "scaler.scale(loss * n_i / N).backward(); after the loop, once: unscale_, clip_grad_norm_, "
        "step, update. skipped = the scale went down in update().",
    ),
]
