/* LeNet-5's two convolutional stages for CPU training, each fused, forward and backward.
 *
 * Written with GCC vector extensions. A vector `vec` is as wide as the machine's registers under
 * -march=native: 16 floats with AVX-512, else 8 (AVX2; GCC splits them for SSE); -DMNIST_LANES=8 or
 * 16 chooses (tests build the other width to check it). The data keep one layout whatever the
 * width: 16 floats a row (a pooled row of 14, a 32-column conv row as two halves, LeNet-5's 16 C3
 * maps), i.e. NV = 16 / VW vectors. Each loop keeps about a dozen vectors of sums in registers: AVX2
 * has 16 of them, and sums that spill to memory cost more than the arithmetic (the first version kept
 * 16-float vectors by the score, which AVX2 runs at a third of its speed).
 *
 * Stage 1: C1 (1 -> C maps, 5x5) + ReLU + S2 (2x2 max-pool).
 * Input: N images of 28x28 floats in [0, 1]. Each is normalized ((x - mean) / std) and padded by 2
 * with the normalized background, as MnistNet.forward does, into a 32x32 tile (rows padded to 32
 * floats, plus slack so a row's vectors never read out of the tile).
 * Forward: the 28x28 convolution of every map, then each 2x2 window's maximum (the first maximum in
 * row-major order, NaN wins, as torch's max_pool2d), then ReLU. ReLU and max commute, so this is
 * max_pool2d(relu(conv)) exactly; the window's argmax (0-3) is kept for the backward.
 * Backward: the gradient reaches the argmax of each window whose output is > 0 (relu's gradient at 0
 * is 0, as torch's); weight and bias gradients are sums over images, accumulated per thread and
 * added in thread order, so a given thread count always gives the same bits. The input's gradient
 * is not computed (LeNet-5's input is data).
 *
 * Tensors other than the input images are addressed through strides (a gradient arrives in whatever
 * layout autograd hands on); unit-stride rows, the usual case, are copied whole.
 */
#include <stdint.h>
#include <string.h>
#include <omp.h>

#ifndef MNIST_LANES
#ifdef __AVX512F__
#define MNIST_LANES 16
#else
#define MNIST_LANES 8
#endif
#endif
#define VW MNIST_LANES  /* floats a vector */
#define NV (16 / VW)    /* vectors a 16-float row */

typedef float vec __attribute__((vector_size(VW * 4)));
typedef float vecu __attribute__((vector_size(VW * 4), aligned(4)));
typedef int veci __attribute__((vector_size(VW * 4)));

#if VW == 16
static const veci EVEN = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
static const veci ODD = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
static const veci INTERLEAVE_LO = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
static const veci INTERLEAVE_HI = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
#define ROWS 4  /* conv rows a pass of stage 1's forward: 4 x 2 vectors of sums */
#elif VW == 8
static const veci EVEN = {0, 2, 4, 6, 8, 10, 12, 14};
static const veci ODD = {1, 3, 5, 7, 9, 11, 13, 15};
static const veci INTERLEAVE_LO = {0, 8, 1, 9, 2, 10, 3, 11};
static const veci INTERLEAVE_HI = {4, 12, 5, 13, 6, 14, 7, 15};
#define ROWS 2  /* 2 x 4 */
#else
#error "MNIST_LANES must be 8 or 16"
#endif

#define IN 28
#define PAD 2
#define K 5
#define T 32           /* padded tile side = IN + 2 * PAD; also the row stride */
#define CW (T / VW)    /* vectors a conv row */
#define OUT 28         /* conv output side */
#define P 14           /* pooled side */
#define TILE (T * T + 16)
#define MAXC 16
#define SLOT 16        /* floats per per-thread sum in the scratch (VW of them used) */

static inline vec load(const float *p) { return *(const vecu *)p; }
static inline void store(float *p, vec v) { *(vecu *)p = v; }
static inline vec splat(float f) { vec v = {f}; return __builtin_shuffle(v, (veci){0}); }
static inline vec keep(vec v, veci m) { return (vec)((veci)v & m); }
static inline float hsum(vec v) {
    float s = 0.f;
    for (int i = 0; i < VW; i++) s += v[i];
    return s;
}
/* where `take` (all bits set or clear per lane) is set, b; elsewhere a */
static inline vec pick(veci take, vec a, vec b) { return (vec)(((veci)b & take) | ((veci)a & ~take)); }

