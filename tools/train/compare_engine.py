#!/usr/bin/python3
"""Check the exported GGUF against the PyTorch checkpoint through our engine.

usage: compare_engine.py WAGGLE MODEL.gguf WORKDIR [-n N]
For each prompt: greedy continuation of N tokens by `waggle generate --temp 0 --json` and by
the PyTorch model from the same prompt ids (which must also agree: the C tokenizer against
bpe.py); then `waggle logits` over prompt + continuation against PyTorch's logits (max
absolute difference). Exits 1 on any token mismatch.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from model import Config, Llama  # noqa: E402

PROMPTS = ["In the beginning", "And the LORD said unto Moses", "Blessed are the",
           "The LORD is my shepherd", "Jesus wept.", "For God so loved the world"]


def main():
    waggle, gguf, work = sys.argv[1:4]
    n = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "-n" else 60
    torch.set_num_threads(1)
    tok = bpe.Tokenizer.load(os.path.join(work, "tokenizer.json"))
    st = torch.load(os.path.join(work, "ckpt.pt"))
    model = Llama(Config(**st["config"]))
    model.load_state_dict(st["model"])
    model.eval()
    bad = 0
    for p in PROMPTS:
        r = subprocess.run([waggle, "generate", "-m", gguf, "-p", p, "-n", str(n), "--temp", "0",
                            "--json", "--threads", "1"], capture_output=True, text=True, check=True)
        e = json.loads(r.stdout)
        ids = tok.encode(p, bos=True)
        py = model.greedy(ids, n)
        same_prompt = e["prompt_tokens"] == ids
        k = 0
        while k < min(len(py), len(e["tokens"])) and py[k] == e["tokens"][k]:
            k += 1
        seq = ids + py
        out = "/tmp/wg_logits_%d.bin" % os.getpid()
        subprocess.run([waggle, "logits", "-m", gguf, "--tokens", ",".join(map(str, seq)), "-o", out,
                        "--threads", "1"], capture_output=True, check=True)
        el = np.fromfile(out, dtype=np.float32).reshape(len(seq), -1)
        os.unlink(out)
        with torch.no_grad():
            pl = model(torch.tensor([seq]))[0].numpy()
        diff = float(np.abs(el - pl).max())
        ok = same_prompt and k == n
        bad += not ok
        print("%-32r prompt ids %s, greedy match %d/%d, max |logit diff| %.2e %s" %
              (p, "equal" if same_prompt else "DIFFER", k, n, diff, "" if ok else "MISMATCH"))
        print("    " + p + tok.decode(py, strip_leading_space=False).replace("\n", "\n    "))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
