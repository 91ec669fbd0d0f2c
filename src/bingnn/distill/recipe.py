"""Training recipes: versioned TOML files, validated whole before any training, resolved per
stage into the configuration a run records (``config.json``).

One format serves both families (``task = "pointcloud"`` or ``"node"``). A recipe names the
data, the model sizes, the loss, the variants to distil and, for stage 0 (the float teacher)
and stages 1-3 (ever more binary students), the optimiser settings. Built-in recipes are
package data (``src/bingnn/distill/recipes/``):

============== ========== ===================================================================
name           task       what
============== ========== ===================================================================
quick          pointcloud synthetic shapes, minutes on a CPU
modelnet10     pointcloud real ModelNet10 shapes, 512 points, sized for a 2-core CPU
paper          pointcloud the paper's hyper-parameters on ModelNet40
planetoid      node       Cora / CiteSeer / PubMed, full batch
facebook       node       Facebook Page-Page, full batch, stratified split per seed
actor          node       Actor, full batch, standard split per seed (0-9)
ogbn-arxiv     node       full batch
ogbn-products  node       neighbour-sampled mini-batches
ogbn-proteins  node       full batch, 112 binary tasks
============== ========== ===================================================================

A user file is merged key by key over a built-in recipe (``base``; without it, the built-in
recipe the file names with ``name`` -- so an edited copy of a built-in file means what it
says -- else ``quick`` for point clouds, ``planetoid`` for graphs), so it only names what it
changes (``base = "none"``: the file alone, every missing key at its default)::

    base = "paper"
    variants = ["rf"]
    [stage3]
    epochs = 100

Sections: ``[data]``, ``[model]``, ``[loss]`` (defaults of every student stage), ``[train]``
(defaults of every stage), ``[stage0]`` ... ``[stage3]`` (a stage's own settings, loss keys
included). ``stage0.teacher = FILE`` takes a trained float teacher instead of training one;
``stageN.teacher = FILE`` (N = 1-3, one variant) starts the cascade at stage N, taught (and,
as the previous stage would, initialised) by that stage-(N-1) model file: an ablation of a
late stage reuses the earlier stages of another run. A stage takes a key from its own
section, else ``[train]``/``[loss]``, else the built-in default. A sub-table of a student stage
named after a variant overrides that stage's training and loss keys for that variant only --
variants differ in cost, and one wall-time budget may buy one of them more epochs::

    [stage3]
    epochs = 5
    [stage3.rf]
    epochs = 10

A file's own ``[stageN]`` key outranks its base recipe's ``[stageN.VARIANT]`` setting of the
same key (a file based on ``modelnet10`` that says ``[stage3] epochs = 8`` trains RF 8 epochs).

Every key and value is
checked when the recipe is loaded -- types, ranges, kernel and schedule names, that the models
of every stage can be built, ``k`` against the point count -- so a bad value fails before the
teacher trains, with :class:`RecipeError` naming the key.

Point-cloud variants are written ``"<variant>-<knn>"``: ``"bf2-hamming"``, ``"bf1-l2"``,
``"rf"`` (RF keeps real features: always L2), ``"bf2_bal-hamming"``; a BF variant without a
metric uses Hamming; LSP kernel ``"auto"`` means Hamming for a Hamming-k-NN variant and L2
otherwise. Node variants are the binary families ``"bingcn"`` and ``"binsage"``; their float
teacher is the same architecture at stage 0 (``gcn``, ``graphsage``).

``format_version = 1`` files (point clouds only, before the ``[train]`` section and the
``task`` key) are read unchanged; ``test_batch_size`` is their name for ``eval_batch_size``.
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
    "FORMAT_VERSION",
    "NODE_VARIANTS",
    "TASKS",
    "RecipeError",
    "apply_overrides",
    "check_stage_config",
    "load_recipe",
    "node_recipe_for",
    "parse_variant",
    "single_run_config",
    "stage_config",
    "start_stage",
    "teacher_name",
]

TASKS = ("pointcloud", "node")
BUILTIN_RECIPES = ("quick", "paper", "modelnet10", "planetoid", "facebook", "actor",
                   "ogbn-arxiv", "ogbn-products", "ogbn-proteins")
FORMAT_VERSION = 2
#: node variant -> its float (stage-0) architecture
NODE_VARIANTS = {"bingcn": "gcn", "binsage": "graphsage"}


class RecipeError(ValueError):
    """A recipe file is missing, unreadable, or has unknown keys or bad values."""


_NUM = (int, float)
#: Marks a schema table whose other keys may name variants, each a table of overrides.
_VARIANT_TABLES = "<variant>"
_TRAIN_KEYS: dict[str, Any] = {
    "optimizer": str,
    "lr": _NUM,
    "weight_decay": _NUM,
    "epochs": int,
    "batch_size": int,
    "eval_batch_size": int,
    "test_batch_size": int,  # format 1's name of eval_batch_size
    "schedule": dict,
    "recalibrate_bn": bool,
    "recalibrate_samples": int,
    "mode": str,
    "fanouts": list,
    "eval_mode": str,
}
_LOSS_KEYS: dict[str, Any] = {
    "alpha": _NUM,
    "lsp_weight": _NUM,
    "temperature": _NUM,
    "label_smoothing": _NUM,
    "kernel_s": str,
    "kernel_t": str,
    "kd_nodes": str,
}
SCHEMA: dict[str, Any] = {
    "format_version": int,
    "name": str,
    "description": str,
    "task": str,
    "seed": int,
    "base": str,
    "variants": list,
    "data": {
        "dataset": str,
        "num_points": int,
        "train_samples": int,
        "test_samples": int,
        "val_fraction": _NUM,
        "root": str,
        "raw_dir": str,
        "download": bool,
        "augment": bool,
        "normalize_features": bool,
    },
    "model": {
        # point clouds
        "k": int,
        "widths": list,
        "emb_dims": int,
        "mlp": list,
        "balance": str,
        "prelu": bool,
        "last_layer_binary": bool,
        "max_offset": _NUM,
        "first_layer_binary": bool,
        "prelu_shift": bool,
        "shortcut": bool,
        "residual": bool,
        # graphs
        "hidden_channels": int,
        "num_layers": int,
        "input_dropout": _NUM,
        "centering": str,
        "binary_last": bool,
        "node_scale": bool,
        "sign_messages": bool,
        # both
        "dropout": _NUM,
    },
    "loss": dict(_LOSS_KEYS),
    "train": dict(_TRAIN_KEYS),
    "stage0": {**_TRAIN_KEYS, "label_smoothing": _NUM, "teacher": str},
    "stage1": {**_TRAIN_KEYS, **_LOSS_KEYS, "teacher": str, _VARIANT_TABLES: True},
    "stage2": {**_TRAIN_KEYS, **_LOSS_KEYS, "teacher": str, _VARIANT_TABLES: True},
    "stage3": {**_TRAIN_KEYS, **_LOSS_KEYS, "teacher": str, _VARIANT_TABLES: True},
}
#: The keys a variant's sub-table of a student stage may set (the teacher starts the cascade,
#: which is one for all variants).
_VARIANT_STAGE_KEYS: dict[str, Any] = {**_TRAIN_KEYS, **_LOSS_KEYS}
_TASK_KEYS = {
    "pointcloud": {
        "data": {"dataset", "num_points", "train_samples", "test_samples", "val_fraction",
                 "root", "download", "augment"},
        "model": {"k", "widths", "emb_dims", "mlp", "dropout", "balance", "prelu",
                  "last_layer_binary", "max_offset", "first_layer_binary",
                  "prelu_shift", "shortcut", "residual"},
        "train": set(_TRAIN_KEYS) - {"mode", "fanouts", "eval_mode"},
        "loss": set(_LOSS_KEYS) - {"kd_nodes"},
    },
    "node": {
        "data": {"dataset", "root", "raw_dir", "download", "normalize_features"},
        "model": {"hidden_channels", "num_layers", "dropout", "input_dropout", "centering",
                  "binary_last", "node_scale", "sign_messages"},
        "train": set(_TRAIN_KEYS) - {"test_batch_size", "recalibrate_samples"},
        "loss": set(_LOSS_KEYS),
    },
}
_REQUIRED = {"pointcloud": {"data": ("dataset", "num_points")}, "node": {"data": ("dataset",)}}
#: Values a recipe need not give (the same for both families unless a built-in says otherwise).
_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "schedule": {"type": "constant"},
}
_LOSS_DEFAULTS = {"alpha": 0.1, "temperature": 3.0, "lsp_weight": 0.0, "label_smoothing": 0.0}


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return "a number"
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
             dict: "a table"}
    return names.get(t, str(t))


def _validate_types(node: dict[str, Any], schema: dict[str, Any], where: str,
                    source: str) -> None:
    for key, value in node.items():
        path = f"{where}{key}"
        if key not in schema and _VARIANT_TABLES in schema and isinstance(value, dict):
            # A variant's overrides; its name is checked once the task is known.
            _validate_types(value, _VARIANT_STAGE_KEYS, f"{path}.", source)
            continue
        if key not in schema or key == _VARIANT_TABLES:
            known = ", ".join(k for k in schema if k != _VARIANT_TABLES)
            extra = (" or a variant's table of overrides ([stageN.VARIANT])"
                     if _VARIANT_TABLES in schema else "")
            raise RecipeError(
                f"{source}: unknown recipe key {path!r}; known keys here: {known}{extra}"
            )
        want = schema[key]
        if isinstance(want, dict):
            if not isinstance(value, dict):
                raise RecipeError(f"{source}: {path!r} must be a table ([{path}])")
            _validate_types(value, want, f"{path}.", source)
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


def _merge_over_base(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """``user`` merged over its base recipe, where a key the user's file sets for a whole stage
    also replaces the base's setting of it for one variant: ``[stage3] epochs = 8`` over a base
    with ``[stage3.rf] epochs = 10`` trains every variant 8 epochs (what the file says), unless
    the file sets ``[stage3.rf]`` too."""
    out = _merge(base, user)
    for section, table in user.items():
        if not (section.startswith("stage") and isinstance(table, dict)):
            continue
        whole_stage = {k for k, v in table.items() if not _is_variant_table(k, v)}
        for name, overrides in out[section].items():
            if _is_variant_table(name, overrides):
                own = table.get(name, {})
                for key in whole_stage - own.keys():
                    overrides.pop(key, None)
    return out


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{source}: not valid TOML ({e})") from e


def _builtin(name: str) -> dict[str, Any]:
    text = resources.files("bingnn.distill.recipes").joinpath(f"{name}.toml").read_text()
    return _read_toml(text, f"recipe {name!r}")


def node_recipe_for(dataset: str) -> str:
    """The built-in recipe of a node data set: its own (``facebook``, ``actor``, ``ogbn-*``)
    or ``planetoid``."""
    from bingnn.graphs.names import PLANETOID

    key = dataset.lower()
    if key in BUILTIN_RECIPES and _builtin(key).get("task") == "node":
        return key
    if key in PLANETOID:
        return "planetoid"
    raise RecipeError(
        f"no built-in recipe for the node data set {dataset!r}; pass --recipe FILE "
        f"(built-in: {', '.join(r for r in BUILTIN_RECIPES if _builtin(r).get('task') == 'node')})"
    )


def _rename_legacy(recipe: dict[str, Any]) -> None:
    """Format 1's ``test_batch_size`` is ``eval_batch_size`` (before merging over a base that
    uses the new name)."""
    tables = [recipe.get(section) for section in ("train", "stage0", "stage1", "stage2", "stage3")]
    tables += [table for _, _, table in _variant_tables(recipe)]
    for st in tables:
        if isinstance(st, dict) and "test_batch_size" in st:
            st.setdefault("eval_batch_size", st.pop("test_batch_size"))


def _default_base(user: dict[str, Any]) -> str:
    """The base of a file without ``base``: the built-in recipe it names (a copy of a built-in,
    edited, must not pick up another recipe's keys that the copy leaves out, e.g. ``quick``'s
    ``train_samples`` under ``modelnet10``), else ``quick`` (point clouds) or ``planetoid``."""
    if user.get("name") in BUILTIN_RECIPES:
        return str(user["name"])
    return "planetoid" if user.get("task") == "node" else "quick"


def load_recipe(spec: str | os.PathLike) -> dict[str, Any]:
    """Load a built-in recipe by name or a TOML file, merge it over its base and validate every
    value (module docstring).

    Returns the recipe as a plain dict (``recipe["source"]`` says where it came from).
    Raises :class:`RecipeError` for unknown names, missing files and bad keys or values.
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
        _validate_types(user, SCHEMA, "", source)
        _rename_legacy(user)
        base = user.pop("base", _default_base(user))
        if base != "none" and base not in BUILTIN_RECIPES:
            raise RecipeError(
                f"{source}: base must be one of {BUILTIN_RECIPES} or 'none', got {base!r}")
        recipe = user if base == "none" else _merge_over_base(_builtin(base), user)
        recipe["name"] = user.get("name", p.stem)
    recipe["source"] = source
    return validate_recipe(recipe)


