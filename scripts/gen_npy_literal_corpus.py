"""Generates crates/tensorseal-npy/tests/data/literals.tsv: random Python literal texts
(grammar-built, then mutated) with what CPython's ast.literal_eval makes of them, in a
canonical form. The Rust test literal_corpus.rs requires that every text tensorseal's
evaluator accepts is accepted by Python with the same value.

Run with the project venv: python scripts/gen_npy_literal_corpus.py
"""

from __future__ import annotations

import ast
import pathlib
import random
import warnings

OUT = pathlib.Path(__file__).resolve().parents[1] / "crates/tensorseal-npy/tests/data/literals.tsv"


def canon(v) -> str:
    if v is None:
        return "N"
    if isinstance(v, bool):
        return f"B{int(v)}"
    if isinstance(v, int):
        return f"i{v}"
    if isinstance(v, str):
        return "s" + v.encode("utf-8", "surrogatepass").hex()
    if isinstance(v, bytes):
        return "b" + v.hex()
    if isinstance(v, tuple):
        return "T(" + ",".join(canon(x) for x in v) + ")"
    if isinstance(v, list):
        return "L[" + ",".join(canon(x) for x in v) + "]"
    if isinstance(v, (set, frozenset)):
        return "S{" + ",".join(sorted(canon(x) for x in v)) + "}"
    if isinstance(v, dict):
        return "D{" + ",".join(f"{canon(k)}={canon(x)}" for k, x in v.items()) + "}"
    return "?" + type(v).__name__


ATOMS = ["'O'", '"|O"', "'\\x4f'", "'\\u004f'", "'\\U0000004f'", "'\\117'", "'\\777'", "b'\\777'", "r'\\x4f'",
         "'''a'b'''", '"""x"""', "'\\q'", "'a\\\nb'", "u'é'", "'中'", "Rb'\\n'", "bR'x'", "'\\N{DIGIT ONE}'",
         "'\\ud800'", "'\\x0'", "'\\''", "'\"'", "0", "00", "1_0", "0x_1F", "0o17", "0b101", "-3", "+ 7",
         "12345678901234567890123456789", "3L", "1.5", "1e3", "2j", "True", "False", "None", "...", "set()",
         "''", "f'x'", "'a' 'b'", "'a' b'b'"]
WS = ["", " ", "\t", "\n", " # c\n", "\x0c", "\r\n", "\\\n"]


def gen(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth > 3 or r < 0.45:
        return rng.choice(ATOMS)
    w = lambda: rng.choice(WS) if rng.random() < 0.3 else ""  # noqa: E731
    items = [gen(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    kind = rng.choice("([{{")
    if kind == "(":
        body = ("," + w()).join(items) + ("," if len(items) == 1 or rng.random() < 0.3 else "")
        return "(" + w() + body + w() + ")"
    if kind == "[":
        return "[" + w() + ("," + w()).join(items) + w() + "]"
    if rng.random() < 0.6:
        pairs = [f"{gen(rng, depth + 1)}{w()}:{w()}{x}" for x in items]
        return "{" + ", ".join(pairs) + (", " if rng.random() < 0.3 else "") + "}"
    return "{" + ", ".join(items) + "}"


MUT = "'\"\\xuUN0178{}()[],:#\n L b r-+_."


def mutate(rng: random.Random, s: str) -> str:
    s = list(s)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(s) + 1)
        if op < 0.4:
            s.insert(i, rng.choice(MUT))
        elif op < 0.7 and s:
            del s[min(i, len(s) - 1)]
        elif s:
            s[min(i, len(s) - 1)] = rng.choice(MUT)
    return "".join(s)


def main() -> None:
    rng = random.Random(5)
    lines = []
    seen = set()
    while len(lines) < 1500:
        t = gen(rng)
        if rng.random() < 0.4:
            t = mutate(rng, t)
        if t in seen or "\t" in t:
            continue
        seen.add(t)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = canon(ast.literal_eval(t))
            except Exception as e:  # noqa: BLE001 - any refusal counts
                out = "ERR " + type(e).__name__
        lines.append(t.encode("utf-8", "surrogatepass").hex() + "\t" + out)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    ok = sum(1 for x in lines if not x.split("\t")[1].startswith("ERR"))
    print(f"{OUT}: {len(lines)} texts, {ok} accepted by Python")


if __name__ == "__main__":
    main()
