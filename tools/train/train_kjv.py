#!/usr/bin/python3
"""Train waggle's demo model: a small Llama on the King James Bible, exported to GGUF.

Steps (each a subcommand, each resumable, all files under --work):
    data       extract the KJV text from Debian's bible-kjv-text (via the `bible` program),
               strip verse references, one verse per line, chapters as documents;
               every 50th chapter is held out for validation.
    tokenizer  train the byte-fallback SentencePiece-style BPE (bpe.py) on the training
               chapters and encode both splits to token ids.
    train      AdamW + warmup + cosine decay on random windows; logs train/val loss,
               checkpoints every --ckpt-every steps and resumes from the last one.
    export     write the GGUF (gguf_writer.py), F16 matrices, F32 norms.
    sample     greedy / sampled continuations with the PyTorch model (for comparing with
               `waggle generate`).
Run with Debian's python3 (/usr/bin/python3: python3-torch, python3-numpy).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import gguf_writer as gw  # noqa: E402
from model import Config, Llama  # noqa: E402

VAL_EVERY = 50  # every 50th chapter goes to validation


def log(args, msg):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    with open(os.path.join(args.work, "log.txt"), "a") as f:
        f.write(line + "\n")


# ------------------------------------------------------------------ data

def cmd_data(args):
    raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    chapters, cur, key = [], [], None
    for line in raw.splitlines():
        ref, _, verse = line.partition(" ")
        book_ch, _, vnum = ref.partition(":")
        if not vnum.isdigit() or not verse:
            raise SystemExit("data: unexpected line %r" % line[:80])
        if book_ch != key:
            if cur:
                chapters.append("\n".join(cur) + "\n")
            cur, key = [], book_ch
        cur.append(verse.strip())
    chapters.append("\n".join(cur) + "\n")
    train = [c for i, c in enumerate(chapters) if i % VAL_EVERY != VAL_EVERY - 1]
    val = [c for i, c in enumerate(chapters) if i % VAL_EVERY == VAL_EVERY - 1]
    for name, part in (("train", train), ("val", val)):
        with open(os.path.join(args.work, name + ".json"), "w") as f:
            json.dump(part, f)
    log(args, "data: %d chapters (%d train, %d val), %d verses, %d chars" %
        (len(chapters), len(train), len(val), raw.count("\n"), sum(map(len, chapters))))


# ------------------------------------------------------------------ tokenizer

def _load(args, name):
    with open(os.path.join(args.work, name + ".json")) as f:
        return json.load(f)


def cmd_tokenizer(args):
    train = _load(args, "train")
    t0 = time.time()
    merges, alphabet = bpe.train("".join(train), args.vocab, log=lambda m: log(args, m))
    tok = bpe.Tokenizer.from_merges(merges, alphabet)
    tok.save(os.path.join(args.work, "tokenizer.json"))
    log(args, "tokenizer: %d pieces (%d merges, %d chars) in %.1fs" %
        (len(tok.pieces), len(merges), len(alphabet), time.time() - t0))
    for name in ("train", "val"):
        ids = []
        for ch in _load(args, name):
            ids.extend(tok.encode(ch, bos=True))  # each chapter: <s> ▁verse\nverse\n...
        np.array(ids, dtype=np.uint16).tofile(os.path.join(args.work, name + ".bin"))
        n_chars = sum(map(len, _load(args, name)))
        log(args, "tokenizer: %s %d tokens (%.2f chars/token)" % (name, len(ids), n_chars / len(ids)))


# ------------------------------------------------------------------ train

def _config(args, vocab):
    return Config(vocab_size=vocab, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                  n_kv_heads=args.kv_heads, ffn_dim=args.ffn, max_seq=args.ctx)


def _batch(data, bs, T, gen):
    ix = torch.randint(len(data) - T - 1, (bs,), generator=gen)
    x = torch.stack([torch.from_numpy(data[i:i + T].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T].astype(np.int64)) for i in ix.tolist()])
    return x, y


def _progress(args, step, elapsed):
    """Fraction of the run done: by wall time under --time-budget, else by steps."""
    if args.time_budget > 0:
        return min(1.0, elapsed / args.time_budget)
    return min(1.0, step / args.steps)


def _lr(args, step, elapsed):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = _progress(args, step, elapsed)
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + np.cos(np.pi * p)))


@torch.no_grad()
def _eval(model, data, args, n_batches=4):
    model.eval()
    gen = torch.Generator().manual_seed(1234)  # the same windows every time
    tot = 0.0
    for _ in range(n_batches):
        x, y = _batch(data, args.batch, args.ctx, gen)
        tot += float(model(x, y)[1])
    model.train()
    return tot / n_batches


def cmd_train(args):
    torch.set_num_threads(args.threads)
    tok = bpe.Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    train = np.fromfile(os.path.join(args.work, "train.bin"), dtype=np.uint16)
    val = np.fromfile(os.path.join(args.work, "val.bin"), dtype=np.uint16)
    cfg = _config(args, len(tok.pieces))
    torch.manual_seed(args.seed)
    model = Llama(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    ckpt = os.path.join(args.work, "ckpt.pt")
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt):
        st = torch.load(ckpt)
        if st["config"] != cfg.to_dict():
            raise SystemExit("train: checkpoint config %s differs from %s" % (st["config"], cfg.to_dict()))
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step, elapsed = st["step"], st["elapsed"]
        log(args, "train: resumed at step %d (%.0fs trained)" % (step, elapsed))
    else:
        log(args, "train: %s, %d parameters, %d train / %d val tokens" %
            (cfg.to_dict(), n_params, len(train), len(val)))

    def save():
        tmp = ckpt + ".tmp"
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(),
                    "gen": gen.get_state(), "step": step, "elapsed": elapsed, "args": vars(args)}, tmp)
        os.replace(tmp, ckpt)

    t_last = time.time()
    run_loss, run_n = 0.0, 0
    while _progress(args, step, elapsed) < 1.0:
        lr = _lr(args, step, elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = _batch(train, args.batch, args.ctx, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        run_loss += float(loss)
        run_n += 1
        done = _progress(args, step, elapsed) >= 1.0
        if step % args.log_every == 0 or done:
            msg = "step %d train %.4f lr %.2e %.0fs (%.0f tok/s)" % (
                step, run_loss / run_n, lr, elapsed, step * args.batch * args.ctx / max(elapsed, 1e-9))
            run_loss, run_n = 0.0, 0
            if step % args.eval_every == 0 or done:
                msg += " val %.4f" % _eval(model, val, args)
                t_last = time.time()  # evaluation time is not training time
            log(args, msg)
        if step % args.ckpt_every == 0 or done:
            save()
            t_last = time.time()
    log(args, "train: done, %d steps, %.0fs, final train(8 batches) %.4f val %.4f" %
        (step, elapsed, _eval(model, train, args), _eval(model, val, args)))


def _load_model(args):
    st = torch.load(os.path.join(args.work, "ckpt.pt"))
    cfg = Config(**st["config"])
    model = Llama(cfg)
    model.load_state_dict(st["model"])
    model.eval()
    return model, st


# ------------------------------------------------------------------ export

def cmd_export(args):
    tok = bpe.Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    model, st = _load_model(args)
    c = model.c
    w = gw.GGUFWriter()
    w.add("general.architecture", gw.T_STRING, "llama")
    w.add("general.name", gw.T_STRING, args.name)
    w.add("general.description", gw.T_STRING,
          "waggle demo model: Llama trained on the King James Bible (public domain, Debian "
          "bible-kjv-text) by tools/train/train_kjv.py")
    w.add("general.license", gw.T_STRING, "public-domain")
    w.add("general.file_type", gw.T_UINT32, 1 if args.f16 else 0)  # MOSTLY_F16 / ALL_F32
    w.add("llama.context_length", gw.T_UINT32, c.max_seq)
    w.add("llama.embedding_length", gw.T_UINT32, c.dim)
    w.add("llama.block_count", gw.T_UINT32, c.n_layers)
    w.add("llama.feed_forward_length", gw.T_UINT32, c.ffn_dim)
    w.add("llama.rope.dimension_count", gw.T_UINT32, c.dim // c.n_heads)
    w.add("llama.attention.head_count", gw.T_UINT32, c.n_heads)
    w.add("llama.attention.head_count_kv", gw.T_UINT32, c.n_kv_heads)
    w.add("llama.attention.layer_norm_rms_epsilon", gw.T_FLOAT32, c.norm_eps)
    w.add("llama.rope.freq_base", gw.T_FLOAT32, c.rope_base)
    w.add("llama.vocab_size", gw.T_UINT32, c.vocab_size)
    w.add("tokenizer.ggml.model", gw.T_STRING, "llama")
    w.add_array("tokenizer.ggml.tokens", gw.T_STRING, tok.pieces)
    w.add_array("tokenizer.ggml.scores", gw.T_FLOAT32, tok.scores)
    w.add_array("tokenizer.ggml.token_type", gw.T_INT32, tok.types)
    w.add("tokenizer.ggml.bos_token_id", gw.T_UINT32, tok.bos)
    w.add("tokenizer.ggml.eos_token_id", gw.T_UINT32, tok.eos)
    w.add("tokenizer.ggml.unknown_token_id", gw.T_UINT32, tok.unk)
    w.add("tokenizer.ggml.add_bos_token", gw.T_BOOL, True)
    w.add("tokenizer.ggml.add_eos_token", gw.T_BOOL, False)
    w.add("tokenizer.ggml.add_space_prefix", gw.T_BOOL, True)

    mt = gw.GGML_F16 if args.f16 else gw.GGML_F32
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["tok.weight"], mt)  # (vocab, dim); tied: no output.weight
    for i in range(c.n_layers):
        p = "blocks.%d." % i
        g = "blk.%d." % i
        w.add_tensor(g + "attn_norm.weight", sd[p + "attn_norm.weight"])
        w.add_tensor(g + "attn_q.weight", sd[p + "wq.weight"], mt)   # interleaved rope already
        w.add_tensor(g + "attn_k.weight", sd[p + "wk.weight"], mt)
        w.add_tensor(g + "attn_v.weight", sd[p + "wv.weight"], mt)
        w.add_tensor(g + "attn_output.weight", sd[p + "wo.weight"], mt)
        w.add_tensor(g + "ffn_norm.weight", sd[p + "ffn_norm.weight"])
        w.add_tensor(g + "ffn_gate.weight", sd[p + "w_gate.weight"], mt)
        w.add_tensor(g + "ffn_up.weight", sd[p + "w_up.weight"], mt)
        w.add_tensor(g + "ffn_down.weight", sd[p + "w_down.weight"], mt)
    w.add_tensor("output_norm.weight", sd["norm.weight"])
    n = w.write(args.out)
    print("export: %s, %d bytes, %d tensors, step %d" % (args.out, n, len(w.tensors), st["step"]))


# ------------------------------------------------------------------ sample / check

def cmd_sample(args):
    torch.set_num_threads(args.threads)
    tok = bpe.Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    model, _ = _load_model(args)
    if args.f16:  # round weights like the F16 GGUF does, to compare with the engine
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.dim() >= 2:
                    p.copy_(p.half().float())
    ids = tok.encode(args.prompt, bos=True)
    if args.temp == 0:
        out = model.greedy(ids, args.n)
    else:
        out = model.sample(ids, args.n, temp=args.temp, gen=torch.Generator().manual_seed(args.seed))
    if args.ids:
        print(" ".join(map(str, ids + out)))
    else:
        print(args.prompt + tok.decode(out, strip_leading_space=False))


def cmd_encode(args):
    """Encode each line of a file; print one line of space-separated ids per input line."""
    tok = bpe.Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    with open(args.file, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            print(" ".join(map(str, tok.encode(line, bos=args.bos))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="out/kjv-train", help="working directory (default %(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("data")
    p = sub.add_parser("tokenizer")
    p.add_argument("--vocab", type=int, default=4096)
    p = sub.add_parser("train")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=768)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2000, help="run length unless --time-budget")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds of training: the cosine schedule runs over wall time instead of steps")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a loaded shared machine)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=100)
    p = sub.add_parser("export")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="waggle-kjv")
    p.add_argument("--f16", action="store_true", help="store matrices as F16 (norms stay F32)")
    p = sub.add_parser("sample")
    p.add_argument("--prompt", default="In the beginning")
    p.add_argument("-n", type=int, default=60)
    p.add_argument("--temp", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ids", action="store_true", help="print token ids instead of text")
    p.add_argument("--f16", action="store_true", help="round matrices to F16 first")
    p = sub.add_parser("encode")
    p.add_argument("file")
    p.add_argument("--bos", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    {"data": cmd_data, "tokenizer": cmd_tokenizer, "train": cmd_train, "export": cmd_export,
     "sample": cmd_sample, "encode": cmd_encode}[args.cmd](args)


if __name__ == "__main__":
    main()
