/* quant.h — tensor type ids and quantized block formats, shared by C and CUDA.
 *
 * Bit-compatible with GGUF files in the wild: the type ids are the GGML type
 * ids written in GGUF tensor infos, and every block struct has the exact byte
 * layout ggml uses (checked by _Static_assert on its size). Half-precision
 * fields are stored as raw uint16_t bits (wg_half) so the header compiles as
 * plain C11 and as CUDA C without either side's half type.
 *
 * Values are stored row-major with ne0 (the row length K) fastest; a row of K
 * values of a block type holds K / blck_size consecutive blocks. */
#ifndef WG_QUANT_H
#define WG_QUANT_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define WG_HD __host__ __device__ static inline
#else
#define WG_HD static inline
#endif

#ifdef __cplusplus
#define WG_STATIC_ASSERT static_assert
#else
#define WG_STATIC_ASSERT _Static_assert
#endif

/* GGML type ids as written in GGUF (gaps are ids ggml retired). */
typedef enum {
    WG_TYPE_F32 = 0,
    WG_TYPE_F16 = 1,
    WG_TYPE_Q4_0 = 2,
    WG_TYPE_Q4_1 = 3,
    WG_TYPE_Q5_0 = 6,
    WG_TYPE_Q5_1 = 7,
    WG_TYPE_Q8_0 = 8,
    WG_TYPE_Q8_1 = 9,
    WG_TYPE_Q2_K = 10,
    WG_TYPE_Q3_K = 11,
    WG_TYPE_Q4_K = 12,
    WG_TYPE_Q5_K = 13,
    WG_TYPE_Q6_K = 14,
    WG_TYPE_Q8_K = 15,
    WG_TYPE_IQ2_XXS = 16,
    WG_TYPE_IQ2_XS = 17,
    WG_TYPE_IQ3_XXS = 18,
    WG_TYPE_IQ1_S = 19,
    WG_TYPE_IQ4_NL = 20,
    WG_TYPE_IQ3_S = 21,
    WG_TYPE_IQ2_S = 22,
    WG_TYPE_IQ4_XS = 23,
    WG_TYPE_I8 = 24,
    WG_TYPE_I16 = 25,
    WG_TYPE_I32 = 26,
    WG_TYPE_I64 = 27,
    WG_TYPE_F64 = 28,
    WG_TYPE_IQ1_M = 29,
    WG_TYPE_BF16 = 30,
    WG_TYPE_TQ1_0 = 34,
    WG_TYPE_TQ2_0 = 35,
    WG_TYPE_MXFP4 = 39,
    WG_TYPE_COUNT = 40
} wg_type_t;

typedef uint16_t wg_half; /* IEEE binary16 bits */
typedef uint16_t wg_bf16; /* bfloat16 bits */

#define WG_QK4_0 32
#define WG_QK4_1 32
#define WG_QK5_0 32
#define WG_QK5_1 32
#define WG_QK8_0 32
#define WG_QK8_1 32
#define WG_QK4_NL 32
#define WG_QK_MXFP4 32
#define WG_QK_K 256
#define WG_K_SCALE_SIZE 12

typedef struct {
    wg_half d;                  /* scale */
    uint8_t qs[WG_QK4_0 / 2];   /* 4-bit quants: low nibbles = values 0..15, high = 16..31 */
} wg_block_q4_0;
WG_STATIC_ASSERT(sizeof(wg_block_q4_0) == 2 + WG_QK4_0 / 2, "q4_0 block size");

typedef struct {
    wg_half d;                  /* scale */
    wg_half m;                  /* minimum */
    uint8_t qs[WG_QK4_1 / 2];   /* 4-bit quants */
} wg_block_q4_1;
WG_STATIC_ASSERT(sizeof(wg_block_q4_1) == 4 + WG_QK4_1 / 2, "q4_1 block size");

