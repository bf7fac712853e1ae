"""Fine-tuning for CML: the project's function library, synthetic interaction traces and the
dataset pipeline that ``counterpoint finetune`` trains a LoRA adapter on.

- :mod:`counterpoint.finetune.library`: 150+ typed ``@tool`` functions over 15+ domains, with
  question templates, value samplers and a fixed held-out split (never BFCL's functions).
- :mod:`counterpoint.finetune.traces`: ideal asynchronous CML transcripts on a simulated clock.
- :mod:`counterpoint.finetune.data`: ``build_dataset``, JSONL output with a content hash, and
  token-level encoding with the loss mask.
"""
