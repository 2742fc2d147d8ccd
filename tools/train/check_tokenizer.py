#!/usr/bin/python3
"""Compare the Python SPM encoder (bpe.py) with `waggle tokenize` line by line.

usage: check_tokenizer.py WAGGLE MODEL.gguf WORKDIR [LINES.txt]
Without LINES.txt the lines are every validation verse, 200 random training verses (seed 7)
and a few edge cases (non-ASCII, emoji, tabs, digits, runs of spaces). Prints the mismatches and the match rate; exits 1 if any line differs.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402


EDGE = ["H\u00e9llo w\u00f6rld \u2014 na\u00efve caf\u00e9", "  two leading spaces", "tabs\there",
        "1234 + 5678 = 6912", "\u4e2d\u6587\u5b57\u7b26 and emoji \U0001F642", "trailing space ",
        "a  b   c", "LORD GOD Almighty!", "'quoted' (paren)-dash"]


def default_lines(work):
    import random
    random.seed(7)
    with open(os.path.join(work, "val.json")) as f:
        val = json.load(f)
    with open(os.path.join(work, "train.json")) as f:
        train = json.load(f)
    lines = [ln for c in val for ln in c.split("\n") if ln]
    lines += random.sample([ln for c in train for ln in c.split("\n") if ln], 200)
    return lines + EDGE


def main():
    waggle, model, work = sys.argv[1:4]
    tok = bpe.Tokenizer.load(os.path.join(work, "tokenizer.json"))
    if len(sys.argv) > 4:
        with open(sys.argv[4], encoding="utf-8") as f:
            lines = f.read().split("\n")
    else:
        lines = default_lines(work)
    ok = 0
    for i, line in enumerate(lines):
        tmp = "/tmp/wg_tokcheck_%d.txt" % os.getpid()
        with open(tmp, "wb") as f:
            f.write(line.encode("utf-8"))
        r = subprocess.run([waggle, "tokenize", "-m", model, "--add-special", "--text-file", tmp],
                           capture_output=True, text=True)
        c_ids = json.loads(r.stdout) if r.returncode == 0 else None
        py_ids = tok.encode(line, bos=True)
        if c_ids == py_ids:
            ok += 1
        else:
            print("line %d differs: %r\n  py %s\n  c  %s %s" % (i, line, py_ids, c_ids, r.stderr.strip()))
    os.unlink(tmp)
    print("tokenizer match: %d/%d lines (%.1f%%)" % (ok, len(lines), 100.0 * ok / len(lines)))
    return 0 if ok == len(lines) else 1


if __name__ == "__main__":
    sys.exit(main())