typedef struct {
    wg_half d;                  /* scale */
    uint8_t qh[4];              /* 5th bit of each of the 32 quants */
    uint8_t qs[WG_QK5_0 / 2];   /* low 4 bits */
} wg_block_q5_0;
WG_STATIC_ASSERT(sizeof(wg_block_q5_0) == 2 + 4 + WG_QK5_0 / 2, "q5_0 block size");

typedef struct {
    wg_half d;                  /* scale */
    wg_half m;                  /* minimum */
    uint8_t qh[4];              /* 5th bits */
    uint8_t qs[WG_QK5_1 / 2];   /* low 4 bits */
} wg_block_q5_1;
WG_STATIC_ASSERT(sizeof(wg_block_q5_1) == 4 + 4 + WG_QK5_1 / 2, "q5_1 block size");

typedef struct {
    wg_half d;                  /* scale */
    int8_t qs[WG_QK8_0];        /* quants */
} wg_block_q8_0;
WG_STATIC_ASSERT(sizeof(wg_block_q8_0) == 2 + WG_QK8_0, "q8_0 block size");

typedef struct {
    wg_half d;                  /* scale */
    wg_half s;                  /* d * sum(qs) */
    int8_t qs[WG_QK8_1];        /* quants */
} wg_block_q8_1;
WG_STATIC_ASSERT(sizeof(wg_block_q8_1) == 4 + WG_QK8_1, "q8_1 block size");

/* K-quants: super-blocks of 256 values. */
typedef struct {
    uint8_t scales[WG_QK_K / 16]; /* 4-bit scale (low) and min (high) per 16 values */
    uint8_t qs[WG_QK_K / 4];      /* 2-bit quants */
    wg_half d;                    /* super-block scale for scales */
    wg_half dmin;                 /* super-block scale for mins */
} wg_block_q2_K;
WG_STATIC_ASSERT(sizeof(wg_block_q2_K) == 2 * 2 + WG_QK_K / 16 + WG_QK_K / 4, "q2_K block size");

typedef struct {
    uint8_t hmask[WG_QK_K / 8];   /* high bit of each quant */
    uint8_t qs[WG_QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];           /* 16 scales, 6 bits each */
    wg_half d;                    /* super-block scale */
} wg_block_q3_K;
WG_STATIC_ASSERT(sizeof(wg_block_q3_K) == 2 + WG_QK_K / 4 + WG_QK_K / 8 + 12, "q3_K block size");

typedef struct {
    wg_half d;                         /* super-block scale for scales */
    wg_half dmin;                      /* super-block scale for mins */
    uint8_t scales[WG_K_SCALE_SIZE];   /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[WG_QK_K / 2];           /* 4-bit quants */
} wg_block_q4_K;
WG_STATIC_ASSERT(sizeof(wg_block_q4_K) == 2 * 2 + WG_K_SCALE_SIZE + WG_QK_K / 2, "q4_K block size");

typedef struct {
    wg_half d;                         /* super-block scale for scales */
    wg_half dmin;                      /* super-block scale for mins */
    uint8_t scales[WG_K_SCALE_SIZE];   /* 8 scales and 8 mins, 6 bits each */
    uint8_t qh[WG_QK_K / 8];           /* 5th bits */
    uint8_t qs[WG_QK_K / 2];           /* low 4 bits */
} wg_block_q5_K;
WG_STATIC_ASSERT(sizeof(wg_block_q5_K) == 2 * 2 + WG_K_SCALE_SIZE + WG_QK_K / 2 + WG_QK_K / 8, "q5_K block size");

typedef struct {
    uint8_t ql[WG_QK_K / 2];      /* low 4 bits */
    uint8_t qh[WG_QK_K / 4];      /* high 2 bits */
    int8_t scales[WG_QK_K / 16];  /* 8-bit scale per 16 values */
    wg_half d;                    /* super-block scale */
} wg_block_q6_K;
WG_STATIC_ASSERT(sizeof(wg_block_q6_K) == 2 + WG_QK_K / 16 + 3 * WG_QK_K / 4, "q6_K block size");

