/* wg_cuda_decode — one decoder per weight type, turning any 32-value
 * sub-block of a row into eight int8x4 words plus per-16 scale and offset:
 *
 *     value[i] = d[i/16] * v[i] + m[i/16]        (m only when has_min)
 *
 * Every supported block type fits this form with |v| <= 127 (K-quant scales
 * that vary per 16 values go into d[0] / d[1]), so a single dequantizer and a
 * single dp4a dot against Q8_1 activations (32-value blocks) serve all types.
 *
 * Compiled for host and device (__host__ __device__): the host copy backs
 * wg_cuda_emu_* so the index arithmetic is tested on machines with no GPU.
 * Weight rows are only assumed 2-byte aligned (1-byte for MXFP4, whose
 * 17-byte blocks leave odd offsets). Byte offsets follow quant.h's structs. */
#ifndef WG_CUDA_DECODE_CUH
#define WG_CUDA_DECODE_CUH

#include <stdint.h>
#include <string.h>

#include "../quant.h"

#define WG_CU_HD __host__ __device__ static __forceinline__
#define WG_CU_HDT __host__ __device__ __forceinline__ /* templates: no storage class */

typedef struct {
    int v[8];       /* 32 int8 values, 4 per word, value 4w+b in byte b of v[w] */
    float d[2];     /* scale of values 0..15 and 16..31 */
    float m[2];     /* offset of values 0..15 and 16..31 (has_min types) */
} wg_sub32_t;

/* Code books: a __constant__ copy for device code and a plain one for the
 * host pass (both declared in both passes, as CUDA requires). */
__constant__ static int8_t wg_cu_kv_iq4nl[16] = WG_KVALUES_IQ4NL_INIT;
__constant__ static int8_t wg_cu_kv_mxfp4[16] = WG_KVALUES_MXFP4_INIT;
static const int8_t wg_hs_kv_iq4nl[16] = WG_KVALUES_IQ4NL_INIT;
static const int8_t wg_hs_kv_mxfp4[16] = WG_KVALUES_MXFP4_INIT;
#ifdef __CUDA_ARCH__
#define WG_KV_IQ4NL wg_cu_kv_iq4nl
#define WG_KV_MXFP4 wg_cu_kv_mxfp4
#else
#define WG_KV_IQ4NL wg_hs_kv_iq4nl
#define WG_KV_MXFP4 wg_hs_kv_mxfp4
#endif

/* ---- loads ---- */

WG_CU_HD uint32_t wg_ld_u16(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint16_t *)p;
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}

/* 4 bytes at a 2-aligned address, little-endian. */
WG_CU_HD uint32_t wg_ld_u32_a2(const uint8_t *p) { return wg_ld_u16(p) | (wg_ld_u16(p + 2) << 16); }

