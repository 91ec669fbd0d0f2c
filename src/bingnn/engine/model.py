r"""The runtime model: a trained binary DGCNN (variants RF, BF1, BF2) run from a packed model file.

What the engine computes, per variant (channel-last, as ``BinDGCNN.eval()``):

* **BF1 / BF2.** Layer 0 on xyz: squared-L2 k-NN (self included, ties to the smaller index),
  real pre-activations :math:`y_{ijc} = \langle [x_j - x_i, x_i], w_c \rangle` with +-1
  weights, summed in PyTorch's order, reduced to their max and min over the neighbours.
  Layers 1..3 on packed bits: Hamming k-NN, XOR edge features, binary GEMM (popcount). The
  output bit of every layer is :math:`\mathrm{out\_negate}_c \oplus \bigvee_j p_c(y_{ijc})`
  with the per-channel threshold predicate :math:`p_c` (see :mod:`bingnn.engine.reference`)
  that the exporter derived from the rescale, PReLU and BatchNorm of the layer by evaluating
  them exactly; BN1 (BatchNorm after the max) with a negative scale turns the max into a min,
  hence ``out_negate``. Embedding: binary GEMM of the 512 concatenated bits, rescale, PReLU,
  BatchNorm, global max + mean pooling.
* **RF.** Real node features. Layer 0: BatchNorm, +-1 weights, rescale, PReLU, max. Layers
  1..3: L2 k-NN on the real features; the edge bits
  :math:`\mathrm{sign}(\mathrm{BN}([x_j - x_i, x_i]))` are threshold predicates on
  :math:`x_j - x_i` and :math:`x_i`; binary GEMM; rescale, PReLU; max. Embedding: sign of
  BatchNorm (thresholds), binary GEMM, rescale, PReLU; pooling.
* **Head** (both). ``fc1``: bits = threshold predicate of the pooled features, binary GEMM.
  ``fc2``: bits = integer predicate of fc1's pre-activation (rescale, PReLU and fc2's
  BatchNorm folded), binary GEMM, rescale, PReLU. ``fc3``: BatchNorm, real linear + bias,
  rescale.

Exactness. Signs of integer pre-activations are exact by construction (tabulated at export).
Where real numbers feed a sign, the engine repeats PyTorch's float32 operations in PyTorch's
order (x86-64 with FMA): left-to-right sums in layer 0, BatchNorm as a fused multiply-add with
ATen's constants, the 3-D distance as ATen's fused dot product, the mean pooling in ATen's
cascade-sum order (exact for embedding widths that are multiples of 32). So every k-NN graph and
every bit equals PyTorch's (single-threaded PyTorch); the logits agree to float32 rounding of
the last (real) layer. The real L2 k-NN of RF layers 1..3 uses a BLAS matmul like PyTorch, equal
in practice but with no guarantee at exact distance ties.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bingnn.engine import _ops
from bingnn.engine import reference as ref
from bingnn.engine.format import ModelFileError, read_model_file

__all__ = ["EngineModel", "expected_arrays", "load"]

VARIANTS = ("rf", "bf1", "bf2")
_F32, _I32, _U8, _U64 = "float32", "int32", "uint8", "uint64"


def _w(c: int) -> int:
    return ref.n_words(c)


def expected_arrays(model: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The arrays a model file must hold, with their dtype and shape, from its description."""
    variant = model["variant"]
    widths = [int(w) for w in model["widths"]]
    e, (m0, m1), ncls = (
        int(model["emb_dims"]),
        [int(m) for m in model["mlp"]],
        int(model["num_classes"]),
    )
    chans = [3, *widths]
    spec: dict[str, tuple[str, tuple[int, ...]]] = {}

    def pred(prefix: str, n: int, dtype: str) -> None:
        spec[f"{prefix}lo"] = (dtype, (n,))
        spec[f"{prefix}hi"] = (dtype, (n,))
        spec[f"{prefix}negate"] = (_U8, (n,))

    c0 = widths[0]
    if variant in ("bf1", "bf2"):
        spec["layer0.weight"] = (_F32, (c0, 6))
        pred("layer0.p_", c0, _F32)
        spec["layer0.out_negate"] = (_U8, (c0,))
        for li in range(1, len(widths)):
            c_in, c_out = chans[li], chans[li + 1]
            spec[f"layer{li}.w_rel"] = (_U64, (c_out, _w(c_in)))
            spec[f"layer{li}.w_self"] = (_U64, (c_out, _w(c_in)))
            pred(f"layer{li}.p_", c_out, _I32)
            spec[f"layer{li}.out_negate"] = (_U8, (c_out,))
        spec["embed.bn_scale"] = (_F32, (e,))
        spec["embed.bn_shift"] = (_F32, (e,))
    else:
        spec["layer0.weight"] = (_F32, (c0, 6))
        spec["layer0.bn_scale"] = (_F32, (6,))
        spec["layer0.bn_shift"] = (_F32, (6,))
        spec["layer0.alpha"] = (_F32, (c0,))
        spec["layer0.slope"] = (_F32, (c0,))
        for li in range(1, len(widths)):
            c_in, c_out = chans[li], chans[li + 1]
            pred(f"layer{li}.rel_", c_in, _F32)
            pred(f"layer{li}.self_", c_in, _F32)
            spec[f"layer{li}.w_rel"] = (_U64, (c_out, _w(c_in)))
            spec[f"layer{li}.w_self"] = (_U64, (c_out, _w(c_in)))
            spec[f"layer{li}.alpha"] = (_F32, (c_out,))
            spec[f"layer{li}.slope"] = (_F32, (c_out,))
        pred("embed.p_", sum(widths), _F32)
    spec["embed.weight"] = (_U64, (e, _w(sum(widths))))
    spec["embed.alpha"] = (_F32, (e,))
    spec["embed.slope"] = (_F32, (e,))
    pred("fc1.p_", 2 * e, _F32)
    spec["fc1.weight"] = (_U64, (m0, _w(2 * e)))
    pred("fc2.p_", m0, _I32)
    spec["fc2.weight"] = (_U64, (m1, _w(m0)))
    spec["fc2.alpha"] = (_F32, (m1,))
    spec["fc2.slope"] = (_F32, (m1,))
    spec["fc3.bn_scale"] = (_F32, (m1,))
    spec["fc3.bn_shift"] = (_F32, (m1,))
    spec["fc3.weight"] = (_F32, (ncls, m1))
    spec["fc3.bias"] = (_F32, (ncls,))
    spec["fc3.alpha"] = (_F32, (ncls,))
    return spec