/* A row of n <= 16 values at a stride into a 16-float buffer (zeros after n), or back. */
static inline void read16(const float *src, long stride, int n, float *buf) {
    memset(buf, 0, sizeof(float) * 16);
    if (stride == 1) memcpy(buf, src, sizeof(float) * n);
    else for (int i = 0; i < n; i++) buf[i] = src[i * stride];
}
static inline void write16(float *dst, long stride, const float *buf, int n) {
    if (stride == 1) memcpy(dst, buf, sizeof(float) * n);
    else for (int i = 0; i < n; i++) dst[i * stride] = buf[i];
}

static void fill_tile(const float *x, float mean, float std, float *tile) {
    float bg = (0.f - mean) / std;
    for (int i = 0; i < TILE; i++) tile[i] = bg;
    for (int r = 0; r < IN; r++)
        for (int c = 0; c < IN; c++) tile[(r + PAD) * T + c + PAD] = (x[r * IN + c] - mean) / std;
}

/* Conv rows r0 .. r0 + ROWS - 1 of one map, 32 columns each (28 used). */
static inline void conv_rows(const float *tile, const float *w, float b, int r0, vec acc[ROWS][CW]) {
    for (int r = 0; r < ROWS; r++)
        for (int q = 0; q < CW; q++) acc[r][q] = splat(b);
    for (int k = 0; k < K; k++)
        for (int l = 0; l < K; l++) {
            vec wv = splat(w[k * K + l]);
            for (int r = 0; r < ROWS; r++) {
                const float *row = tile + (r0 + r + k) * T + l;
                for (int q = 0; q < CW; q++) acc[r][q] += wv * load(row + q * VW);
            }
        }
}

/* One pooled row (16 lanes, 14 used) from its two conv rows a and b: each 2x2 window's first
 * maximum (NaN wins) and its position (0-3), branch-free. Pooled vector h takes conv vectors 2h and
 * 2h + 1, their even and odd columns apart. */
static inline void pool_max(const vec *a, const vec *b, vec max[NV], veci where[NV]) {
    for (int h = 0; h < NV; h++) {
        vec v[4] = {__builtin_shuffle(a[2 * h], a[2 * h + 1], EVEN), __builtin_shuffle(a[2 * h], a[2 * h + 1], ODD),
                    __builtin_shuffle(b[2 * h], b[2 * h + 1], EVEN), __builtin_shuffle(b[2 * h], b[2 * h + 1], ODD)};
        vec m = v[0];
        veci am = {0};
        for (int q = 1; q < 4; q++) {
            veci take = (v[q] > m) | (v[q] != v[q]);
            m = pick(take, m, v[q]);
            am = (am & ~take) | (take & q);
        }
        max[h] = m;
        where[h] = am;
    }
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
            for (int r0 = 0; r0 < OUT; r0 += ROWS) {
                vec acc[ROWS][CW];
                conv_rows(tile, weight + f * K * K, bias[f], r0, acc);
                for (int h = 0; h < ROWS / 2; h++) {
                    vec m[NV];
                    veci am[NV];
                    pool_max(acc[2 * h], acc[2 * h + 1], m, am);
                    float row[16] __attribute__((aligned(64)));
                    uint8_t bytes[16];
                    for (int q = 0; q < NV; q++) {
                        store(row + q * VW, keep(m[q], (m[q] > 0.f) | (m[q] != m[q])));  /* ReLU; NaN stays NaN */
                        for (int j = 0; j < VW; j++) bytes[q * VW + j] = (uint8_t)am[q][j];
                    }
                    long o = base + (r0 / 2 + h) * ostride[2];
                    write16(out + o, ostride[3], row, P);
                    if (ostride[3] == 1) memcpy(arg + o, bytes, P);
                    else for (int pj = 0; pj < P; pj++) arg[o + pj * ostride[3]] = bytes[pj];
                }
            }
        }
    }
    return 0;
}

/* scratch: threads x (c x 25 + c) x SLOT floats, for the per-thread weight and bias sums (as vectors,
 * added up once at the end). */
