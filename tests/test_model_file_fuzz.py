"""Fuzzing the model-file reader: truncation, byte flips, header length and JSON corruption,
wrong dtypes and shapes, huge sizes. Every mutated file must be refused with a
``ModelFileError`` or, if it loads, be provably harmless: the same description and the same
arrays as the original (so the same model). No other exception, no crash.

Deterministic by default (hypothesis derandomized, a few hundred files); a longer run on demand:

    BINGNN_FUZZ_EXAMPLES=20000 python -m pytest tests/test_engine_fuzz.py
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bingnn.engine import EngineModel, ModelFileError
from bingnn.engine.format import parse_model_bytes, serialize_model
from bingnn.export import fold
from bingnn.models import BinDGCNN, BinGCN

EXAMPLES = int(os.environ.get("BINGNN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _files() -> dict[str, bytes]:
    torch.manual_seed(0)
    pc = BinDGCNN(num_classes=4, variant="bf2", k=4, widths=(16, 16, 32, 64), emb_dims=32,
                  mlp=(24, 16)).eval()
    # real-valued shortcuts: real XOR layer values from tables, shortcut sums, thresholds at 0
    sc = BinDGCNN(num_classes=4, variant="bf2", k=4, widths=(16, 16, 32, 64), emb_dims=32,
                  mlp=(24, 16), shortcut=True, max_offset=0.3).eval()
    node = BinGCN(20, 16, 3, 3).eval()
    return {"points": serialize_model(*fold(pc, ["a", "b", "cone", "d"], num_points=32)),
            "shortcut": serialize_model(*fold(sc, num_points=32)),
            "nodes": serialize_model(*fold(node))}


FILES = _files()
ORIGINAL = {k: parse_model_bytes(v) for k, v in FILES.items()}


def header_span(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def check(kind: str, data: bytes) -> None:
    """The oracle: refused with a ModelFileError, or identical content."""
    try:
        desc, arrays = parse_model_bytes(data, "fuzzed")
        EngineModel(desc, arrays, source="fuzzed")
    except ModelFileError:
        return
    want_desc, want_arrays = ORIGINAL[kind]
    assert desc == want_desc, "a changed description was accepted"
    assert sorted(arrays) == sorted(want_arrays)
    for name, a in want_arrays.items():
        b = arrays[name]
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name


kinds = st.sampled_from(sorted(FILES))


@FUZZ
@given(kind=kinds, frac=st.floats(0.0, 1.0, exclude_max=True))
def test_truncation(kind: str, frac: float) -> None:
    data = FILES[kind]
    check(kind, data[: int(frac * len(data))])


@FUZZ
@given(kind=kinds, data=st.data(), in_header=st.booleans(), flips=st.integers(1, 3))
def test_byte_flips(kind: str, data, in_header: bool, flips: int) -> None:
    raw = bytearray(FILES[kind])
    end = header_span(raw) if in_header else len(raw)
    for _ in range(flips):
        pos = data.draw(st.integers(0, end - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    check(kind, bytes(raw))


@FUZZ
@given(kind=kinds, length=st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 100_000)))
def test_header_length(kind: str, length: int) -> None:
    raw = bytearray(FILES[kind])
    raw[:8] = length.to_bytes(8, "little")
    check(kind, bytes(raw))


def _with_header(data: bytes, header: dict | str) -> bytes:
    """The file with another header (the length field kept consistent), same payload."""
    body = data[header_span(data):]
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    enc = text.encode("utf-8", "surrogatepass")
    enc += b" " * (-len(enc) % 8)
    return len(enc).to_bytes(8, "little") + enc + body


TOKENS = ['"', ":", ",", "{", "}", "[", "]", "0", "1", "9", "-", "e", "null", "true", "NaN",
          "Infinity", "1e999", "\\u0000", "\\ud800", " ", "F32", "U64", "I32"]


@FUZZ
@given(kind=kinds, data=st.data(), edits=st.integers(1, 4))
def test_json_corruption(kind: str, data, edits: int) -> None:
    """Edits of the header's JSON text, the length field kept consistent: the structure and
    the metadata strings (including the model description) change."""
    raw = FILES[kind]
    text = raw[8:header_span(raw)].decode("utf-8").rstrip(" ")
    for _ in range(edits):
        pos = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        text = text[:pos] + data.draw(st.sampled_from(TOKENS)) + text[pos + cut:]
    check(kind, _with_header(raw, text))


@FUZZ
@given(kind=kinds, data=st.data())
def test_description_values(kind: str, data) -> None:
    """A value inside the JSON description replaced, the file re-serialized with the old
    checksum (what corruption does) or a new one (a crafted file: only validation stops it)."""
    raw = FILES[kind]
    head = json.loads(raw[8:header_span(raw)])
    desc = json.loads(head["__metadata__"]["model"])
    paths: list[tuple] = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))
        paths.append(path)

    walk(desc, ())
    path = data.draw(st.sampled_from([p for p in paths if p]))
    new = data.draw(st.one_of(st.integers(-3, 2**40), st.booleans(), st.none(),
                              st.text(max_size=5), st.floats(allow_nan=False),
                              st.lists(st.integers(0, 9), max_size=3)))
    node = desc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    head["__metadata__"]["model"] = json.dumps(desc, sort_keys=True, separators=(",", ":"))
    check(kind, _with_header(raw, head))  # old checksum
    _, arrays = ORIGINAL[kind]
    try:
        resigned = serialize_model(desc, arrays)
    except (ValueError, TypeError):
        return  # not serializable (e.g. a surrogate): no file to test
    try:
        d, a = parse_model_bytes(resigned)
        EngineModel(d, a)
    except ModelFileError:
        pass


@FUZZ
@given(kind=kinds, data=st.data())
def test_tensor_dtypes_and_shapes(kind: str, data) -> None:
    """A tensor's dtype, shape or offsets rewritten in the header."""
    raw = FILES[kind]
    head = json.loads(raw[8:header_span(raw)])
    name = data.draw(st.sampled_from(sorted(k for k in head if k != "__metadata__")))
    entry = head[name]
    what = data.draw(st.sampled_from(["dtype", "shape", "offsets"]))
    if what == "dtype":
        entry["dtype"] = data.draw(st.sampled_from(
            ["F32", "F64", "F16", "BF16", "U8", "I8", "I32", "I64", "U64", "BOOL", "X"]))
    elif what == "shape":
        entry["shape"] = data.draw(st.lists(st.integers(0, 2**62), max_size=4))
    else:
        entry["data_offsets"] = data.draw(st.lists(st.integers(0, 2**63), min_size=2,
                                                   max_size=2))
    check(kind, _with_header(raw, head))


