#!/usr/bin/python3
"""Compare the Python SPM encoder (bpe.py) with `waggle tokenize` line by line.

usage: check_tokenizer.py WAGGLE MODEL.gguf TOKENIZER.json LINES.txt
Prints the mismatches and the match rate; exits 1 if any line differs.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402


def main():
    waggle, model, tokjson, path = sys.argv[1:5]
    tok = bpe.Tokenizer.load(tokjson)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
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
