"""deprecations: known messages are filtered by text, unrelated warnings still show, idempotent."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings

from course_utils import deprecations as D

AO = "torch.ao.quantization is deprecated and will be removed in 2.10. \nFor migrations of users: ..."
REDUCE = "Please use quant_min and quant_max to specify the range for observers.    reduce_range will be ..."


def test_known_messages_are_filtered_and_others_are_not(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D.filter_known_deprecations(verbose=False)
        warnings.warn(AO, DeprecationWarning, stacklevel=1)
        warnings.warn(REDUCE, UserWarning, stacklevel=1)
        warnings.warn(
            "torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor creation x",
            stacklevel=1,
        )
        warnings.warn(
            "some_other_api is deprecated", DeprecationWarning, stacklevel=1
        )  # unrelated: must still show
        warnings.warn(REDUCE, DeprecationWarning, stacklevel=1)  # same text, other category: not ours to hide
    assert [(w.category, str(w.message)) for w in caught] == [
        (DeprecationWarning, "some_other_api is deprecated"),
        (DeprecationWarning, REDUCE),
    ]


def test_filtering_is_idempotent_and_prints_once(capsys):
    with warnings.catch_warnings():
        warnings.resetwarnings()
        first = D.filter_known_deprecations(verbose=True)
        n_filters = len(warnings.filters)
        out1 = capsys.readouterr().out
        second = D.filter_known_deprecations(verbose=True)
        assert len(warnings.filters) == n_filters
        assert capsys.readouterr().out == ""
    assert first == second == [k.pattern for k in D.KNOWN_MESSAGES]
    assert "known message(s) by text (all other warnings still show)" in out1
    assert "torch.ao.quantization eager/FX API deprecated" in out1 and "reduce_range" in out1


def test_log_messages_are_filtered_by_text(caplog):
    D.filter_known_deprecations(verbose=False)
    log = logging.getLogger("torch.utils._pytree")
    with caplog.at_level(logging.WARNING):
        log.warning(
            "%s is an Enum subclass and is now natively supported by torch.compile as an opaque", "<enum 'K'>"
        )
        log.warning("an unrelated pytree warning")
    assert [r.getMessage() for r in caplog.records] == ["an unrelated pytree warning"]


def test_show_known_deprecations_shows_the_real_messages(capsys):
    before = list(warnings.filters)
    messages = D.show_known_deprecations()
    out = capsys.readouterr().out
    assert any(m.startswith("DeprecationWarning: torch.ao.quantization is deprecated") for m in messages)
    assert any(m.startswith("UserWarning: Please use quant_min and quant_max") for m in messages)
    assert len(messages) == len(set(messages))
    assert "distinct warning(s)" in out and "torch.ao.quantization is deprecated" in out
    assert warnings.filters == before  # showing does not change the filters


_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("always")
    if sys.argv[1] == "filter":
        from course_utils.deprecations import filter_known_deprecations
        filter_known_deprecations(verbose=False)
    import torch, torchao
    from torch import nn
    from torch.ao import quantization as tq
    from course_utils.models import CourseCNN
    with warnings.catch_warnings(record=True) as caught:
        m = CourseCNN(quant_stubs=True).eval()
        m.qconfig = tq.get_default_qconfig("x86")
        tq.fuse_modules(m, [["features.0", "features.1", "features.2"]], inplace=True)
        p = tq.prepare(m)
        p(torch.randn(4, 1, 16, 16))
        tq.convert(p)
        tq.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), {nn.Linear}, dtype=torch.qint8)
        t = CourseCNN(quant_stubs=True).train()
        t.qconfig = tq.get_default_qat_qconfig("x86")
        tq.prepare_qat(t)
        tq.MinMaxObserver(reduce_range=True)
        torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.quint8)
        warnings.warn("an unrelated API is deprecated", DeprecationWarning)
    for w in caught:
        print(w.category.__name__, str(w.message).splitlines()[0][:60])
    """
)


def _run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=180)


def test_real_torch_warnings_in_a_fresh_process():
    """Control run shows the real torch 2.14 messages; with the filter only the unrelated one remains."""
    control, filtered = _run("none"), _run("filter")
    assert control.returncode == 0 and filtered.returncode == 0, control.stderr + filtered.stderr
    shown = set(control.stdout.splitlines())
    assert any(s.startswith("DeprecationWarning torch.ao.quantization is deprecated and will") for s in shown)
    assert any(s.startswith("UserWarning Please use quant_min and quant_max") for s in shown)
    assert any(
        s.startswith("UserWarning torch.quantize_per_tensor, torch.quantize_per_channel") for s in shown
    )
    assert filtered.stdout.splitlines() == ["DeprecationWarning an unrelated API is deprecated"]
    assert "is an Enum subclass" not in filtered.stderr


def test_return_values_are_lists_with_a_one_line_repr():
    """A lesson cell ending in the call shows one summary line, not every pattern again."""
    patterns = D.filter_known_deprecations(verbose=False)
    assert isinstance(patterns, list) and list(patterns) == [k.pattern for k in D.KNOWN_MESSAGES]
    assert repr(patterns) == f"<{len(D.KNOWN_MESSAGES)} known messages filtered by text>"
    shown = D.show_known_deprecations(verbose=False)
    assert repr(shown) == f"<{len(shown)} distinct warning(s) from one eager prepare + convert>"
