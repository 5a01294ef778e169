/*
 * quant_ref_quantize_k.c — from_float for the K-quants (Q2_K .. Q6_K).
 *
 * A K-quant super-block of 256 holds 8 or 16 sub-blocks, each with its own
 * small-integer scale (and, for Q2_K/Q4_K/Q5_K, min) that is itself
 * quantized against one f16 super-scale. Quantizing is therefore two
 * searches: per sub-block, the float scale (and min) that minimises a
 * weighted error; then the super-scale, which fixes every sub-block scale
 * to an integer, after which the elements are re-rounded with the scales
 * they will actually be decoded with.
 *
 * The searches are ggml's reference ones (what llama.cpp's quantizer does
 * without an importance matrix), kept operation for operation so that the
 * bytes match:
 *
 *   fit_scale_min   Q2_K, Q4_K, Q5_K: x ~ s * q - m with q in 0..nmax and
 *                   m >= 0. Tries nstep + 1 inverse scales around
 *                   nmax / (max - min); for each, the weighted least-squares
 *                   s and m for the rounded q; keeps the lowest error.
 *   fit_scale_sym   Q6_K: x ~ s * q, q in -nmax..nmax-1, weights x^2; tries
 *                   18 inverse scales around -nmax / v (v the element of
 *                   largest magnitude) and keeps the best least squares.
 *   fit_scale_q3    Q3_K: as fit_scale_sym's start, then up to 5 passes of
 *                   coordinate descent moving single q's while that
 *                   improves the weighted least-squares fit.
 */
#include "quant/quant_impl.h"
#include "quant/quant_ref.h"

#include <math.h>
#include <string.h>

#define EPS_ZERO 1e-15f /* a sub-block with |x| below this is all zero */

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* --- sub-block scale searches ------------------------------------------ */

/*
 * x ~ scale * L - min_out (min_out >= 0), L in 0..nmax, minimising
 * sum w * err^2 (or sum w * |err| when use_mad). Returns the scale.
 * Note that the current best min also shifts the rounding of later trials,
 * as in ggml; changing that would change the bytes.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *min_out, float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *min_out = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_err = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        best_err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0))
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best_err) {
            memcpy(L, Laux, (size_t)n);
            best_err = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *min_out = -min;
    return scale;
}

/* The element of largest magnitude, sign included (the first if tied). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0, v = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            v = x[i];
        }
    return v;
}

/* sum(w x l) and sum(w l^2), w = x^2, for l = round(iscale * x) clamped. */
static void sym_sums(int n, int nmax, const float *x, float iscale, float *sumlx, float *suml2,
                     int8_t *L)
{
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        if (L)
            L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* x ~ scale * (L - nmax), L in 0..2*nmax-1, weights x^2. Returns the scale. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
    const float v = signed_absmax(x, n);
    if (fabsf(v) < EPS_ZERO) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float sumlx, suml2;
    sym_sums(n, nmax, x, -nmax / v, &sumlx, &suml2, L);
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        const float iscale = -(nmax + 0.1f * is) / v;
        sym_sums(n, nmax, x, iscale, &sumlx, &suml2, NULL);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            sym_sums(n, nmax, x, iscale, &sumlx, &suml2, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's search: L in 0..2*nmax-1 (biased by nmax). Returns the scale. */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L)
{
    const float v = signed_absmax(x, n);
    if (fabsf(v) < EPS_ZERO) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float sumlx, suml2;
    sym_sums(n, nmax, x, -nmax / v, &sumlx, &suml2, L);
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] - nmax); /* unbiased during the descent */
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (!(slx > 0))
                continue;
            float sl2 = suml2 - w * L[i] * L[i];
            int l = clampi(quant_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (l == L[i])
                continue;
            slx += w * x[i] * l;
            sl2 += w * l * l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)l;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* --- packing ------------------------------------------------------------ */

/* 2-bit values, 4 per byte: element 32k + l of each 128 in byte l, bits 2k. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)(L[h + l] | L[h + l + 32] << 2 | L[h + l + 64] << 4 |
                                      L[h + l + 96] << 6);
}

/* Q4_K / Q5_K scale packing (the inverse of quant_k4_scale_min). */
static void pack_k4_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[12])
{
    for (int j = 0; j < 4; j++) {
        out[j] = ls[j];
        out[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; j++) {
        out[j + 4] = (uint8_t)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
        out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
        out[j] |= (uint8_t)((lm[j] >> 4) << 6);
    }
}

/* --- Q2_K ---------------------------------------------------------------- */

void quant_from_float_q2_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q2_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        float scales[QK_K / 16], mins[QK_K / 16], w[16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f,
                                      15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        y[i].d = quant_f32_to_f16(0.0f);
        y[i].dmin = quant_f32_to_f16(0.0f);
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)quant_nearest_int(iscale * scales[j]);
            y[i].d = quant_f32_to_f16(max_scale / 15.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)(quant_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = quant_f32_to_f16(max_min / 15.0f);
        }
        /* re-round with the scales as stored */
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = quant_f16_to_f32(y[i].d) * (y[i].scales[j] & 0xF);
            if (d == 0.0f)
                continue;
            const float dm = quant_f16_to_f32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clampi(quant_nearest_int((x[16 * j + l] + dm) / d), 0, 3);
        }
        pack_2bit(L, y[i].qs);
    }
}

