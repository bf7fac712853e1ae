"""``python -m counterpoint.finetune data --out DIR``: write the fine-tuning data and its manifest.

``counterpoint finetune data`` (:mod:`counterpoint.finetune.cli`) does the same with more
options (``--tools``); this entry point stays for scripts that call it.
"""

from __future__ import annotations

import argparse
import json
import sys

from counterpoint.errors import CounterpointError
from counterpoint.finetune.commands import library_summary, prepare_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m counterpoint.finetune")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="write train.jsonl, held_out.jsonl and manifest.json")
    data.add_argument("--out", required=True, help="the folder to write to")
    data.add_argument("-n", type=int, default=1000, help="training samples (default 1000)")
    data.add_argument("--held-out", type=int, default=200, help="held-out samples (default 200)")
    data.add_argument("--seed", type=int, default=0)
    sub.add_parser("library", help="print the function library's size")
    args = parser.parse_args(argv)
    try:
        if args.command == "library":
            result = library_summary()
        else:
            result = prepare_data(args.out, n=args.n, seed=args.seed, held_out=args.held_out)
    except CounterpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
