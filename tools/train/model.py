"""A small Llama in PyTorch, written to match GGUF's "llama" layout without conversion.

RMSNorm, SwiGLU FFN, grouped-query attention, tied input/output embeddings, and RoPE in
GGUF's "norm" (interleaved-pair) style: within each head, dimensions (2j, 2j+1) rotate
together by angle pos * base^(-2j/head_dim). Because training uses that convention
directly, the Q/K weights export to GGUF as they are - no row permutation (the one
convert_hf_to_gguf applies to rotate-half checkpoints) is needed.
"""

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 4096
    dim: int = 256           # embedding width
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4      # GQA: K/V heads shared by n_heads / n_kv_heads query heads
    ffn_dim: int = 768       # SwiGLU hidden width
    max_seq: int = 256       # training context = llama.context_length
    norm_eps: float = 1e-5
    rope_base: float = 10000.0

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))  # (dim)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, max_seq, base):
    """cos/sin of shape (max_seq, head_dim/2): angle pos * base^(-2j/head_dim)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(max_seq, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    """x (B, H, T, hd): rotate interleaved pairs (x[2j], x[2j+1])."""
    x2 = x.reshape(*x.shape[:-1], -1, 2)
    a, b = x2[..., 0], x2[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).reshape(x.shape)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        hd = c.dim // c.n_heads
        self.c = c
        self.attn_norm = RMSNorm(c.dim, c.norm_eps)
        self.wq = nn.Linear(c.dim, c.n_heads * hd, bias=False)      # (n_heads*hd, dim)
        self.wk = nn.Linear(c.dim, c.n_kv_heads * hd, bias=False)   # (n_kv*hd, dim)
        self.wv = nn.Linear(c.dim, c.n_kv_heads * hd, bias=False)   # (n_kv*hd, dim)
        self.wo = nn.Linear(c.n_heads * hd, c.dim, bias=False)      # (dim, n_heads*hd)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        self.w_gate = nn.Linear(c.dim, c.ffn_dim, bias=False)       # (ffn, dim)
        self.w_up = nn.Linear(c.dim, c.ffn_dim, bias=False)         # (ffn, dim)
        self.w_down = nn.Linear(c.ffn_dim, c.dim, bias=False)       # (dim, ffn)

    def forward(self, x, cos, sin):
        c = self.c
        B, T, _ = x.shape
        hd = c.dim // c.n_heads
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, c.n_heads, hd).transpose(1, 2)
        k = self.wk(h).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
        v = self.wv(h).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = c.n_heads // c.n_kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)  # query head h uses kv head h // rep
            v = v.repeat_interleave(rep, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True) \
            if hasattr(F, "scaled_dot_product_attention") else _attn(q, k, v)
        x = x + self.wo(att.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


def _attn(q, k, v):
    T = q.shape[2]
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return s.masked_fill(mask, float("-inf")).softmax(-1) @ v


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.tok = nn.Embedding(c.vocab_size, c.dim)  # (vocab, dim), tied with the output
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        cos, sin = rope_tables(c.dim // c.n_heads, c.max_seq, c.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for b in self.blocks:  # GPT-2 style scaled init of the residual projections
            for w in (b.wo.weight, b.w_down.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.tok(idx)
        cos, sin = self.cos[:T], self.sin[:T]
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = F.linear(self.norm(x), self.tok.weight)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    @torch.no_grad()
    def greedy(self, ids, n):
        """Greedy continuation (full recompute, window = max_seq); returns the new ids."""
        ids = list(ids)
        out = []
        for _ in range(n):
            x = torch.tensor([ids[-self.c.max_seq:]])
            nxt = int(self(x)[0, -1].argmax())
            out.append(nxt)
            ids.append(nxt)
        return out

    @torch.no_grad()
    def sample(self, ids, n, temp=0.8, top_k=40, gen=None):
        ids = list(ids)
        out = []
        for _ in range(n):
            x = torch.tensor([ids[-self.c.max_seq:]])
            lg = self(x)[0, -1] / temp
            v, ix = lg.topk(top_k)
            p = v.softmax(-1)
            nxt = int(ix[torch.multinomial(p, 1, generator=gen)])
            out.append(nxt)
            ids.append(nxt)
        return out