/* 4 bytes at any address. */
WG_CU_HD uint32_t wg_ld_u32_a1(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

WG_CU_HD float wg_ld_f16(const uint8_t *p) { return wg_fp16_to_fp32((wg_half)wg_ld_u16(p)); }

/* ---- byte-lane arithmetic without carries between bytes ---- */

/* Each byte b in [c-128, c+127] -> (b - c) as int8. */
WG_CU_HD int wg_sub_bytes(uint32_t x, uint32_t c) {
    return (int)((x + (0x80u - c) * 0x01010101u) ^ 0x80808080u);
}

/* Bits 0..3 of b -> bit 4 of bytes 0..3. */
WG_CU_HD uint32_t wg_spread4_bit4(uint32_t b) {
    return ((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25);
}

/* A 16-entry int8 code book held in four registers (entries 4i..4i+3 in
 * word i, little-endian). */
typedef struct {
    uint32_t w[4];
} wg_tab16_t;

WG_CU_HD wg_tab16_t wg_tab16(const int8_t *tab) {
    wg_tab16_t t;
    for (int i = 0; i < 4; i++)
        t.w[i] = (uint32_t)(uint8_t)tab[4 * i] | ((uint32_t)(uint8_t)tab[4 * i + 1] << 8) |
                 ((uint32_t)(uint8_t)tab[4 * i + 2] << 16) | ((uint32_t)(uint8_t)tab[4 * i + 3] << 24);
    return t;
}

/* CUDA's byte permute: byte i of the result is byte (s >> 4i) & 7 of the
 * eight bytes y:x (only selector values 0..7 are used here). */
WG_CU_HD uint32_t wg_byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    const uint64_t v = ((uint64_t)y << 32) | x;
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (uint32_t)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
    return r;
#endif
}

/* Four nibbles (low 4 bits of each byte of x) looked up in a 16-entry code
 * book with two byte permutes and a select, all in registers. (Indexing a
 * __constant__ table with per-lane values serializes the warp: IQ4_XS and
 * MXFP4 mat-vecs ran at ~150-180 GB/s that way.) */
WG_CU_HD int wg_lut4(uint32_t x, const wg_tab16_t &t) {
    const uint32_t sel = (x & 0x7u) | ((x >> 4) & 0x70u) | ((x >> 8) & 0x700u) | ((x >> 12) & 0x7000u);
    const uint32_t lo = wg_byte_perm(t.w[0], t.w[1], sel); /* entries 0..7 */
    const uint32_t hi = wg_byte_perm(t.w[2], t.w[3], sel); /* entries 8..15 */
    const uint32_t m = ((x >> 3) & 0x01010101u) * 0xFFu;   /* bytes whose nibble is >= 8 */
    return (int)((lo & ~m) | (hi & m));
}

WG_CU_HD int wg_dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    for (int i = 0; i < 4; i++) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
}

/* ---- per-type traits ---- */

template <int T> struct wg_qt;
/* blck: values per block; bytes: block size; has_min: m[] used. */
#define WG_QT(T_, blck_, bytes_, has_min_)                                                       \
    template <> struct wg_qt<T_> {                                                               \
        static constexpr int blck = blck_;                                                       \
        static constexpr int bytes = bytes_;                                                     \
        static constexpr bool has_min = has_min_;                                                \
    };
WG_QT(WG_TYPE_Q4_0, 32, 18, false)
WG_QT(WG_TYPE_Q4_1, 32, 20, true)
WG_QT(WG_TYPE_Q5_0, 32, 22, false)
WG_QT(WG_TYPE_Q5_1, 32, 24, true)
WG_QT(WG_TYPE_Q8_0, 32, 34, false)
WG_QT(WG_TYPE_Q2_K, 256, 84, true)
WG_QT(WG_TYPE_Q3_K, 256, 110, false)
WG_QT(WG_TYPE_Q4_K, 256, 144, true)
WG_QT(WG_TYPE_Q5_K, 256, 176, true)
WG_QT(WG_TYPE_Q6_K, 256, 210, false)
WG_QT(WG_TYPE_IQ4_NL, 32, 18, false)
WG_QT(WG_TYPE_IQ4_XS, 256, 136, false)
WG_QT(WG_TYPE_MXFP4, 32, 17, false)
#undef WG_QT

/* Decode 32-value sub-block `sb` (0 .. k/32-1) of the row starting at `row`. */
template <int T> WG_CU_HDT void wg_decode(const uint8_t *row, int64_t sb, wg_sub32_t &o);

template <> WG_CU_HDT void wg_decode<WG_TYPE_Q4_0>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 18;
    o.d[0] = o.d[1] = wg_ld_f16(b);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a2(b + 2 + 4 * w);
        o.v[w] = wg_sub_bytes(u & 0x0F0F0F0Fu, 8);
        o.v[w + 4] = wg_sub_bytes((u >> 4) & 0x0F0F0F0Fu, 8);
    }
    o.m[0] = o.m[1] = 0.0f;
}

template <> WG_CU_HDT void wg_decode<WG_TYPE_Q4_1>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 20;
    o.d[0] = o.d[1] = wg_ld_f16(b);
    o.m[0] = o.m[1] = wg_ld_f16(b + 2);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a2(b + 4 + 4 * w);
        o.v[w] = (int)(u & 0x0F0F0F0Fu);
        o.v[w + 4] = (int)((u >> 4) & 0x0F0F0F0Fu);
    }
}

