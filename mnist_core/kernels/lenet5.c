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
 * or SSE, whichever -march=native finds. Tensors other than the input images are addressed through
 * strides (a gradient arrives in whatever layout autograd hands on); unit-stride rows, the usual
 * case, are copied whole.
 */
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

/* A row of n <= 16 values at a stride, to or from a vector (lanes n..15 zero when loading);
 * unit stride, the usual layout, is one copy. */
static inline v16 load_row(const float *src, long stride, int n) {
    v16 v = splat(0.f);
    if (stride == 1) memcpy(&v, src, sizeof(float) * n);
    else for (int i = 0; i < n; i++) v[i] = src[i * stride];
    return v;
}
static inline void store_row(float *dst, long stride, v16 v, int n) {
    if (stride == 1) memcpy(dst, &v, sizeof(float) * n);
    else for (int i = 0; i < n; i++) dst[i * stride] = v[i];
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

/* The 2x2 windows' first maximum (NaN wins) and its position (0-3), branch-free, for one pooled
 * row from its two conv rows (32 columns each, 28 used): 16 lanes, 14 used. */
static inline void pool_max(v16 a0, v16 a1, v16 b0, v16 b1, v16 *max, v16i *where) {
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

/* Pooled rows pi and pi + 1 of one map: conv rows 2pi .. 2pi+3, eight independent sums (enough
 * to keep both FMA units busy), then the windows' maxima. */
static inline void pooled_rows(const float *tile, const float *w, float b, int pi, v16 max[2], v16i where[2]) {
    v16 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = splat(b);
    for (int k = 0; k < K; k++)
        for (int l = 0; l < K; l++) {
            v16 wv = splat(w[k * K + l]);
            for (int r = 0; r < 4; r++) {
                const float *row = tile + (2 * pi + r + k) * T + l;
                acc[r][0] += wv * load(row);
                acc[r][1] += wv * load(row + 16);
            }
        }
    pool_max(acc[0][0], acc[0][1], acc[1][0], acc[1][1], &max[0], &where[0]);
    pool_max(acc[2][0], acc[2][1], acc[3][0], acc[3][1], &max[1], &where[1]);
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
            for (int pi = 0; pi < P; pi += 2) {
                v16 m[2];
                v16i am[2];
                pooled_rows(tile, weight + f * K * K, bias[f], pi, m, am);
                for (int h = 0; h < 2; h++) {
                    v16i keep = (m[h] > 0.f) | (m[h] != m[h]);  /* ReLU; NaN stays NaN */
                    v16 mv = (v16)((v16i)m[h] & keep);
                    long o = base + (pi + h) * ostride[2];
                    store_row(out + o, ostride[3], mv, P);
                    if (ostride[3] == 1) {
                        uint8_t bytes[16];
                        for (int pj = 0; pj < 16; pj++) bytes[pj] = (uint8_t)am[h][pj];
                        memcpy(arg + o, bytes, P);
                    } else {
                        for (int pj = 0; pj < P; pj++) arg[o + pj * ostride[3]] = (uint8_t)am[h][pj];
                    }
                }
            }
        }
    }
    return 0;
}

static const v16i INTERLEAVE_LO = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
static const v16i INTERLEAVE_HI = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

/* scratch: threads x (c x 25 + c) x 16 floats, for the per-thread weight and bias sums (as vectors,
 * added up once at the end). */