@FUZZ
@given(kind=kinds, data=st.data())
def test_array_values_with_valid_checksum(kind: str, data) -> None:
    """Crafted files: an array's values, dtype or shape changed and the checksum recomputed.
    The validation must refuse what the engine cannot run; what it accepts must run."""
    desc, arrays = ORIGINAL[kind]
    arrays = dict(arrays)
    name = data.draw(st.sampled_from(sorted(arrays)))
    a = arrays[name]
    change = data.draw(st.sampled_from(["nan", "inf", "big", "dtype", "shape", "bits"]))
    if change in ("nan", "inf", "big") and a.dtype.kind == "f" and a.size:
        a = a.copy()
        a.flat[data.draw(st.integers(0, a.size - 1))] = {"nan": np.nan, "inf": -np.inf,
                                                          "big": 3e38}[change]
    elif change == "dtype":
        a = a.astype(data.draw(st.sampled_from([np.float64, np.int64, np.uint8, np.float32])))
    elif change == "shape":
        a = a.reshape(-1)[: max(0, a.size - 1)]
    elif a.dtype == np.uint64 and a.size:
        a = a ^ np.uint64(1 << data.draw(st.integers(0, 63)))
    arrays[name] = a
    try:
        em = EngineModel(*parse_model_bytes(serialize_model(desc, arrays)))
    except ModelFileError:
        return
    with np.errstate(all="ignore"):
        if em.is_point_model:
            out = em.logits(np.random.default_rng(0).normal(size=(1, 32, 3)).astype(np.float32))
        else:
            x = np.random.default_rng(0).random((12, 20)).astype(np.float32)
            ei = np.array([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
            out = em.logits(x, ei)
    assert out.dtype == np.float32


@pytest.mark.parametrize("kind", sorted(FILES))
def test_every_single_bit_of_the_header(kind: str) -> None:
    """Each bit of the header (descriptions, names, shapes, offsets, checksum) flipped in
    turn: refused or harmless (a flip inside the JSON padding or whitespace)."""
    raw = FILES[kind]
    end = header_span(raw)
    step = 1 if EXAMPLES >= 5000 else 7  # every byte in the long run, every 7th by default
    accepted = 0
    for pos in range(0, end, step):
        bits = range(8) if EXAMPLES >= 5000 else (pos % 8,)
        for bit in bits:
            mutated = bytearray(raw)
            mutated[pos] ^= 1 << bit
            check(kind, bytes(mutated))
            try:
                parse_model_bytes(bytes(mutated))
                accepted += 1
            except ModelFileError:
                pass
    assert accepted < 0.05 * end  # almost every flip is refused outright