template <> WG_CU_HDT void wg_decode<WG_TYPE_Q5_0>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 22;
    o.d[0] = o.d[1] = wg_ld_f16(b);
    const uint32_t qh = wg_ld_u32_a2(b + 2);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a2(b + 6 + 4 * w);
        o.v[w] = wg_sub_bytes((u & 0x0F0F0F0Fu) | wg_spread4_bit4(qh >> (4 * w)), 16);
        o.v[w + 4] = wg_sub_bytes(((u >> 4) & 0x0F0F0F0Fu) | wg_spread4_bit4(qh >> (16 + 4 * w)), 16);
    }
    o.m[0] = o.m[1] = 0.0f;
}

template <> WG_CU_HDT void wg_decode<WG_TYPE_Q5_1>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 24;
    o.d[0] = o.d[1] = wg_ld_f16(b);
    o.m[0] = o.m[1] = wg_ld_f16(b + 2);
    const uint32_t qh = wg_ld_u32_a2(b + 4);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a2(b + 8 + 4 * w);
        o.v[w] = (int)((u & 0x0F0F0F0Fu) | wg_spread4_bit4(qh >> (4 * w)));
        o.v[w + 4] = (int)(((u >> 4) & 0x0F0F0F0Fu) | wg_spread4_bit4(qh >> (16 + 4 * w)));
    }
}

template <> WG_CU_HDT void wg_decode<WG_TYPE_Q8_0>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 34;
    o.d[0] = o.d[1] = wg_ld_f16(b);
    for (int w = 0; w < 8; w++) o.v[w] = (int)wg_ld_u32_a2(b + 2 + 4 * w);
    o.m[0] = o.m[1] = 0.0f;
}

/* Q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82. Sub-block s of a
 * super-block: 2-bit field (s%4) of qs[(s/4)*32 + l]; scales 2s, 2s+1. */
template <> WG_CU_HDT void wg_decode<WG_TYPE_Q2_K>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + (sb >> 3) * 84;
    const int s = (int)(sb & 7);
    const float d = wg_ld_f16(b + 80), dmin = wg_ld_f16(b + 82);
    for (int h = 0; h < 2; h++) {
        const uint8_t sc = b[2 * s + h];
        o.d[h] = d * (float)(sc & 0xF);
        o.m[h] = -(dmin * (float)(sc >> 4));
    }
    const uint8_t *q = b + 16 + (s >> 2) * 32;
    const int shift = 2 * (s & 3);
    for (int w = 0; w < 8; w++) o.v[w] = (int)((wg_ld_u32_a2(q + 4 * w) >> shift) & 0x03030303u);
}

/* Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108. Sub-block s: low
 * bits as Q2_K, high bit = bit s of hmask[l] (clear means -4). */
template <> WG_CU_HDT void wg_decode<WG_TYPE_Q3_K>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + (sb >> 3) * 110;
    const int s = (int)(sb & 7);
    const float d = wg_ld_f16(b + 108);
    const uint8_t *sc = b + 96;
    for (int h = 0; h < 2; h++) {
        const int j = 2 * s + h;
        const int lo = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
        const int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
        o.d[h] = d * (float)((lo | (hi << 4)) - 32);
    }
    const uint8_t *q = b + 32 + (s >> 2) * 32;
    const int shift = 2 * (s & 3);
    for (int w = 0; w < 8; w++) {
        const uint32_t lo = (wg_ld_u32_a2(q + 4 * w) >> shift) & 0x03030303u;
        const uint32_t hb = (wg_ld_u32_a2(b + 4 * w) >> s) & 0x01010101u;
        o.v[w] = wg_sub_bytes(lo | (hb << 2), 4);
    }
    o.m[0] = o.m[1] = 0.0f;
}

/* 6-bit scale / min j of Q4_K / Q5_K (12 packed bytes). */
WG_CU_HD void wg_scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16. Sub-block s: nibble
 * (s&1) of qs[(s/2)*32 + l]. */