/* --- Q3_K ---------------------------------------------------------------- */

void quant_from_float_q3_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q3_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float amax = 0, max_scale = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        y[i].d = quant_f32_to_f16(0.0f);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = clampi(quant_nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = quant_f32_to_f16(1 / iscale);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = quant_f16_to_f32(y[i].d) * (quant_q3k_scale(y[i].scales, j) - 32);
            if (d == 0.0f)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(quant_nearest_int(x[16 * j + l] / d), -4, 3) + 4);
        }
        /* third bit of element e: bit e / 32 of hmask[e % 32] */
        uint8_t L2[QK_K];
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < QK_K; e++) {
            int l = L[e];
            if (l > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                l -= 4;
            }
            L2[e] = (uint8_t)l;
        }
        pack_2bit(L2, y[i].qs);
    }
}

/* --- Q4_K and Q5_K ------------------------------------------------------- */

/*
 * The shared first half of Q4_K and Q5_K: per sub-block of 32, a scale and
 * min search weighted by rms + |x|; then the 6-bit scales and mins against
 * d = max_scale / 63 and dmin = max_min / 63; then re-rounding. Fills d,
 * dmin and scales (at the same offsets in both blocks) and L in 0..nmax.
 */
static void k45_quantize_super(const float *x, int nmax, float rmin, float rdelta, int nstep,
                               ggml_half *dh, ggml_half *dminh, uint8_t packed[12],
                               uint8_t L[QK_K])
{
    float scales[QK_K / 32], mins[QK_K / 32], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        const float *xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xb[l] * xb[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(xb[l]);
        scales[j] = fit_scale_min(32, nmax, xb, w, L + 32 * j, &mins[j], rmin, rdelta, nstep,
                                  false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < QK_K / 32; j++) {
        /* ggml stores these through uint8_t before clamping */
        uint8_t s = (uint8_t)quant_nearest_int(inv_scale * scales[j]);
        uint8_t m = (uint8_t)quant_nearest_int(inv_min * mins[j]);
        ls[j] = s < 63 ? s : 63;
        lm[j] = m < 63 ? m : 63;
    }
    pack_k4_scales(ls, lm, packed);
    *dh = quant_f32_to_f16(max_scale / 63.0f);
    *dminh = quant_f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        quant_k4_scale_min(j, packed, &sc, &m);
        const float d = quant_f16_to_f32(*dh) * sc;
        if (d == 0.0f)
            continue;
        const float dm = quant_f16_to_f32(*dminh) * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(quant_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void quant_from_float_q4_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q4_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        k45_quantize_super(x, 15, -1.0f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int s = 0; s < QK_K / 32; s += 2)
            for (int l = 0; l < 32; l++)
                y[i].qs[16 * s + l] = (uint8_t)(L[32 * s + l] | L[32 * s + 32 + l] << 4);
    }
}

void quant_from_float_q5_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q5_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        k45_quantize_super(x, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int e = 0; e < QK_K; e++)
            y[i].qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        for (int s = 0; s < QK_K / 32; s += 2)
            for (int l = 0; l < 32; l++)
                y[i].qs[16 * s + l] =
                    (uint8_t)((L[32 * s + l] & 0xF) | (L[32 * s + 32 + l] & 0xF) << 4);
    }
}

/* --- Q6_K ---------------------------------------------------------------- */

/* Inverse of q6k_value in quant_ref_dequant.c; L in 0..63 (q + 32). */
static void q6k_pack(const int8_t *L, block_q6_K *b)
{
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((Lh[l] & 0xF) | (Lh[l + 64] & 0xF) << 4);
            ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | (Lh[l + 96] & 0xF) << 4);
            qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                              (Lh[l + 96] >> 4) << 6);
        }
    }
}

void quant_from_float_q6_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q6_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float amax = 0, max_scale = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (amax < EPS_ZERO) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[i].d = quant_f32_to_f16(1 / iscale);
        for (int j = 0; j < QK_K / 16; j++) {
            int s = quant_nearest_int(iscale * scales[j]);
            y[i].scales[j] = (int8_t)(s < 127 ? s : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = quant_f16_to_f32(y[i].d) * y[i].scales[j];
            if (d == 0.0f)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    (int8_t)(clampi(quant_nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }
        q6k_pack(L, &y[i]);
    }
}
