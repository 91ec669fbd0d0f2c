r"""Running a validated :class:`~bingnn.engine.layers.Program`: one function per op.

Point-cloud values carry a batch of clouds, ``(B, N, C)`` or ``(B, C)``. Node values are
computed layer by layer over the whole graph, ``(N, C)`` each, so memory stays
:math:`O(N \cdot C)` and never :math:`O(E \cdot C)`. When only some target nodes are asked for,
each value is computed on the rows the later layers need (the targets, then their
in-neighbours, and so on back to the input): a few nodes of a large graph cost their
receptive field, not the graph.

Exactness (what "the same model" means, op by op) is stated in the reference modules
(:mod:`bingnn.engine.reference`, :mod:`bingnn.engine.graph_reference`) that both backends
follow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bingnn.engine import _graph_ops as G
from bingnn.engine import _ops
from bingnn.engine import reference as ref
from bingnn.engine.layers import Layer, Program

__all__ = ["Runner"]


@dataclass
class _NodeValue:
    data: Any
    rows: np.ndarray | None  # sorted node ids the rows of ``data`` hold; None = all nodes


def _prelu(v: np.ndarray, slope: np.ndarray) -> np.ndarray:
    # Same float32 operations as ChannelPReLU: where(v >= 0, v, v * slope).
    return np.where(v >= 0, v, v * slope)


def _act(y: np.ndarray, alpha: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Rescale then PReLU of integer (or real) pre-activations, in float32 like PyTorch."""
    return _prelu(y.astype(np.float32) * alpha, slope)


