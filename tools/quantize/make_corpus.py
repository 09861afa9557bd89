#!/usr/bin/env python3
"""Build testdata/text/wordnet-glosses.txt, the evaluation text for
`hearth perplexity` / `hearth compare`, from Debian's wordnet-base package
(WordNet 3.0, Princeton's permissive WordNet licence; see
testdata/text/LICENSE-wordnet).

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb x
    python3 tools/quantize/make_corpus.py x/usr/share/wordnet/data.noun > testdata/text/wordnet-glosses.txt

Takes every 7th noun synset (to spread over the whole alphabet of topics),
writes "word: gloss" lines (underscores in the word become spaces, example
sentences kept as WordNet gives them) and stops before 100,000 bytes.
"""
import sys

LIMIT = 100_000


def main() -> None:
    out = []
    size = 0
    with open(sys.argv[1], encoding="utf-8") as fh:
        lines = [l for l in fh if not l.startswith("  ")]  # licence header
    for i, line in enumerate(lines):
        if i % 7:
            continue
        fields, _, gloss = line.partition(" | ")
        parts = fields.split()
        if len(parts) < 5 or not gloss.strip():
            continue
        word = parts[4].replace("_", " ")
        entry = f"{word}: {gloss.strip()}\n"
        if size + len(entry.encode()) > LIMIT:
            break
        out.append(entry)
        size += len(entry.encode())
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