def validate_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check ``recipe`` whole (keys, types, values, every stage of every variant) and return
    it normalised (variants in canonical spelling). Raises :class:`RecipeError`."""
    recipe = copy.deepcopy(recipe)
    source = str(recipe.get("source", "recipe"))
    _validate_types({k: v for k, v in recipe.items() if k != "source"}, SCHEMA, "", source)
    _rename_legacy(recipe)
    version = recipe.get("format_version", 1)
    if version > FORMAT_VERSION or version < 1:
        raise RecipeError(
            f"{source}: format_version {version} is not one this bingnn reads "
            f"(1 to {FORMAT_VERSION}); upgrade bingnn"
        )
    task = recipe.setdefault("task", "pointcloud")
    if task not in TASKS:
        raise RecipeError(f"{source}: task must be one of {', '.join(TASKS)}, got {task!r}")
    allowed = _TASK_KEYS[task]
    extra = [f"{section}.{k}" for section in ("data", "model", "train", "loss")
             for k in recipe.get(section, {}) if k not in allowed[section]]
    stage_tables = [(f"stage{i}", recipe.get(f"stage{i}", {})) for i in range(4)]
    stage_tables += [(f"stage{i}.{name}", table) for i, name, table in _variant_tables(recipe)]
    for where, table in stage_tables:
        for k in table:
            kind = "train" if k in _TRAIN_KEYS else "loss" if k in _LOSS_KEYS else None
            if kind is not None and k not in allowed[kind]:
                extra.append(f"{where}.{k}")
    if extra:
        raise RecipeError(
            f"{source}: {', '.join(repr(e) for e in extra)} "
            f"{'does' if len(extra) == 1 else 'do'} not apply to {task} recipes"
        )
    for section, keys in _REQUIRED[task].items():
        for key in keys:
            if key not in recipe.get(section, {}):
                raise RecipeError(f"{source}: missing required key '{section}.{key}'")
    recipe["variants"] = [_canonical_variant(task, v, source) for v in recipe.get("variants", [])]
    for i in (1, 2, 3):
        _canonical_variant_tables(recipe.get(f"stage{i}", {}), task, f"stage{i}", source)
    if not recipe["variants"]:
        raise RecipeError(f"{source}: 'variants' is empty; name at least one, e.g. "
                          f"{'rf' if task == 'pointcloud' else 'bingcn'!r}")
    _check_data(recipe, source)
    _check_start(recipe, source)
    tables = [(section, recipe.get(section, {}))
              for section in ("train", "stage0", "stage1", "stage2", "stage3")]
    tables += [(f"stage{i}.{name}", table) for i, name, table in _variant_tables(recipe)]
    for section, table in tables:
        fan = table.get("fanouts")
        if fan is not None and (not fan or any(
                isinstance(k, bool) or not isinstance(k, int) or k == 0 or k < -1 for k in fan)):
            raise RecipeError(f"{source}: {section}.fanouts must be positive integers or -1, "
                              f"got {fan!r}")
    for variant in recipe["variants"]:
        for stage in range(4):
            cfg = stage_config(recipe, stage, variant)
            check_stage_config(cfg, f"{source}: stage{stage}" + (f" ({variant})" if stage else ""))
    return recipe


def start_stage(recipe: dict[str, Any]) -> tuple[int, str | None]:
    """``(S, path)``: the cascade starts at student stage ``S`` taught by the model file
    ``path`` (``[stageS] teacher``), or ``(1, None)`` for a whole cascade."""
    for stage in (1, 2, 3):
        path = recipe.get(f"stage{stage}", {}).get("teacher")
        if path:
            return stage, str(path)
    return 1, None


def _check_start(recipe: dict[str, Any], source: str) -> None:
    """``[stageN] teacher`` (N = 1-3): at most one, for a recipe of one variant, not beside a
    stage-0 teacher (stage 0 is not run then)."""
    given = [n for n in (1, 2, 3) if recipe.get(f"stage{n}", {}).get("teacher")]
    if not given:
        return
    if len(given) > 1:
        raise RecipeError(f"{source}: teacher is set for stages {given}; a cascade starts at one "
                          "stage, give the teacher of that stage only")
    if len(recipe["variants"]) != 1:
        raise RecipeError(f"{source}: stage{given[0]}.teacher is the stage-{given[0] - 1} model "
                          f"of one variant; name that one variant (variants = [...]), got "
                          f"{recipe['variants']}")
    if recipe.get("stage0", {}).get("teacher"):
        raise RecipeError(f"{source}: stage0.teacher and stage{given[0]}.teacher are both set; "
                          f"the cascade starts at stage {given[0]}, so stage 0 is not run")


def _canonical_variant(task: str, spec: Any, source: str) -> str:
    if task == "pointcloud":
        try:
            return format_variant(*parse_variant(spec))
        except RecipeError as e:
            raise RecipeError(f"{source}: {e}") from e
    key = str(spec).lower()
    if key not in NODE_VARIANTS:
        raise RecipeError(
            f"{source}: unknown node variant {spec!r}; choose from {', '.join(NODE_VARIANTS)}"
        )
    return key


def _is_variant_table(key: str, value: Any) -> bool:
    return isinstance(value, dict) and key not in _TRAIN_KEYS and key not in _LOSS_KEYS


def _variant_tables(recipe: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """``(stage, variant, table)`` for every variant's sub-table of a student stage."""
    return [(i, name, table) for i in (1, 2, 3)
            for name, table in recipe.get(f"stage{i}", {}).items()
            if _is_variant_table(name, table)]


