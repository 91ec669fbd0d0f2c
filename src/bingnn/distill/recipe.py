"""Cascaded-distillation recipes: TOML files, validated and resolved per stage.

A recipe names the data, the model sizes, the loss weights, the variants to distil and, for
stage 0 (the float teacher) and stages 1-3 (the binary students), the optimiser settings. Two
are shipped as package data: ``quick`` (synthetic shapes, minutes on a CPU) and ``paper`` (the
paper's hyper-parameters on ModelNet40).

A user recipe file is merged key by key over a built-in one, ``base = "quick"`` unless the file
says otherwise (``base = "paper"``), so it only needs the keys it changes::

    base = "paper"
    variants = ["rf"]
    [stage3]
    epochs = 100

Unknown keys or wrong types raise :class:`RecipeError` naming the key.

Variants are written ``"<variant>-<knn>"``: ``"bf2-hamming"``, ``"bf1-l2"``, ``"rf"`` (RF keeps
real features: always L2), ``"bf2_bal-hamming"``; a BF variant without a metric uses Hamming.
LSP kernel ``"auto"`` means Hamming for a Hamming-k-NN variant and L2 otherwise.

``recalibrate_bn = true`` in a stage recomputes BatchNorm running statistics over the
un-augmented training set after every epoch, before evaluation
(:mod:`bingnn.train.bn_recalibration`).
"""

from __future__ import annotations

import copy
import math
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

__all__ = [
    "BUILTIN_RECIPES",
    "RecipeError",
    "apply_overrides",
    "load_recipe",
    "parse_variant",
    "stage_config",
]

BUILTIN_RECIPES = ("quick", "paper")
FORMAT_VERSION = 1


class RecipeError(ValueError):
    """A recipe file is missing, unreadable, or has unknown keys or bad values."""


_NUM = (int, float)
_TRAIN_KEYS: dict[str, Any] = {
    "optimizer": str,
    "lr": _NUM,
    "weight_decay": _NUM,
    "epochs": int,
    "batch_size": int,
    "test_batch_size": int,
    "schedule": dict,
    "recalibrate_bn": bool,
}
_LOSS_KEYS: dict[str, Any] = {
    "alpha": _NUM,
    "lsp_weight": _NUM,
    "temperature": _NUM,
    "label_smoothing": _NUM,
}
_STUDENT_KEYS = {**_TRAIN_KEYS, **_LOSS_KEYS, "kernel_s": str, "kernel_t": str}
SCHEMA: dict[str, Any] = {
    "format_version": int,
    "name": str,
    "description": str,
    "seed": int,
    "base": str,
    "variants": list,
    "data": {
        "dataset": str,
        "num_points": int,
        "train_samples": int,
        "test_samples": int,
        "root": str,
        "download": bool,
        "augment": bool,
    },
    "model": {
        "k": int,
        "widths": list,
        "emb_dims": int,
        "mlp": list,
        "dropout": _NUM,
        "balance": str,
        "prelu": bool,
        "last_layer_binary": bool,
    },
    "loss": dict(_LOSS_KEYS),
    "stage0": {**_TRAIN_KEYS, "teacher": str},
    "stage1": dict(_STUDENT_KEYS),
    "stage2": dict(_STUDENT_KEYS),
    "stage3": dict(_STUDENT_KEYS),
}
_REQUIRED = {
    "data": ("dataset", "num_points"),
    "stage0": ("epochs", "lr", "batch_size"),
    "stage1": ("epochs", "lr", "batch_size"),
    "stage2": ("epochs", "lr", "batch_size"),
    "stage3": ("epochs", "lr", "batch_size"),
}


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return "a number"
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}
    return names.get(t, str(t))


