/*
 * quant_kq_avxvnni.c — the AVX2 table's Q4_K and Q5_K dot products with
 * AVX-VNNI (the VEX-encoded vpdpbusd / vpdpwssd of Alder Lake and later
 * Intel cores, and Zen 5), for CPUs that have AVX2 and AVX-VNNI but not
 * the AVX-512 kernels' features. The kernels are quant_k4_avx2.h's with
 * K4_VNNI: see there for what changes and what it gains.
 */
#define K4_VNNI
#include "quant/quant_k4_avx2.h"

DEFINE_DOT_K4(quant_vec_dot_q4_K_avxvnni, block_q4_K, K4_NO_QH)
DEFINE_DOT_K4(quant_vec_dot_q5_K_avxvnni, block_q5_K, K4_QH)

void quant_avxvnni_kernels(quant_kernels *k)
{
    k->vec_dot[QT_Q4_K] = quant_vec_dot_q4_K_avxvnni;
    k->vec_dot[QT_Q5_K] = quant_vec_dot_q5_K_avxvnni;
    k->vec_dot_rows[QT_Q4_K] = quant_vec_dot_q4_K_avxvnni_rows;
    k->vec_dot_rows[QT_Q5_K] = quant_vec_dot_q5_K_avxvnni_rows;
}
