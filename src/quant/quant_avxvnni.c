/*
 * quant_avxvnni.c — the AVX2 + AVX-VNNI kernel table (the VEX-encoded
 * vpdpbusd / vpdpwssd of Alder Lake and later Intel cores, and of Zen 5),
 * for CPUs that have AVX-VNNI but not the AVX-512 kernels' features. It
 * goes over the AVX2 table and replaces:
 *
 *   Q4_K, Q5_K, Q6_K
 *                quant_kq_avx2.h with KQ_VNNI: four-product int32 lanes
 *                packed to int16 and scaled by vpdpwssd (see there);
 *   Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4, Q4_1, Q5_1
 *                quant_b32_avx2.h compiled here, where simd_dot_u8i8 is one
 *                vpdpbusd: the same int32 lanes as the AVX2 kernels, so the
 *                same bits, with one instruction fewer per 32 weights.
 */
#define KQ_VNNI
#include "quant/quant_b32_avx2.h"
#include "quant/quant_kq_avx2.h"

DEFINE_DOT_K4(quant_vec_dot_q4_K_avxvnni, block_q4_K, K4_NO_QH)
DEFINE_DOT_K4(quant_vec_dot_q5_K_avxvnni, block_q5_K, K4_QH)
DEFINE_DOT_Q6K(quant_vec_dot_q6_K_avxvnni)
DEFINE_DOT_K4_MULTI(quant_vec_dot_q4_K_avxvnni, block_q4_K, K4_NO_QH)
DEFINE_DOT_K4_MULTI(quant_vec_dot_q5_K_avxvnni, block_q5_K, K4_QH)

void quant_avxvnni_kernels(quant_kernels *k)
{
    k->vec_dot[QT_Q4_0] = vec_dot_q4_0;
    k->vec_dot[QT_Q4_1] = vec_dot_q4_1;
    k->vec_dot[QT_Q5_0] = vec_dot_q5_0;
    k->vec_dot[QT_Q5_1] = vec_dot_q5_1;
    k->vec_dot[QT_Q8_0] = vec_dot_q8_0;
    k->vec_dot[QT_IQ4_NL] = vec_dot_iq4_nl;
    k->vec_dot[QT_MXFP4] = vec_dot_mxfp4;
    k->vec_dot[QT_Q4_K] = quant_vec_dot_q4_K_avxvnni;
    k->vec_dot[QT_Q5_K] = quant_vec_dot_q5_K_avxvnni;
    k->vec_dot_rows[QT_Q4_K] = quant_vec_dot_q4_K_avxvnni_rows;
    k->vec_dot_rows[QT_Q5_K] = quant_vec_dot_q5_K_avxvnni_rows;
    k->vec_dot[QT_Q6_K] = quant_vec_dot_q6_K_avxvnni;
    k->act_prep[QT_Q4_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q4_K_avxvnni_multi, 0, 0};
    k->act_prep[QT_Q5_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q5_K_avxvnni_multi, 0, 0};
    k->act_prep[QT_Q6_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q6_K_avxvnni_multi, 0, 0};
    b32_act_preps(k);
}