int c1s2_backward(const float *x, int n, int c, float mean, float std, const float *out,
                  const uint8_t *arg, const long *ostride, const float *grad, const long *gstride,
                  float *grad_weight, float *grad_bias, float *scratch, int threads) {
    if (c > MAXC) return -1;
    const long per = (long)(c * K * K + c) * SLOT;
    int used = 1;
    #pragma omp parallel num_threads(threads)
    {
        #pragma omp single
        used = omp_get_num_threads();
        float *sum = scratch + omp_get_thread_num() * per;  /* [c][25] weight vectors, then [c] bias vectors */
        memset(sum, 0, sizeof(float) * per);
        float tile[TILE] __attribute__((aligned(64)));
        float g[OUT * T] __attribute__((aligned(64)));  /* the gradient at the conv output, dense */
        #pragma omp for schedule(static)
        for (int img = 0; img < n; img++) {
            fill_tile(x + (long)img * IN * IN, mean, std, tile);
            for (int f = 0; f < c; f++) {
                vec gb = splat(0.f);
                long ob = img * ostride[0] + f * ostride[1], gbase = img * gstride[0] + f * gstride[1];
                for (int pi = 0; pi < P; pi++) {
                    long o = ob + pi * ostride[2];
                    float ov[16] __attribute__((aligned(64))), gv[16] __attribute__((aligned(64)));
                    read16(out + o, ostride[3], P, ov);
                    read16(grad + gbase + pi * gstride[2], gstride[3], P, gv);
                    int am[16] __attribute__((aligned(64)));
                    for (int pj = 0; pj < 16; pj++) am[pj] = pj < P ? arg[o + pj * ostride[3]] : 4;
                    for (int h = 0; h < NV; h++) {
                        vec gh = keep(load(gv + h * VW), load(ov + h * VW) > 0.f);  /* lanes 14, 15: out is 0 */
                        veci ah = *(const veci *)(am + h * VW);
                        gb += gh;
                        /* the window's 4 positions: (row 2pi, even col), (2pi, odd), (2pi+1, even), (2pi+1, odd) */
                        vec q0 = keep(gh, ah == 0), q1 = keep(gh, ah == 1), q2 = keep(gh, ah == 2), q3 = keep(gh, ah == 3);
                        float *r0 = g + 2 * pi * T + 2 * h * VW, *r1 = r0 + T;
                        store(r0, __builtin_shuffle(q0, q1, INTERLEAVE_LO));
                        store(r0 + VW, __builtin_shuffle(q0, q1, INTERLEAVE_HI));
                        store(r1, __builtin_shuffle(q2, q3, INTERLEAVE_LO));
                        store(r1 + VW, __builtin_shuffle(q2, q3, INTERLEAVE_HI));
                    }
                }
                float *gw = sum + f * K * K * SLOT;
                for (int k = 0; k < K; k++) {
                    vec s[K][2];  /* even and odd vectors of a row apart: ten independent sums */
                    for (int l = 0; l < K; l++) s[l][0] = s[l][1] = splat(0.f);
                    for (int i = 0; i < OUT; i++) {
                        const float *row = tile + (i + k) * T;
                        for (int q = 0; q < CW; q++) {
                            vec gq = load(g + i * T + q * VW);
                            for (int l = 0; l < K; l++) s[l][q & 1] += gq * load(row + l + q * VW);
                        }
                    }
                    for (int l = 0; l < K; l++) {
                        float *dst = gw + (k * K + l) * SLOT;
                        store(dst, load(dst) + s[l][0] + s[l][1]);
                    }
                }
                float *db = sum + (long)(c * K * K + f) * SLOT;
                store(db, load(db) + gb);
            }
        }
    }
    for (int q = 0; q < c * K * K + c; q++) {
        float v = 0.f;
        for (int t = 0; t < used; t++) v += hsum(load(scratch + t * per + q * SLOT));
        if (q < c * K * K) grad_weight[q] = v;
        else grad_bias[q - c * K * K] = v;
    }
    return 0;
}

/* Stage 2: C3 (6 -> 16 maps, 5x5, on 14x14) + ReLU + S4 (2x2 average pool).
 *
 * Vectors run along the 16 output maps (NV vectors): a conv output position is the sum over the
 * 150 (input map, row, column) taps of a weight vector times one broadcast input value.
 * Forward writes the post-ReLU conv output `act` [N][10x10][16] (kept for the backward) and the
 * pooled [N,16,5,5] (contiguous, as C5 reads it). Backward: the pooled gradient / 4 on each of the
 * window's 4 positions, masked by ReLU (act > 0; NaN passes, as torch's threshold_backward), then
 * the weight and bias gradients (summed per thread, added in thread order) and the input's
 * gradient [N,6,14,14] (written through strides). */
