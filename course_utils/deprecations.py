"""Silence the *known* deprecation messages of the APIs this course teaches — by message text.

Eager ``torch.ao.quantization`` is deprecated since PyTorch 2.8 (its message says "will be
removed in 2.10") but still works in 2.14; the course teaches it for the concepts and shows
the torchao path beside it. Lessons call :func:`show_known_deprecations` once (so students
see what PyTorch says), then :func:`filter_known_deprecations`. Only the messages listed in
``KNOWN_MESSAGES`` are filtered; every other warning — including unrelated
``DeprecationWarning`` s — still shows.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

__all__ = [
    "KNOWN_MESSAGES",
    "KnownMessage",
    "Messages",
    "filter_known_deprecations",
    "show_known_deprecations",
]


@dataclass(frozen=True)
class KnownMessage:
    """A message to filter: a regex matched at the start of the text, where it comes from, why."""

    pattern: str
    what: str
    category: type[Warning] | None = None  # a ``warnings`` warning ...
    logger: str | None = None  # ... or a record on this ``logging`` logger


# Texts as emitted by torch 2.14.1 / torchao 0.18 (captured by running prepare, convert,
# prepare_qat, quantize_dynamic, observers with reduce_range, and ``import torchao``).
KNOWN_MESSAGES: tuple[KnownMessage, ...] = (
    KnownMessage(
        r"torch\.ao\.quantization is deprecated",
        "torch.ao.quantization eager/FX API deprecated (since 2.8; still works in 2.14) — "
        "from prepare, convert, prepare_qat, quantize_dynamic",
        category=DeprecationWarning,
    ),
    KnownMessage(
        r"Please use quant_min and quant_max to specify the range for observers",
        "observer reduce_range=True will be deprecated (x86/fbgemm default qconfigs use it)",
        category=UserWarning,
    ),
    KnownMessage(
        r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation",
        "quantized tensors (torch.qint8/quint8/qint32) are deprecated — from convert and "
        "torch.quantize_per_tensor (emitted once per process)",
        category=UserWarning,
    ),
    KnownMessage(
        r".*is an Enum subclass and is now natively supported by torch\.compile",
        "torch.utils._pytree register_constant() on Enums is deprecated — logged by `import torchao`",
        logger="torch.utils._pytree",
    ),
    KnownMessage(
        r"No CUDA runtime is found",
        "not a deprecation: CPU-only machine note logged by torch.utils.cpp_extension "
        "(imported by torch.utils.benchmark)",
        logger="torch.utils.cpp_extension",
    ),
)


class _MessageFilter(logging.Filter):
    """Drops log records whose formatted message matches one of the patterns."""

    def __init__(self) -> None:
        super().__init__()
        self.patterns: list[re.Pattern[str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p.match(msg) for p in self.patterns)


_LOG_FILTERS: dict[str, _MessageFilter] = {}


class Messages(list[str]):
    """A plain ``list[str]`` whose repr is a one-line summary, so that a lesson cell ending in
    ``filter_known_deprecations()`` does not echo every pattern again after the printed list."""

    def __init__(self, items: list[str], summary: str) -> None:
        super().__init__(items)
        self.summary = summary

    def __repr__(self) -> str:
        return self.summary

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(self.summary)  # type: ignore[attr-defined]


def _installed(known: KnownMessage) -> bool:
    if known.logger is not None:
        f = _LOG_FILTERS.get(known.logger)
        return (
            f is not None
            and f in logging.getLogger(known.logger).filters
            and any(p.pattern == known.pattern for p in f.patterns)
        )
    return any(
        action == "ignore" and msg is not None and msg.pattern == known.pattern and cat is known.category
        for action, msg, cat, _mod, _line in warnings.filters
    )


def filter_known_deprecations(verbose: bool = True) -> list[str]:
    """Ignore the messages in ``KNOWN_MESSAGES`` (by text and category); return their patterns.

    Installs ``warnings.filterwarnings("ignore", message=..., category=...)`` for warnings and
    a ``logging.Filter`` for log records. Idempotent: calling it again adds nothing and
    prints nothing. With ``verbose`` it prints which messages it newly filters.
    """
    newly = []
    for known in KNOWN_MESSAGES:
        if _installed(known):
            continue
        newly.append(known)
        if known.logger is not None:
            log = logging.getLogger(known.logger)
            f = _LOG_FILTERS.setdefault(known.logger, _MessageFilter())
            if not any(p.pattern == known.pattern for p in f.patterns):
                f.patterns.append(re.compile(known.pattern))
            if f not in log.filters:
                log.addFilter(f)
        else:
            assert known.category is not None
            warnings.filterwarnings("ignore", message=known.pattern, category=known.category)
    if verbose and newly:
        print(f"Filtering {len(newly)} known message(s) by text (all other warnings still show):")
        for known in newly:
            print(f"  - {known.what}")
    return Messages(
        [k.pattern for k in KNOWN_MESSAGES], f"<{len(KNOWN_MESSAGES)} known messages filtered by text>"
    )


def show_known_deprecations(verbose: bool = True) -> list[str]:
    """Run one eager ``prepare`` + ``convert`` on a tiny model and return the warnings it raised.

    Warnings are recorded (``simplefilter("always")``) so they show even if filtered before;
    each distinct message is returned once and, with ``verbose``, printed. (The quantized
    tensor warning comes from C++ once per process, so it is missing if already emitted.)
    """
    import torch
    from torch import nn
    from torch.ao import quantization as tq

    from .quantization import select_engine

    model = nn.Sequential(tq.QuantStub(), nn.Linear(4, 2), tq.DeQuantStub()).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.qconfig = tq.get_default_qconfig(select_engine())
        prepared = tq.prepare(model)
        prepared(torch.randn(8, 4))
        tq.convert(prepared)
    messages: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in messages:
            messages.append(text)
    if verbose:
        print(f"One eager prepare + convert raised {len(messages)} distinct warning(s):")
        for m in messages:
            print("  " + re.sub(r"\s+", " ", m).strip())
    return Messages(messages, f"<{len(messages)} distinct warning(s) from one eager prepare + convert>")
