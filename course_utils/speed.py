"""Fair speed comparisons: several variants timed *interleaved* in one run, ratios against the best fp32.

A speed-up is a ratio ``t_baseline / t_variant`` of median latencies. It means something only
when both were measured under the same conditions, and it is honest only when the baseline is
the **best** fp32 model one could deploy, not the slowest. So :func:`measure_interleaved`

* warms every variant up (this also triggers ``torch.compile``), then sizes a block of calls
  per variant to last about ``block_s`` seconds;
* runs ``repeats`` rounds; in each round every variant runs one block, in a rotated order, so
  a noisy moment on a shared machine hits all variants alike;
* reports the median per-call time over the rounds, the batch, the thread count, the load
  average before and after, and every ratio against the fastest ``fp32`` variant.

:func:`decomposition` builds the variants that split "int8 is N× faster than fp32" into its
parts: fp32 eager NCHW → BN folded → ``channels_last`` → ``torch.compile`` → int8 eager (static
PTQ) → int8 via PT2E (``X86InductorQuantizer``) compiled, plus a channel-pruned model.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from statistics import median, quantiles
from typing import Any

import torch
from torch import nn

from .timing import interleaved_rounds, load_average, num_threads

__all__ = [
    "Candidate",
    "SpeedRow",
    "SpeedTable",
    "cpu_summary",
    "decomposition",
    "faster_or_slower",
    "load_average",
    "measure_interleaved",
]

FP32 = "fp32"  # the family whose fastest member is the baseline


@dataclass
class Candidate:
    """A variant to time. ``model=None`` means it is not available here; ``how`` says why.

    ``family``: ``"fp32"`` variants compete for the baseline; any other family is compared
    with it. ``channels_last``: feed the input in ``channels_last`` memory format.
    ``compile``: wrap in ``torch.compile`` (inductor, ``freezing=True``) before timing.
    """

    name: str
    model: nn.Module | None
    how: str
    family: str = FP32
    channels_last: bool = False
    compile: bool = False


@dataclass
class SpeedRow:
    """One timed variant: median ms per call over the interleaved rounds (``None`` when not run)."""

    name: str
    family: str
    how: str
    median_ms: float | None
    iqr_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    setup_s: float = 0.0  # compile time (first call), 0 for eager
    vs_best_fp32: float | None = None  # best fp32 ms / this ms
    vs_first: float | None = None  # first row's ms / this ms


def faster_or_slower(ratio: float) -> str:
    """``"2.01× faster"`` for a ratio ≥ 1, ``"1.30× slower"`` (= 1/ratio) below 1."""
    return f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"


def cpu_summary() -> dict[str, Any]:
    """What this CPU and torch build offer for int8: ISA level, VNNI/AMX, the quantized engine.

    ``torch.backends.cpu.get_cpu_capability()`` is the ATen kernel level (``AVX2``, ``AVX512``,
    ...); VNNI (8-bit dot products into int32) and AMX come from ``torch.cpu``'s probes.
    """

    def probe(name: str) -> bool | None:
        fn = getattr(torch.cpu, name, None)
        return bool(fn()) if callable(fn) else None

    vnni, amx = probe("_is_vnni_supported"), probe("_is_amx_tile_supported")
    if amx:
        note = "AMX and VNNI int8: int8 ratios here exceed what a typical laptop CPU shows"
    elif vnni:
        note = "VNNI int8 dot products: int8 ratios here exceed CPUs without VNNI"
    elif vnni is False:
        note = "no VNNI/AMX: int8 kernels use plain AVX2-class instructions; VNNI/AMX CPUs gain more"
    else:
        note = "VNNI/AMX not probed on this platform"
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "vnni": vnni,
        "amx": amx,
        "quantized_engine": torch.backends.quantized.engine,
        "note": note,
    }


def _compile(model: nn.Module, x: torch.Tensor) -> tuple[Callable, float]:
    """``torch.compile`` with inductor freezing (weights become constants, as for deployment);
    compiles on the first call, whose wall time is returned."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model)
    t0 = time.perf_counter()
    with inductor_config.patch(freezing=True), torch.inference_mode(), warnings.catch_warnings():
        # inductor's own int8 lowering copies a tensor with torch.tensor(); not the reader's concern
        warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
        compiled(x)
    return compiled, time.perf_counter() - t0


