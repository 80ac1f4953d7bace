"""The temperature table of docs/results/reconstruction: every runs/<mode>/<setting>/pieces.json as one markdown
table (mean [95% interval over pieces]).  python docs/results/reconstruction/table.py docs/results/reconstruction/runs"""

import json
import sys
from pathlib import Path

MODES = ("in_attention", "cross_attention", "none", "in_attention_lr1e-3", "none_lr1e-3")


def cell(iv: dict) -> str:
    return f"{iv['mean']:.3f} [{iv['lo']:.2f}, {iv['hi']:.2f}]"


def main(root: Path) -> None:
    print("| decoding | mode | chroma | chroma, shuffled z | chroma − shuffled | groove | groove, shuffled z | metre kept | bars kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    settings = sorted({p.parent.name for p in root.glob("*/*/pieces.json")}, key=lambda n: (n.endswith("free"), n))
    for name in settings:
        for mode in MODES:
            path = root / mode / name / "pieces.json"
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
            s = data.get("model", data)["summary"]  # evaluate.py before pieces_floor.json: {"model": ...}
            print(f"| {name} | {mode} | {cell(s['chroma'])} | {cell(s['shuffled_chroma'])} | "
                  f"{cell(s['chroma_over_shuffled'])} | {cell(s['groove'])} | {cell(s['shuffled_groove'])} | "
                  f"{s['metre']['mean']:.2f} | {s['bar_count_kept']:.0%} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
