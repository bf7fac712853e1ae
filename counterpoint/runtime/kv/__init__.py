"""KV-cache reuse across agents on the local backend (DESIGN.md, "KV reuse across agents").

- :mod:`.builder`: segmented prompts (template text and shared content with keys).
- :mod:`.prefix_cache`: exact token-prefix reuse (radix tree, byte budget, LRU).
- :mod:`.segments`: the segment KV store (shared content, its tokens and its KV).
- :mod:`.rope`: re-rotating cached keys to new positions.
- :mod:`.anchors`: KVCOMM's anchor pool, offset interpolation and online anchor decision.
- :mod:`.fidelity`: greedy agreement and KL against a dense prefill.
- :mod:`.policy` / :mod:`.reuse`: :class:`KVReuseModel`, the Model seam with a policy
  (``dense | prefix | shift | anchors``).

Importing this package imports torch and transformers.
"""

from counterpoint.runtime.kv.anchors import AnchorPool, Decision, Deviation, Offsets
from counterpoint.runtime.kv.builder import (
    Content,
    PromptBuilder,
    agent_output_key,
    mark_contents,
    slot_of,
)
from counterpoint.runtime.kv.fidelity import Fidelity, compare_logits
from counterpoint.runtime.kv.policy import (
    POLICIES,
    ContentReport,
    KVCallStats,
    KVReuseConfig,
    Policy,
)
from counterpoint.runtime.kv.prefix_cache import PrefixCache, PrefixMatch
from counterpoint.runtime.kv.reuse import KVReuseDecoder, KVReuseModel
from counterpoint.runtime.kv.rope import Rotary
from counterpoint.runtime.kv.segments import SegmentEntry, SegmentStore

__all__ = [
    "POLICIES",
    "AnchorPool",
    "Content",
    "ContentReport",
    "Decision",
    "Deviation",
    "Fidelity",
    "KVCallStats",
    "KVReuseConfig",
    "KVReuseDecoder",
    "KVReuseModel",
    "Offsets",
    "Policy",
    "PrefixCache",
    "PrefixMatch",
    "PromptBuilder",
    "Rotary",
    "SegmentEntry",
    "SegmentStore",
    "agent_output_key",
    "compare_logits",
    "mark_contents",
    "slot_of",
]