def measure_interleaved(
    candidates: Sequence[Candidate],
    example_input: torch.Tensor,
    threads: int = 1,
    repeats: int = 7,
    warmup: int = 3,
    block_s: float = 0.1,
    compile_budget_s: float = 180.0,
    progress: bool = True,
) -> SpeedTable:
    """Time every available candidate interleaved; ratios against the fastest ``fp32`` one.

    Per call time = block time / calls per block; a row's ``median_ms`` is the median over
    ``repeats`` rounds. Compiled candidates compile at this thread count (inductor bakes it
    into the kernels); once compiling has used ``compile_budget_s`` seconds, the remaining
    compiled candidates are skipped with that reason. A compile failure
    (``torch._dynamo.exc.TorchDynamoException``) is reported in the row, not raised.
    """
    from tqdm.auto import tqdm

    if threads < 1 or repeats < 1 or warmup < 0 or block_s <= 0:
        raise ValueError("need threads >= 1, repeats >= 1, warmup >= 0 and block_s > 0.")
    if not candidates:
        raise ValueError("measure_interleaved() needs at least one candidate.")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}.")
    batch = int(example_input.shape[0])
    load_before = load_average()
    rows: dict[str, SpeedRow] = {}
    runners: dict[str, Callable[[], Any]] = {}
    compile_spent = 0.0
    with num_threads(threads):
        if any(c.compile and c.model is not None for c in candidates):
            torch._dynamo.reset()  # recompile at this thread count
        for c in tqdm(candidates, desc=f"warm up ({threads}T)", disable=not progress, leave=False):
            row = rows[c.name] = SpeedRow(c.name, c.family, c.how, None)
            if c.model is None:
                continue
            model = c.model
            model.eval()  # exported PT2E graphs return None from eval()
            x = (
                example_input.contiguous(memory_format=torch.channels_last)
                if c.channels_last
                else example_input
            )
            fn: Callable = model
            if c.compile:
                if compile_spent > compile_budget_s:
                    row.how = f"skipped: compiling already took {compile_spent:.0f} s (budget {compile_budget_s:g} s)"
                    continue
                try:
                    fn, row.setup_s = _compile(model, x)
                except torch._dynamo.exc.TorchDynamoException as err:
                    first = str(err).strip().splitlines()[:1] or [""]
                    row.how = f"torch.compile failed here: {type(err).__name__}: {first[0][:120]}"
                    continue
                compile_spent += row.setup_s
            with torch.inference_mode():
                for _ in range(warmup):
                    fn(x)
            runners[c.name] = lambda fn=fn, x=x: fn(x)
        bar = tqdm(total=repeats * len(runners), desc=f"time ({threads}T)", disable=not progress, leave=False)
        if runners:
            times = interleaved_rounds(
                runners, threads, warmup=0, rounds=repeats, block_s=block_s, on_block=bar.update
            )
            for name, ts in times.items():
                rows[name].samples_ms = [1e3 * t for t in ts]
        bar.close()
    for row in rows.values():
        if row.samples_ms:
            row.median_ms = median(row.samples_ms)
            q = quantiles(row.samples_ms, n=4) if len(row.samples_ms) > 1 else [0.0, 0.0, 0.0]
            row.iqr_ms = q[2] - q[0]
    table = SpeedTable(
        rows=list(rows.values()),
        batch=batch,
        threads=threads,
        repeats=repeats,
        load_before=load_before,
        load_after=load_average(),
        cpu=cpu_summary(),
    )
    table.set_ratios()
    return table