#define C3_IN 6
#define C3_OUT 16
#define C3_SIDE 14
#define C3_CONV 10
#define C3_POOL 5
#define C3_TAPS (C3_IN * K * K)
#define ROW 16                     /* an input row, padded */
#define GROW 24                    /* a gradient row: 4 zeros, 10 values, zeros */

static void pack_weight(const float *weight, float *wt) {  /* [16][150] -> [150][16] */
    for (int f = 0; f < C3_OUT; f++)
        for (int t = 0; t < C3_TAPS; t++) wt[t * C3_OUT + f] = weight[f * C3_TAPS + t];
}

static void gather_input(const float *x, const long *xs, long img, float *xin) {  /* -> [6][14][ROW] */
    for (int c = 0; c < C3_IN; c++)
        for (int y = 0; y < C3_SIDE; y++)
            read16(x + img * xs[0] + c * xs[1] + y * xs[2], xs[3], C3_SIDE, xin + (c * C3_SIDE + y) * ROW);
}

int c3s4_forward(const float *x, const long *xs, int n, const float *weight, const float *bias, float *act,
                 float *out, int threads) {
    float wt[C3_TAPS * C3_OUT] __attribute__((aligned(64)));
    pack_weight(weight, wt);
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int img = 0; img < n; img++) {
        float xin[C3_IN * C3_SIDE * ROW] __attribute__((aligned(64)));
        gather_input(x, xs, img, xin);
        float *a = act + (long)img * C3_CONV * C3_CONV * C3_OUT;
        for (int i = 0; i < C3_CONV; i++)
            for (int h = 0; h < NV; h++) {  /* maps h * VW .. h * VW + VW - 1 of output row i */
                vec acc[C3_CONV];
                for (int j = 0; j < C3_CONV; j++) acc[j] = load(bias + h * VW);
                for (int c = 0; c < C3_IN; c++)
                    for (int k = 0; k < K; k++) {
                        const float *row = xin + (c * C3_SIDE + i + k) * ROW;
                        for (int l = 0; l < K; l++) {
                            vec wv = load(wt + ((c * K + k) * K + l) * C3_OUT + h * VW);
                            for (int j = 0; j < C3_CONV; j++) acc[j] += wv * splat(row[j + l]);
                        }
                    }
                for (int j = 0; j < C3_CONV; j++)
                    store(a + (i * C3_CONV + j) * C3_OUT + h * VW, keep(acc[j], (acc[j] > 0.f) | (acc[j] != acc[j])));
            }
        float *o = out + (long)img * C3_OUT * C3_POOL * C3_POOL;
        for (int pi = 0; pi < C3_POOL; pi++)
            for (int pj = 0; pj < C3_POOL; pj++)
                for (int h = 0; h < NV; h++) {
                    const float *w0 = a + ((2 * pi) * C3_CONV + 2 * pj) * C3_OUT + h * VW;
                    vec s = load(w0) + load(w0 + C3_OUT);
                    s += load(w0 + C3_CONV * C3_OUT);
                    s += load(w0 + (C3_CONV + 1) * C3_OUT);
                    s *= splat(0.25f);
                    for (int f = 0; f < VW; f++) o[(h * VW + f) * C3_POOL * C3_POOL + pi * C3_POOL + pj] = s[f];
                }
    }
    return 0;
}

