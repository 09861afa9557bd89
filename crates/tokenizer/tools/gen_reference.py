#!/usr/bin/env python3
"""Regenerates tests/data/llama_cpp_reference.txt: token ids and detokenized
bytes produced by llama.cpp itself, for behaviour the .inp/.out files do not
cover (parse_special, add_special, lstrip/rstrip, detokenize flags).

Needs a llama.cpp build and the oracle in tools/llama_oracle.c:

    gcc -O1 -o /tmp/llama_oracle tools/llama_oracle.c -I$LLAMA/include -I$LLAMA/ggml/include \
        -L$LLAMA_BUILD/bin -lllama -lggml -lggml-base -Wl,-rpath,$LLAMA_BUILD/bin
    python3 tools/gen_reference.py /tmp/llama_oracle > tests/data/llama_cpp_reference.txt

Line formats (text and bytes hex-encoded):
    E <vocab> <add_special> <parse_special> <hex text> : <ids>
    D <vocab> <remove_special> <special> <ids> : <hex bytes>
"""
import os, random, subprocess, sys

ORACLE = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_DIR = os.path.join(HERE, "..", "..", "..", "testdata", "vocab")
VOCABS = ["bert-bge", "gemma-4", "gpt-2", "llama-bpe", "llama-spm", "phi-3", "qwen2", "qwen35"]

COMMON = [
    "Hello world", " Hello world", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
    "<s>Hello</s>", " <s> x </s> ", "<|endoftext|>Hello<|endoftext|>", "<|endoftext|",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|user|>\nHi there <|end|>\n<|assistant|>\n", "<|user|> spaced <|end|>   tail", "  <|end|>\t\n x",
    "[CLS] hello [SEP] world [MASK] .", "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<bos><|turn>user\nhi<turn|>\n", "\n\n<unk>\t", "<<|im_start|>>", "<|im_start|><|im_start|>",
    "don't stop , it 's  ' here ' . ok ?", "", " ", "🦙🦙 llama.cpp", "Straße naïve CAFÉ résumé",
]


def special_texts(path, rng, k):
    import gguf
    r = gguf.GGUFReader(path)
    toks = r.fields["tokenizer.ggml.tokens"]
    texts = [bytes(toks.parts[i]).decode("utf-8") for i in toks.data]
    types = r.fields.get("tokenizer.ggml.token_type")
    if types is None:
        return []
    tt = [int(types.parts[i][0]) for i in types.data]
    spec = [t for t, ty in zip(texts, tt) if ty in (2, 3, 4)]
    return rng.sample(spec, min(k, len(spec)))


def main():
    rng = random.Random(2024)
    out = []
    for v in VOCABS:
        path = os.path.join(VOCAB_DIR, f"ggml-vocab-{v}.gguf")
        cases = list(COMMON)
        for s in special_texts(path, rng, 12):
            cases.append(rng.choice(["", "x", " ", "Hi ", "\n"]) + s + rng.choice(["", "y", " ", " there", "\n\n"]))
        data = "\n__SEP__\n".join(cases).encode()
        res = subprocess.run([ORACLE, path, "tok"], input=data, capture_output=True, check=True).stdout.decode()
        lines = res.split("\n")
        seqs = []
        for i, c in enumerate(cases):
            for mode in range(4):
                ids = lines[i * 4 + mode]
                out.append(f"E {v} {mode >> 1} {mode & 1} {c.encode().hex()} : {ids}")
                if mode == 3 and ids:
                    seqs.append(ids)
        det_in = []
        for ids in seqs:
            for rs in (0, 1):
                for us in (0, 1):
                    det_in.append(f"{rs} {us} {ids}")
        res = subprocess.run([ORACLE, path, "detok"], input="\n".join(det_in).encode(), capture_output=True, check=True).stdout.decode()
        for line, hexed in zip(det_in, res.split("\n")):
            rs, us, ids = line.split(" ", 2)
            out.append(f"D {v} {rs} {us} {ids} : {hexed}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
