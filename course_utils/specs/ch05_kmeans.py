"""Exercise specs for chapter 5 — k-means weight sharing (Deep Compression, Han et al. 2016).

5.8 ``kmeans_quantize``: a 2^b-centroid codebook per layer, compared with scikit-learn's
``KMeans`` from the same initial centroids. 5.9 ``finetune_centroids``: one SGD step with the
per-cluster summed gradient, compared with autograd through ``codebook[indices]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..exercise import Exercise, assert_same

# --- 5.8 kmeans_quantize ------------------------------------------------------------------------

_KM_CASES = [(2, (600,)), (3, (16, 3, 3, 3)), (4, (40, 50)), (3, (1000,)), (2, (8, 8, 3, 3))]


def _km_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    bits, shape = _KM_CASES[seed % len(_KM_CASES)]
    u = torch.rand(shape, generator=g, dtype=torch.float64) * 0.998 + 0.001
    w = (
        torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs()) * -0.05
    ).float()  # Laplace, like trained weights
    k = 2**bits
    init = torch.quantile(w.flatten().double(), torch.linspace(0.02, 0.98, k, dtype=torch.float64)).float()
    return {"w": w, "bits": bits, "init": init}


def _km_edges() -> list[dict]:
    w = torch.tensor([0.5, -0.5, 0.1, 0.1, 0.1, -0.2, 0.3, 0.3, -0.4, 0.02])  # repeated values, no ties
    return [{"w": w, "bits": 2, "init": torch.tensor([-0.45, -0.1, 0.1, 0.4])}]


def _km_run(fn, inputs: dict) -> Any:
    out = fn(inputs["w"].clone(), inputs["bits"], inputs["init"].clone())
    if isinstance(out, dict):
        out = {str(k): (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    return out


def _lloyd_sklearn(w: torch.Tensor, init: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.cluster import KMeans

    data = w.detach().double().reshape(-1, 1).numpy()
    km = KMeans(len(init), init=init.double().reshape(-1, 1).numpy(), n_init=1, max_iter=300, tol=0.0)
    km.fit(data)
    return torch.from_numpy(km.cluster_centers_[:, 0]).float(), torch.from_numpy(km.labels_).long()


def _km_reference(inputs: dict) -> dict:
    w, bits = inputs["w"], inputs["bits"]
    codebook, labels = _lloyd_sklearn(w, inputs["init"])
    return {
        "codebook": codebook,
        "indices": labels.reshape(w.shape).to(torch.uint8),
        "storage_bits": w.numel() * bits + 32 * 2**bits,
    }


def _km_compare(got: Any, expected: dict, inputs: dict) -> None:
    keys = ["codebook", "indices", "storage_bits"]
    if not isinstance(got, dict) or set(got) != set(keys):
        have = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"return a dict with keys {keys}; got {have}.")
    w, bits = inputs["w"], inputs["bits"]
    k = 2**bits
    cb, idx = got["codebook"], got["indices"]
    if not isinstance(cb, torch.Tensor) or tuple(cb.shape) != (k,):
        raise AssertionError(f"codebook: expected {k} = 2^{bits} centroids (a tensor of shape ({k},)).")
    if not isinstance(idx, torch.Tensor) or idx.shape != w.shape or idx.is_floating_point():
        raise AssertionError(f"indices: expected an integer tensor of w's shape {tuple(w.shape)}.")
    if idx.dtype != torch.uint8:
        raise AssertionError(f"indices: store them as torch.uint8 (at most 8 bits each), got {idx.dtype}.")
    n_bits = expected["storage_bits"]
    if got["storage_bits"] != n_bits:
        raise AssertionError(
            f"storage_bits: got {got['storage_bits']!r}, expected {n_bits} = {w.numel()} indices × {bits} bits "
            f"+ {k} fp32 centroids × 32 bits."
        )
    exp_cb = expected["codebook"]
    if not torch.allclose(cb.float(), exp_cb, rtol=1e-4, atol=1e-6):
        moved = (
            ""
            if not torch.allclose(cb.float(), inputs["init"])
            else " (it equals init: no Lloyd iteration ran)"
        )
        raise AssertionError(
            f"codebook: {[round(v, 5) for v in cb.tolist()]} but KMeans from the same init converges to "
            f"{[round(v, 5) for v in exp_cb.tolist()]}{moved}. Alternate assignment (nearest centroid) and "
            "update (mean of its weights) until no assignment changes."
        )
    flat, gi, ei = w.flatten(), idx.flatten().long(), expected["indices"].flatten().long()
    differ = gi != ei
    if bool(differ.any()):
        d_got = (flat[differ] - exp_cb[gi[differ].clamp(0, k - 1)]).abs()
        d_exp = (flat[differ] - exp_cb[ei[differ]]).abs()
        if not bool(torch.allclose(d_got, d_exp, atol=1e-6)):
            i = int(differ.nonzero()[0])
            raise AssertionError(
                f"indices: weight {flat[i].item():.5f} (flat index {i}) is assigned to centroid {int(gi[i])} "
                f"but its nearest centroid is {int(ei[i])} ({exp_cb[ei[i]].item():.5f})."
            )


# --- 5.9 finetune_centroids ----------------------------------------------------------------------


def _ft_case(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    k = 2 ** (2 + seed % 3)
    shape = [(6, 5), (4, 3, 3, 3), (50,)][seed % 3]
    indices = torch.randint(0, k, shape, generator=g).to(torch.uint8)
    indices.view(-1)[0] = k - 1
    if seed % 2:
        indices[indices == 1] = 2  # centroid 1 shares no weight: its gradient is 0
    return {
        "codebook": torch.linspace(-0.3, 0.3, k),
        "indices": indices,
        "grad_w": torch.randn(shape, generator=g),
        "lr": [0.1, 0.01, 0.5][seed % 3],
    }


def _ft_edge_cases() -> list[dict]:
    """Every weight in one cluster (the others must not move), and a single weight."""
    g = torch.Generator().manual_seed(7)
    return [
        {
            "codebook": torch.linspace(-0.3, 0.3, 8),
            "indices": torch.full((5, 4), 3, dtype=torch.uint8),
            "grad_w": torch.randn((5, 4), generator=g),
            "lr": 0.1,
        },
        {
            "codebook": torch.linspace(-0.3, 0.3, 4),
            "indices": torch.tensor([2], dtype=torch.uint8),
            "grad_w": torch.tensor([0.7]),
            "lr": 0.5,
        },
    ]


def _ft_run(fn, inputs: dict) -> Any:
    out = fn(inputs["codebook"].clone(), inputs["indices"].clone(), inputs["grad_w"].clone(), inputs["lr"])
    return out.detach() if isinstance(out, torch.Tensor) else out


def _ft_reference(inputs: dict) -> torch.Tensor:
    codebook = inputs["codebook"].clone().requires_grad_(True)
    opt = torch.optim.SGD([codebook], lr=inputs["lr"])
    w = codebook[inputs["indices"].long()]  # every weight is a copy of its centroid
    (w * inputs["grad_w"]).sum().backward()  # dL/dw = grad_w, so dL/dc_k = Σ_{i in cluster k} grad_w[i]
    opt.step()
    return codebook.detach()


def _ft_compare(got: Any, expected: torch.Tensor, inputs: dict) -> None:
    if (
        isinstance(got, torch.Tensor)
        and got.shape == expected.shape
        and not torch.allclose(got, expected, atol=1e-5)
    ):
        idx, grad, k = inputs["indices"].flatten().long(), inputs["grad_w"].flatten(), expected.numel()
        counts = torch.bincount(idx, minlength=k).clamp(min=1)
        mean_step = inputs["codebook"] - inputs["lr"] * torch.zeros(k).index_add_(0, idx, grad) / counts
        if torch.allclose(got, mean_step, atol=1e-5):
            raise AssertionError(
                "you averaged the gradients of each cluster; Deep Compression *sums* them "
                "(the centroid is shared by every weight of its cluster, so each contributes its gradient)."
            )
    assert_same(got, expected, inputs, path="codebook after one SGD step", atol=1e-5, rtol=1e-5)


EXERCISES = [
    Exercise(
        id="5.8",
        title="kmeans_quantize(w, bits, init): 2^b shared weights",
        target="kmeans_quantize",
        points=3,
        make_case=_km_case,
        run=_km_run,
        reference=_km_reference,
        compare=_km_compare,
        edge_cases=_km_edges,
        public_seeds=(0, 1, 2),
        hint="repeat: idx = (w.reshape(-1, 1) - codebook).abs().argmin(1); new centroid k = mean of "
        "w[idx == k] (keep it if the cluster is empty); stop when idx stops changing.",
    ),
    Exercise(
        id="5.9",
        title="finetune_centroids(codebook, indices, grad_w, lr)",
        target="finetune_centroids",
        points=2,
        make_case=_ft_case,
        run=_ft_run,
        reference=_ft_reference,
        compare=_ft_compare,
        public_seeds=(0, 1, 2),
        hidden_seeds=(3, 4, 1000, 1001),
        edge_cases=_ft_edge_cases,
        hint="grad_c = torch.zeros_like(codebook).index_add_(0, indices.flatten().long(), grad_w.flatten()); "
        "return codebook - lr * grad_c.",
    ),
]