/* scratch: threads x (150 + 1) x 16 floats, for the per-thread weight and bias sums. */
int c3s4_backward(const float *x, const long *xs, int n, const float *weight, const float *act,
                  const float *grad, const long *gs, float *grad_in, const long *is, float *grad_weight,
                  float *grad_bias, float *scratch, int threads) {
    const int per = (C3_TAPS + 1) * C3_OUT;
    int used = 1;
    #pragma omp parallel num_threads(threads)
    {
        #pragma omp single
        used = omp_get_num_threads();
        float *sum = scratch + (long)omp_get_thread_num() * per;  /* [150][16] weights, then [16] bias */
        memset(sum, 0, sizeof(float) * per);
        float xin[C3_IN * C3_SIDE * ROW] __attribute__((aligned(64)));
        float gz[C3_CONV * C3_CONV * C3_OUT] __attribute__((aligned(64)));
        float gp[C3_OUT * C3_CONV * GROW] __attribute__((aligned(64)));  /* gz by map, rows padded */
        #pragma omp for schedule(static)
        for (int img = 0; img < n; img++) {
            gather_input(x, xs, img, xin);
            const float *a = act + (long)img * C3_CONV * C3_CONV * C3_OUT;
            vec gb[NV];
            for (int h = 0; h < NV; h++) gb[h] = splat(0.f);
            for (int pi = 0; pi < C3_POOL; pi++)
                for (int pj = 0; pj < C3_POOL; pj++) {
                    float g16[16] __attribute__((aligned(64)));
                    for (int f = 0; f < C3_OUT; f++) g16[f] = grad[img * gs[0] + f * gs[1] + pi * gs[2] + pj * gs[3]];
                    for (int h = 0; h < NV; h++) {
                        vec g = load(g16 + h * VW) * splat(0.25f);
                        for (int q = 0; q < 4; q++) {
                            int pos = (2 * pi + (q >> 1)) * C3_CONV + 2 * pj + (q & 1);
                            vec av = load(a + pos * C3_OUT + h * VW);
                            vec gv = keep(g, ~(av <= 0.f));  /* ReLU's gradient: act > 0, or NaN */
                            store(gz + pos * C3_OUT + h * VW, gv);
                            gb[h] += gv;
                        }
                    }
                }
            /* weight gradient: for each (input map, kernel row, maps vector), the 5 kernel columns in registers */
            for (int c = 0; c < C3_IN; c++)
                for (int k = 0; k < K; k++)
                    for (int h = 0; h < NV; h++) {
                        vec s[2][K];  /* even and odd columns apart: ten independent sums */
                        for (int l = 0; l < K; l++) s[0][l] = s[1][l] = splat(0.f);
                        for (int i = 0; i < C3_CONV; i++) {
                            const float *row = xin + (c * C3_SIDE + i + k) * ROW;
                            for (int j = 0; j < C3_CONV; j++) {
                                vec g = load(gz + (i * C3_CONV + j) * C3_OUT + h * VW);
                                for (int l = 0; l < K; l++) s[j & 1][l] += g * splat(row[j + l]);
                            }
                        }
                        for (int l = 0; l < K; l++) {
                            float *dst = sum + ((c * K + k) * K + l) * C3_OUT + h * VW;
                            store(dst, load(dst) + s[0][l] + s[1][l]);
                        }
                    }
            for (int h = 0; h < NV; h++) {
                float *db = sum + C3_TAPS * C3_OUT + h * VW;
                store(db, load(db) + gb[h]);
            }
            /* input gradient: rows along the 14 input columns, gz transposed to [map][row][4 + col] */
            memset(gp, 0, sizeof(gp));
            for (int pos = 0; pos < C3_CONV * C3_CONV; pos++)
                for (int f = 0; f < C3_OUT; f++)
                    gp[(f * C3_CONV + pos / C3_CONV) * GROW + 4 + pos % C3_CONV] = gz[pos * C3_OUT + f];
            for (int y = 0; y < C3_SIDE; y++) {
                vec d[C3_IN][NV];
                for (int c = 0; c < C3_IN; c++)
                    for (int h = 0; h < NV; h++) d[c][h] = splat(0.f);
                for (int k = 0; k < K; k++) {
                    int i = y - k;
                    if (i < 0 || i >= C3_CONV) continue;
                    for (int f = 0; f < C3_OUT; f++)
                        for (int l = 0; l < K; l++) {
                            vec v[NV];  /* v[x] = gz[f][i][x - l] */
                            for (int h = 0; h < NV; h++) v[h] = load(gp + (f * C3_CONV + i) * GROW + 4 - l + h * VW);
                            const float *w = weight + f * C3_TAPS + k * K + l;
                            for (int c = 0; c < C3_IN; c++) {
                                vec wc = splat(w[c * K * K]);
                                for (int h = 0; h < NV; h++) d[c][h] += v[h] * wc;
                            }
                        }
                }
                for (int c = 0; c < C3_IN; c++) {
                    float row[16] __attribute__((aligned(64)));
                    for (int h = 0; h < NV; h++) store(row + h * VW, d[c][h]);
                    write16(grad_in + img * is[0] + c * is[1] + y * is[2], is[3], row, C3_SIDE);
                }
            }
        }
    }
    for (int f = 0; f < C3_OUT; f++) {
        for (int t = 0; t < C3_TAPS; t++) {
            float v = 0.f;
            for (int u = 0; u < used; u++) v += scratch[(long)u * per + t * C3_OUT + f];
            grad_weight[f * C3_TAPS + t] = v;
        }
        float v = 0.f;
        for (int u = 0; u < used; u++) v += scratch[(long)u * per + C3_TAPS * C3_OUT + f];
        grad_bias[f] = v;
    }
    return 0;
}
