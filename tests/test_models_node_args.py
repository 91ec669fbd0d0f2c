"""The node models take PyTorch Geometric's argument order:
``(in_channels, hidden_channels, num_layers, out_channels)``."""

from __future__ import annotations

import pytest
import torch
import torch_geometric.nn.models as pyg_models

from bingnn.distill.recipe import load_recipe, single_run_config
from bingnn.models import GCN, BinGCN, BinSAGE, GraphSAGE, build_model

PAIRS = [(GraphSAGE, pyg_models.GraphSAGE), (BinSAGE, pyg_models.GraphSAGE),
         (GCN, pyg_models.GCN), (BinGCN, pyg_models.GCN)]


def _graph(n: int = 9, f: int = 7):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, f, generator=g), torch.randint(0, n, (2, 30), generator=g)


@pytest.mark.parametrize("ours,pyg", PAIRS)
def test_positional_call_builds_what_pyg_builds(ours, pyg):
    x, ei = _graph()
    args = (7, 16, 3, 5)  # in, hidden, num_layers, out -- read the same way by both libraries
    a, b = ours(*args).eval(), pyg(*args).eval()
    assert a.num_layers == b.num_layers == 3
    assert a(x, ei).shape == b(x, ei).shape == (9, 5)
    widths = [(c.in_channels if isinstance(c.in_channels, int) else c.in_channels[0],
               c.out_channels) for c in a.convs]
    assert widths == [(7, 16), (16, 16), (16, 5)]
    assert (a.config["num_layers"], a.config["out_channels"]) == (3, 5)


@pytest.mark.parametrize("cls", [GraphSAGE, BinSAGE, GCN, BinGCN])
def test_options_after_out_channels_are_keyword_only(cls):
    with pytest.raises(TypeError):
        cls(7, 16, 2, 5, 0.5)  # dropout passed positionally
    with pytest.raises(TypeError):
        cls(7, 16, 5, num_layers=2)  # the old (in, hidden, out, num_layers=...) call
    m = cls(7, 16, num_layers=2, out_channels=5)
    assert build_model(m.config).config == m.config  # configs rebuild by keyword


@pytest.mark.parametrize("kind", ["sage", "binsage", "gcn", "bingcn"])
def test_recipe_models_use_layers_and_classes(kind):
    recipe = load_recipe("planetoid")
    recipe["model"].update(num_layers=3, hidden_channels=12)
    cfg = single_run_config(recipe, kind)
    m = build_model({**cfg["model"], "in_channels": 7, "out_channels": 4})
    assert m.num_layers == 3 and m.out_channels == 4 and m.hidden_channels == 12
    x, ei = _graph()
    assert m.eval()(x, ei).shape == (9, 4)
