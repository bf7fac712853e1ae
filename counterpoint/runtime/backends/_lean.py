"""The lean one-token decode step of Llama-architecture models, for one sequence or a batch.

:class:`LeanDecode` runs exactly the tensor operations of transformers' ``LlamaForCausalLM.forward``
for one new token per sequence on a ``DynamicCache`` each, without the model's per-call Python
machinery. :meth:`LeanDecode.step_many` steps several sequences (each with its own cache, at its
own position) in one pass: the projections and the vocabulary head run once on the stacked rows,
attention runs per sequence on its own keys and values. A batch's logits are bit for bit each
sequence's own wherever :meth:`LeanDecode.mode` finds a way to make them so on this CPU's kernels
(checked on the real weights): as they are, or by running the one-row projections of the weight
shapes that need it as two copies of the row.
Worker thread only.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import create_causal_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from counterpoint.runtime.backends._attention import PACKED_SDPA, packed_decode

__all__ = ["BatchMode", "LeanDecode"]

BatchMode = Literal["rows", "padded", "alone"]
_LOG = logging.getLogger(__name__)


class LeanDecode:
    """A one-token decode step of a Llama-architecture model, without ``model.forward``.

    It runs exactly the tensor operations of transformers' ``LlamaForCausalLM.forward`` for one
    new token on a ``DynamicCache`` with SDPA attention (no mask: a single query attends to every
    cached position; packed per key/value head where the model runs
    :data:`~._attention.PACKED_SDPA`), in the same order and dtypes, so its logits and the keys
    and values it appends are bit for bit those of the model's own forward (in ``"padded"``
    mode, below, of that forward for the row in a batch; tests/runtime/backends/
    test_lean_decode.py checks it). What it leaves out is per-call Python overhead: the mask
    builder, output records, keyword plumbing and decorators of every module. The projections are
    still called as modules, so adapters that wrap them (LoRA) keep working.

    Where this CPU's matmul gives a row alone other bits than the same row in a batch, and every
    pass of two rows or more agrees (:meth:`mode` is ``"padded"``), the projections of those
    weight shapes run a one-row step as two copies of the row: the step then gives what a
    batched pass gives, which is what the model's own forward gives that row in a batch of two
    (not alone). Worker thread only.
    """

    def __init__(self, model: Any) -> None:
        inner = model.model
        self._embed = inner.embed_tokens
        self._rotary = inner.rotary_emb
        self._norm = inner.norm
        self._packed: list[_PackedLinear] = []
        self._exact: dict[tuple[int, ...], bool] = {}  # per weight shape: is packing exact?
        self._linears: list[Callable[[torch.Tensor], torch.Tensor]] = []  # every projection
        self._mode: BatchMode | None = None
        self._config = model.config
        self._head = self._linear(model.lm_head)
        self._layers = [
            (
                layer.input_layernorm,
                self._linear(layer.self_attn.q_proj),
                self._linear(layer.self_attn.k_proj),
                self._linear(layer.self_attn.v_proj),
                self._linear(layer.self_attn.o_proj),
                int(layer.self_attn.head_dim),
                float(layer.self_attn.scaling),
                int(layer.self_attn.num_key_value_groups) > 1,
                layer.post_attention_layernorm,
                self._linear(layer.mlp.gate_proj),
                self._linear(layer.mlp.up_proj),
                self._linear(layer.mlp.down_proj),
                layer.mlp.act_fn,
            )
            for layer in inner.layers[: model.config.num_hidden_layers]
        ]
        # Modules whose forward this step replaces: a hook on any of them sends it back to the
        # model's own forward, so hooks still run.
        # (The model itself only weakly: this step is cached in a WeakKeyDictionary keyed by it.)
        self._model = weakref.ref(model)
        bypassed = [inner, inner.norm, inner.rotary_emb]
        for layer in inner.layers:
            bypassed += [layer, layer.self_attn, layer.mlp]
            bypassed += [layer.input_layernorm, layer.post_attention_layernorm]
        bypassed += [p.module for p in self._packed]
        self._bypassed = bypassed
        self._single: tuple[Callable[[torch.Tensor], torch.Tensor], list[Any]] | None = None
        """The vocabulary head and layers a one-row step runs (padded ones where they must be)."""
        self._attention_modules = [layer.self_attn for layer in inner.layers]
        self._feeds: dict[tuple[str, str, tuple[int, ...]], bool] = {}
        """Whether :meth:`feed` gives what the model's forward gives, per attention
        implementation, dtype and thread counts (probed once each)."""
        self._feeds_lock = threading.Lock()

    def _hooked(self) -> bool:
        """True if a forward hook is registered on a bypassed module (or globally)."""
        nn_module = torch.nn.modules.module
        if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
            return True
        top = self._model()
        if top is None or top._forward_hooks or top._forward_pre_hooks:
            return True
        return any(m._forward_hooks or m._forward_pre_hooks for m in self._bypassed)

    def _linear(self, module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """``module`` itself, or its bf16 weight prepacked for oneDNN where that is exact."""
        if _PackedLinear.suits(module):
            packed = _PackedLinear(module)
            shape = tuple(module.weight.shape)
            if shape not in self._exact:
                self._exact[shape] = packed.exact()
            if self._exact[shape]:
                self._packed.append(packed)
                self._linears.append(packed)
                return packed
        call: Callable[[torch.Tensor], torch.Tensor] = module
        self._linears.append(call)
        return call

    @staticmethod
    def eligible(model: Any) -> bool:
        """True for models whose one-token forward this step reproduces (Llama, SDPA)."""
        config = getattr(model, "config", None)
        if type(model).__name__ != "LlamaForCausalLM" or config is None:
            return False
        if getattr(config, "_attn_implementation", None) not in ("sdpa", PACKED_SDPA):
            return False
        inner: Any = getattr(model, "model", None)
        rotary = getattr(inner, "rotary_emb", None)
        if getattr(rotary, "rope_type", None) != "default" or getattr(model, "training", True):
            return False
        if type(inner).__name__ != "LlamaModel" or getattr(config, "pretraining_tp", 1) != 1:
            return False
        return all(type(layer).__name__ == "LlamaDecoderLayer" for layer in inner.layers)

    @classmethod
    def build(cls, model: Any) -> LeanDecode | None:
        """A new lean step for ``model``, or ``None`` where its forward may differ from Llama's."""
        return cls(model) if cls.eligible(model) else None

    @classmethod
    def of(cls, model: Any) -> LeanDecode | None:
        """The lean step of ``model``, built once per model (its packed weights are shared)."""
        with _LEAN_LOCK:
            if model not in _LEAN_STEPS:
                _LEAN_STEPS[model] = cls.build(model)
            return _LEAN_STEPS[model]

    def fits(self, cache: DynamicCache) -> bool:
        """True when ``cache`` is a plain full-attention ``DynamicCache`` this step can grow, the
        model still runs an attention this step reproduces (``sdpa`` or
        :data:`~._attention.PACKED_SDPA`), and no weight changed since it was packed (an adapter
        merged later, a state dict loaded)."""
        layers = cache.layers
        if len(layers) != len(self._layers) or any(type(x) is not DynamicLayer for x in layers):
            return False
        if self._config._attn_implementation not in ("sdpa", PACKED_SDPA):
            return False
        return not self._hooked() and all(p.current() for p in self._packed)

    def step(self, token_id: int, cache: DynamicCache) -> torch.Tensor:
        """Feed ``token_id`` onto ``cache``; return the next-token logits as a ``[1, vocab]``."""
        head, layers = self._single_row()
        packed = self._config._attn_implementation == PACKED_SDPA
        x = self._embed(torch.tensor([[token_id]], dtype=torch.long))
        cos, sin = self._rope(cache.get_seq_length(), x.dtype)
        for index, (norm1, q_proj, k_proj, v_proj, o_proj, head_dim, scaling, gqa, norm2, gate,
                    up, down, act) in enumerate(layers):  # fmt: skip
            h = _rms_norm(norm1, x)
            q = q_proj(h).view(1, 1, -1, head_dim).transpose(1, 2)
            k = k_proj(h).view(1, 1, -1, head_dim).transpose(1, 2)
            v = v_proj(h).view(1, 1, -1, head_dim).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            k, v = cache.update(k, v, index)
            o = self._attend(q, k, v, scaling, gqa, gqa and packed)
            o = o.reshape(o.shape[0], -1, 1, v.shape[-1]).transpose(1, 2).contiguous()
            x = x + o_proj(o.reshape(1, 1, -1).contiguous())
            h = _rms_norm(norm2, x)
            x = x + down(act(gate(h)) * up(h))
        logits: torch.Tensor = head(_rms_norm(self._norm, x))
        return logits[0]

    def step_many(self, token_ids: Sequence[int], caches: Sequence[DynamicCache]) -> torch.Tensor:
        """Feed ``token_ids[i]`` onto ``caches[i]`` for every ``i`` in one pass; return the
        next-token logits, one row per sequence (``[len(token_ids), vocab]``).

        The projections, norms and the head run once on the stacked rows; rotary positions and
        attention are each sequence's own. Row ``i`` is bit for bit ``step(token_ids[i],
        caches[i])`` where :meth:`batches_exactly` holds. If a pass fails, the caller must
        truncate every cache back (some layers may have grown).
        """
        count = len(token_ids)
        if count != len(caches) or count == 0:
            raise ValueError("step_many needs one cache per token id, and at least one of each")
        if count == 1:
            return self.step(token_ids[0], caches[0])
        packed = self._config._attn_implementation == PACKED_SDPA
        x = self._embed(torch.tensor([[t] for t in token_ids], dtype=torch.long))
        ropes = [self._rope(c.get_seq_length(), x.dtype) for c in caches]
        cos = torch.cat([r[0] for r in ropes])
        sin = torch.cat([r[1] for r in ropes])
        for index, (norm1, q_proj, k_proj, v_proj, o_proj, head_dim, scaling, gqa, norm2, gate,
                    up, down, act) in enumerate(self._layers):  # fmt: skip
            h = _rms_norm(norm1, x)
            q = q_proj(h).view(count, 1, -1, head_dim).transpose(1, 2)
            k = k_proj(h).view(count, 1, -1, head_dim).transpose(1, 2)
            v = v_proj(h).view(count, 1, -1, head_dim).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            outs = []
            for row, cache in enumerate(caches):
                kr, vr = cache.update(k[row : row + 1], v[row : row + 1], index)
                outs.append(self._attend(q[row : row + 1], kr, vr, scaling, gqa, gqa and packed))
            o = torch.cat(outs).transpose(1, 2).reshape(count, 1, -1).contiguous()
            x = x + o_proj(o)
            h = _rms_norm(norm2, x)
            x = x + down(act(gate(h)) * up(h))
        logits: torch.Tensor = self._head(_rms_norm(self._norm, x))
        return logits[:, 0]

    def feed(self, token_ids: Sequence[int], cache: DynamicCache, keep: int) -> torch.Tensor:
        """Feed several tokens of one sequence onto ``cache`` in one pass; return the logits
        after each of the last ``keep`` (``[min(keep, len(token_ids)), vocab]``, as the
        forward's slice gives them; ``[0, vocab]`` when 0).

        The pass runs the tensor operations of the model's own forward for it, called as the
        model calls them (its causal mask, rotary embedding and attention implementation), so
        its logits and the keys and values it appends are those of ``model.forward`` wherever
        :meth:`feeds_exactly` holds. Left out: the per-call plumbing of every module, and the
        head's slow path: the model applies its head to a slice of the hidden states, which
        PyTorch runs as a batched matmul that copies the whole vocabulary matrix at every pass
        (about 60 ms here, against 3 ms for the same rows laid out as a matrix).
        """
        count = len(token_ids)
        if count == 0:
            raise ValueError("feed needs at least one token id")
        x = self._embed(torch.tensor([list(token_ids)], dtype=torch.long))
        past = cache.get_seq_length()
        positions = (torch.arange(count) + past).unsqueeze(0)
        mask = _causal_mask(self._config, x, cache, positions)
        cos, sin = self._rotary(x, position_ids=positions)
        attention = ALL_ATTENTION_FUNCTIONS[self._config._attn_implementation]
        for index, (norm1, q_proj, k_proj, v_proj, o_proj, head_dim, scaling, _, norm2, gate,
                    up, down, act) in enumerate(self._layers):  # fmt: skip
            module = self._attention_modules[index]
            h = _rms_norm(norm1, x)
            q = q_proj(h).view(1, count, -1, head_dim).transpose(1, 2)
            k = k_proj(h).view(1, count, -1, head_dim).transpose(1, 2)
            v = v_proj(h).view(1, count, -1, head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = cache.update(k, v, index)
            o, _ = attention(module, q, k, v, mask, dropout=0.0, scaling=scaling)
            x = x + o_proj(o.reshape(1, count, -1).contiguous())
            h = _rms_norm(norm2, x)
            x = x + down(act(gate(h)) * up(h))
        if keep <= 0:
            return torch.empty((0, int(self._config.vocab_size)), dtype=x.dtype)
        rows = _rms_norm(self._norm, x)[0, count - min(keep, count) :].contiguous()
        logits: torch.Tensor = self._head(rows)
        return logits

    def feeds_exactly(self, threads: Sequence[int] = ()) -> bool:
        """True where :meth:`feed` gives bit for bit what the model's forward gives, on each of
        ``threads`` (torch thread counts passes may run on; default: the current one).

        Checked once per attention implementation, dtype and thread counts, on probe tokens: a
        first pass of 40 tokens keeping one row, 8 tokens on its cache keeping all 8, and 130
        more keeping two, logits and keys and values (a transformers version whose forward
        differs, or a kernel that rounds a matrix of rows apart from a slice of them, fails it,
        and passes then run the model's own forward). Worker threads only; thread-safe.
        """
        counts = tuple(sorted(set(threads))) or (torch.get_num_threads(),)
        key = (str(self._config._attn_implementation), str(self._embed.weight.dtype), counts)
        if key not in self._feeds:
            with self._feeds_lock:
                if key not in self._feeds:
                    self._feeds[key] = all(self._probe_feed(n) for n in counts)
        return self._feeds[key]

    def _probe_feed(self, threads: int) -> bool:
        model = self._model()
        if model is None:
            return False
        vocab = int(self._config.vocab_size)
        ids = [(7919 * i + 13) % vocab for i in range(1, 179)]
        passes = ((ids[:40], 1), (ids[40:48], 8), (ids[48:], 2))
        parameters = inspect.signature(model.forward).parameters
        argument = "cache" if "cache" in parameters else "past_key_values"
        ours = DynamicCache(config=self._config)
        theirs = DynamicCache(config=self._config)
        now = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                for part, keep in passes:
                    mine = self.feed(part, ours, keep)
                    kwargs: dict[str, Any] = {argument: theirs}
                    if "logits_to_keep" in parameters:  # as the decoder calls it
                        kwargs["logits_to_keep"] = keep
                    out = model(input_ids=torch.tensor([part]), use_cache=True, **kwargs)
                    if not torch.equal(mine, out.logits[0, -keep:]):
                        _LOG.debug("lean feed: %d tokens round apart from the forward", len(part))
                        return False
                layers = zip(ours.layers, theirs.layers, strict=True)
                same = all(_same_layer(a, b) for a, b in layers)
        except Exception as error:  # an API this pass does not know: the model's forward it is
            _LOG.debug("lean feed: the probe failed (%r); passes run the forward", error)
            return False
        finally:
            torch.set_num_threads(now)
        if not same:
            _LOG.debug("lean feed: keys or values round apart from the forward")
        return same

    @staticmethod
    def _attend(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float, gqa: bool, packed: bool
    ) -> torch.Tensor:
        """One query token's attention, as the model's own attention implementation runs it."""
        if packed:
            return packed_decode(q, k, v, scaling)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=0.0, scale=scaling, is_causal=False, enable_gqa=gqa
        )

    def mode(self) -> BatchMode:
        """How a batch's rows are made bit for bit each row's own on this CPU (checked once, on
        probe rows, for every projection of every layer and the head; the norms, rotary and
        attention are per row by construction):

        - ``"rows"``: every projection gives a row in a batch what it gives that row alone;
        - ``"padded"``: some do not (a one-row matmul takes another kernel), but every pass of
          two rows or more agrees (probed at 2, 3, 4, 8 and 16 rows), so one-row steps run
          those projections on two copies of the row. Seen on an AMD EPYC with AVX512-BF16,
          where oneDNN's one-row bf16 kernel sums the 1536 inputs of ``down_proj`` in another
          order and rounds about 8% of rows apart;
        - ``"alone"``: neither holds, and sessions are stepped one by one, so answers never
          change with the company they keep.
        """
        if self._mode is None:
            self._mode, self._single = self._probe()
        return self._mode

    def batches_exactly(self) -> bool:
        """True where a batched pass gives every row what its own step gives it."""
        return self.mode() != "alone"

    def _single_row(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[Any]]:
        """The head and layers a one-row step runs (probing first, once)."""
        self.mode()
        assert self._single is not None  # set with the mode
        return self._single

    def _probe(
        self,
    ) -> tuple[BatchMode, tuple[Callable[[torch.Tensor], torch.Tensor], list[Any]]]:
        alone_apart: set[tuple[int, ...]] = set()
        padded_apart = False
        for linear in self._linears:
            shape, alone_same, padded_same = _row_invariance(linear)
            if not alone_same:
                alone_apart.add(shape)
            padded_apart = padded_apart or not padded_same
        if padded_apart or not alone_apart:
            return ("alone" if padded_apart else "rows"), (self._head, self._layers)
        wrapped: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
            id(f): _TwoRows(f) for f in self._linears if _weight_shape(f) in alone_apart
        }

        def pad(f: Any) -> Any:
            return wrapped.get(id(f), f)

        layers = [tuple(pad(part) for part in layer) for layer in self._layers]
        return "padded", (pad(self._head), layers)

    def _rope(self, position: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary cos and sin for one token at ``position`` (``[1, 1, 1, head_dim]`` each)."""
        rotary = self._rotary
        at = (torch.arange(1) + position).unsqueeze(0)
        freqs = at[..., None].float() * rotary.inv_freq.to(dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * rotary.attention_scaling).to(dtype).unsqueeze(1)
        sin = (emb.sin() * rotary.attention_scaling).to(dtype).unsqueeze(1)
        return cos, sin


class _PackedLinear:
    """A bias-free bf16 ``nn.Linear`` whose weight is prepacked for oneDNN once.

    Plain ``F.linear`` on bf16 runs the same oneDNN matmul but lays the weight out again at every
    call; for one token that costs about a quarter of the projection's time here. The packed call
    runs the same kernel, so its result is identical (checked on the real weights by
    :meth:`exact` before use, and by tests/runtime/backends/test_lean_decode.py).
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self._weight: torch.Tensor = module.weight
        self._version = -1
        self._packed: torch.Tensor | None = None
        self.current()

    @staticmethod
    def suits(module: Any) -> bool:
        weight = getattr(module, "weight", None)
        return (
            type(module) is torch.nn.Linear
            and module.bias is None
            and isinstance(weight, torch.Tensor)
            and weight.dtype == torch.bfloat16
            and weight.device.type == "cpu"
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        )

    def exact(self) -> bool:
        """True if the packed call gives bit for bit what ``F.linear`` gives, on a probe row."""
        probe = torch.randn(1, 1, self._weight.shape[1], generator=torch.Generator().manual_seed(0))
        probe = probe.to(torch.bfloat16)
        try:
            with torch.inference_mode():
                same: bool = torch.equal(self(probe), F.linear(probe, self._weight))
        except RuntimeError:  # pragma: no cover - a torch build without the packed kernels
            return False
        return same

    def current(self) -> bool:
        """Pack the weight again if it was changed in place or replaced since; False when it can
        no longer be packed (the caller then runs the model's own forward)."""
        weight = getattr(self.module, "weight", None)
        if weight is self._weight and weight._version == self._version:
            return True
        if not isinstance(weight, torch.Tensor) or weight.dtype != torch.bfloat16:
            return False
        self._weight, self._version = weight, weight._version
        with torch.no_grad():
            self._packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        return True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            x, self._packed, None, "none", [], ""
        )
        return out