int c1s2_backward(const float *x, int n, int c, float mean, float std, const float *out,
                  const uint8_t *arg, const long *ostride, const float *grad, const long *gstride,
                  float *grad_weight, float *grad_bias, float *scratch, int threads) {
    if (c > MAXC) return -1;
    const long per = (long)(c * K * K + c) * 16;
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
                v16 gb = splat(0.f);
                long ob = img * ostride[0] + f * ostride[1], gbase = img * gstride[0] + f * gstride[1];
                for (int pi = 0; pi < P; pi++) {
                    long o = ob + pi * ostride[2];
                    v16 ov = load_row(out + o, ostride[3], P);
                    v16 gv = load_row(grad + gbase + pi * gstride[2], gstride[3], P);
                    gv = (v16)((v16i)gv & (ov > 0.f));  /* lanes 14, 15: out is 0 there */
                    v16i am;
                    for (int pj = 0; pj < 16; pj++) am[pj] = pj < P ? arg[o + pj * ostride[3]] : 4;
                    gb += gv;
                    /* the window's 4 positions: (row 2pi, even col), (2pi, odd), (2pi+1, even), (2pi+1, odd) */
                    v16 q0 = (v16)((v16i)gv & (am == 0)), q1 = (v16)((v16i)gv & (am == 1));
                    v16 q2 = (v16)((v16i)gv & (am == 2)), q3 = (v16)((v16i)gv & (am == 3));
                    float *r0 = g + 2 * pi * T, *r1 = r0 + T;
                    *(v16u *)r0 = __builtin_shuffle(q0, q1, INTERLEAVE_LO);
                    *(v16u *)(r0 + 16) = __builtin_shuffle(q0, q1, INTERLEAVE_HI);
                    *(v16u *)r1 = __builtin_shuffle(q2, q3, INTERLEAVE_LO);
                    *(v16u *)(r1 + 16) = __builtin_shuffle(q2, q3, INTERLEAVE_HI);
                }
                float *gw = sum + f * K * K * 16;
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
                    for (int l = 0; l < K; l++) {
                        float *dst = gw + (k * K + l) * 16;
                        *(v16u *)dst = load(dst) + s[l][0] + s[l][1];
                    }
                }
                float *db = sum + (long)(c * K * K + f) * 16;
                *(v16u *)db = load(db) + gb;
            }
        }
    }
    for (int q = 0; q < c * K * K + c; q++) {
        float v = 0.f;
        for (int t = 0; t < used; t++) v += hsum(load(scratch + t * per + q * 16));
        if (q < c * K * K) grad_weight[q] = v;
        else grad_bias[q - c * K * K] = v;
    }
    return 0;
}

