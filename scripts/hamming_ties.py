"""How many of a binary DGCNN's Hamming k-NN neighbours are decided by the tie rule.

On b-bit features the Hamming distance takes only b + 1 values, so many candidates often sit
at a point's k-th distance; bingnn (and its engine) then keeps the smaller point indices. This
script measures, for every layer whose graph is built on bits, the share of points whose last
places are decided that way, how many candidates tie there and how many places they fill, on
training or validation clouds (never the test set).

    python scripts/hamming_ties.py MODEL [--data-dir DIR] [--split val] [--clouds 64]

MODEL is a registered pretrained name (``modelnet10-bf2``) or a ``best.pt`` of a BF
stage-2/3 run on ModelNet10. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def _model(spec: str) -> tuple[torch.nn.Module, int]:
    if Path(spec).is_file():
        from bingnn.train.model_files import load_model_file

        model, ck = load_model_file(spec)
        points = ck.get("config", {}).get("data", {}).get("num_points")
    else:
        from bingnn.models import pretrained, pretrained_info

        model, points = pretrained(spec), pretrained_info(spec)["num_points"]
    return model.eval(), int(points or 512)


def tie_rows(model: torch.nn.Module, clouds: torch.Tensor) -> list[dict[str, float]]:
    """One row per layer after the first: bits, share of points whose k-th place is decided
    by index, mean tied candidates at the k-th distance and the places left for them, mean
    neighbours chosen by index, mean distinct bit rows per cloud. Checks every graph against
    the distances (the k nearest, ties to the smaller index)."""
    k = model.config["k"]
    with torch.no_grad():
        _, graphs = model(clouds, return_graphs=True)
    rows = []
    for layer, (x, idx) in enumerate(graphs):
        if layer == 0:
            continue  # built on xyz
        s = torch.where(x > 0, 1.0, -1.0).double()
        if not torch.equal(s, x.double()):
            raise ValueError(f"layer {layer}: the graph is not built on +-1 features")
        c = s.shape[-1]
        d = (c - torch.einsum("bnc,bmc->bnm", s, s)) / 2  # Hamming distances, self included
        dk = d.sort(dim=-1).values[..., k - 1 : k]
        below, at = (d < dk).sum(-1), (d == dk).sum(-1)
        places = k - below
        chosen = torch.gather(d, 2, idx)
        n = d.shape[-1]
        expect = torch.where(d < dk, 0, torch.where(d == dk, 1, 2)) * n + torch.arange(n)
        want = expect.sort(dim=-1).values[..., :k] % n
        if not (torch.equal(idx.sort(-1).values, want.sort(-1).values)
                and bool((chosen <= dk).all())):
            raise AssertionError(f"layer {layer}: the model's graph is not the k nearest "
                                 "with ties to the smaller index")
        broken = at > places
        rows.append({
            "layer": layer, "bits": c,
            "points_by_index": 100 * float(broken.double().mean()),
            "tied": float(at[broken].double().mean()) if broken.any() else 0.0,
            "places": float(places[broken].double().mean()) if broken.any() else 0.0,
            "neighbours_by_index": float((places * broken).double().mean()),
            "distinct_rows": sum(torch.unique(b, dim=0).shape[0] for b in s) / len(s),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data-dir", default="../shared/data/modelnet10")
    ap.add_argument("--split", choices=("train", "val"), default="val")
    ap.add_argument("--clouds", type=int, default=64)
    a = ap.parse_args()
    from bingnn.data import get_dataset

    torch.set_num_threads(1)
    model, points = _model(a.model)
    ds = get_dataset("modelnet10", a.split, num_points=points, root=a.data_dir, augment=False)
    n = min(a.clouds, len(ds))
    clouds = torch.stack([torch.as_tensor(ds[i][0]) for i in range(n)]).float()
    k = model.config["k"]
    print(f"{a.model}: {n} {a.split} clouds of {points} points, k = {k}")
    # Whether "smaller index first" favours some region: consecutive points of a cloud are as
    # far apart as random pairs when the point order carries no spatial structure.
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(points, generator=g)
    consecutive = (clouds[:, 1:] - clouds[:, :-1]).norm(dim=-1).mean()
    shuffled = (clouds[:, perm[1:]] - clouds[:, perm[:-1]]).norm(dim=-1).mean()
    print(f"mean distance of consecutive points / of random pairs: {consecutive:.3f} / "
          f"{shuffled:.3f}\n")
    print("| layer | bits | points whose last places go by index | candidates tied there "
          "(places) | neighbours chosen by index, mean per point | distinct bit rows |")
    print("|---|---|---|---|---|---|")
    for r in tie_rows(model, clouds):
        print(f"| {r['layer']} | {r['bits']} | {r['points_by_index']:.1f}% | "
              f"{r['tied']:.1f} ({r['places']:.1f}) | {r['neighbours_by_index']:.1f} of {k} | "
              f"{r['distinct_rows']:.0f} of {points} |")


if __name__ == "__main__":
    main()