def _canonical_variant_tables(stage: dict[str, Any], task: str, where: str, source: str) -> None:
    """Rename a stage's variant sub-tables to canonical spelling (``bf2`` -> ``bf2-hamming``),
    in place; an unknown variant or two spellings of one are errors. A table may name a
    variant the recipe does not train (a base recipe's table serves a file that keeps one
    variant)."""
    for key in [k for k, v in stage.items() if _is_variant_table(k, v)]:
        try:
            name = _canonical_variant(task, key, source)
        except RecipeError as e:
            raise RecipeError(f"{source}: [{where}.{key}] is not a variant's table of "
                              f"overrides: {str(e).removeprefix(source + ': ')}") from e
        if name != key:
            if name in stage:
                raise RecipeError(f"{source}: [{where}.{key}] and [{where}.{name}] name one "
                                  "variant; merge them into one table")
            stage[name] = stage.pop(key)


def _check_data(recipe: dict[str, Any], source: str) -> None:
    d = recipe["data"]
    if recipe["task"] == "pointcloud":
        from bingnn.data.datasets import DATASETS

        if d["dataset"] not in DATASETS:
            raise RecipeError(f"{source}: data.dataset {d['dataset']!r} is not one of "
                              f"{', '.join(DATASETS)}")
        for key in ("num_points", "train_samples", "test_samples"):
            if key in d and d[key] < 1:
                raise RecipeError(f"{source}: data.{key} must be >= 1, got {d[key]}")
        vf = d.get("val_fraction", 0.1)
        if not 0 < vf < 1:
            raise RecipeError(f"{source}: data.val_fraction must be in (0, 1), got {vf}")
    else:
        from bingnn.graphs.names import NODE_DATASETS

        if d["dataset"].lower() not in NODE_DATASETS:
            raise RecipeError(f"{source}: data.dataset {d['dataset']!r} is not one of "
                              f"{', '.join(NODE_DATASETS)}")


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


