"""Reading format 1 model files: their flat ``BinDGCNN`` description becomes the layered one.

Format 1 (bingnn's first engine) described one architecture by its hyper-parameters
(``arch``, ``variant``, ``k``, ``widths``, ``emb_dims``, ``mlp``, ``num_classes``) and named
its arrays after the DGCNN's modules. The conversion checks those fields strictly, builds the
same layers the exporter writes today (:func:`bingnn.engine.programs.bindgcnn_layers`) and
renames the few arrays whose layer changed name. Format 1 recorded no training point count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bingnn.engine.errors import ModelFileError
from bingnn.engine.programs import bindgcnn_layers

__all__ = ["V1_RENAMES", "convert_v1", "point_model_description"]

VARIANTS = ("rf", "bf1", "bf2")

#: format 1 array name -> format 2 array name (all other names are unchanged).
V1_RENAMES = {
    "embed.alpha": "pool.alpha",
    "embed.slope": "pool.slope",
    "embed.bn_scale": "pool.bn_scale",
    "embed.bn_shift": "pool.bn_shift",
    "embed.p_lo": "embed_sign.lo",
    "embed.p_hi": "embed_sign.hi",
    "embed.p_negate": "embed_sign.negate",
    "fc1.p_lo": "fc1_sign.lo",
    "fc1.p_hi": "fc1_sign.hi",
    "fc1.p_negate": "fc1_sign.negate",
    "fc2.p_lo": "fc2_sign.lo",
    "fc2.p_hi": "fc2_sign.hi",
    "fc2.p_negate": "fc2_sign.negate",
    "fc2.alpha": "fc2_act.t0_alpha",
    "fc2.slope": "fc2_act.slope",
}


def point_model_description(variant: str, k: int, widths: list[int], emb_dims: int,
                            mlp: list[int], num_classes: int, class_names: list[str] | None,
                            num_points: int | None, source_config: dict[str, Any],
                            shortcut: bool = False, residual: bool = False
                            ) -> dict[str, Any]:
    """The format 2 description of a stage-3 ``BinDGCNN``."""
    return {
        "task": "point_cloud_classification",
        "arch": "bindgcnn",
        "variant": variant,
        "num_classes": int(num_classes),
        "class_names": class_names,
        "input": {"channels": 3, "num_points": num_points},
        "layers": bindgcnn_layers(variant, int(k), [int(w) for w in widths], int(emb_dims),
                                  [int(m) for m in mlp], int(num_classes), shortcut,
                                  residual),
        "output": "logits",
        "source_config": source_config,
    }


def convert_v1(model: dict[str, Any], arrays: dict[str, np.ndarray], where: str
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(description, arrays)`` in format 2 for a format 1 file's content."""

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{where}: invalid model description: {msg}")

    def pos_int(v: Any, limit: int = 1 << 24) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit

    if model.get("arch") != "bindgcnn":
        raise bad(f"arch must be 'bindgcnn', got {model.get('arch')!r}")
    if model.get("variant") not in VARIANTS:
        raise bad(f"variant must be one of {', '.join(VARIANTS)}, got {model.get('variant')!r}")
    for key in ("k", "num_classes", "emb_dims"):
        if not pos_int(model.get(key)):
            raise bad(f"{key} must be a positive integer, got {model.get(key)!r}")
    for key, n in (("widths", None), ("mlp", 2)):
        v = model.get(key)
        if (not isinstance(v, list) or not v or len(v) > 64 or (n is not None and len(v) != n)
                or not all(pos_int(i) for i in v)):
            raise bad(f"{key} must be a list of positive integers, got {v!r}")
    names = model.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != model["num_classes"]
                              or not all(isinstance(s, str) for s in names)):
        raise bad(f"class_names must list {model['num_classes']} strings")
    source = model.get("source_config")
    desc = point_model_description(
        model["variant"], model["k"], model["widths"], model["emb_dims"], model["mlp"],
        model["num_classes"], names, None, source if isinstance(source, dict) else {})
    desc["converted_from"] = "1"
    renamed = {V1_RENAMES.get(name, name): a for name, a in arrays.items()}
    return desc, renamed