template <> WG_CU_HDT void wg_decode<WG_TYPE_Q4_K>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + (sb >> 3) * 144;
    const int s = (int)(sb & 7);
    int sc, mn;
    wg_scale_min_k4(s, b + 4, &sc, &mn);
    o.d[0] = o.d[1] = wg_ld_f16(b) * (float)sc;
    o.m[0] = o.m[1] = -(wg_ld_f16(b + 2) * (float)mn);
    const uint8_t *q = b + 16 + (s >> 1) * 32;
    const int shift = 4 * (s & 1);
    for (int w = 0; w < 8; w++) o.v[w] = (int)((wg_ld_u32_a2(q + 4 * w) >> shift) & 0x0F0F0F0Fu);
}

/* Q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48. Sub-block s:
 * as Q4_K plus bit s of qh[l] as bit 4. */
template <> WG_CU_HDT void wg_decode<WG_TYPE_Q5_K>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + (sb >> 3) * 176;
    const int s = (int)(sb & 7);
    int sc, mn;
    wg_scale_min_k4(s, b + 4, &sc, &mn);
    o.d[0] = o.d[1] = wg_ld_f16(b) * (float)sc;
    o.m[0] = o.m[1] = -(wg_ld_f16(b + 2) * (float)mn);
    const uint8_t *q = b + 48 + (s >> 1) * 32;
    const int shift = 4 * (s & 1);
    for (int w = 0; w < 8; w++) {
        const uint32_t lo = (wg_ld_u32_a2(q + 4 * w) >> shift) & 0x0F0F0F0Fu;
        const uint32_t hb = (wg_ld_u32_a2(b + 16 + 4 * w) >> s) & 0x01010101u;
        o.v[w] = (int)(lo | (hb << 4));
    }
}

/* Q6_K: ql[128] @0, qh[64] @128, scales[16] @192 (int8), d @208. Sub-block
 * s = 4n + t: nibble (t/2) of ql[64n + 32(t&1) + l], 2-bit field t of
 * qh[32n + l]; scales 8n + 2t + h. */
template <> WG_CU_HDT void wg_decode<WG_TYPE_Q6_K>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + (sb >> 3) * 210;
    const int s = (int)(sb & 7), n = s >> 2, t = s & 3;
    const float d = wg_ld_f16(b + 208);
    for (int h = 0; h < 2; h++) o.d[h] = d * (float)(int8_t)b[192 + 8 * n + 2 * t + h];
    const uint8_t *ql = b + 64 * n + 32 * (t & 1);
    const uint8_t *qh = b + 128 + 32 * n;
    const int lshift = 4 * (t >> 1), hshift = 2 * t;
    for (int w = 0; w < 8; w++) {
        const uint32_t lo = (wg_ld_u32_a2(ql + 4 * w) >> lshift) & 0x0F0F0F0Fu;
        const uint32_t hi = (wg_ld_u32_a2(qh + 4 * w) >> hshift) & 0x03030303u;
        o.v[w] = wg_sub_bytes(lo | (hi << 4), 32);
    }
    o.m[0] = o.m[1] = 0.0f;
}

template <> WG_CU_HDT void wg_decode<WG_TYPE_IQ4_NL>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 18;
    o.d[0] = o.d[1] = wg_ld_f16(b);
    const wg_tab16_t t = wg_tab16(WG_KV_IQ4NL);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a2(b + 2 + 4 * w);
        o.v[w] = wg_lut4(u & 0x0F0F0F0Fu, t);
        o.v[w + 4] = wg_lut4((u >> 4) & 0x0F0F0F0Fu, t);
    }
    o.m[0] = o.m[1] = 0.0f;
}

/* IQ4_XS: d @0, scales_h @2 (u16), scales_l[4] @4, qs[128] @8; sub-block s
 * uses qs[16s .. 16s+15] like an IQ4_NL block. */
template <> WG_CU_HDT void wg_decode<WG_TYPE_IQ4_XS>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + (sb >> 3) * 136;
    const int s = (int)(sb & 7);
    const uint32_t sh = wg_ld_u16(b + 2);
    const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | (((sh >> (2 * s)) & 3) << 4);
    o.d[0] = o.d[1] = wg_ld_f16(b) * (float)(ls - 32);
    const uint8_t *q = b + 8 + 16 * s;
    const wg_tab16_t t = wg_tab16(WG_KV_IQ4NL);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a2(q + 4 * w);
        o.v[w] = wg_lut4(u & 0x0F0F0F0Fu, t);
        o.v[w + 4] = wg_lut4((u >> 4) & 0x0F0F0F0Fu, t);
    }
    o.m[0] = o.m[1] = 0.0f;
}

