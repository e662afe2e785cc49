/* LeNet-5's first stage for CPU training: C1 (1 -> C maps, 5x5) + ReLU + S2 (2x2 max-pool), fused.
 *
 * Input: N images of 28x28 floats in [0, 1]. Each is normalized ((x - mean) / std) and padded by 2
 * with the normalized background, as MnistNet.forward does, into a 32x32 tile (rows padded to 32
 * floats, plus slack so a row's 32-wide vectors never read out of the tile).
 * Forward: the 28x28 convolution of every map, then each 2x2 window's maximum (the first maximum in
 * row-major order, NaN wins, as torch's max_pool2d), then ReLU. ReLU and max commute, so this is
 * max_pool2d(relu(conv)) exactly; the window's argmax (0-3) is kept for the backward.
 * Backward: the gradient reaches the argmax of each window whose output is > 0 (relu's gradient at 0
 * is 0, as torch's); weight and bias gradients are sums over images, accumulated per thread and
 * added in thread order, so a given thread count always gives the same bits. The input's gradient
 * is not computed (LeNet-5's input is data).
 *
 * Written with GCC vector extensions: 16 floats a vector, which the compiler maps to AVX-512, AVX2
 * or SSE, whichever -march=native finds. Output tensors are addressed through strides, so the pooled
 * maps can be written channels-last for the next convolution.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

#define IN 28
#define PAD 2
#define K 5
#define T 32           /* padded tile side = IN + 2 * PAD; also the row stride */
#define OUT 28         /* conv output side */
#define P 14           /* pooled side */
#define TILE (T * T + 16)
#define MAXC 16

static inline v16 load(const float *p) { return *(const v16u *)p; }
static inline v16 splat(float f) { return (v16){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }
static inline float hsum(v16 v) {
    float s = 0.f;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}

static void fill_tile(const float *x, float mean, float std, float *tile) {
    float bg = (0.f - mean) / std;
    for (int i = 0; i < TILE; i++) tile[i] = bg;
    for (int r = 0; r < IN; r++)
        for (int c = 0; c < IN; c++) tile[(r + PAD) * T + c + PAD] = (x[r * IN + c] - mean) / std;
}

typedef int v16i __attribute__((vector_size(64)));
static const v16i EVEN = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
static const v16i ODD = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};

/* where `take` (all bits set or clear per lane) is set, b; elsewhere a */
static inline v16 pick(v16i take, v16 a, v16 b) { return (v16)(((v16i)b & take) | ((v16i)a & ~take)); }

/* One pooled row of one map: conv rows 2*pi and 2*pi+1 (32 columns each, 28 used), then the 2x2
 * windows' first maximum (NaN wins) and its position, branch-free, 16 lanes of which 14 are used. */
static inline void pooled_row(const float *tile, const float *w, float b, int pi, v16 *max, v16i *where) {
    v16 a0 = splat(b), a1 = splat(b), b0 = splat(b), b1 = splat(b);
    for (int k = 0; k < K; k++) {
        const float *r0 = tile + (2 * pi + k) * T, *r1 = r0 + T;
        for (int l = 0; l < K; l++) {
            v16 wv = splat(w[k * K + l]);
            a0 += wv * load(r0 + l);
            a1 += wv * load(r0 + l + 16);
            b0 += wv * load(r1 + l);
            b1 += wv * load(r1 + l + 16);
        }
    }
    v16 v[4] = {__builtin_shuffle(a0, a1, EVEN), __builtin_shuffle(a0, a1, ODD),
                __builtin_shuffle(b0, b1, EVEN), __builtin_shuffle(b0, b1, ODD)};
    v16 m = v[0];
    v16i am = {0};
    for (int q = 1; q < 4; q++) {
        v16i take = (v[q] > m) | (v[q] != v[q]);
        m = pick(take, m, v[q]);
        am = (am & ~take) | (take & q);
    }
    *max = m;
    *where = am;
}

int c1s2_forward(const float *x, int n, int c, const float *weight, const float *bias, float mean,
                 float std, float *out, uint8_t *arg, const long *ostride, int threads) {
    if (c > MAXC) return -1;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int img = 0; img < n; img++) {
        float tile[TILE] __attribute__((aligned(64)));
        fill_tile(x + (long)img * IN * IN, mean, std, tile);
        for (int f = 0; f < c; f++) {
            long base = img * ostride[0] + f * ostride[1];
            for (int pi = 0; pi < P; pi++) {
                v16 m;
                v16i am;
                pooled_row(tile, weight + f * K * K, bias[f], pi, &m, &am);
                v16i keep = (m > 0.f) | (m != m);  /* ReLU; NaN stays NaN */
                m = (v16)((v16i)m & keep);
                long o = base + pi * ostride[2];
                for (int pj = 0; pj < P; pj++) {
                    out[o + pj * ostride[3]] = m[pj];
                    arg[o + pj * ostride[3]] = (uint8_t)am[pj];
                }
            }
        }
    }
    return 0;
}

int c1s2_backward(const float *x, int n, int c, float mean, float std, const float *out,
                  const uint8_t *arg, const long *ostride, const float *grad, const long *gstride,
                  float *grad_weight, float *grad_bias, int threads) {
    if (c > MAXC) return -1;
    float partial[64][MAXC * (K * K + 1)];
    if (threads > 64) threads = 64;
    int used = 1;
    #pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        #pragma omp single
        used = omp_get_num_threads();
        float *acc = partial[tid];
        memset(acc, 0, sizeof(partial[0]));
        float tile[TILE] __attribute__((aligned(64)));
        float g[OUT * T] __attribute__((aligned(64)));
        #pragma omp for schedule(static)
        for (int img = 0; img < n; img++) {
            fill_tile(x + (long)img * IN * IN, mean, std, tile);
            for (int f = 0; f < c; f++) {
                memset(g, 0, sizeof(g));
                float gb = 0.f;
                long ob = img * ostride[0] + f * ostride[1], gbase = img * gstride[0] + f * gstride[1];
                for (int pi = 0; pi < P; pi++)
                    for (int pj = 0; pj < P; pj++) {
                        long o = ob + pi * ostride[2] + pj * ostride[3];
                        float gv = out[o] > 0.f ? grad[gbase + pi * gstride[2] + pj * gstride[3]] : 0.f;
                        int a = arg[o];
                        g[(2 * pi + (a >> 1)) * T + 2 * pj + (a & 1)] = gv;
                        gb += gv;
                    }
                float *gw = acc + f * (K * K + 1);
                for (int k = 0; k < K; k++) {
                    v16 s[K][2];
                    for (int l = 0; l < K; l++) s[l][0] = s[l][1] = splat(0.f);
                    for (int i = 0; i < OUT; i++) {
                        v16 g0 = load(g + i * T), g1 = load(g + i * T + 16);
                        const float *row = tile + (i + k) * T;
                        for (int l = 0; l < K; l++) {
                            s[l][0] += g0 * load(row + l);
                            s[l][1] += g1 * load(row + l + 16);
                        }
                    }
                    for (int l = 0; l < K; l++) gw[k * K + l] += hsum(s[l][0] + s[l][1]);
                }
                gw[K * K] += gb;
            }
        }
    }
    for (int f = 0; f < c; f++) {
        for (int q = 0; q < K * K; q++) {
            float s = 0.f;
            for (int t = 0; t < used; t++) s += partial[t][f * (K * K + 1) + q];
            grad_weight[f * K * K + q] = s;
        }
        float s = 0.f;
        for (int t = 0; t < used; t++) s += partial[t][f * (K * K + 1) + K * K];
        grad_bias[f] = s;
    }
    return 0;
}