def _check_description(model: dict[str, Any], where: str) -> None:
    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{where}: invalid model description: {msg}")

    if model.get("arch") != "bindgcnn":
        raise bad(f"arch must be 'bindgcnn', got {model.get('arch')!r}")
    if model.get("variant") not in VARIANTS:
        raise bad(f"variant must be one of {', '.join(VARIANTS)}, got {model.get('variant')!r}")
    for key in ("k", "num_classes", "emb_dims"):
        v = model.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad(f"{key} must be a positive integer, got {v!r}")
    for key, n in (("widths", None), ("mlp", 2)):
        v = model.get(key)
        if (
            not isinstance(v, list)
            or not v
            or (n is not None and len(v) != n)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in v)
        ):
            raise bad(f"{key} must be a list of positive integers, got {v!r}")
    names = model.get("class_names")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != model["num_classes"]
        or not all(isinstance(s, str) for s in names)
    ):
        raise bad(f"class_names must list {model['num_classes']} strings")


def _prelu(v: np.ndarray, slope: np.ndarray) -> np.ndarray:
    # Same float32 operations as ChannelPReLU: where(v >= 0, v, v * slope).
    return np.where(v >= 0, v, v * slope)


def _act(y: np.ndarray, alpha: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Rescale then PReLU of integer (or real) pre-activations, in float32 like PyTorch."""
    return _prelu(y.astype(np.float32) * alpha, slope)


class EngineModel:
    """A binary DGCNN ready to run with numpy and the native kernels (no PyTorch).

    Build it with :func:`load`. ``num_threads`` (``None`` = the default count, see
    :mod:`bingnn.engine.kernels`) is passed to the native kernels; ``native=False`` runs the
    pure-numpy reference path instead.

    Shapes:
        ``points (B, N, 3)`` or ``(N, 3)`` float -> :meth:`logits` ``(B, classes)`` (or
        ``(classes,)``), :meth:`predict_proba` the same, :meth:`predict` ``(B,)`` int64 (or
        a 0-d array).
    """

    def __init__(
        self,
        model: dict[str, Any],
        arrays: dict[str, np.ndarray],
        *,
        num_threads: int | None = None,
        native: bool = True,
        source: str = "model",
    ) -> None:
        _check_description(model, source)
        spec = expected_arrays(model)
        missing = sorted(set(spec) - set(arrays))
        if missing:
            raise ModelFileError(
                f"{source}: missing arrays {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}"
            )
        self._a: dict[str, np.ndarray] = {}
        for name, (dtype, shape) in spec.items():
            a = arrays[name]
            if a.dtype != np.dtype(dtype) or a.shape != shape:
                raise ModelFileError(
                    f"{source}: array {name!r} should be {dtype} {shape}, got {a.dtype} {a.shape}"
                )
            self._a[name] = np.ascontiguousarray(a)
        self.meta = model
        self.variant: str = model["variant"]
        self.k: int = int(model["k"])
        self.num_classes: int = int(model["num_classes"])
        self.widths: list[int] = [int(w) for w in model["widths"]]
        self.emb_dims: int = int(model["emb_dims"])
        self.mlp: list[int] = [int(m) for m in model["mlp"]]
        names = model.get("class_names")
        self.class_names: list[str] = (
            list(names) if names else [str(i) for i in range(self.num_classes)]
        )
        self.num_threads = num_threads
        self.native = bool(native)

    # ------------------------------------------------------------------ public API

    def logits(self, points: Any, *, normalize: bool = False) -> np.ndarray:
        """Class scores, float32: ``(B, N, 3)`` -> ``(B, classes)``; ``(N, 3)`` ->
        ``(classes,)``; a list of ``B`` clouds ``(n_i, 3)`` of any sizes -> ``(B, classes)``.

        Real inputs (see :meth:`_real_input`): clouds are brought to the model's training point
        count when the model records it (farthest-point subsampling, or repetition for smaller
        clouds; fewer than ``k`` points are refused); ``normalize=True`` centres each cloud and
        scales it into the unit sphere as the training clouds were. Arrays of the right size
        run exactly as given (``normalize=False``, the default).
        """
        x, single = self._check_points(self._real_input(points, normalize))
        out = self._forward(x, None)
        return out[0] if single else out

    def predict_proba(self, points: Any, *, normalize: bool = False) -> np.ndarray:
        """Softmax of :meth:`logits` (float32, same shapes)."""
        z = self.logits(points, normalize=normalize).astype(np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)

    def predict(self, points: Any, *, normalize: bool = False) -> np.ndarray:
        """Predicted class indices: ``(B,)`` int64, or a 0-d array for one ``(N, 3)`` cloud."""
        return np.asarray(
            np.argmax(self.logits(points, normalize=normalize), axis=-1), dtype=np.int64
        )

    def trace(self, points: Any) -> dict[str, np.ndarray]:
        """Every intermediate of one forward pass (for tests and debugging): per layer the
        neighbour lists ``idx{l}`` and the node features ``x{l}`` (packed bits for BF, real for
        RF), ``pooled``, ``fc1_bits``, ``fc2_bits`` (packed), ``h2`` and ``logits``."""
        x, _ = self._check_points(points)
        tr: dict[str, np.ndarray] = {}
        tr["logits"] = self._forward(x, tr)
        return tr

    def __repr__(self) -> str:
        return (
            f"EngineModel(variant={self.variant!r}, k={self.k}, widths={self.widths}, "
            f"classes={self.num_classes}, native={self.native})"
        )

    # ------------------------------------------------------------------ real inputs

    @property
    def input_points(self) -> int | None:
        """The training point count ``N`` when the model file records it, else ``None``."""
        n = getattr(self, "num_points", None) or self.meta.get("num_points")
        n = n or (self.meta.get("input") or {}).get("num_points")
        return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    def _real_input(self, points: Any, normalize: bool) -> Any:
        """Resampling/normalisation of user clouds, kept out of the exact forward pass: see
        :func:`bingnn.data.resample.to_model_input` (numpy only)."""
        from bingnn.data.resample import to_model_input

        return to_model_input(
            points, num_points=self.input_points, min_points=self.k, normalize=normalize
        )

    # ------------------------------------------------------------------ checks

    def _check_points(self, points: Any) -> tuple[np.ndarray, bool]:
        if type(points).__module__.startswith("torch"):
            raise TypeError("points is a torch tensor; pass a numpy array (tensor.numpy())")
        if not isinstance(points, np.ndarray):
            try:
                points = np.asarray(points)
            except Exception as e:  # noqa: BLE001 - ragged lists and the like
                raise TypeError(f"points must be an array of shape (B, N, 3): {e}") from e
        if points.dtype == np.bool_ or not np.issubdtype(points.dtype, np.floating):
            raise TypeError(
                f"points must be a float array (float32 or float64), got dtype {points.dtype}"
            )
        single = points.ndim == 2
        if single:
            points = points[None]
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(
                f"points must be shaped (B, N, 3) or (N, 3), got "
                f"{points.shape[1:] if single else points.shape}"
            )
        b, n, _ = points.shape
        if b == 0:
            raise ValueError("empty batch (B = 0): pass at least one point cloud")
        if n < self.k:
            raise ValueError(
                f"point clouds have {n} points but the model uses k = {self.k} "
                f"neighbours; give at least {self.k} points per cloud"
            )
        if not np.isfinite(points).all():
            raise ValueError(
                "points contain NaN or infinite coordinates; clean or drop those points"
            )
        if points.dtype.itemsize > 4 and np.abs(points).max() > np.finfo(np.float32).max:
            raise ValueError(
                "points have coordinates too large for float32 (infinite after "
                "conversion); normalise the clouds"
            )
        return np.ascontiguousarray(points, dtype=np.float32), single

    # ------------------------------------------------------------------ forward

    def _forward(self, x: np.ndarray, tr: dict[str, np.ndarray] | None) -> np.ndarray:
        if self.variant == "rf":
            h = self._backbone_rf(x, tr)
        else:
            h = self._backbone_bf(x, tr)
        return self._head(h, tr)

    def _pred(self, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = self._a
        return a[prefix + "lo"], a[prefix + "hi"], a[prefix + "negate"]

    def _l2_knn(self, x: np.ndarray) -> np.ndarray:
        return _ops.l2_knn(x, self.k, self.native, self.num_threads)

    def _layer0_bf(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """BF layer 0 on xyz: ``x (B, N, 3)``, ``idx (B, N, k)`` -> packed bits."""
        lo, hi, neg = self._pred("layer0.p_")
        out_neg = self._a["layer0.out_negate"].astype(bool)
        w = self._a["layer0.weight"]
        # OR_j [y_j >= hi or y_j <= lo] = [max_j y >= hi or min_j y <= lo]; channels with a
        # negated (interval) predicate need every y_ij and are computed edge by edge.
        ymax, ymin = _ops.edge0_minmax(x, idx, w, None, None, self.native, self.num_threads)
        bits = (ymax >= hi) | (ymin <= lo)
        special = np.flatnonzero(neg)
        if special.size:
            y = ref.edge_preact0(x, idx, w[special])
            bits[..., special] = ref.predicate(y, lo[special], hi[special],
                                               neg[special]).any(axis=2)
        return _ops.pack(bits ^ out_neg)

    def _concat_bits(self, feats: list[np.ndarray]) -> np.ndarray:
        if all(c % 64 == 0 for c in self.widths):
            return np.concatenate(feats, axis=-1)
        unpacked = [ref.unpack_bits(f, c) for f, c in zip(feats, self.widths, strict=True)]
        return _ops.pack(np.concatenate(unpacked, axis=-1))

    def _backbone_bf(self, x: np.ndarray, tr: dict | None) -> np.ndarray:
        a = self._a
        idx = self._l2_knn(x)
        h = self._layer0_bf(x, idx)
        if tr is not None:
            tr["idx0"], tr["x0"] = idx, h
        feats = [h]
        chans = [3, *self.widths]
        for li in range(1, len(self.widths)):
            lo, hi, neg = self._pred(f"layer{li}.p_")
            h, idx = _ops.xor_edge_conv_knn(
                h,
                self.k,
                a[f"layer{li}.w_rel"],
                a[f"layer{li}.w_self"],
                lo,
                hi,
                neg,
                a[f"layer{li}.out_negate"],
                chans[li],
                self.native,
                self.num_threads,
            )
            if tr is not None:
                tr[f"idx{li}"], tr[f"x{li}"] = idx, h
            feats.append(h)
        cat = self._concat_bits(feats)
        return self._embed_pool(cat, bn=True)

    def _embed_pool(self, cat: np.ndarray, bn: bool) -> np.ndarray:
        """Binary embedding of packed ``(B, N, W)`` bits, then global max + mean pooling."""
        a = self._a
        b, n, w = cat.shape
        n_bits = sum(self.widths)
        alpha, slope = a["embed.alpha"], a["embed.slope"]
        scale = a["embed.bn_scale"] if bn else None
        shift = a["embed.bn_shift"] if bn else None
        # The (N, E) int32 pre-activations of a few clouds at a time stay in cache; only their
        # max and mean over the points are kept.
        step = max(1, (8 << 20) // max(1, 4 * n * self.emb_dims))
        return np.concatenate([
            _ops.embed_pool(
                _ops.binary_gemm(cat[s : s + step].reshape(-1, w), a["embed.weight"], n_bits,
                                 self.native, self.num_threads).reshape(-1, n, self.emb_dims),
                alpha, slope, scale, shift, self.native, self.num_threads)
            for s in range(0, b, step)
        ])

    def _backbone_rf(self, x: np.ndarray, tr: dict | None) -> np.ndarray:
        a = self._a
        idx = self._l2_knn(x)
        ymax, ymin = _ops.edge0_minmax(
            x,
            idx,
            a["layer0.weight"],
            a["layer0.bn_scale"],
            a["layer0.bn_shift"],
            self.native,
            self.num_threads,
        )
        h = self._max_act(ymax, ymin, "layer0.")
        if tr is not None:
            tr["idx0"], tr["x0"] = idx, h
        feats = [h]
        for li in range(1, len(self.widths)):
            idx = self._l2_knn(h)
            h = self._rf_layer(li, h, idx)
            if tr is not None:
                tr[f"idx{li}"], tr[f"x{li}"] = idx, h
            feats.append(h)
        return self._rf_embed(feats)

    def _rf_embed(self, feats: list[np.ndarray]) -> np.ndarray:
        """RF embedding + pooling of the real layer outputs ``feats [(B, N, C_l)]``."""
        cat = np.concatenate(feats, axis=-1)
        bits = _ops.pack(ref.predicate(cat, *self._pred("embed.p_")))
        return self._embed_pool(bits, bn=False)

    def _rf_layer(self, li: int, h: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """RF layer ``li >= 1`` on real features ``h (B, N, C)`` and neighbours ``idx``."""
        a = self._a
        ymax, ymin = _ops.rf_edge_minmax(
            h, idx, *self._pred(f"layer{li}.rel_"), *self._pred(f"layer{li}.self_"),
            a[f"layer{li}.w_rel"], a[f"layer{li}.w_self"], self.native, self.num_threads)
        return self._max_act(ymax, ymin, f"layer{li}.")

    def _max_act(self, ymax: np.ndarray, ymin: np.ndarray, prefix: str) -> np.ndarray:
        # PReLU(alpha * y) is monotone or V-shaped in y (never peaked inside), so its max over
        # the neighbours is reached at the largest or the smallest pre-activation.
        a = self._a
        alpha, slope = a[prefix + "alpha"], a[prefix + "slope"]
        return np.maximum(_act(ymax, alpha, slope), _act(ymin, alpha, slope))

    def _head(self, g: np.ndarray, tr: dict | None) -> np.ndarray:
        a = self._a
        e2, m0 = 2 * self.emb_dims, self.mlp[0]
        bits1 = _ops.pack(ref.predicate(g, *self._pred("fc1.p_")))
        y1 = _ops.binary_gemm(bits1, a["fc1.weight"], e2, self.native, self.num_threads)
        bits2 = _ops.pack(ref.predicate(y1, *self._pred("fc2.p_")))
        y2 = _ops.binary_gemm(bits2, a["fc2.weight"], m0, self.native, self.num_threads)
        h2 = _act(y2, a["fc2.alpha"], a["fc2.slope"])
        z = ref.fma_affine(h2, a["fc3.bn_scale"], a["fc3.bn_shift"])
        logits = ((z @ a["fc3.weight"].T + a["fc3.bias"]) * a["fc3.alpha"]).astype(np.float32)
        if tr is not None:
            tr.update(pooled=g, fc1_bits=bits1, fc2_bits=bits2, h2=h2)
        return logits


def load(
    path: str | os.PathLike, *, num_threads: int | None = None, native: bool = True
) -> EngineModel:
    """Load a ``.bgnn`` model file written by :func:`bingnn.export.export`, or a pretrained
    student by its registered name (``"modelnet10-bf2"``, ``"modelnet10-rf"``; see
    :mod:`bingnn.pretrained`). An existing path wins over a name.

    Raises:
        FileNotFoundError: no such file (nor a registered name), or a registered model whose
            files are not installed.
        ModelFileError: corrupt, truncated, foreign or newer-version file, or arrays whose
            dtype/shape do not match the model description.
    """
    from bingnn.pretrained import resolve_engine_model

    path, card = resolve_engine_model(path)
    model, arrays = read_model_file(path)
    em = EngineModel(model, arrays, num_threads=num_threads, native=native, source=str(path))
    if card is not None and em.input_points is None:
        em.meta["num_points"] = int(card["num_points"])  # the card records the training N
    return em