def teacher_name(recipe: dict[str, Any], variant: str) -> str:
    """The name of a variant's stage-0 teacher (its folder): ``"float"`` for point clouds
    (one DGCNN teaches every variant), the float architecture for graphs."""
    return "float" if recipe.get("task", "pointcloud") == "pointcloud" else NODE_VARIANTS[variant]


def apply_overrides(
    recipe: dict[str, Any],
    variants: list[str] | None = None,
    epochs_scale: float | None = None,
    train: dict[str, Any] | None = None,
    loss: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """A validated copy of ``recipe`` with command-line overrides.

    Args:
        variants: replace the variants.
        epochs_scale: multiply every stage's epochs (at least 1; smoke runs).
        train: training keys set in *every* stage (e.g. ``{"lr": 0.02}``).
        loss: loss keys set in every student stage.
        data, model: keys set in ``[data]`` / ``[model]``.
        seed: the run's seed.
    """
    out = copy.deepcopy(recipe)
    if variants:
        out["variants"] = list(variants)
    for section, over in (("data", data), ("model", model)):
        for k, v in (over or {}).items():
            out.setdefault(section, {})[k] = v
    for section, over, first in (("train", train, 0), ("loss", loss, 1)):
        for k, v in (over or {}).items():
            out.setdefault(section, {})[k] = v
            for i in range(first, 4):
                out.setdefault(f"stage{i}", {}).pop(k, None)
            for _, _, table in _variant_tables(out):
                table.pop(k, None)
    if seed is not None:
        out["seed"] = int(seed)
    if epochs_scale is not None:
        if not (epochs_scale > 0 and math.isfinite(epochs_scale)):
            raise RecipeError(f"--epochs-scale must be a positive number, got {epochs_scale}")
        for i in range(4):
            st = out.setdefault(f"stage{i}", {})
            epochs = st.get("epochs", out.get("train", {}).get("epochs", 1))
            st["epochs"] = max(1, round(epochs * epochs_scale))
        for _, _, table in _variant_tables(out):
            if "epochs" in table:
                table["epochs"] = max(1, round(table["epochs"] * epochs_scale))
        out["epochs_scale"] = epochs_scale
    return validate_recipe({k: v for k, v in out.items() if k != "epochs_scale"}) | (
        {"epochs_scale": epochs_scale} if epochs_scale is not None else {}
    )


def _kernel(name: str, knn: str, where: str) -> str:
    if name == "auto":
        return "rbf_hamming" if knn == "hamming" else "rbf_l2"
    from bingnn.distill.lsp import get_kernel

    try:
        return get_kernel(name).name
    except ValueError as e:
        raise RecipeError(f"{where}: {e}") from e


def _stage_value(recipe: dict[str, Any], stage: int, key: str, section: str,
                 default: Any = None, variant: str | None = None) -> Any:
    st = recipe.get(f"stage{stage}", {})
    mine = st.get(variant) if stage > 0 and variant is not None else None
    if isinstance(mine, dict) and key in mine:
        return mine[key]
    if key in st:
        return st[key]
    if key in recipe.get(section, {}):
        return recipe[section][key]
    return default


def stage_config(recipe: dict[str, Any], stage: int, variant: str | None = None) -> dict[str, Any]:
    """The resolved, JSON-able configuration of one stage (written as ``config.json``).

    Stage 0 is the float teacher of ``variant`` (any variant: for point clouds one DGCNN
    teaches them all); stages 1-3 the binary student of ``variant``."""
    if stage not in (0, 1, 2, 3):
        raise RecipeError(f"stage must be 0, 1, 2 or 3, got {stage}")
    task = recipe.get("task", "pointcloud")
    if variant is None:
        if stage > 0:
            raise RecipeError(f"stage {stage} needs a variant")
        variant = recipe["variants"][0]
    where = f"{recipe.get('source', 'recipe')}: stage{stage}"
    own = _canonical_variant(task, variant, where) if stage > 0 else None

    def _value(key: str, section: str, default: Any = None) -> Any:
        return _stage_value(recipe, stage, key, section, default, own)

    train: dict[str, Any] = {}
    for key in ("optimizer", "lr", "weight_decay", "epochs", "batch_size", "eval_batch_size",
                "schedule"):
        v = _value(key, "train", _TRAIN_DEFAULTS.get(key))
        if v is None and key == "eval_batch_size":
            v = train.get("batch_size")
        if v is None and not (task == "node" and key in ("batch_size", "eval_batch_size")):
            raise RecipeError(f"{where}: missing required key 'stage{stage}.{key}' (or "
                              f"'train.{key}')")
        train[key] = copy.deepcopy(v)
    if task == "node":
        train["mode"] = _value("mode", "train", "full")
        train["eval_mode"] = _value("eval_mode", "train", "full")
        if train["mode"] == "minibatch":
            train["fanouts"] = list(_value("fanouts", "train", [15, 10, 5]))
        train.setdefault("batch_size", None)
        if train["batch_size"] is None:
            train["batch_size"] = 1024
        if train.get("eval_batch_size") is None:
            train["eval_batch_size"] = 4096
    samples = _value("recalibrate_samples", "train", None)
    if _value("recalibrate_bn", "train", False):
        train["recalibrate_bn"] = True  # only when on: configs of earlier runs stay comparable
        if samples is not None:
            train["recalibrate_samples"] = samples
    elif samples is not None:
        raise RecipeError(f"{where}: recalibrate_samples sizes the BatchNorm recalibration "
                          "pass; set recalibrate_bn = true or remove it")

    loss = {key: _value(key, "loss", default)
            for key, default in _LOSS_DEFAULTS.items()}
    if stage == 0:  # no teacher: cross-entropy only
        loss = {"label_smoothing": loss["label_smoothing"]}
    cfg: dict[str, Any] = {
        "task": task,
        "recipe": recipe.get("name"),
        "recipe_source": recipe.get("source"),
        "stage": stage,
        "seed": int(recipe.get("seed", 0)),
        "data": dict(recipe["data"]),
        "train": train,
    }
    model = dict(recipe.get("model", {}))
    if task == "pointcloud":
        common = {k: model[k] for k in ("k", "widths", "emb_dims", "mlp", "dropout") if k in model}
        if stage == 0:
            cfg["variant"] = "float"
            cfg["model"] = {"arch": "dgcnn", **common}
        else:
            v, knn = parse_variant(variant)
            extra = {k: model[k] for k in ("balance", "prelu", "last_layer_binary", "max_offset",
                                           "first_layer_binary", "prelu_shift", "shortcut",
                                           "residual")
                     if k in model}
            if "balance" in extra and not v.endswith("_bal"):
                extra.pop("balance")
            if not v.startswith("bf2"):  # a BF2 option; RF and BF1 normalise after the max
                extra.pop("max_offset", None)
            if v == "rf":  # BF options: RF's blocks have no XOR EdgeConv, its features are real
                extra.pop("prelu_shift", None)
                extra.pop("shortcut", None)
            else:  # an RF option: the BF variants' real values are their shortcuts
                extra.pop("residual", None)
            if not extra.get("residual", True):
                extra.pop("residual")  # off is the default: configs stay as they were
            cfg["variant"] = format_variant(v, knn)
            cfg["model"] = {"arch": "bindgcnn", "variant": v, "knn": knn, "stage": stage,
                            **common, **extra}
            loss["kernel_s"] = _kernel(_value("kernel_s", "loss", "auto"),
                                       knn, f"{where}.kernel_s")
            loss["kernel_t"] = _kernel(_value("kernel_t", "loss", "auto"),
                                       knn if stage > 1 else "l2", f"{where}.kernel_t")
    else:
        arch = NODE_VARIANTS[variant] if stage == 0 else variant
        keys = ["hidden_channels", "num_layers", "dropout", "input_dropout", "centering",
                "binary_last"]
        if variant == "bingcn":
            keys.append("node_scale")
        elif stage > 0 and model.get("sign_messages"):  # the float teacher has no signs
            keys.append("sign_messages")
        cfg["variant"] = arch if stage == 0 else variant
        cfg["model"] = {"arch": arch, **{k: model[k] for k in keys if k in model},
                        "stage": stage}
        if variant == "bingcn":
            cfg["model"]["cached"] = train["mode"] == "full"
        if stage > 0:
            loss["kd_nodes"] = _value("kd_nodes", "loss", "all")
            for key in ("kernel_s", "kernel_t"):
                loss[key] = _kernel(_value(key, "loss", "rbf_l2"), "l2",
                                    f"{where}.{key}")
    cfg["loss"] = loss
    if stage == 0:
        cfg["teacher_file"] = recipe.get("stage0", {}).get("teacher")
    elif recipe.get(f"stage{stage}", {}).get("teacher"):
        # Recorded for provenance: this stage was taught by a given model file.
        cfg["teacher_file"] = recipe[f"stage{stage}"]["teacher"]
    # A node student has its teacher's layout at every stage; a point-cloud stage-1 student
    # (BinDGCNN) does not have the DGCNN's.
    cfg["init_from_teacher"] = stage >= (1 if task == "node" else 2)
    return cfg


#: ``train-node --model`` names -> (node variant, architecture)
NODE_MODELS = {"gcn": ("bingcn", "gcn"), "bingcn": ("bingcn", "bingcn"),
               "sage": ("binsage", "graphsage"), "binsage": ("binsage", "binsage")}


def single_run_config(recipe: dict[str, Any], model: str, stage: int | None = None
                      ) -> dict[str, Any]:
    """The configuration of one node model trained from labels alone (``train-node``): the
    recipe's stage-0 training settings with the model ``model`` (``gcn``, ``sage``, or
    ``bingcn``/``binsage`` at ``stage``, default 3: fully binary)."""
    if model not in NODE_MODELS:
        raise RecipeError(f"unknown node model {model!r}; choose from {', '.join(NODE_MODELS)}")
    variant, arch = NODE_MODELS[model]
    float_model = arch in ("gcn", "graphsage")
    if stage is None:
        stage = 0 if float_model else 3
    if float_model and stage != 0:
        raise RecipeError(f"{model} is the float model (stage 0); for stage {stage} use "
                          f"{variant}")
    if stage not in (0, 1, 2, 3):
        raise RecipeError(f"stage must be 0, 1, 2 or 3, got {stage}")
    cfg = stage_config(recipe, 0, variant)
    cfg["model"]["arch"] = arch
    cfg["model"]["stage"] = stage
    cfg["variant"] = arch
    cfg.pop("teacher_file", None)
    check_stage_config(cfg, f"{recipe.get('source', 'recipe')}: {model}")
    return cfg


def check_stage_config(cfg: dict[str, Any], where: str = "config") -> None:
    """Check every value of a resolved stage configuration (from :func:`stage_config` or a
    command line) without training: optimiser, schedule, loss, batch and data sizes, and
    that the model can be built and run on the data's shapes. Raises :class:`RecipeError`."""
    import torch

    from bingnn.train.objective import Objective
    from bingnn.train.optim import build_optimizer, build_scheduler

    tr = cfg["train"]
    for key in ("epochs", "batch_size", "eval_batch_size", "recalibrate_samples"):
        v = tr.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise RecipeError(f"{where}: {key} must be an integer >= 1, got {v!r}")
    param = torch.nn.Parameter(torch.zeros(1))
    try:
        opt = build_optimizer([param], tr["optimizer"], tr["lr"], tr["weight_decay"])
        build_scheduler(opt, tr["schedule"], tr["epochs"])
    except ValueError as e:
        raise RecipeError(f"{where}: {e}") from e
    loss = {k: v for k, v in cfg["loss"].items() if k != "kd_nodes"}
    try:
        Objective(**loss)
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{where}: {e}") from e
    if cfg["task"] == "node":
        from bingnn.graphs.node_task import EVAL_MODES, KD_NODES, MODES

        for key, allowed in (("mode", MODES), ("eval_mode", EVAL_MODES)):
            if tr.get(key) not in allowed:
                raise RecipeError(f"{where}: {key} must be one of {', '.join(allowed)}, got "
                                  f"{tr.get(key)!r}")
        if "kd_nodes" in cfg["loss"] and cfg["loss"]["kd_nodes"] not in KD_NODES:
            raise RecipeError(f"{where}: kd_nodes must be one of {', '.join(KD_NODES)}, got "
                              f"{cfg['loss']['kd_nodes']!r}")
        fan = tr.get("fanouts")
        if fan is not None and (not fan or any(
                isinstance(k, bool) or not isinstance(k, int) or k == 0 or k < -1 for k in fan)):
            raise RecipeError(f"{where}: fanouts must be positive integers or -1, got {fan!r}")
        dims = {"in_channels": 4, "out_channels": 2}
    else:
        m, n = cfg["model"], cfg["data"].get("num_points", 1)
        k = m.get("k", 20)
        if not 1 <= k <= n:
            raise RecipeError(
                f"{where}: k = {k} neighbours need 1 <= k <= num_points ({n}); lower model.k "
                "or raise data.num_points"
            )
        for key in ("widths", "mlp"):
            vals = m.get(key, [1])
            if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                               for v in vals):
                raise RecipeError(f"{where}: model.{key} must be positive integers, got {vals!r}")
        dims = {"num_classes": 2}
    d = cfg["model"].get("dropout", 0.0)
    if not 0 <= d < 1:
        raise RecipeError(f"{where}: model.dropout must be in [0, 1), got {d}")
    from bingnn.models import build_model

    try:
        with torch.device("meta"):
            build_model({**cfg["model"], **dims})
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{where}: {e}") from e
