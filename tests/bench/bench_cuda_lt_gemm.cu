/* bench_cuda_lt_gemm — cuBLASLt's products of a prompt's shapes, timed alone: BF16, and FP8 (E4M3)
 * with per-row activation and per-column weight scales (outer-vector scaling, as
 * matmul_fp8_gemm runs them) or per-tensor scales, with and without fast accumulation; the
 * heuristic's first choice and the best of its first 8 (kernel_quant_rows, which makes the
 * FP8 activations, is timed in place: Nsight Compute on `llmrt run`, docs/PERF.md). Usage:
 * bench_cuda_lt_gemm [M ...] (default 2048 1024 257); the shapes are the 8B's. Built with the
 * CUDA backend (CMakeLists.txt), or alone:
 * nvcc -O2 -arch=sm_90a tests/bench/bench_cuda_lt_gemm.cu -lcublasLt -o bench_cuda_lt_gemm */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CKB(x)                                                                                     \
    do {                                                                                           \
        cublasStatus_t s_ = (x);                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, (int)s_);     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static cublasLtHandle_t lt;
static void *ws;
static size_t ws_bytes = 64u << 20;

/* FP8_VEC_LATE: the scale pointers set only after the heuristic (as llmrt did until 2026-12-06) */
enum { BF16, FP8_VEC, FP8_VEC_LATE, FP8_VEC_FAST, FP8_TENSOR_FAST, N_MODES };
static const char *mode_name[N_MODES] = {"bf16", "fp8 row/col scales", "fp8 row/col, late ptrs",
                                         "fp8 row/col + fast", "fp8 tensor + fast"};

/* the mean us of 10 runs of algo (after 2), -1 if it fails */
static float time_it(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                     cublasLtMatrixLayout_t c, const cublasLtMatmulAlgo_t *algo, const void *A,
                     const void *B, void *C) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const float alpha = 1.0f, beta = 0.0f;
    for (int r = 0; r < 12; r++) {
        if (r == 2) cudaEventRecord(e0);
        if (cublasLtMatmul(lt, op, &alpha, A, a, B, b, &beta, C, c, C, c, algo, ws, ws_bytes, 0) !=
            CUBLAS_STATUS_SUCCESS)
            return -1.0f;
    }
    cudaEventRecord(e1);
    if (cudaEventSynchronize(e1) != cudaSuccess) return -1.0f;
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms * 1e3f / 10;
}

static void bench(int mode, int m, int n, int k, const void *W, const void *X, void *out,
                  const float *sw, const float *sx, const float *one) {
    cublasLtMatmulDesc_t op;
    CKB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cudaDataType_t ab = mode == BF16 ? CUDA_R_16BF : CUDA_R_8F_E4M3;
    if (mode == FP8_VEC || mode == FP8_VEC_LATE || mode == FP8_VEC_FAST) {
        const int32_t sm = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sm, sizeof sm));
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sm, sizeof sm));
        if (mode != FP8_VEC_LATE) {
            CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw,
                                               sizeof sw));
            CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx,
                                               sizeof sx));
        }
    } else if (mode == FP8_TENSOR_FAST) {
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &one,
                                           sizeof one));
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &one,
                                           sizeof one));
    }
    if (mode == FP8_VEC_FAST || mode == FP8_TENSOR_FAST) {
        const int8_t fast = 1;
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast,
                                           sizeof fast));
    }
    cublasLtMatrixLayout_t a, b, c;
    CKB(cublasLtMatrixLayoutCreate(&a, ab, k, n, k));
    CKB(cublasLtMatrixLayoutCreate(&b, ab, k, m, k));
    CKB(cublasLtMatrixLayoutCreate(&c, CUDA_R_16BF, n, m, n));
    cublasLtMatmulPreference_t pref;
    CKB(cublasLtMatmulPreferenceCreate(&pref));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &ws_bytes, sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res[8];
    int found = 0;
    cublasStatus_t e = cublasLtMatmulAlgoGetHeuristic(lt, op, a, b, c, c, pref, 8, res, &found);
    if (e != CUBLAS_STATUS_SUCCESS) printf("  (heuristic: status %d)\n", (int)e);
    if (mode == FP8_VEC_LATE) {
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw,
                                           sizeof sw));
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx,
                                           sizeof sx));
    }
    float first = -1, best = -1;
    int bi = -1;
    for (int i = 0; e == CUBLAS_STATUS_SUCCESS && i < found; i++) {
        float us = time_it(op, a, b, c, &res[i].algo, W, X, out);
        if (i == 0) first = us;
        if (us > 0 && (best < 0 || us < best)) {
            best = us;
            bi = i;
        }
    }
    const double fl = 2.0 * m * n * k;
    printf("%5d %6d %6d  %-20s first %8.1f us (%5.0f TF/s)  best of %d %8.1f us (%5.0f TF/s, "
           "#%d)\n",
           m, n, k, mode_name[mode], first, first > 0 ? fl / first / 1e6 : 0, found, best,
           best > 0 ? fl / best / 1e6 : 0, bi);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatmulDescDestroy(op);
}

__global__ void fill(void *p, size_t n, unsigned seed) { /* n bytes of small random values */
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / 2) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13;
        h *= 0x5bd1e995;
        h ^= h >> 15;
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16(((h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
    }
}

int main(int argc, char **argv) {
    int ms[8] = {2048, 1024, 257}, nm = 3;
    if (argc > 1) {
        nm = 0;
        for (int i = 1; i < argc && nm < 8; i++)
            ms[nm++] = atoi(argv[i]);
    }
    const int shapes[4][2] = {{6144, 4096}, {28672, 4096}, {4096, 14336}, {4096, 4096}};
    CKB(cublasLtCreate(&lt));
    CK(cudaMalloc(&ws, ws_bytes));
    const size_t wmax = (size_t)28672 * 4096 * 2, xmax = (size_t)2048 * 14336 * 2;
    void *W, *X, *out, *q;
    float *sw, *sx, *one;
    CK(cudaMalloc(&W, wmax));
    CK(cudaMalloc(&X, xmax));
    CK(cudaMalloc(&q, xmax));
    CK(cudaMalloc(&out, (size_t)2048 * 28672 * 2));
    CK(cudaMalloc(&sw, 28672 * 4));
    CK(cudaMalloc(&sx, 8192 * 4));
    CK(cudaMalloc(&one, 4));
    fill<<<(unsigned)(wmax / 2 / 256 + 1), 256>>>(W, wmax, 1); /* FP8 reads these bytes as codes */
    fill<<<(unsigned)(xmax / 2 / 256 + 1), 256>>>(X, xmax, 2);
    fill<<<(unsigned)(xmax / 2 / 256 + 1), 256>>>(q, xmax, 3); /* E4M3 codes of the activations */
    CK(cudaGetLastError());
    float h1[1] = {1.0f}, *hs = (float *)malloc(28672 * 4);
    for (int i = 0; i < 28672; i++)
        hs[i] = 0.01f;
    CK(cudaMemcpy(one, h1, 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(sw, hs, 28672 * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(sx, hs, 8192 * 4, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
    for (int mi = 0; mi < nm; mi++)
        for (int s = 0; s < 4; s++) {
            const int n = shapes[s][0], k = shapes[s][1], m = ms[mi];
            for (int mode = 0; mode < N_MODES; mode++)
                bench(mode, m, n, k, W, mode == BF16 ? X : q, out, sw, sx, one);
        }
    return 0;
}
