"""Byte-fallback SentencePiece-style BPE: a small trainer and the matching encoder.

The vocabulary is laid out the way llama's SentencePiece models are, so that a GGUF
with tokenizer.ggml.model = "llama" carries it and any SPM tokenizer (ours in
engine/tokenizer, llama.cpp's) encodes text the same way this module does:

    0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>,
    then the learned merges in the order they were learned (score = -rank),
    then the single characters of the alphabet (scores below every merge).

Text handling is SentencePiece's: every space becomes U+2581 "▁" and one "▁" is put in
front of the text (add_space_prefix). Encoding starts from one symbol per UTF-8
character and repeatedly merges the adjacent pair whose concatenation is a vocabulary
piece with the highest score, the leftmost pair on ties; a final symbol that is not a
piece is emitted as its UTF-8 bytes (<0xNN> tokens).

Training is classic BPE over "words": the text is cut before every "▁" and around every
newline, so no learned piece holds "▁" except as its first character and no piece holds a
newline. That restriction is what lets the encoder work word by word (with a cache): no
concatenation across a cut can be a piece, so SPM merging never crosses one.
"""

import heapq
import json
import re
from collections import Counter, defaultdict

SPACE = "\u2581"
N_SPECIAL = 3
N_BYTES = 256
FIRST_PIECE = N_SPECIAL + N_BYTES  # id of the first learned piece

# GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_BYTE = 1, 2, 3, 6

_CUT = re.compile("(\n)|(?=" + SPACE + ")")


def normalize(text, add_space_prefix=True):
    """SentencePiece text form: spaces -> '▁', plus one leading '▁'."""
    t = text.replace(" ", SPACE)
    return (SPACE + t) if add_space_prefix else t


def split_words(norm):
    """Cut normalized text before every '▁' and around every newline (newlines kept)."""
    out = []
    for part in _CUT.split(norm):
        if part:
            out.append(part)
    return out


def train(text, vocab_size, min_char_count=2, log=print):
    """Learn merges on `text` until the vocabulary holds `vocab_size` pieces.

    Returns (merges, alphabet): merges is a list of (left, right) strings in the order
    learned; alphabet the single characters kept as pieces (seen >= min_char_count times,
    newline excluded - it always goes through its byte token).
    """
    words = Counter()
    for line in text.split("\n"):
        for w in split_words(normalize(line)):
            words[w] += 1
    chars = Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
    alphabet = sorted((ch for ch, c in chars.items() if c >= min_char_count and ch != "\n"),
                      key=lambda ch: (-chars[ch], ch))
    n_merges = vocab_size - FIRST_PIECE - len(alphabet)
    if n_merges <= 0:
        raise ValueError("vocab_size %d too small for alphabet of %d" % (vocab_size, len(alphabet)))

    # word types as symbol lists; pair statistics kept incrementally
    wlist = [list(w) for w in words]
    wfreq = [words[w] for w in words]
    pairs = Counter()
    where = defaultdict(set)  # pair -> indices of words holding it
    for i, syms in enumerate(wlist):
        for a, b in zip(syms, syms[1:]):
            pairs[(a, b)] += wfreq[i]
            where[(a, b)].add(i)

    merges = []
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    while len(merges) < n_merges and heap:
        negc, p = heapq.heappop(heap)
        if pairs.get(p, 0) != -negc or -negc <= 0:
            continue  # stale entry
        if -negc < 2:
            break  # nothing left worth merging
        a, b = p
        if SPACE in b or "\n" in a or "\n" in b:
            # never let a piece hold an inner '▁' (cannot happen with our cuts) or newline
            pairs[p] = 0
            continue
        merges.append(p)
        ab = a + b
        changed = Counter()
        for i in list(where[p]):
            syms = wlist[i]
            f = wfreq[i]
            for x, y in zip(syms, syms[1:]):
                changed[(x, y)] -= f
            j, new = 0, []
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    new.append(ab)
                    j += 2
                else:
                    new.append(syms[j])
                    j += 1
            wlist[i] = new
            for x, y in zip(new, new[1:]):
                changed[(x, y)] += f
                where[(x, y)].add(i)
        for q, d in changed.items():
            if d:
                pairs[q] += d
                if pairs[q] > 0:
                    heapq.heappush(heap, (-pairs[q], q))
        pairs[p] = 0
        del where[p]
        if len(merges) % 500 == 0:
            log("bpe: %d/%d merges, last %r count %d" % (len(merges), n_merges, ab, -negc))
    return merges, alphabet


class Tokenizer:
    """The vocabulary plus the SPM encoder and a decoder."""

    def __init__(self, pieces, scores, types):
        self.pieces = pieces    # (n_vocab) str
        self.scores = scores    # (n_vocab) float
        self.types = types      # (n_vocab) int, TT_*
        self.index = {p: i for i, p in enumerate(pieces) if types[i] == TT_NORMAL}
        self.cache = {}
        self.unk, self.bos, self.eos = 0, 1, 2

    @classmethod
    def from_merges(cls, merges, alphabet):
        pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
        types = [TT_UNKNOWN, TT_CONTROL, TT_CONTROL] + [TT_BYTE] * 256
        scores = [0.0] * len(pieces)
        seen = set()
        for rank, (a, b) in enumerate(merges):
            p = a + b
            if p in seen:
                continue  # the same string reached by another split: keep the first
            seen.add(p)
            pieces.append(p)
            scores.append(-float(rank))
            types.append(TT_NORMAL)
        base = len(merges)
        for j, ch in enumerate(alphabet):
            if ch in seen:
                continue
            pieces.append(ch)
            scores.append(-float(base + j))
            types.append(TT_NORMAL)
        return cls(pieces, scores, types)

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"pieces": self.pieces, "scores": self.scores, "types": self.types}, f,
                      ensure_ascii=False)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return cls(d["pieces"], d["scores"], d["types"])

    def _encode_word(self, w):
        """SPM merge of one cut word: best-scoring adjacent pair first, leftmost on ties."""
        ids = self.cache.get(w)
        if ids is not None:
            return ids
        syms = list(w)  # one symbol per character
        while len(syms) > 1:
            best, best_i = None, -1
            for i in range(len(syms) - 1):
                pid = self.index.get(syms[i] + syms[i + 1])
                if pid is not None and (best is None or self.scores[pid] > best):
                    best, best_i = self.scores[pid], i
            if best_i < 0:
                break
            syms[best_i:best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        ids = []
        for s in syms:
            pid = self.index.get(s)
            if pid is not None:
                ids.append(pid)
            else:
                ids.extend(N_SPECIAL + b for b in s.encode("utf-8"))
        self.cache[w] = ids
        return ids

    def encode(self, text, bos=False, add_space_prefix=True):
        ids = [self.bos] if bos else []
        if text:
            for w in split_words(normalize(text, add_space_prefix)):
                ids.extend(self._encode_word(w))
        return ids

    def decode(self, ids, strip_leading_space=True):
        out = bytearray()
        for i in ids:
            t = self.types[i]
            if t == TT_BYTE:
                out.append(int(self.pieces[i][3:5], 16))
            elif t == TT_NORMAL:
                out += self.pieces[i].replace(SPACE, " ").encode("utf-8")
        s = out.decode("utf-8", errors="replace")
        if strip_leading_space and s.startswith(" "):
            s = s[1:]
        return s
