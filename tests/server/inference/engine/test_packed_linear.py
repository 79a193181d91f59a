"""oneDNN-packed linear layers: the same results as `nn.Linear` up to float rounding, only plain
float linears on the CPU are replaced, `auto` refuses layouts whose results differ, and the
engine's greedy output is the same packed or not (on the real generator)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference_server.inference.engine import packed_linear
from reference_server.inference.engine.packed_linear import PackedLinear, pack_linears
from reference_server.inference.loading import LoadedModel, load_model
from tests.server.inference.engine.support import collect, greedy, running

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="this torch build has no oneDNN")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_layer_computes_what_the_linear_does(dtype: torch.dtype, bias: bool) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 160, bias=bias).to(dtype)
    packed = PackedLinear(linear, rows=8)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    with torch.inference_mode():
        for shape in [(1, 96), (5, 96), (1, 7, 96), (2, 3, 96)]:
            x = torch.randn(shape, dtype=dtype)
            expected, got = linear(x), packed(x)
            assert got.shape == expected.shape and got.dtype == dtype
            torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)


class _Other(torch.nn.Module):
    """A layer of another class around a linear's weights, as quantized layers are."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(),
                               torch.nn.Sequential(torch.nn.Linear(8, 8, bias=False), _Other()),
                               torch.nn.Linear(8, 8).double())


def test_on_packs_every_plain_float_linear_and_nothing_else() -> None:
    model = _model()
    x = torch.randn(3, 8)
    with torch.inference_mode():
        before = model[:3](x)
        assert pack_linears(model, "on", rows=4) == 2
        kinds = [type(m).__name__ for m in model.modules()]
        assert kinds.count("PackedLinear") == 2 and kinds.count("Linear") == 1  # float64 stays
        assert isinstance(model[2][1], _Other)
        torch.testing.assert_close(model[:3](x), before, atol=1e-5, rtol=1e-5)
        assert pack_linears(model, "on", rows=4) == 0  # nothing left to pack


def test_off_packs_nothing() -> None:
    model = _model()
    assert pack_linears(model, "off", rows=4) == 0
    assert not any(isinstance(m, PackedLinear) for m in model.modules())


def test_auto_leaves_layers_unpacked_when_packed_results_differ(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = _model()
    real = PackedLinear.forward
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: real(self, x) + 1.0)
    with caplog.at_level("INFO", logger="reference_server"):
        assert pack_linears(model, "auto", rows=4) == 0
    assert not any(isinstance(m, PackedLinear) for m in model.modules())
    assert "different from the plain ones" in caplog.text


def test_auto_measures_a_gain_on_agreeing_layers() -> None:
    gain = packed_linear._measured_gain([torch.nn.Linear(256, 512) for _ in range(4)], rows=4)
    assert gain is not None and gain > 0


@pytest.fixture(scope="module")
def fresh_generator(generator: LoadedModel, cache_dir: Path) -> LoadedModel:
    """A second copy of the generator, never packed until the test packs it."""
    spec = generator.spec.model_copy()
    return load_model(spec, cache_dir=cache_dir, device=generator.device)


@pytest.mark.slow  # loads a second copy of the generator and packs it: 12 s of `make test-fast`
async def test_greedy_output_is_the_same_packed_or_not(
    fresh_generator: LoadedModel, prompts: list[list[int]]
) -> None:
    async with running(fresh_generator, packed_weights="off") as engine:
        assert not any(isinstance(m, PackedLinear) for m in fresh_generator.model.modules())
        plain = [await collect(engine.submit(p, greedy(32))) for p in prompts]
    async with running(fresh_generator, packed_weights="on") as engine:
        assert any(isinstance(m, PackedLinear) for m in fresh_generator.model.modules())
        packed = [await collect(engine.submit(p, greedy(32))) for p in prompts]
    assert [r.token_ids for r in packed] == [r.token_ids for r in plain]
    assert [r.text for r in packed] == [r.text for r in plain]
