"""course_utils.amp: device choice, autocast rules, the AMP step, CPU flags and float formats."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import amp

CPUINFO_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2
"""
CPUINFO_OLD = "processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse sse2 avx avx2 fma\n"


def test_cpu_features_parses_flags() -> None:
    new = amp.cpu_features(CPUINFO_AMX)
    assert new.model_name == "Intel(R) Xeon(R) Platinum 8480+"
    assert new.flags["amx_bf16"] and new.flags["avx512_bf16"] and new.native_bf16
    assert "has native bf16" in str(new)
    old = amp.cpu_features(CPUINFO_OLD)
    assert old.flags["avx2"] and not old.flags["avx512f"] and not old.native_bf16
    assert "no native bf16" in str(old) and "slower" in str(old)


def test_cpu_features_without_cpuinfo(tmp_path) -> None:
    f = amp.cpu_features(tmp_path / "missing")
    assert f.model_name == "unknown" and not any(f.flags.values())
    assert f.torch_capability  # PyTorch still reports its ISA level


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_float_format_is_consistent_with_finfo(dtype: torch.dtype) -> None:
    f = amp.float_format(dtype)
    fi = torch.finfo(dtype)
    assert f.bits == fi.bits == 1 + f.exponent_bits + f.mantissa_bits
    assert f.eps == 2.0**-f.mantissa_bits == fi.eps
    bias = 2 ** (f.exponent_bits - 1) - 1
    assert f.max == pytest.approx((2 - f.eps) * 2.0**bias)
    assert f.smallest_normal == 2.0 ** (1 - bias)
    assert f.smallest_subnormal == 2.0 ** (1 - bias - f.mantissa_bits)


def test_float_format_rejects_integers() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        amp.float_format(torch.int8)


def test_format_table_lists_the_three_formats() -> None:
    table = amp.format_table()
    for name in ("float32", "float16", "bfloat16"):
        assert name in table
    assert "6.55e+04" in table  # fp16 max, read from finfo


@pytest.mark.parametrize("dtype,mantissa", [(torch.float16, 10), (torch.bfloat16, 7)])
def test_representable_values_enumerates_exactly(dtype: torch.dtype, mantissa: int) -> None:
    v = amp.representable_values(dtype, 1.0, 2.0)
    assert len(v) == 2**mantissa + 1  # one binade plus its upper end
    assert torch.equal(v.to(dtype).float(), v)  # every value round-trips: it is representable
    assert (v.diff() > 0).all()
    step = v.diff()
    assert torch.allclose(step, torch.full_like(step, 2.0**-mantissa))


def test_representable_values_bad_input() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        amp.representable_values(torch.float32, 0, 1)
    with pytest.raises(ValueError, match="lo < hi"):
        amp.representable_values(torch.float16, 2, 1)


def test_autocast_dtypes_observes_cpu_rules() -> None:
    lin = nn.Linear(4, 4)
    got = amp.autocast_dtypes(
        {
            "linear": lin,
            "softmax": lambda t: t.softmax(1),
            "ce": lambda t: F.cross_entropy(lin(t), torch.zeros(4).long()),
        },
        torch.randn(4, 4),
    )
    assert got == {"linear": torch.bfloat16, "softmax": torch.float32, "ce": torch.float32}


def test_pick_amp_config_cpu_and_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = amp.pick_amp_config()
    assert (cfg.device_type, cfg.dtype, cfg.use_scaler) == ("cpu", torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    cfg = amp.pick_amp_config()
    assert (cfg.device_type, cfg.dtype, cfg.use_scaler) == ("cuda", torch.float16, True)
    assert "GradScaler on" in str(cfg)
    assert amp.pick_amp_config(prefer_cuda=False).device_type == "cpu"


def test_make_grad_scaler_enabled_only_for_fp16() -> None:
    assert not amp.make_grad_scaler(amp.AmpConfig("cpu", torch.bfloat16)).is_enabled()
    assert amp.make_grad_scaler(amp.AmpConfig("cpu", torch.float16)).is_enabled()
    assert amp.make_grad_scaler(amp.AmpConfig("cpu", torch.bfloat16), enabled=True).is_enabled()


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def test_mixed_precision_step_skips_overflow_and_matches_manual_recipe() -> None:
    x, y = torch.randn(16, 8) * 50, torch.randint(3, (16,))
    net = _net()
    ref = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    ref_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    before = [p.detach().clone() for p in net.parameters()]
    loss = amp.mixed_precision_step(net, opt, scaler, x, y, max_norm=1.0)
    assert all(torch.equal(b, p) for b, p in zip(before, net.parameters())), "overflow step must be skipped"
    assert scaler.get_scale() == 2.0**126
    assert isinstance(loss, float) and loss > 0
    for _ in range(3):
        amp.mixed_precision_step(net, opt, scaler, x, y, max_norm=1.0)
    for _ in range(4):
        ref_opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_loss = F.cross_entropy(ref(x), y)
        ref_scaler.scale(ref_loss).backward()
        ref_scaler.unscale_(ref_opt)
        nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        ref_scaler.step(ref_opt)
        ref_scaler.update()
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    assert scaler.get_scale() == ref_scaler.get_scale()


def test_mixed_precision_step_disabled_is_float32() -> None:
    net = _net()
    seen = []
    net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    amp.mixed_precision_step(net, opt, scaler, torch.randn(4, 8), torch.zeros(4).long(), enabled=False)
    amp.mixed_precision_step(net, opt, scaler, torch.randn(4, 8), torch.zeros(4).long())
    assert seen == [torch.float32, torch.bfloat16]


def test_autocast_module_runs_low_precision_returns_float32() -> None:
    net = _net().eval()
    x = torch.randn(5, 8)
    wrapped = amp.AutocastModule(net)
    out = wrapped(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, net(x), rtol=0.05, atol=0.05)
    assert not torch.equal(out, net(x)), "bf16 rounding must show: autocast was not applied"


def test_apex_map_covers_opt_levels_and_uses_todays_api() -> None:
    assert {"O0", "O1", "O2", "O3"} <= set(amp.APEX_TO_TORCH)
    text = " ".join(amp.APEX_TO_TORCH.values())
    assert "torch.autocast" in text and "GradScaler" in text
    assert "torch.cuda.amp" not in text


def test_threads_restores() -> None:
    n = torch.get_num_threads()
    with amp.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n