class _TwoRows:
    """A projection whose one-row calls run as two copies of the row (row 0 returned), so they
    take the kernel of a batched pass."""

    def __init__(self, linear: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.linear = linear

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            return self.linear(x)
        return self.linear(torch.cat((x, x)))[:1]


def _weight(linear: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    """The weight of a projection (a module, or a packed one's module)."""
    weight = getattr(linear, "weight", None)
    if weight is None:
        weight = getattr(getattr(linear, "module", None), "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


def _weight_shape(linear: Callable[[torch.Tensor], torch.Tensor]) -> tuple[int, ...]:
    weight = _weight(linear)
    return () if weight is None else tuple(weight.shape)


def _row_invariance(
    linear: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[tuple[int, ...], bool, bool]:
    """``linear``'s weight shape; whether each probe row alone gives what it gives in a batch;
    whether every pass of two rows or more does (two copies of a row, and batches of 3, 4 and 8
    rows, against one of :data:`_PROBE_ROWS`). A kernel that fails counts as differing."""
    weight = _weight(linear)
    if weight is None or weight.dim() != 2:
        return (), False, False
    shape = tuple(weight.shape)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(_PROBE_ROWS, 1, shape[1], generator=generator).to(weight.dtype)
    try:
        with torch.inference_mode():
            together = linear(probe)
            rows = [probe[i : i + 1] for i in range(_PROBE_ROWS)]
            alone = all(torch.equal(together[i : i + 1], linear(r)) for i, r in enumerate(rows))
            padded = all(
                torch.equal(together[i : i + 1], linear(torch.cat((r, r)))[:1])
                for i, r in enumerate(rows)
            )
            padded = padded and all(
                torch.equal(together[:m], linear(probe[:m])) for m in _PROBE_SIZES
            )
    except RuntimeError:  # a kernel that refuses these rows: never batch on it
        return shape, False, False
    return shape, alone, padded


_PROBE_ROWS = 16
_PROBE_SIZES = (3, 4, 8)
_LEAN_STEPS: weakref.WeakKeyDictionary[Any, LeanDecode | None] = weakref.WeakKeyDictionary()
_LEAN_LOCK = threading.Lock()


def _rms_norm(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """``LlamaRMSNorm.forward``, op for op."""
    dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + norm.variance_epsilon)
    out: torch.Tensor = norm.weight * h.to(dtype)
    return out


def _same_layer(a: Any, b: Any) -> bool:
    """Whether two cache layers hold the same keys and values, bit for bit."""
    return bool(torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values))


def _causal_mask(config: Any, x: torch.Tensor, cache: DynamicCache, positions: torch.Tensor) -> Any:
    """The attention mask the model's forward builds for a pass of ``x`` at ``positions``
    (transformers' keyword names differ between versions: read from its signature)."""
    names = _mask_parameters()
    kwargs: dict[str, Any] = {"config": config, "attention_mask": None, "position_ids": positions}
    kwargs["inputs_embeds" if "inputs_embeds" in names else "input_embeds"] = x
    kwargs["cache" if "cache" in names else "past_key_values"] = cache
    if "cache_position" in names:  # transformers 4.x
        kwargs["cache_position"] = positions[0]
    return create_causal_mask(**kwargs)


@functools.cache
def _mask_parameters() -> frozenset[str]:
    return frozenset(inspect.signature(create_causal_mask).parameters)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