/* MXFP4: e @0, qs[16] @1 (odd offsets: byte loads). */
template <> WG_CU_HDT void wg_decode<WG_TYPE_MXFP4>(const uint8_t *row, int64_t sb, wg_sub32_t &o) {
    const uint8_t *b = row + sb * 17;
    o.d[0] = o.d[1] = wg_e8m0_to_fp32_half(b[0]);
    const wg_tab16_t t = wg_tab16(WG_KV_MXFP4);
    for (int w = 0; w < 4; w++) {
        const uint32_t u = wg_ld_u32_a1(b + 1 + 4 * w);
        o.v[w] = wg_lut4(u & 0x0F0F0F0Fu, t);
        o.v[w + 4] = wg_lut4((u >> 4) & 0x0F0F0F0Fu, t);
    }
    o.m[0] = o.m[1] = 0.0f;
}

/* Value i (0..31) of a decoded sub-block, computed with the same single
 * float operations as kernels/ref (no contraction into FMA), so dequantized
 * values are bit-exact. */
template <int T> WG_CU_HDT float wg_sub_value(const wg_sub32_t &o, int i) {
    const int q = (int)(int8_t)(o.v[i >> 2] >> (8 * (i & 3)));
    const int h = i >> 4;
#ifdef __CUDA_ARCH__
    const float p = __fmul_rn(o.d[h], (float)q);
    return wg_qt<T>::has_min ? __fadd_rn(p, o.m[h]) : p;
#else
    const float p = o.d[h] * (float)q;
    return wg_qt<T>::has_min ? p + o.m[h] : p;
#endif
}

/* Dot of a decoded sub-block with one Q8_1 block (32 int8 + scale d_x):
 *   d_x * sum_h (d[h] * sum_{i in h} v_i q_i + m[h] * sum_{i in h} q_i)
 * The q sums come from the quants themselves (exact), not from the rounded
 * F16 `s` field. xq must be 4-byte aligned (Q8_1 blocks are 36 bytes). */
template <int T> WG_CU_HDT float wg_dot_sub_q8_1(const wg_sub32_t &o, const wg_block_q8_1 *x) {
#ifdef __CUDA_ARCH__
    const int *q = (const int *)x->qs;
    const float dx = wg_fp16_to_fp32(x->d);
#else
    int q[8];
    memcpy(q, x->qs, sizeof q);
    const float dx = wg_fp16_to_fp32(x->d);
#endif
    int si0 = 0, si1 = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) si0 = wg_dp4a(o.v[w], q[w], si0);
#pragma unroll
    for (int w = 4; w < 8; w++) si1 = wg_dp4a(o.v[w], q[w], si1);
    float r = o.d[0] * (float)si0 + o.d[1] * (float)si1;
    if (wg_qt<T>::has_min) {
        int sq0 = 0, sq1 = 0;
#pragma unroll
        for (int w = 0; w < 4; w++) sq0 = wg_dp4a(0x01010101, q[w], sq0);
#pragma unroll
        for (int w = 4; w < 8; w++) sq1 = wg_dp4a(0x01010101, q[w], sq1);
        r += o.m[0] * (float)sq0 + o.m[1] * (float)sq1;
    }
    return dx * r;
}

/* Expand a macro over every block type with device kernels: X(T). */
#define WG_CU_FOR_QTYPES(X)                                                                       \
    X(WG_TYPE_Q4_0) X(WG_TYPE_Q4_1) X(WG_TYPE_Q5_0) X(WG_TYPE_Q5_1) X(WG_TYPE_Q8_0) X(WG_TYPE_Q2_K) \
        X(WG_TYPE_Q3_K) X(WG_TYPE_Q4_K) X(WG_TYPE_Q5_K) X(WG_TYPE_Q6_K) X(WG_TYPE_IQ4_NL)         \
            X(WG_TYPE_IQ4_XS) X(WG_TYPE_MXFP4)

#endif
