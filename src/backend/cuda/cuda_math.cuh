/* cuda_math.cuh — the per-element math of a forward step, written once for the op-by-op kernels
 * (cuda_small.cu, cuda_matmul.cu, cuda_attention.cu) and the decode kernel (cuda_decode*): the
 * gated activations, soft-capping, RMS scales and norm weights, the rotary rotation, and warp
 * reductions. Every path computes these in F32 with the same expressions, so that the fused and
 * the op-by-op results differ only by the order of sums. */
#ifndef LLMRT_CUDA_MATH_CUH
#define LLMRT_CUDA_MATH_CUH

#include <cuda_runtime.h>

extern "C" {
#include "backend/backend.h"
}

__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* act(gate) * up of a gated MLP (ACT_SILU_GATED, ACT_GELU_TANH_GATED) */
__device__ __forceinline__ float gated_act(int kind, float gate, float up) {
    return (kind == ACT_SILU_GATED ? gate / (1.0f + expf(-gate)) : gelu_tanh(gate)) * up;
}

/* cap * tanh(v / cap) (Gemma's logit and attention soft-caps); v itself when cap is 0 */
__device__ __forceinline__ float soft_cap(float v, float cap) {
    return cap > 0.0f ? cap * tanhf(v / cap) : v;
}

/* 1 / rms of n values whose squares sum to sumsq */
__device__ __forceinline__ float rms_scale(float sumsq, int n, float eps) {
    return rsqrtf(sumsq / n + eps);
}

/* what a normalized value is multiplied by: w, or 1 + w for Gemma's (1 + w) norms */
__device__ __forceinline__ float norm_weight(int kind, float w) {
    return kind == NORM_RMS_PLUS1 ? 1.0f + w : w;
}

/* A normalized value of a row whose mean (LayerNorm; 0 for RMS norms) and 1 / deviation (inv)
 * are known: (v - mean) * inv times the norm's weight (w, or 1 + w), plus LayerNorm's bias b */
__device__ __forceinline__ float norm_out(int kind, float v, float mean, float inv, float w,
                                          float b) {
    if (kind == NORM_LAYER) return (v - mean) * inv * w + b;
    return v * inv * norm_weight(kind, w);
}

/* RoPE of one pair (x1 at i, x2 at i + rot_dim / 2) by the angle whose cos and sin are given */
__device__ __forceinline__ void rope_rotate(float *x1, float *x2, float cs, float sn) {
    float a = *x1, b = *x2;
    *x1 = a * cs - b * sn;
    *x2 = b * cs + a * sn;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#endif