/* Activation format for K-quant and IQ dot products. */
typedef struct {
    float d;                      /* scale */
    int8_t qs[WG_QK_K];           /* quants */
    int16_t bsums[WG_QK_K / 16];  /* sum of quants in groups of 16 */
} wg_block_q8_K;
WG_STATIC_ASSERT(sizeof(wg_block_q8_K) == 4 + WG_QK_K + WG_QK_K / 16 * 2, "q8_K block size");

typedef struct {
    wg_half d;                    /* scale */
    uint8_t qs[WG_QK4_NL / 2];    /* 4-bit indices into the non-linear table */
} wg_block_iq4_nl;
WG_STATIC_ASSERT(sizeof(wg_block_iq4_nl) == 2 + WG_QK4_NL / 2, "iq4_nl block size");

typedef struct {
    wg_half d;                    /* super-block scale */
    uint16_t scales_h;            /* high 2 bits of the 8 sub-block scales */
    uint8_t scales_l[WG_QK_K / 64]; /* low 4 bits of the 8 sub-block scales */
    uint8_t qs[WG_QK_K / 2];      /* 4-bit indices into the non-linear table */
} wg_block_iq4_xs;
WG_STATIC_ASSERT(sizeof(wg_block_iq4_xs) == 2 + 2 + WG_QK_K / 64 + WG_QK_K / 2, "iq4_xs block size");

typedef struct {
    uint8_t e;                    /* shared E8M0 exponent */
    uint8_t qs[WG_QK_MXFP4 / 2];  /* 4-bit E2M1 values */
} wg_block_mxfp4;
WG_STATIC_ASSERT(sizeof(wg_block_mxfp4) == 1 + WG_QK_MXFP4 / 2, "mxfp4 block size");

/* Non-linear 4-bit code book of IQ4_NL / IQ4_XS. */
#define WG_KVALUES_IQ4NL_INIT {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
/* E2M1 values doubled (so they are integers), used by MXFP4 with a halved scale. */
#define WG_KVALUES_MXFP4_INIT {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

/* ---- scalar conversions (bit-exact with ggml's CPU conversions) ---- */

WG_HD uint32_t wg_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
WG_HD float wg_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* binary16 -> binary32, exact for every input including subnormals, inf, NaN. */
WG_HD float wg_fp16_to_fp32(wg_half h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = wg_bits_f32(0x7800000u); /* 2^-112 */
    const float normalized = wg_bits_f32((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = wg_bits_f32((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = 1u << 27;
    const uint32_t result = sign | (two_w < denormalized_cutoff ? wg_f32_bits(denormalized)
                                                                : wg_f32_bits(normalized));
    return wg_bits_f32(result);
}

/* binary32 -> binary16, round to nearest even (as F16C's vcvtps2ph with RNE). */
WG_HD wg_half wg_fp32_to_fp16(float f) {
    const float scale_to_inf = wg_bits_f32(0x77800000u);  /* 2^112 */
    const float scale_to_zero = wg_bits_f32(0x08800000u); /* 2^-110 */
    float base = (f < 0 ? -f : f) * scale_to_inf * scale_to_zero;
    const uint32_t w = wg_f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = wg_bits_f32((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = wg_f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (wg_half)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

WG_HD float wg_bf16_to_fp32(wg_bf16 h) { return wg_bits_f32((uint32_t)h << 16); }

/* binary32 -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
WG_HD wg_bf16 wg_fp32_to_bf16(float f) {
    uint32_t u = wg_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (wg_bf16)((u >> 16) | 64);
    return (wg_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* E8M0 exponent -> float, halved: the MXFP4 code book is stored doubled. */
WG_HD float wg_e8m0_to_fp32_half(uint8_t e) {
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    return wg_bits_f32(bits);
}

#endif
