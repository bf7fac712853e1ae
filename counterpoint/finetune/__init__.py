"""Fine-tuning for CML: the project's function library, synthetic interaction traces and the
dataset pipeline that ``counterpoint finetune`` trains a LoRA adapter on.

- :mod:`counterpoint.finetune.library`: 150+ typed ``@tool`` functions over 15+ domains, with
  question templates, value samplers and a fixed held-out split (never BFCL's functions).
- :mod:`counterpoint.finetune.traces`: ideal asynchronous CML transcripts on a simulated clock.
- :mod:`counterpoint.finetune.data`: ``build_dataset``, JSONL output with a content hash, and
  token-level encoding with the loss mask.
- :mod:`counterpoint.finetune.usertools`: the same traces over a user's own toolset, with
  generic questions written from its JSON schemas (``--tools pkg.mod:toolset``).
- :mod:`counterpoint.finetune.train`: ``train(data, TrainConfig(...), out_dir)``, a seeded LoRA
  (peft) loop on CPU that writes the adapter, ``recipe.json`` and ``loss.png``.
- :mod:`counterpoint.finetune.cli`: ``counterpoint finetune data|train``.
"""
