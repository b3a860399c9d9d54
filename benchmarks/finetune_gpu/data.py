"""Training data for the GPU runs, in the synthesis step's chat JSONL layout (`components.common.chat_format`).

- `full_length_rows`: every row is longer than `max_seq_length`, so after the training function's own
  tokenization (answer truncated) every row is exactly `max_seq_length` tokens. That is the worst case
  for activation memory at the production config, and makes tokens/step = batch x accum x length.
- `describer_rows`: short, learnable product descriptions (a fixed pattern of brand, item, size,
  material) for the real-weights run, where the loss must go down.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from components.common.chat_format import describer_messages, qa_messages

BRANDS = ["Sony", "Acme", "Bosch", "Canon", "Philips", "Logitech", "Anker", "Braun"]
ITEMS = ["Desk Lamp", "Backpack", "Toaster", "Headphones", "Kettle", "Keyboard", "Charger", "Blender"]
MATERIALS = ["aluminium", "recycled plastic", "stainless steel", "bamboo", "nylon"]
COLORS = ["black", "white", "navy blue", "red", "grey"]
FILLER = (
    "Designed for everyday use at home and in the office, it combines a sturdy build with a clean look. "
    "The package includes the product, a quick start guide and a two year limited warranty card. "
)


def describer_rows(n: int, split: str = "train", offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        brand, item = BRANDS[i % len(BRANDS)], ITEMS[(i // len(BRANDS)) % len(ITEMS)]
        size, material, color = 8 + i % 9, MATERIALS[i % len(MATERIALS)], COLORS[(i // 3) % len(COLORS)]
        title = f"{brand} {item} {size} inch {color.title()}"
        desc = (
            f"The {brand} {item.lower()} measures {size} inches and comes in {color}. "
            f"It is made of {material} and ships with a {brand} warranty."
        )
        rows.append({"messages": describer_messages(title, desc), "uid": f"{split}-{i}", "split": split})
    return rows


def _long_text(rng: random.Random, words: int) -> str:
    vocab = (FILLER + " ".join(BRANDS + ITEMS + MATERIALS + COLORS)).split()
    return " ".join(rng.choice(vocab) for _ in range(words))


def full_length_rows(task: str, n: int, max_seq_length: int, seed: int = 0) -> list[dict]:
    """Rows that overflow `max_seq_length` (about 1.3 tokens per word here, so 1.2 words/token is plenty).

    The prompt stays well under the limit (a third of it) so no row is dropped as `prompt_too_long`.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        title = f"{BRANDS[i % 8]} {ITEMS[(i // 8) % 8]} {i}"
        if task == "describer":
            messages = describer_messages(title, _long_text(rng, int(max_seq_length * 1.2)))
        else:
            context = [(title, _long_text(rng, max_seq_length // 4))]
            messages = qa_messages(f"What is the {title} made of?", context, _long_text(rng, max_seq_length))
        rows.append({"messages": messages, "uid": f"row-{i}", "split": "train"})
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
