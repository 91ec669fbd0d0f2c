"""Model cards of the pretrained models: a JSON dict with a fixed schema, and its Markdown view.

Card fields (``card_version`` 1):

=========================  =====================================================================
``name``                   the registered name
``kind``                   ``"teacher"`` or ``"student"``
``description``            one line
``model_config``           the ``model.config`` dict that rebuilds the PyTorch model
                           (:func:`bingnn.models.build_model`)
``num_points``, ``k``      the input: points per cloud (training and test), k-NN neighbours
``class_names``            label order
``input_normalization``    how training clouds were normalised (inputs must match)
``test_accuracy``,         overall and mean per-class accuracy (fractions) of the shipped
``mean_class_accuracy``    PyTorch weights on ``test_shapes`` test clouds at ``num_points``
``engine_test_accuracy``,  the same for the ``.bgnn`` engine model (students; else ``null``)
``engine_mean_class_acc``
``test_shapes``            how many test clouds were scored
``dataset``                name, split, source, licence note
``recipe``                 the run's resolved configuration (``config.json``)
``training``               the run's completion record (``done.json``: epochs, time, ...)
``command``                the command that trained it
``weights_dtype``          dtype the PyTorch weights are stored in
``files``                  ``{"weights": {"name", "sha256", "bytes"}, "engine": {...} | absent}``
``license``                the terms the weights inherit from the data
``bingnn_version``         the version that packaged it
=========================  =====================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CARD_VERSION", "MODELNET_LICENSE", "CardError", "read_card", "render_markdown",
           "validate_card"]

CARD_VERSION = 1

MODELNET_LICENSE = (
    "Trained on ModelNet10 (Wu et al., 3D ShapeNets, CVPR 2015), which Princeton University "
    "distributes for academic research use only (https://modelnet.cs.princeton.edu/); these "
    "weights are derived from it and are provided under the same terms: academic research use."
)


class CardError(ValueError):
    """A model card (or a file it lists) that is not valid; the message names the file."""


_NUM = (int, float)
_REQUIRED: dict[str, Any] = {
    "card_version": int,
    "name": str,
    "kind": str,
    "description": str,
    "model_config": dict,
    "num_points": int,
    "k": int,
    "class_names": list,
    "input_normalization": str,
    "test_accuracy": _NUM,
    "mean_class_accuracy": _NUM,
    "test_shapes": int,
    "dataset": dict,
    "recipe": dict,
    "training": dict,
    "command": str,
    "weights_dtype": str,
    "files": dict,
    "license": str,
    "bingnn_version": str,
}


def validate_card(card: Any, where: str = "card") -> dict[str, Any]:
    """Check the schema; return the card.

    Raises:
        CardError: naming ``where`` and the first problem.
    """
    def bad(msg: str) -> CardError:
        return CardError(f"{where}: invalid model card: {msg}")

    if not isinstance(card, dict):
        raise bad("not a JSON object")
    for key, typ in _REQUIRED.items():
        if key not in card:
            raise bad(f"missing {key!r}")
        v = card[key]
        if isinstance(v, bool) or not isinstance(v, typ):
            raise bad(f"{key!r} has the wrong type ({type(v).__name__})")
    if card["card_version"] > CARD_VERSION:
        raise bad(f"card_version {card['card_version']} is newer than this bingnn reads "
                  f"({CARD_VERSION}); upgrade bingnn")
    if card["kind"] not in ("teacher", "student"):
        raise bad(f"kind must be 'teacher' or 'student', got {card['kind']!r}")
    if card["num_points"] < 1 or card["k"] < 1 or card["test_shapes"] < 1:
        raise bad("num_points, k and test_shapes must be positive")
    names = card["class_names"]
    if not names or not all(isinstance(n, str) for n in names):
        raise bad("class_names must be a non-empty list of strings")
    for key in ("test_accuracy", "mean_class_accuracy"):
        if not 0.0 <= card[key] <= 1.0:
            raise bad(f"{key} must be a fraction in [0, 1], got {card[key]}")
    files = card["files"]
    if "weights" not in files or (card["kind"] == "student") != ("engine" in files):
        raise bad("files must list 'weights', and 'engine' exactly for students")
    for key, entry in files.items():
        if (
            key not in ("weights", "engine")
            or not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("sha256"), str)
            or len(entry["sha256"]) != 64
            or Path(entry["name"]).name != entry["name"]
        ):
            raise bad(f"files[{key!r}] must be {{'name': a bare file name, 'sha256': 64 hex}}")
    return card


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate a card file.

    Raises:
        CardError: not JSON, or not a valid card.
    """
    p = Path(path)
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CardError(f"{p}: not a JSON model card ({e})") from None
    return validate_card(card, str(p))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def render_markdown(card: dict[str, Any]) -> str:
    """The human-readable card (``<name>.md`` beside the JSON)."""
    ds = card["dataset"]
    tr = card["training"]
    lines = [
        f"# {card['name']}",
        "",
        card["description"],
        "",
        "## Use",
        "",
        "```",
        f"bingnn infer --model {card['name']} chair.off scan.ply"
        if card["kind"] == "student" else
        f"python -c \"import bingnn.models; m = bingnn.models.pretrained('{card['name']}')\"",
        "```",
        "",
        f"Input: {card['num_points']} points per cloud ({card['input_normalization']}); "
        f"k = {card['k']}. Classes: {', '.join(card['class_names'])}.",
        "",
        "## Accuracy",
        "",
        f"On {card['test_shapes']} {ds.get('name', '')} test shapes at {card['num_points']} "
        "points (fractions of shapes; mean per-class = average of the per-class recalls):",
        "",
        "| model | overall | mean per-class |",
        "|---|---|---|",
        f"| PyTorch ({card['weights_dtype']} weights) | {_pct(card['test_accuracy'])} | "
        f"{_pct(card['mean_class_accuracy'])} |",
    ]
    if card["kind"] == "student":
        lines.append(
            f"| engine (.bgnn) | {_pct(card.get('engine_test_accuracy'))} | "
            f"{_pct(card.get('engine_mean_class_accuracy'))} |"
        )
    lines += [
        "",
        "## Data",
        "",
        f"{ds.get('description', ds.get('name', ''))}",
        "",
        "## Training",
        "",
        "```",
        card["command"],
        "```",
        "",
        f"Epochs: {tr.get('epochs', 'n/a')}; training time: "
        f"{tr.get('time_s', 'n/a')} s. The resolved configuration is the card's `recipe`.",
        "",
        "## Licence",
        "",
        card["license"],
        "",
        f"Packaged by bingnn {card['bingnn_version']}.",
        "",
    ]
    return "\n".join(lines)