def _validate(node: dict[str, Any], schema: dict[str, Any], where: str, source: str) -> None:
    for key, value in node.items():
        path = f"{where}{key}"
        if key not in schema:
            raise RecipeError(
                f"{source}: unknown recipe key {path!r}; known keys here: {', '.join(schema)}"
            )
        want = schema[key]
        if isinstance(want, dict):
            if not isinstance(value, dict):
                raise RecipeError(f"{source}: {path!r} must be a table ([{path}])")
            _validate(value, want, f"{path}.", source)
            continue
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        if not ok:
            raise RecipeError(f"{source}: {path!r} must be {_type_name(want)}, got {value!r}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "schedule":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)  # a schedule table is replaced whole
    return out


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{source}: not valid TOML ({e})") from e


def _builtin(name: str) -> dict[str, Any]:
    text = resources.files("bingnn.distill.recipes").joinpath(f"{name}.toml").read_text()
    return _read_toml(text, f"recipe {name!r}")


def load_recipe(spec: str | os.PathLike) -> dict[str, Any]:
    """Load a built-in recipe by name (``"quick"``, ``"paper"``) or a TOML file.

    Returns the merged, validated recipe (a plain dict; ``recipe["source"]`` says where it came
    from). Raises :class:`RecipeError` for unknown names, missing files and bad keys/values.
    """
    s = str(spec)
    if s in BUILTIN_RECIPES:
        recipe, source = _builtin(s), f"recipe {s!r}"
    else:
        p = Path(s).expanduser()
        if not p.is_file():
            raise RecipeError(
                f"recipe {s!r} is neither a built-in ({', '.join(BUILTIN_RECIPES)}) nor a file"
            )
        source = str(p)
        try:
            user = _read_toml(p.read_text(), source)
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError(f"cannot read recipe file {p}: {e}") from e
        _validate(user, SCHEMA, "", source)
        base = user.pop("base", "quick")
        if base not in BUILTIN_RECIPES:
            raise RecipeError(f"{source}: base must be one of {BUILTIN_RECIPES}, got {base!r}")
        recipe = _merge(_builtin(base), user)
        recipe.setdefault("name", p.stem)
        if "name" not in user:
            recipe["name"] = p.stem
    _validate(recipe, SCHEMA, "", source)
    if recipe.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise RecipeError(
            f"{source}: format_version {recipe['format_version']} is newer than this bingnn "
            f"understands ({FORMAT_VERSION})"
        )
    for section, keys in _REQUIRED.items():
        for key in keys:
            if key not in recipe.get(section, {}):
                raise RecipeError(f"{source}: missing required key '{section}.{key}'")
    recipe["variants"] = [format_variant(*parse_variant(v)) for v in recipe.get("variants", [])]
    if not recipe["variants"]:
        raise RecipeError(f"{source}: 'variants' is empty; name at least one, e.g. 'rf'")
    for i in range(4):
        st = recipe[f"stage{i}"]
        if st["epochs"] < 1 or st["batch_size"] < 1 or st["lr"] <= 0:
            raise RecipeError(f"{source}: stage{i} needs epochs >= 1, batch_size >= 1, lr > 0")
    recipe["source"] = source
    return recipe


def parse_variant(spec: str) -> tuple[str, str]:
    """``"bf2-hamming"`` -> ``("bf2", "hamming")``; ``"rf"`` -> ``("rf", "l2")``."""
    from bingnn.models import VARIANTS

    if not isinstance(spec, str):
        raise RecipeError(f"a variant must be a string like 'bf2-hamming', got {spec!r}")
    parts = spec.lower().strip().split("-")
    if len(parts) > 2 or not parts[0]:
        raise RecipeError(f"bad variant {spec!r}: write '<variant>-<knn>', e.g. 'bf2-hamming'")
    variant = parts[0]
    if variant not in VARIANTS:
        raise RecipeError(f"unknown variant {variant!r} in {spec!r}; choose from {VARIANTS}")
    knn = parts[1] if len(parts) == 2 else ("l2" if variant == "rf" else "hamming")
    if knn not in ("hamming", "l2"):
        raise RecipeError(f"unknown k-NN metric {knn!r} in {spec!r}; choose hamming or l2")
    if variant == "rf" and knn != "l2":
        raise RecipeError(f"{spec!r}: RF keeps real node features, its k-NN is L2 ('rf')")
    return variant, knn


def format_variant(variant: str, knn: str) -> str:
    return "rf" if variant == "rf" else f"{variant}-{knn}"


def apply_overrides(
    recipe: dict[str, Any],
    variants: list[str] | None = None,
    epochs_scale: float | None = None,
) -> dict[str, Any]:
    """Copy of ``recipe`` with other variants and/or every stage's epochs scaled (at least 1;
    used for smoke runs)."""
    out = copy.deepcopy(recipe)
    if variants:
        out["variants"] = [format_variant(*parse_variant(v)) for v in variants]
    if epochs_scale is not None:
        if not (epochs_scale > 0 and math.isfinite(epochs_scale)):
            raise RecipeError(f"--epochs-scale must be a positive number, got {epochs_scale}")
        for i in range(4):
            st = out[f"stage{i}"]
            st["epochs"] = max(1, round(st["epochs"] * epochs_scale))
        out["epochs_scale"] = epochs_scale
    return out


def _kernel(name: str, knn: str) -> str:
    if name == "auto":
        return "rbf_hamming" if knn == "hamming" else "rbf_l2"
    from bingnn.distill.lsp import get_kernel

    try:
        return get_kernel(name).name
    except ValueError as e:
        raise RecipeError(str(e)) from e


def stage_config(recipe: dict[str, Any], stage: int, variant: str | None = None) -> dict[str, Any]:
    """The resolved, JSON-able configuration of one stage (written as ``config.json``).

    Stage 0 (``variant=None``) is the float DGCNN teacher; stages 1-3 the binary student of
    ``variant``."""
    if stage not in (0, 1, 2, 3):
        raise RecipeError(f"stage must be 0, 1, 2 or 3, got {stage}")
    st = dict(recipe[f"stage{stage}"])
    model = dict(recipe.get("model", {}))
    train = {
        "optimizer": st.get("optimizer", "adam"),
        "lr": float(st["lr"]),
        "weight_decay": float(st.get("weight_decay", 0.0)),
        "epochs": int(st["epochs"]),
        "batch_size": int(st["batch_size"]),
        "test_batch_size": int(st.get("test_batch_size", st["batch_size"])),
        "schedule": dict(st.get("schedule", {"type": "constant"})),
    }
    if st.get("recalibrate_bn"):  # only when on: configs of earlier runs stay comparable
        train["recalibrate_bn"] = True
    loss = {**recipe.get("loss", {})}
    cfg: dict[str, Any] = {
        "recipe": recipe.get("name"),
        "recipe_source": recipe.get("source"),
        "stage": stage,
        "seed": int(recipe.get("seed", 0)),
        "data": dict(recipe["data"]),
        "train": train,
    }
    common = {k: model[k] for k in ("k", "widths", "emb_dims", "mlp", "dropout") if k in model}
    if stage == 0:
        cfg["variant"] = "float"
        cfg["model"] = {"arch": "dgcnn", **common}
        cfg["teacher_file"] = st.get("teacher")
        cfg["loss"] = {"label_smoothing": loss.get("label_smoothing", 0.2)}
        return cfg
    if variant is None:
        raise RecipeError(f"stage {stage} needs a variant")
    v, knn = parse_variant(variant)
    extra = {k: model[k] for k in ("balance", "prelu", "last_layer_binary") if k in model}
    if "balance" in extra and not v.endswith("_bal"):
        extra.pop("balance")
    cfg["variant"] = format_variant(v, knn)
    cfg["model"] = {"arch": "bindgcnn", "variant": v, "knn": knn, "stage": stage, **common, **extra}
    for k in _LOSS_KEYS:
        if k in st:
            loss[k] = st[k]
    loss["kernel_s"] = _kernel(st.get("kernel_s", "auto"), knn)
    loss["kernel_t"] = _kernel(st.get("kernel_t", "auto"), knn if stage > 1 else "l2")
    cfg["loss"] = loss
    cfg["init_from_teacher"] = stage >= 2
    return cfg
