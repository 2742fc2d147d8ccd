#!/usr/bin/python3
"""Self-tests for the demo-model tooling: /usr/bin/python3 -m unittest tools/train/test_train.py

Covers the SPM encoder's merge rule (best score first, leftmost on ties, byte fallback),
the trainer's invariants, the GGUF writer (parsed back by an independent little reader
written from the format description), and the interleaved RoPE convention.
"""
import os
import struct
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import gguf_writer as gw  # noqa: E402
from model import apply_rope, rope_tables  # noqa: E402


def toy(pieces_scores):
    pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [bpe.TT_UNKNOWN, bpe.TT_CONTROL, bpe.TT_CONTROL] + [bpe.TT_BYTE] * 256
    scores = [0.0] * len(pieces)
    for p, s in pieces_scores:
        pieces.append(p)
        scores.append(s)
        types.append(bpe.TT_NORMAL)
    return bpe.Tokenizer(pieces, scores, types)


class TestEncoder(unittest.TestCase):
    def test_best_score_wins_over_position(self):
        # "▁abc": "bc" (score -1) beats "▁a" (score -5) although it is further right
        t = toy([("▁", -9), ("a", -9), ("b", -9), ("c", -9), ("▁a", -5), ("bc", -1)])
        ids = t.encode("abc")
        self.assertEqual([t.pieces[i] for i in ids], ["▁a", "bc"])
        t2 = toy([("▁", -9), ("a", -9), ("b", -9), ("c", -9), ("ab", -1), ("▁a", -5), ("bc", -3)])
        # "ab" first (score -1), then "▁"+"ab" is no piece, "ab"+"c" no piece: ▁ ab c
        self.assertEqual([t2.pieces[i] for i in t2.encode("abc")], ["▁", "ab", "c"])

    def test_leftmost_on_tie(self):
        t = toy([("▁", -9), ("a", -9), ("aa", -1)])
        # "aaa": two equal-score candidates, the left one merges first
        self.assertEqual([t.pieces[i] for i in t.encode("aaa", add_space_prefix=False)], ["aa", "a"])

    def test_byte_fallback_and_decode(self):
        t = toy([("▁", -9), ("h", -9), ("i", -9)])
        text = "hi é\n"
        ids = t.encode(text, bos=True)
        self.assertEqual(ids[0], 1)
        self.assertIn(3 + 0xC3, ids)
        self.assertIn(3 + 0x0A, ids)
        self.assertEqual(t.decode(ids), text)

    def test_trainer_pieces(self):
        text = "the cat sat on the mat\nthe cat ate\n" * 20
        merges, alphabet = bpe.train(text, 259 + 40, log=lambda m: None)
        tok = bpe.Tokenizer.from_merges(merges, alphabet)
        self.assertLessEqual(len(tok.pieces), 259 + 40)
        for p in tok.pieces[259:]:
            self.assertNotIn("\n", p)
            self.assertNotIn(bpe.SPACE, p[1:])
        # earlier merges score higher
        sc = [tok.scores[tok.index[a + b]] for a, b in merges]
        self.assertEqual(sc, sorted(sc, reverse=True))
        # frequent words become single pieces and the round trip is exact
        self.assertEqual(len(tok.encode("the cat")), 2)
        self.assertEqual(tok.decode(tok.encode("the cat sat\non the mat")), "the cat sat\non the mat")


def read_gguf(path):
    """Independent minimal GGUF reader: returns (kv dict, {name: (dims, type, array)})."""
    with open(path, "rb") as f:
        b = f.read()
    o = [0]

    def take(fmt):
        v = struct.unpack_from("<" + fmt, b, o[0])
        o[0] += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        n = take("Q")
        s = b[o[0]:o[0] + n].decode()
        o[0] += n
        return s

    fmts = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(fmts[t])

    assert b[:4] == b"GGUF"
    o[0] = 4
    version, nt, nkv = take("I"), take("Q"), take("Q")
    kv = {"_version": version}
    for _ in range(nkv):
        k = string()
        kv[k] = value(take("I"))
    infos = []
    for _ in range(nt):
        name = string()
        nd = take("I")
        dims = [take("Q") for _ in range(nd)]
        infos.append((name, dims, take("I"), take("Q")))
    align = kv.get("general.alignment", 32)
    base = (o[0] + align - 1) // align * align
    tensors = {}
    for name, dims, t, off in infos:
        assert off % align == 0
        dt = {0: "<f4", 1: "<f2"}[t]
        n = int(np.prod(dims))
        arr = np.frombuffer(b, dtype=dt, count=n, offset=base + off).reshape(list(reversed(dims)))
        tensors[name] = (dims, t, arr)
    return kv, tensors


class TestGGUF(unittest.TestCase):
    def test_round_trip(self):
        w = gw.GGUFWriter()
        w.add("general.architecture", gw.T_STRING, "llama")
        w.add("llama.block_count", gw.T_UINT32, 6)
        w.add("llama.rope.freq_base", gw.T_FLOAT32, 10000.0)
        w.add("tokenizer.ggml.add_bos_token", gw.T_BOOL, True)
        w.add_array("tokenizer.ggml.tokens", gw.T_STRING, ["<unk>", "▁the", "é"])
        w.add_array("tokenizer.ggml.scores", gw.T_FLOAT32, [0.0, -1.0, -2.5])
        w.add_array("tokenizer.ggml.token_type", gw.T_INT32, [2, 1, 1])
        a = np.arange(15, dtype=np.float32).reshape(3, 5)
        n = np.array([1.5, -2.0, 3.25], dtype=np.float32)
        w.add_tensor("m.weight", a, gw.GGML_F16)
        w.add_tensor("n.weight", n)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.gguf")
            size = w.write(path)
            self.assertEqual(size, os.path.getsize(path))
            kv, ts = read_gguf(path)
        self.assertEqual(kv["_version"], 3)
        self.assertEqual(kv["general.architecture"], "llama")
        self.assertEqual(kv["llama.block_count"], 6)
        self.assertEqual(kv["tokenizer.ggml.add_bos_token"], True)
        self.assertEqual(kv["tokenizer.ggml.tokens"], ["<unk>", "▁the", "é"])
        self.assertEqual(kv["tokenizer.ggml.scores"], [0.0, -1.0, -2.5])
        self.assertEqual(kv["tokenizer.ggml.token_type"], [2, 1, 1])
        self.assertEqual(ts["m.weight"][0], [5, 3])  # fastest dimension first
        self.assertEqual(ts["m.weight"][1], gw.GGML_F16)
        np.testing.assert_array_equal(ts["m.weight"][2].astype(np.float32), a)
        np.testing.assert_array_equal(ts["n.weight"][2], n)


class TestRope(unittest.TestCase):
    def test_interleaved_pairs(self):
        hd, T = 8, 5
        cos, sin = rope_tables(hd, T, 10000.0)
        x = torch.randn(1, 1, T, hd)
        y = apply_rope(x, cos, sin)
        for p in range(T):
            for j in range(hd // 2):
                th = p * 10000.0 ** (-2 * j / hd)
                a, b = float(x[0, 0, p, 2 * j]), float(x[0, 0, p, 2 * j + 1])
                self.assertAlmostEqual(float(y[0, 0, p, 2 * j]), a * np.cos(th) - b * np.sin(th), places=4)
                self.assertAlmostEqual(float(y[0, 0, p, 2 * j + 1]), a * np.sin(th) + b * np.cos(th), places=4)


if __name__ == "__main__":
    unittest.main()
