"""RF with real-valued residual connections (``BinDGCNN(variant="rf", residual=True)``): the
model adds each EdgeConv's input to its output after the first layer, and the engine's program
(``real_edge_conv`` then ``shortcut_add``) computes the same values, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bingnn.distill.recipe import load_recipe, stage_config
from bingnn.engine import EngineModel
from bingnn.export import fold
from bingnn.models import BinDGCNN
from tests.test_engine_parity import make_model, perturb, points_for


def _layers(model: BinDGCNN, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per layer: its input, its graph and its own output (before the residual)."""
    out = []
    with torch.no_grad():
        h = torch.from_numpy(x)
        for li, conv in enumerate(model.convs):
            r, idx = conv(h, return_graph=True)
            out.append((h.numpy(), idx.numpy(), r.numpy()))
            h = r + h.repeat(1, 1, r.shape[-1] // h.shape[-1]) if li else r
    return out


@pytest.mark.parametrize("native", [True, False])
def test_rf_residual_parity(native: bool) -> None:
    model = perturb(make_model("rf", seed=51, residual=True), 51)
    desc, arrays = fold(model)
    ops = [layer["op"] for layer in desc["layers"]]
    assert ops.count("real_edge_conv") == 3 and ops.count("shortcut_add") == 3
    em = EngineModel(desc, arrays, native=native)
    x = points_for("rf", 3, 40, seed=52)
    for li, (inp, idx, r) in enumerate(_layers(model, x)):
        if li == 0:
            continue
        (got_idx,) = em.run_layer(f"knn{li}", inp)
        np.testing.assert_array_equal(got_idx, idx, err_msg=f"idx{li}")
        (got_r,) = em.run_layer(f"layer{li}", inp, idx.astype(np.int32))
        np.testing.assert_array_equal(got_r, r, err_msg=f"r{li}")  # exact, as without residual
        (got_x,) = em.run_layer(f"add{li}", got_r, inp)
        np.testing.assert_array_equal(got_x, r + np.tile(inp, (1, 1, r.shape[-1] // inp.shape[-1])))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = em.logits(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_residual_changes_the_model() -> None:
    """Same weights without the residual give other logits (the parity above could not pass by
    ignoring it), and the model's forward is the layers plus their inputs."""
    model = perturb(make_model("rf", seed=53, residual=True), 53)
    plain = perturb(make_model("rf", seed=53), 53)
    plain.load_state_dict(model.state_dict())
    x = torch.from_numpy(points_for("rf", 2, 40, seed=54))
    with torch.no_grad():
        assert not torch.allclose(model(x), plain(x))
        _, graphs = model(x, return_graphs=True)
    layers = _layers(model, x.numpy())
    for li in range(1, 4):  # each layer's graph is built on the previous residual sum
        inp = layers[li][0]
        np.testing.assert_array_equal(graphs[li][0].numpy(), inp)
    assert model.config["residual"] is True and "residual" not in plain.config


def test_residual_options_are_checked() -> None:
    with pytest.raises(ValueError, match="residual applies to the RF variant"):
        BinDGCNN(num_classes=3, variant="bf2", residual=True)
    with pytest.raises(ValueError, match="residual needs every width"):
        BinDGCNN(num_classes=3, variant="rf", knn="l2", widths=(16, 24), residual=True)


def test_recipe_residual_reaches_rf_only(tmp_path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('base = "quick"\nvariants = ["bf2-hamming", "rf"]\n[model]\nresidual = true\n')
    r = load_recipe(p)
    assert stage_config(r, 1, "rf")["model"]["residual"] is True
    assert "residual" not in stage_config(r, 1, "bf2-hamming")["model"]
    assert "residual" not in stage_config(load_recipe("quick"), 1, "rf")["model"]
