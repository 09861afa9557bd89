"""llama.cpp's logits for the demo model with a GGUF LoRA (runtime --lora),
recorded for crates/engine/tests/lora_gguf.rs (llama_cpp_parity).

Usage (from the repo root; LLAMA_CPP_LIB_PATH pointing at llama.cpp's
shared libraries):
  python testdata/lora/gen_expected.py assets/demo/foldoc-demo.gguf \
      testdata/lora/demo-adapter.gguf [MERGED.gguf] > testdata/lora/expected.json

Records the prompt's tokens, llama.cpp's full last-position logits with
the adapter, its top-8 per position, and the base model's last logits (so
the test can check that the adapter moves the model). With MERGED.gguf
(Hearth's `hearth distill merge` of the same adapter), also prints to
stderr max |Δlogit| between llama.cpp's runtime LoRA and llama.cpp running
Hearth's merged file, over every position and the whole vocabulary.
"""
import json
import os
import sys

import numpy as np

os.environ.setdefault("LLAMA_CPP_LIB_PATH", "/work/llama/build/bin")
import llama_cpp  # noqa: E402
from llama_cpp import Llama  # noqa: E402

PROMPT = "<|im_start|>user\nWhat is a kernel?<|im_end|>\n<|im_start|>assistant\nThe core of an operating"


def run(model, lora=None, tokens=None):
    llm = Llama(model_path=model, lora_path=lora, n_ctx=128, n_batch=128, logits_all=True,
                n_threads=1, verbose=False)
    if tokens is None:
        tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    llm.eval(tokens)
    scores = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    return tokens, scores


def main():
    base, adapter = sys.argv[1], sys.argv[2]
    merged = sys.argv[3] if len(sys.argv) > 3 else None
    tokens, lora = run(base, adapter)
    _, plain = run(base, None, tokens)
    top = []
    for row in lora:
        ids = np.argsort(-row, kind="stable")[:8]
        top.append([[int(i), round(float(row[i]), 5)] for i in ids])
    moved = float(np.abs(lora - plain).max())
    out = {
        "llama_cpp_python": llama_cpp.__version__,
        "prompt": PROMPT,
        "tokens": [int(t) for t in tokens],
        "adapter_moves_logits_by": round(moved, 5),
        "last_logits": [round(float(x), 5) for x in lora[-1]],
        "base_last_logits": [round(float(x), 5) for x in plain[-1]],
        "top8": top,
    }
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")
    print(f"{len(tokens)} tokens; the adapter moves llama.cpp's logits by up to {moved:.4f}", file=sys.stderr)
    if merged:
        _, m = run(merged, None, tokens)
        d = np.abs(lora - m)
        print(f"llama.cpp runtime LoRA vs llama.cpp on Hearth's merged GGUF: max |dlogit| {d.max():.5f}, "
              f"mean {d.mean():.6f}, argmax agreement {np.mean(lora.argmax(1) == m.argmax(1)):.3f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