class Runner:
    """Executes a program with a backend (``native``) and a thread count. ``fuse=False`` keeps
    every node value of the file (for tracing); fusing changes no result, only what is stored."""

    def __init__(self, program: Program, native: bool = True,
                 num_threads: int | None = None, fuse: bool = True) -> None:
        self.program = program
        self.native = bool(native)
        self.num_threads = num_threads
        #: when a dict, every layer run appends its wall time (seconds) under its name
        self.timings: dict[str, list[float]] | None = None
        self._pool_fused = self._find_pool_fusions()
        self._tables = self._chain_tables()
        self._agg_source: dict[str, tuple[str, str | None, np.ndarray | None]] = {}
        self._agg_epilogue: dict[str, tuple[str, dict[str, Any]]] = {}
        self._agg_outputs: dict[str, dict[str, Any]] = {}
        self._node_fused: set[str] = set()
        #: fused layer name -> the aggregate that runs it (and so reads its inputs)
        self._executor: dict[str, str] = {}
        if program.task == "node_classification" and fuse:
            self._find_aggregate_fusions()
            self._find_sign_fusions()

    def _chain_tables(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per ``xor_edge_conv_max`` layer: the value of each integer pre-activation per channel
        and the channels that take the min over the neighbours (BF1 with a negative BatchNorm
        scale), computed once (a few KiB per layer instead of stored tables in the file)."""
        out = {}
        for layer in self.program.layers:
            if layer.op != "xor_edge_conv_max":
                continue
            a = layer.arrays
            table = ref.chain_table(2 * layer.in_values[0].channels, a["bias"], a["alpha"],
                                    a["slope"], a["bn_scale"], a["bn_shift"], a["offset"])
            node_bn = layer.params["bn"] == "node"
            out[layer.name] = (table, (a["bn_scale"] < 0) & node_bn)
        return out

    def _find_pool_fusions(self) -> set[str]:
        """``binary_linear`` layers whose output only feeds one ``global_pool``: run together,
        a few clouds at a time, so the ``(B, N, E)`` int32 products never exist at once."""
        prog, fused = self.program, set()
        for layer in prog.layers:
            if layer.op != "binary_linear":
                continue
            users = prog.consumers.get(layer.outputs[0], [])
            if len(users) == 1 and prog.layers[users[0]].op == "global_pool":
                fused.add(layer.name)
                prog.layers[users[0]].fused_into = layer.name
                layer.fused_into = prog.layers[users[0]].name
        return fused

    def _find_aggregate_fusions(self) -> None:
        """Around each ``aggregate``: a one-term ``affine`` that only rescales its input
        (``(x * row_scale) * alpha``) and feeds nothing else becomes the aggregate's message
        transform, so the narrow ``x`` (int8 first-layer sums, int32 binary GEMM results) is
        streamed instead of a float32 copy; the ``affine`` that reads the aggregate (GCN's bias
        and PReLU, GraphSAGE's rescale plus root term and PReLU) becomes its epilogue, applied
        to each finished row. Same float32 operations, same order."""
        prog = self.program
        producer = {v: layer for layer in prog.layers for v in layer.outputs}

        def only_user(value: str) -> Layer | None:
            users = prog.consumers.get(value, [])
            return prog.layers[users[0]] if len(users) == 1 else None

        for layer in prog.layers:
            if layer.op != "aggregate":
                continue
            src = producer.get(layer.inputs[0])
            if (src is not None and src.op == "affine" and only_user(src.outputs[0]) is layer
                    and len(src.params["terms"]) == 1 and "bias" not in src.arrays
                    and "slope" not in src.arrays and "t0_bias" not in src.arrays):
                term = src.params["terms"][0]
                feeds = [term["input"]] + ([term["row_scale"]] if term.get("row_scale") else [])
                if all(only_user(v) is src for v in feeds):
                    self._agg_source[layer.name] = (term["input"], term.get("row_scale"),
                                                    src.arrays.get("t0_alpha"))
                    self._node_fused.add(src.name)
                    self._executor[src.name] = layer.name
            user = only_user(layer.outputs[0])
            if user is None or user.op != "affine":
                continue
            terms = user.params["terms"]
            first = terms[0]
            if (first["input"] != layer.outputs[0] or first.get("row_scale") is not None
                    or len(terms) > 2 or layer.outputs[0] in [t["input"] for t in terms[1:]]):
                continue
            second = None
            if len(terms) == 2:
                t1 = terms[1]
                feeds = [t1["input"]] + ([t1["row_scale"]] if t1.get("row_scale") else [])
                if not all(only_user(v) is user for v in feeds):
                    continue
                second = (t1["input"], t1.get("row_scale"), user.arrays.get("t1_bias"),
                          user.arrays.get("t1_alpha"))
            a = user.arrays
            self._agg_epilogue[layer.name] = (user.outputs[0], {
                "t0_bias": a.get("t0_bias"), "t0_alpha": a.get("t0_alpha"), "second": second,
                "bias": a.get("bias"), "slope": a.get("slope")})
            self._node_fused.add(user.name)
            self._executor[user.name] = layer.name

    def _find_sign_fusions(self) -> None:
        """An aggregate (with its epilogue) whose rows are only read by signs (up to two
        ``threshold`` or mean / no ``center_sign`` layers: a GraphSAGE layer with sign messages
        binarizes one value twice) and Bi-GCN's ``node_scale`` writes the packed signs and the
        node scale directly, row by row, and never stores the float rows."""
        prog = self.program
        for layer in prog.layers:
            if layer.op != "aggregate":
                continue
            value = self._agg_epilogue.get(layer.name, (layer.outputs[0],))[0]
            if value == "logits":
                continue
            users = [prog.layers[i] for i in prog.consumers.get(value, [])]
            signs = [u for u in users if u.op == "threshold" or (
                u.op == "center_sign" and u.params["centering"] in ("mean", "none"))]
            scales = [u for u in users if u.op == "node_scale"]
            if not users or len(signs) > 2 or len(scales) > 1 or len(signs) + len(scales) != len(
                    users):
                continue
            spec: dict[str, Any] = {"keep_rows": False, "signs": None, "signs2": None,
                                    "scale": None, "sign_out": [], "scale_out": None}
            for key, u in zip(("signs", "signs2"), signs, strict=False):
                spec[key] = (("threshold", u.arrays["lo"], u.arrays["hi"], u.arrays["negate"])
                             if u.op == "threshold" else (u.params["centering"],))
                spec["sign_out"].append(u.outputs[0])
            if scales:
                u = scales[0]
                spec["scale"] = (u.params["centering"], u.arrays.get("bn_scale"),
                                 u.arrays.get("bn_shift"))
                spec["scale_out"] = u.outputs[0]
            self._agg_outputs[layer.name] = spec
            self._node_fused.update(u.name for u in users)
            self._executor.update((u.name, layer.name) for u in users)

    def _timed(self, layer: Layer, t0: float) -> None:
        if self.timings is not None:
            name = layer.name if not layer.fused_into else f"{layer.fused_into}+{layer.name}"
            self.timings.setdefault(name, []).append(time.perf_counter() - t0)

    # ------------------------------------------------------------------ point clouds

    def run_points(self, x: np.ndarray, trace: dict[str, np.ndarray] | None = None
                   ) -> np.ndarray:
        """Logits ``(B, classes)`` of clouds ``x (B, N, 3)`` float32."""
        env = self.run_from({"x": x})
        if trace is not None:
            trace.update({k: v for k, v in env.items() if k != "x"})
        return env["logits"]

    def run_from(self, env: dict[str, Any]) -> dict[str, Any]:
        """Run every point-cloud layer whose inputs are known and whose outputs are not, in
        order, starting from the named values ``env``; returns all values."""
        env = dict(env)
        by_name = {layer.name: layer for layer in self.program.layers}
        for layer in self.program.layers:
            if layer.name in self._pool_fused or all(v in env for v in layer.outputs):
                continue
            t0 = time.perf_counter()
            if layer.op == "global_pool" and layer.fused_into:
                lin = by_name[layer.fused_into]
                if lin.inputs[0] not in env:
                    continue
                outs = [self._linear_pool(lin, layer, env[lin.inputs[0]])]
            elif all(v in env for v in layer.inputs):
                outs = getattr(self, f"_p_{layer.op}")(layer, [env[v] for v in layer.inputs])
            else:
                continue
            self._timed(layer, t0)
            for name, v in zip(layer.outputs, outs, strict=True):
                env[name] = v
        return env

    def _p_knn(self, layer: Layer, ins: list) -> list:
        (v,) = ins
        k = layer.params["k"]
        if layer.params["metric"] == "hamming":
            return [_ops.hamming_knn(v, k, self.native, self.num_threads)]
        return [_ops.l2_knn(v, k, self.native, self.num_threads)]

    def _p_xyz_edge_conv_bits(self, layer: Layer, ins: list) -> list:
        """``x (B, N, 3)``, ``idx (B, N, k)`` -> packed bits."""
        x, idx = ins
        a = layer.arrays
        lo, hi, neg, w = a["p_lo"], a["p_hi"], a["p_negate"], a["weight"]
        # OR_j [y_j >= hi or y_j <= lo] = [max_j y >= hi or min_j y <= lo]; channels with a
        # negated (interval) predicate need every y_ij and are computed edge by edge.
        ymax, ymin = _ops.edge0_minmax(x, idx, w, None, None, self.native, self.num_threads)
        bits = (ymax >= hi) | (ymin <= lo)
        special = np.flatnonzero(neg)
        if special.size:
            y = ref.edge_preact0(x, idx, w[special])
            bits[..., special] = ref.predicate(y, lo[special], hi[special],
                                               neg[special]).any(axis=2)
        return [_ops.pack(bits ^ a["out_negate"].astype(bool))]

    def _p_xyz_edge_conv_real(self, layer: Layer, ins: list) -> list:
        x, idx = ins
        a = layer.arrays
        ymax, ymin = _ops.edge0_minmax(x, idx, a["weight"], a["bn_scale"], a["bn_shift"],
                                       self.native, self.num_threads)
        return [self._max_act(ymax, ymin, a)]

    @staticmethod
    def _max_act(ymax: np.ndarray, ymin: np.ndarray, a: dict[str, np.ndarray]) -> np.ndarray:
        # PReLU(alpha * y) is monotone or V-shaped in y (never peaked inside), so its max over
        # the neighbours is reached at the largest or the smallest pre-activation.
        return np.maximum(_act(ymax, a["alpha"], a["slope"]), _act(ymin, a["alpha"], a["slope"]))

    def _p_xor_edge_conv(self, layer: Layer, ins: list) -> list:
        (h,) = ins
        a = layer.arrays
        out, idx = _ops.xor_edge_conv_knn(
            h, layer.params["k"], a["w_rel"], a["w_self"], a["p_lo"], a["p_hi"], a["p_negate"],
            a["out_negate"], layer.in_values[0].channels, self.native, self.num_threads)
        return [out, idx]

    def _p_xyz_edge_conv_max(self, layer: Layer, ins: list) -> list:
        x, idx = ins
        a = layer.arrays
        return [_ops.edge_conv0_max(x, idx, a["weight"], a["alpha"], a["slope"], a["bn_scale"],
                                    a["bn_shift"], a["offset"], layer.params["bn"] == "edge",
                                    self.native, self.num_threads)]

    def _p_xor_edge_conv_max(self, layer: Layer, ins: list) -> list:
        (h,) = ins
        a = layer.arrays
        table, use_min = self._tables[layer.name]
        out, idx = _ops.xor_edge_conv_max(
            h, layer.params["k"], a["w_rel"], a["w_self"], table, use_min.astype(np.uint8),
            layer.in_values[0].channels, self.native, self.num_threads)
        return [out, idx]

    def _p_shortcut_add(self, layer: Layer, ins: list) -> list:
        h, s = ins
        # h + s.repeat(...) along channels, one float32 addition as in PyTorch
        return [h + np.tile(s, (1, 1, h.shape[-1] // s.shape[-1]))]

    def _p_real_edge_conv(self, layer: Layer, ins: list) -> list:
        h, idx = ins
        a = layer.arrays
        ymax, ymin = _ops.rf_edge_minmax(
            h, np.ascontiguousarray(idx, np.int32), a["rel_lo"], a["rel_hi"], a["rel_negate"],
            a["self_lo"], a["self_hi"], a["self_negate"], a["w_rel"], a["w_self"], self.native,
            self.num_threads)
        return [self._max_act(ymax, ymin, a)]

    def _p_concat(self, layer: Layer, ins: list) -> list:
        vals = layer.in_values
        if vals[0].kind == "real" or all(v.channels % 64 == 0 for v in vals):
            return [np.concatenate(ins, axis=-1)]
        unpacked = [ref.unpack_bits(b, v.channels) for b, v in zip(ins, vals, strict=True)]
        return [_ops.pack(np.concatenate(unpacked, axis=-1))]

    def _p_global_pool(self, layer: Layer, ins: list) -> list:
        a = layer.arrays
        return [_ops.embed_pool(ins[0], a["alpha"], a["slope"], a.get("bn_scale"),
                                a.get("bn_shift"), self.native, self.num_threads)]

    def _linear_pool(self, lin: Layer, pool: Layer, bits: np.ndarray) -> np.ndarray:
        """Binary embedding of packed ``(B, N, W)`` bits, then global max + mean pooling."""
        b, n, w = bits.shape
        e = lin.out_values[0].channels
        n_bits = lin.in_values[0].channels
        a = pool.arrays
        # The (N, E) int32 pre-activations of a few clouds at a time stay in cache; only their
        # max and mean over the points are kept.
        step = max(1, (8 << 20) // max(1, 4 * n * e))
        return np.concatenate([
            _ops.embed_pool(
                _ops.binary_gemm(bits[s : s + step].reshape(-1, w), lin.arrays["weight"],
                                 n_bits, self.native, self.num_threads).reshape(-1, n, e),
                a["alpha"], a["slope"], a.get("bn_scale"), a.get("bn_shift"), self.native,
                self.num_threads)
            for s in range(0, b, step)
        ])

    def _p_threshold(self, layer: Layer, ins: list) -> list:
        a = layer.arrays
        return [G.threshold_pack(ins[0], a["lo"], a["hi"], a["negate"], self.native,
                                 self.num_threads)]

    def _p_binary_linear(self, layer: Layer, ins: list) -> list:
        (bits,) = ins
        lead, w = bits.shape[:-1], bits.shape[-1]
        y = _ops.binary_gemm(np.ascontiguousarray(bits.reshape(-1, w)), layer.arrays["weight"],
                             layer.in_values[0].channels, self.native, self.num_threads)
        return [y.reshape(*lead, y.shape[-1])]

    def _p_affine(self, layer: Layer, ins: list) -> list:
        a, p = layer.arrays, layer.params
        terms = p["terms"]
        scales = iter(ins[len(terms) :])
        parts = []
        for i, t in enumerate(terms):
            rs = next(scales) if t.get("row_scale") is not None else None
            parts.append((ins[i], rs, a.get(f"t{i}_bias"), a.get(f"t{i}_alpha")))
        return [G.affine(parts, a.get("bias"), a.get("slope"), self.native, self.num_threads)]

    def _p_float_linear(self, layer: Layer, ins: list) -> list:
        (h,) = ins
        a = layer.arrays
        z = ref.fma_affine(h, a["bn_scale"], a["bn_shift"]) if "bn_scale" in a else h
        return [((z @ a["weight"].T + a["bias"]) * a["alpha"]).astype(np.float32)]

    # ------------------------------------------------------------------ graphs

    def run_nodes(self, features: Any, graph: Any, rows: np.ndarray | None = None,
                  trace: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Logits of the nodes ``rows`` (sorted unique node ids; ``None`` = every node), in that
        order: ``(len(rows) or N, classes)`` float32."""
        graphs: dict[str, Any] = {"graph": graph}
        need = self._rows_needed(graph, rows)
        env: dict[str, _NodeValue] = {"x": _NodeValue(features, None)}
        self._first_layer_together(features, env, need)
        release = None if trace is not None else self._release_after()
        for i, layer in enumerate(self.program.layers):
            if release is not None:
                for v in release.get(i - 1, ()):
                    env.pop(v, None)  # no later layer reads it: its memory goes back now
            if layer.outputs[0] in env:
                continue  # computed together with a sibling
            t0 = time.perf_counter()
            if layer.op == "gcn_norm":
                graphs[layer.outputs[0]] = graph.gcn(float(layer.params["fill"]))
                self._timed(layer, t0)
                continue
            if layer.name in self._node_fused:
                continue  # computed inside the neighbouring aggregate
            out = self._agg_epilogue.get(layer.name, (layer.outputs[0],))[0]
            if out not in need:
                continue  # nothing downstream reads it
            r = need[out]
            result = self._node_op(layer, env, graphs, r)
            spec = self._agg_outputs.get(layer.name)
            if spec is None:
                env[out] = _NodeValue(result, r)
            else:
                _, bits, beta = result
                if len(spec["sign_out"]) == 1:
                    bits = (bits,)
                for name, b in zip(spec["sign_out"], bits or (), strict=True):
                    env[name] = _NodeValue(b, r)
                if spec["scale_out"] is not None:
                    env[spec["scale_out"]] = _NodeValue(beta, r)
            self._timed(layer, t0)
        if trace is not None:
            trace.update({k: v.data for k, v in env.items() if k != "x"})
        return env["logits"].data

    def _release_after(self) -> dict[int, list[str]]:
        """Layer index -> the node values that no layer reads after it (fused layers read
        their inputs when the aggregate that runs them does), so that a pass holds only the
        live values: for GraphSAGE the first layer's sums are gone before the second layer's
        rows are aggregated. The input ``x`` and the logits are never released."""
        prog = self.program
        index = {layer.name: i for i, layer in enumerate(prog.layers)}
        last: dict[str, int] = {}
        for i, layer in enumerate(prog.layers):
            for v in layer.outputs:
                last[v] = max(last.get(v, -1), i)
            at = index[self._executor.get(layer.name, layer.name)]
            for v in layer.inputs:
                last[v] = max(last.get(v, -1), at, i)
        out: dict[int, list[str]] = {}
        for v, i in last.items():
            if v not in ("x", "logits"):
                out.setdefault(i, []).append(v)
        return out

    def _first_layer_together(self, features: Any, env: dict[str, _NodeValue],
                              need: dict[str, np.ndarray | None]) -> None:
        """The ``signed_linear`` layers that read the input features (GraphSAGE's two) in one
        pass over them, when they are needed on the same rows."""
        group = [layer for layer in self.program.layers
                 if layer.op == "signed_linear" and layer.outputs[0] in need]
        if len(group) < 2:
            return
        rows = [need[layer.outputs[0]] for layer in group]
        if not (all(r is None for r in rows) or all(
                r is not None and np.array_equal(r, rows[0]) for r in rows)):
            return
        t0 = time.perf_counter()
        outs = G.signed_linear(features.rows(rows[0]), [layer.arrays["weight"] for layer in group],
                               self.native, self.num_threads)
        for layer, z in zip(group, outs, strict=True):
            env[layer.outputs[0]] = _NodeValue(z, rows[0])
        self._timed(group[0], t0)

    def _rows_needed(self, graph: Any, rows: np.ndarray | None) -> dict[str, np.ndarray | None]:
        """For every node value, the rows that must be computed (``None`` = all)."""
        prog = self.program
        need: dict[str, np.ndarray | None] = {"logits": rows}
        gcn_graphs = {layer.outputs[0] for layer in prog.layers if layer.op == "gcn_norm"}
        for layer in reversed(prog.layers):
            if layer.op == "gcn_norm" or layer.outputs[0] not in need:
                continue
            r = need[layer.outputs[0]]
            if layer.op in ("aggregate", "majority"):
                h, g = layer.inputs
                src = None if r is None else _in_neighbours(graph, r, g in gcn_graphs)
                targets = [h]
                r_in = {h: src}
            else:
                targets = [v for v in layer.inputs if v != "graph" and v not in gcn_graphs]
                r_in = dict.fromkeys(targets, r)
            for v in targets:
                prev = need.get(v, np.empty(0, np.int64)) if v in need else None
                if v not in need:
                    need[v] = r_in[v]
                elif prev is None or r_in[v] is None:
                    need[v] = None
                else:
                    need[v] = np.union1d(prev, r_in[v])
        return need

    def _take(self, value: _NodeValue, rows: np.ndarray | None) -> Any:
        """The rows ``rows`` of a node value (which holds a superset of them)."""
        if value.rows is None and rows is None:
            return value.data
        if value.rows is not None and rows is not None and value.rows.size == rows.size:
            return value.data  # the same sorted set
        pos = rows if value.rows is None else np.searchsorted(value.rows, rows)
        return value.data[pos]

    def _node_op(self, layer: Layer, env: dict[str, _NodeValue], graphs: dict[str, Any],
                 rows: np.ndarray | None) -> Any:
        t = self.num_threads
        if layer.op == "signed_linear":
            feats = env[layer.inputs[0]].data.rows(rows)
            return G.signed_linear(feats, layer.arrays["weight"], self.native, t)
        if layer.op == "aggregate":
            h_name, g_name = layer.inputs
            rs_name, alpha = None, None
            if layer.name in self._agg_source:
                h_name, rs_name, alpha = self._agg_source[layer.name]
            epilogue = dict(self._agg_epilogue.get(layer.name, (None, {}))[1])
            if epilogue.get("second") is not None:
                x_name, rs_name2, b1, a1 = epilogue["second"]
                rs2 = env[rs_name2].data if rs_name2 is not None else None
                epilogue["second"] = (env[x_name].data, rs2, b1, a1)
            h = env[h_name]
            row_scale = env[rs_name].data if rs_name is not None else None
            indptr, indices, weights = _local_csr(graphs[g_name], rows, h.rows)
            outputs = self._agg_outputs.get(layer.name)
            if outputs is not None:
                epilogue.update(keep_rows=False, signs=outputs["signs"], scale=outputs["scale"],
                                signs2=outputs["signs2"])
            return G.aggregate(h.data, indptr, indices, weights,
                               layer.params["reduce"] == "mean", self.native, t,
                               row_scale=row_scale, alpha=alpha, **epilogue)
        if layer.op == "majority":
            b = env[layer.inputs[0]]
            indptr, indices, _ = _local_csr(graphs[layer.inputs[1]], rows, b.rows)
            return G.majority(b.data, layer.in_values[0].channels, indptr, indices,
                              self.native, t)
        ins = [self._take(env[v], rows) for v in layer.inputs]
        if layer.op == "center_sign":
            return G.center_sign(ins[0], layer.params["centering"], self.native, t)
        if layer.op == "node_scale":
            a = layer.arrays
            return G.node_scale(ins[0], layer.params["centering"], a.get("bn_scale"),
                                a.get("bn_shift"), self.native, t)
        return getattr(self, f"_p_{layer.op}")(layer, ins)[0]


def _local_csr(g: Any, rows: np.ndarray | None, source_rows: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(indptr, indices, weights)`` of the in-edges of ``rows`` (all nodes for ``None``) of a
    graph (or GCN's normalised ``(indptr, indices, weights)``), with the sources numbered as
    the rows of a value that holds only ``source_rows``."""
    if isinstance(g, tuple):
        indptr, indices, weights = g
    else:
        indptr, indices, weights = g.indptr, g.indices, None
    if rows is not None:
        indptr, order = G.gather_rows(indptr, rows)
        indices = indices[order]
        weights = None if weights is None else weights[order]
    if source_rows is not None:
        indices = np.searchsorted(source_rows, indices).astype(np.int32)
    return indptr, indices, weights


def _in_neighbours(graph: Any, rows: np.ndarray, with_self: bool) -> np.ndarray:
    """Sorted unique sources of the in-edges of ``rows`` (plus ``rows`` for GCN's
    self-loops)."""
    _, order = G.gather_rows(graph.indptr, rows)
    src = graph.indices[order].astype(np.int64)
    if with_self:
        src = np.concatenate([src, rows])
    return np.unique(src)