/* LeNet-5's second stage: C3 (6 -> 16 maps, 5x5, on 14x14) + ReLU + S4 (2x2 average pool), fused.
 *
 * Vectors run along the 16 output maps: a conv output position is one vector, the sum over the
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
            *(v16u *)(xin + (c * C3_SIDE + y) * ROW) = load_row(x + img * xs[0] + c * xs[1] + y * xs[2], xs[3], C3_SIDE);
}

int c3s4_forward(const float *x, const long *xs, int n, const float *weight, const float *bias, float *act,
                 float *out, int threads) {
    float wt[C3_TAPS * C3_OUT] __attribute__((aligned(64)));
    pack_weight(weight, wt);
    v16 b = load(bias);
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int img = 0; img < n; img++) {
        float xin[C3_IN * C3_SIDE * ROW] __attribute__((aligned(64)));
        gather_input(x, xs, img, xin);
        float *a = act + (long)img * C3_CONV * C3_CONV * C3_OUT;
        for (int i = 0; i < C3_CONV; i++) {
            v16 acc[C3_CONV];
            for (int j = 0; j < C3_CONV; j++) acc[j] = b;
            for (int c = 0; c < C3_IN; c++)
                for (int k = 0; k < K; k++) {
                    const float *row = xin + (c * C3_SIDE + i + k) * ROW;
                    v16 r[C3_SIDE];  /* the input row, each value broadcast once */
                    for (int t = 0; t < C3_SIDE; t++) r[t] = splat(row[t]);
                    for (int l = 0; l < K; l++) {
                        v16 wv = load(wt + ((c * K + k) * K + l) * C3_OUT);
                        for (int j = 0; j < C3_CONV; j++) acc[j] += wv * r[j + l];
                    }
                }
            for (int j = 0; j < C3_CONV; j++) {
                v16i keep = (acc[j] > 0.f) | (acc[j] != acc[j]);
                *(v16u *)(a + (i * C3_CONV + j) * C3_OUT) = (v16)((v16i)acc[j] & keep);
            }
        }
        float *o = out + (long)img * C3_OUT * C3_POOL * C3_POOL;
        for (int pi = 0; pi < C3_POOL; pi++)
            for (int pj = 0; pj < C3_POOL; pj++) {
                const float *w0 = a + ((2 * pi) * C3_CONV + 2 * pj) * C3_OUT;
                v16 s = load(w0) + load(w0 + C3_OUT);
                s += load(w0 + C3_CONV * C3_OUT);
                s += load(w0 + (C3_CONV + 1) * C3_OUT);
                s *= splat(0.25f);
                for (int f = 0; f < C3_OUT; f++) o[f * C3_POOL * C3_POOL + pi * C3_POOL + pj] = s[f];
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
            v16 gb = splat(0.f);
            for (int pi = 0; pi < C3_POOL; pi++)
                for (int pj = 0; pj < C3_POOL; pj++) {
                    v16 g;
                    for (int f = 0; f < C3_OUT; f++)
                        g[f] = grad[img * gs[0] + f * gs[1] + pi * gs[2] + pj * gs[3]];
                    g *= splat(0.25f);
                    for (int q = 0; q < 4; q++) {
                        int pos = (2 * pi + (q >> 1)) * C3_CONV + 2 * pj + (q & 1);
                        v16 av = load(a + pos * C3_OUT);
                        v16i pass = ~(v16i)(av <= 0.f);  /* ReLU's gradient: act > 0, or NaN */
                        v16 gv = (v16)((v16i)g & pass);
                        *(v16u *)(gz + pos * C3_OUT) = gv;
                        gb += gv;
                    }
                }
            /* weight gradient: for each (input map, kernel row), the 5 kernel columns in registers */
            for (int c = 0; c < C3_IN; c++)
                for (int k = 0; k < K; k++) {
                    v16 s[2][K];  /* even and odd columns apart: ten independent sums */
                    for (int l = 0; l < K; l++) s[0][l] = s[1][l] = splat(0.f);
                    for (int i = 0; i < C3_CONV; i++) {
                        const float *row = xin + (c * C3_SIDE + i + k) * ROW;
                        v16 r[C3_SIDE];
                        for (int t = 0; t < C3_SIDE; t++) r[t] = splat(row[t]);
                        for (int j = 0; j < C3_CONV; j++) {
                            v16 g = load(gz + (i * C3_CONV + j) * C3_OUT);
                            for (int l = 0; l < K; l++) s[j & 1][l] += g * r[j + l];
                        }
                    }
                    for (int l = 0; l < K; l++) {
                        float *dst = sum + ((c * K + k) * K + l) * C3_OUT;
                        *(v16u *)dst = load(dst) + s[0][l] + s[1][l];
                    }
                }
            float *db = sum + C3_TAPS * C3_OUT;
            *(v16u *)db = load(db) + gb;
            /* input gradient: rows along the 14 input columns, gz transposed to [map][row][4 + col] */
            memset(gp, 0, sizeof(gp));
            for (int pos = 0; pos < C3_CONV * C3_CONV; pos++)
                for (int f = 0; f < C3_OUT; f++)
                    gp[(f * C3_CONV + pos / C3_CONV) * GROW + 4 + pos % C3_CONV] = gz[pos * C3_OUT + f];
            for (int y = 0; y < C3_SIDE; y++) {
                v16 d[C3_IN];
                for (int c = 0; c < C3_IN; c++) d[c] = splat(0.f);
                for (int k = 0; k < K; k++) {
                    int i = y - k;
                    if (i < 0 || i >= C3_CONV) continue;
                    for (int f = 0; f < C3_OUT; f++)
                        for (int l = 0; l < K; l++) {
                            v16 v = load(gp + (f * C3_CONV + i) * GROW + 4 - l);  /* v[x] = gz[f][i][x - l] */
                            const float *w = weight + f * C3_TAPS + k * K + l;
                            for (int c = 0; c < C3_IN; c++) d[c] += v * splat(w[c * K * K]);
                        }
                }
                for (int c = 0; c < C3_IN; c++)
                    store_row(grad_in + img * is[0] + c * is[1] + y * is[2], is[3], d[c], C3_SIDE);
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