@dataclass
class SpeedTable:
    """The result of :func:`measure_interleaved`: prints as text, renders as HTML / markdown."""

    rows: list[SpeedRow]
    batch: int
    threads: int
    repeats: int
    load_before: float | None
    load_after: float | None
    cpu: dict[str, Any]
    best_fp32: str | None = None

    def set_ratios(self) -> None:
        """``vs_best_fp32`` = fastest fp32 ms / row ms; ``vs_first`` = first row's ms / row ms."""
        timed = [r for r in self.rows if r.median_ms is not None]
        fp32 = [r for r in timed if r.family == FP32]
        best = min(fp32, key=lambda r: r.median_ms) if fp32 else None
        self.best_fp32 = best.name if best else None
        first = timed[0] if timed else None
        for r in timed:
            r.vs_best_fp32 = best.median_ms / r.median_ms if best else None
            r.vs_first = first.median_ms / r.median_ms if first else None

    def __getitem__(self, name: str) -> SpeedRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"No variant {name!r}; have: {', '.join(r.name for r in self.rows)}.")

    def ratio(self, name: str) -> float | None:
        """How many times faster ``name`` is than the best fp32 variant (``None`` if not timed)."""
        return self[name].vs_best_fp32

    def conditions(self) -> str:
        """Batch, threads, rounds, load average and CPU, for the line under every table."""
        t = "thread" if self.threads == 1 else "threads"

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.1f}"

        return (
            f"batch {self.batch}, {self.threads} {t}, median of {self.repeats} interleaved rounds; "
            f"load average {fmt(self.load_before)} → {fmt(self.load_after)} on {os.cpu_count()} CPUs; "
            f"CPU capability {self.cpu['capability']}, quantized engine {self.cpu['quantized_engine']} "
            f"({self.cpu['note']})"
        )

    def headline(self, name: str) -> str:
        """``"<name>: 4.10× faster than the best fp32 (<best>), batch 64, 1 thread"`` (or "slower")."""
        r = self[name]
        t = "thread" if self.threads == 1 else "threads"
        if r.vs_best_fp32 is None:
            return f"{name}: not timed ({r.how})"
        return (
            f"{name}: {faster_or_slower(r.vs_best_fp32)} than the best fp32 ({self.best_fp32}), "
            f"batch {self.batch}, {self.threads} {t}"
        )

    HEAD = ("variant", "ms / batch", "IQR ms", "× vs first row", "× vs best fp32", "how")

    def _cells(self) -> list[list[str]]:
        def x(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}×"

        out = []
        for r in self.rows:
            name = r.name + (" (best fp32)" if r.name == self.best_fp32 else "")
            how = r.how + (f"; compiled in {r.setup_s:.0f} s" if r.setup_s else "")
            ms = "n/a" if r.median_ms is None else f"{r.median_ms:.3g}"
            iqr = "n/a" if r.iqr_ms is None else f"{r.iqr_ms:.2g}"
            out.append([name, ms, iqr, x(r.vs_first), x(r.vs_best_fp32), how])
        return out

    def markdown(self) -> str:
        """A markdown table plus the measuring conditions."""
        lines = ["| " + " | ".join(self.HEAD) + " |", "|" + "|".join("---" for _ in self.HEAD) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in self._cells()]
        return "\n".join(lines + ["", self.conditions()])

    def __str__(self) -> str:
        cells = [list(self.HEAD[:-1]), *[c[:-1] for c in self._cells()]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        lines = [
            "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])
            for row in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"  {r.name}: {r.how}" for r in self.rows if r.median_ms is None]
        return "\n".join(lines + [self.conditions()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in self.HEAD)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self._cells()
        )
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p><small>{escape(self.conditions())}</small></p>"
        )


def decomposition(
    fp32: nn.Module,
    calib_loader: Iterable,
    example_input: torch.Tensor,
    int8: nn.Module | None = None,
    pruned: nn.Module | None = None,
    pruned_label: str = "50% channels",
    compile: bool = True,
    num_batches: int = 8,
) -> list[Candidate]:
    """The variants that split an int8 speed-up into layout, compiler and int8 (same fp32 weights).

    ``fp32`` must be a CourseCNN with quant stubs (identities in float). ``int8`` defaults to
    ``static_ptq(fp32, calib_loader)``. With ``compile=False`` the compiled rows say so.
    ``pruned`` (a smaller fp32 CourseCNN) adds two rows in its own family.
    """
    from . import quantization as Q

    fp32 = copy.deepcopy(fp32).eval()
    folded = Q.fuse_course_cnn(copy.deepcopy(fp32))
    folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    int8 = int8 if int8 is not None else Q.static_ptq(fp32, calib_loader, num_batches=num_batches)
    engine = torch.backends.quantized.engine
    no = "not compiled: compile=False (torch.compile on CPU needs a C++ compiler and ~20–80 s here)"
    out = [
        Candidate("fp32 eager NCHW", fp32, "the trained model as is"),
        Candidate("fp32 BN folded", folded, "Conv-BN-ReLU fused (W' = W·γ/σ), eager, NCHW"),
        Candidate(
            "fp32 BN folded, channels_last", folded_cl, "folded model and input in NHWC", channels_last=True
        ),
        Candidate(
            "fp32 torch.compile",
            fp32 if compile else None,
            "inductor, freezing=True" if compile else no,
            compile=True,
        ),
        Candidate(
            "int8 eager (static PTQ)", int8, f"fuse → prepare → calibrate → convert ({engine} engine)", "int8"
        ),
    ]
    if compile:
        ao = Q.torchao_pt2e_x86(fp32, example_input, calib_loader, num_batches=num_batches)
        how = "torch.export → prepare_pt2e(X86InductorQuantizer) → convert_pt2e → inductor, freezing=True"
        out.append(
            Candidate(
                "int8 PT2E + torch.compile",
                ao.model,
                how if ao.model is not None else ao.reason,
                "int8",
                compile=True,
            )
        )
    else:
        out.append(Candidate("int8 PT2E + torch.compile", None, no, "int8"))
    if pruned is not None:
        p = copy.deepcopy(pruned).eval()
        p_cl = Q.fuse_course_cnn(copy.deepcopy(p)).to(memory_format=torch.channels_last)
        out += [
            Candidate(f"{pruned_label} eager NCHW", p, "channels removed, eager, NCHW", pruned_label),
            Candidate(f"{pruned_label} BN folded, channels_last", p_cl, "channels removed, folded, NHWC", pruned_label, channels_last=True),
        ]  # fmt: skip
    return out
