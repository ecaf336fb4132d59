"""Device handling without a GPU: the metrics build their helper tensors on the input's device,
the bicubic lift's FFT symbol is built once per (n, scale, kind, device), and RWAE sampling
draws on CPU generators whatever the model's device (the same ensemble for a seed everywhere).

``with torch.device("meta")`` makes every tensor created without an explicit device a meta
tensor: a metric that builds a helper tensor without ``device=`` then meets a CPU input on
another device, as it would meet a CUDA input with CPU helpers."""

from __future__ import annotations

import pytest
import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.model import RWAE, create_model, standard_normal
from paperzoo.advdiffsr.operators import _lift_symbol, lift_bicubic
from paperzoo.advdiffsr.simulator import cellular_velocity


def _ensemble(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 3, 16, 16, generator=g, dtype=dtype)
    y = torch.randn(2, 3, 16, 16, generator=g, dtype=dtype)
    x[0, 0, 0, 0, :4] = y[0, 0, 0, :4]  # ties: the rank histogram's random tie-break runs
    return x, y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_metrics_make_their_helper_tensors_on_the_input_device(dtype):
    x, y = _ensemble(dtype)
    metrics = {
        "radial_spectrum": lambda: M.radial_spectrum(y),
        "high_k": lambda: M.high_k_energy_ratio(x[0], y, 4),
        "crps_fair": lambda: M.crps_fair(x, y),
        "coverage": lambda: M.coverage(x, y, 0.5),
        "rank_histogram": lambda: M.rank_histogram(x, y),
        "spread_skill": lambda: M.spread_skill(x, y, max_points=300),
    }
    expected = {name: f() for name, f in metrics.items()}
    assert expected["radial_spectrum"].dtype == torch.float64
    with torch.device("meta"):  # helpers made without device= would land here
        for name, f in metrics.items():
            got = f()
            if isinstance(got, torch.Tensor):
                assert got.device.type == "cpu" and torch.equal(got, expected[name]), name
            else:
                assert got == expected[name], name


def test_lift_symbol_is_cached_and_serves_autograd_after_inference_mode():
    g = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _lift_symbol.cache_clear()
    with torch.inference_mode():  # the first build under inference mode (as in sampling)
        first = lift_bicubic(g, 4)
    assert _lift_symbol.cache_info().misses == 1
    leaf = g.clone().requires_grad_(True)
    again = lift_bicubic(leaf, 4)  # the cached symbol is saved for backward: no inference tensor
    again.sum().backward()
    assert _lift_symbol.cache_info().hits == 1 and torch.equal(again.detach(), first)
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    lift_bicubic(g.float(), 4)  # another dtype: the same symbol (built in float64)
    lift_bicubic(g, 3, "point_sample")  # another scale and kind: a new one
    assert _lift_symbol.cache_info().misses == 2


def test_standard_normal_draws_on_the_generator_device_and_moves():
    like = torch.empty(0, dtype=torch.float64, device="meta")
    noise = standard_normal((3, 4), torch.Generator().manual_seed(2), like)
    assert noise.device.type == "meta" and noise.dtype == torch.float64
    rows = standard_normal((2, 4), [torch.Generator().manual_seed(k) for k in (3, 4)], like)
    assert rows.device.type == "meta" and rows.shape == (2, 4)
    cpu = standard_normal((3, 4), torch.Generator().manual_seed(2), torch.empty(0).double())
    drawn = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(cpu, drawn)


def test_rwae_sampling_draws_on_cpu_generators_on_any_device(monkeypatch):
    """``sample_ensemble``, ``super_resolve`` draw from CPU generators even for a model on another
    device (here ``meta``; before, a generator of the model's device: CUDA draws on a GPU)."""
    from paperzoo.advdiffsr.data import LRSequences
    from paperzoo.advdiffsr.pipeline import super_resolve
    from paperzoo.advdiffsr.uncertainty import sample_ensemble

    seen = []

    def forward(self, lr, u, mask=None, mode="posterior", generator=None, projection=None):
        gens = [generator] if isinstance(generator, torch.Generator) else list(generator)
        seen.extend(g.device.type for g in gens)
        c = torch.zeros(lr.shape[0], lr.shape[1], lr.shape[2] * 4, lr.shape[3] * 4)
        return c, None, None

    monkeypatch.setattr(RWAE, "forward", forward)
    model = create_model("rwae_tiny")
    lr = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    data = LRSequences(lr, 0.5 * cellular_velocity(16)[None].float(), 0.01, 0.1, 4)
    assert sample_ensemble(model, data, samples=2, device="meta").shape == (2, 2, 3, 16, 16)
    assert super_resolve(model, data, device="meta").shape == (2, 3, 16, 16)
    assert seen and set(seen) == {"cpu"}
