/*
 * Fused CPU kernels of the training hot path (the C extension scvi._kernels, optional):
 * the negative binomial (NB) and zero-inflated NB log-likelihoods, and dropout masks.
 *
 * NB / ZINB.
 * Written eagerly with torch, a training step spends about a quarter of its time in the two
 * dozen element-wise operations of the (cells, genes) likelihood and its gradient (and in
 * torch's generic log/exp, slow on some CPUs). Here one pass over each row computes the value
 * and the three local derivatives (d/dmu, d/dpi and the per-element d/dtheta, which autograd's
 * backward pass then multiplies by the incoming gradient), with vectorisable exp/log written
 * out below. The gamma-function terms of the counts come from per-gene tables
 *   lgamma(k + theta) - lgamma(theta) - lgamma(k + 1) = sum_{j<k} log(theta + j) - log k!
 *   digamma(k + theta) - digamma(theta)            = sum_{j<k} 1 / (theta + j)
 * built for the counts of the minibatch; larger counts continue from the tables' last row with
 * asymptotic series, in double.
 *
 * Scope (the Python wrapper checks it and otherwise uses the torch implementation):
 * float32, C-contiguous (n_rows, n_genes) counts / means / logits, one inverse dispersion per
 * gene, counts that are non-negative integers (integer_max() checks them).
 *
 * The same likelihood from the decoder's logits (nb_family_logits): the means
 * exp(library) softmax(h + bias) of a row are computed, used and dropped in the thread's cache;
 * each cell's sum and its derivatives in h, library, theta and pi are all that is stored, the
 * derivatives in h and pi over the logits themselves (the caller's bias-free products of the
 * decoder's last layers, which need no copy of the biases).
 *
 * Linear layers on mostly-zero inputs (sparse_structure, sparse_input_linear[_weight_grad]): an
 * encoder's first layer reads the counts, typically 90% zeros; sums of weight rows over the
 * non-zeros replace the dense products.
 *
 * Dropout masks: a counter-based generator (splitmix64) seeded by one draw of torch's
 * generator replaces a Bernoulli draw per element and three tensor operations.
 *
 * The small layers of the default VAE's training step (bn_relu_*, small_linear*, gaussian_latent*):
 * batch norm with ReLU and dropout, narrow linear layers, the Gaussian latent draw and KL term,
 * forward and backward, each in one call instead of several torch operations (see
 * scvi/models/_fused_step.py).
 *
 * The functions take raw addresses (tensor.data_ptr()) and release the GIL. Rows are shared
 * out with OpenMP: linked against libgomp, the module uses the runtime torch already loaded
 * (same soname), hence torch's thread setting.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Several instruction-set versions of the hot loops, chosen at load time (x86-64 Linux, GCC). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

/* Parallel regions only pay off for large minibatches. */
#define PARALLEL_MIN_ELEMENTS 32768
/* Largest count accepted (exactly representable, fits an int). */
#define MAX_COUNT 16777216.0f

/* ------------------------------------------------------------------------------------------ */
/* Elementary functions, branch-free so that loops calling them vectorise.                     */

static inline float bits_to_float(uint32_t i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f) {
    uint32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

/* Natural logarithm (FreeBSD / musl logf polynomial, < 1 ulp), with log(0) = -inf,
 * log(x < 0) = NaN, log(inf) = inf, NaN -> NaN; subnormals are rescaled. */
static inline __attribute__((always_inline)) float log_f(float x) {
    const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
    const float Lg1 = 0.66666662693f, Lg2 = 0.40000972152f, Lg3 = 0.28498786688f, Lg4 = 0.24279078841f;
    int subnormal = x < 1.17549435e-38f;
    float xs = subnormal ? x * 33554432.0f : x; /* 2^25 */
    /* x = (1 + f) 2^k with 1 + f in [sqrt(1/2), sqrt(2)) */
    uint32_t ix = float_to_bits(xs);
    ix += 0x3f800000u - 0x3f3504f3u;
    int k = (int)(ix >> 23) - 0x7f - (subnormal ? 25 : 0);
    ix = (ix & 0x007fffffu) + 0x3f3504f3u;
    float f = bits_to_float(ix) - 1.0f;
    float s = f / (2.0f + f);
    float z = s * s;
    float w = z * z;
    float t1 = w * (Lg2 + w * Lg4);
    float t2 = z * (Lg1 + w * Lg3);
    float R = t2 + t1;
    float hfsq = 0.5f * f * f;
    float dk = (float)k;
    float r = s * (hfsq + R) + dk * ln2_lo - hfsq + f + dk * ln2_hi;
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    r = x == INFINITY ? INFINITY : r;
    return x != x ? x : r;
}

/* exp(-v) for v >= 0 (Cephes expf polynomial, about 1 ulp); below 2^-126 it returns 2^-126
 * (treated as zero by every caller); NaN -> NaN. */
static inline __attribute__((always_inline)) float exp_neg_f(float v) {
    const float log2e = 1.44269504088896341f, c1 = 0.693359375f, c2 = -2.12194440e-4f;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float x = -v;
    x = x < -87.3f ? -87.3f : x;
    float nf = x * log2e + magic;
    int n = (int)(float_to_bits(nf) - float_to_bits(magic));
    nf -= magic;
    float r = x - nf * c1 - nf * c2;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    float scale = bits_to_float((uint32_t)(n + 127) << 23);
    float y = p * scale;
    return v != v ? v : y;
}

/* The pieces of softplus(v) = log(1 + exp(v)) and sigmoid(v) that need no logarithm:
 * e = exp(-|v|), u = 1 + e, inv = 1 / u. Then softplus(v) = max(v, 0) + log(u) + (e - (u - 1)) inv
 * (the last term corrects the rounding of u, for small e) and sigmoid(v) = inv or e inv. NaN
 * propagates through every piece. */
typedef struct {
    float e, u, inv;
} LogisticParts;

static inline __attribute__((always_inline)) LogisticParts logistic_parts(float v) {
    LogisticParts p;
    p.e = exp_neg_f(fabsf(v));
    p.u = 1.0f + p.e;
    p.inv = 1.0f / p.u;
    return p;
}

static inline __attribute__((always_inline)) float softplus_from(float v, LogisticParts p, float log_u) {
    return (v > 0.0f ? v : 0.0f) + log_u + (p.e - (p.u - 1.0f)) * p.inv;
}

static inline __attribute__((always_inline)) float sigmoid_from(float v, LogisticParts p) {
    return v >= 0.0f ? p.inv : p.e * p.inv;
}

/* ------------------------------------------------------------------------------------------ */
/* Gamma-function terms of counts beyond the table, in double.                                 */

/* lgamma(v) for v >= 10 (Stirling's series, relative error below 1e-15). */
static double lgamma_large(double v) {
    double inv = 1.0 / v, inv2 = inv * inv;
    double series = inv * (1.0 / 12 - inv2 * (1.0 / 360 - inv2 * (1.0 / 1260 - inv2 * (1.0 / 1680))));
    return (v - 0.5) * log(v) - v + 0.91893853320467274178 + series;
}

/* digamma(v) for v >= 10 (asymptotic series). */
static double digamma_large(double v) {
    double inv = 1.0 / v, inv2 = inv * inv;
    double series = inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (1.0 / 240 - inv2 / 132))));
    return log(v) - 0.5 * inv - series;
}

/* ------------------------------------------------------------------------------------------ */
/* Kernels                                                                                     */

/* Inside a parallel region: the calling thread's contiguous share [*g0, *g1) of n_genes genes
 * (per-gene work, such as tables or sums over cells, then needs no reduction across threads). */
static void thread_gene_range(int64_t n_genes, int64_t *g0, int64_t *g1) {
#ifdef _OPENMP
    int64_t n_threads = omp_get_num_threads(), thread = omp_get_thread_num();
#else
    int64_t n_threads = 1, thread = 0;
#endif
    int64_t chunk = (n_genes + n_threads - 1) / n_threads;
    *g0 = thread * chunk;
    *g1 = *g0 + chunk < n_genes ? *g0 + chunk : n_genes;
}

/* Largest count of a row, or -1 when a value is not a non-negative integer below MAX_COUNT. */
MULTIVERSION
static int32_t row_integer_max(const float *x, int64_t n) {
    int32_t high = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        int ok = v >= 0.0f && v < MAX_COUNT; /* false for NaN */
        int32_t k = (int32_t)(ok ? v : 0.0f);
        bad |= !ok | ((float)k != v);
        high = k > high ? k : high;
    }
    return bad ? -1 : high;
}

/* All rows of the tables, for genes [g0, g1):
 *   value[k, g] = sum_{j<k} log(theta_g + j) - log k!,  psi[k, g] = sum_{j<k} 1 / (theta_g + j)
 * (increments in float as torch would compute them, sums in double). */
MULTIVERSION
static void build_tables(const float *theta, int64_t n_genes, int64_t g0, int64_t g1, int64_t n_table_rows,
                         const double *log_factorial, double *acc_value, double *acc_psi, float *value, float *psi) {
    for (int64_t g = g0; g < g1; g++) {
        acc_value[g] = 0.0;
        acc_psi[g] = 0.0;
        value[g] = 0.0f;
        psi[g] = 0.0f;
    }
    for (int64_t k = 1; k < n_table_rows; k++) {
        float *value_row = value + k * n_genes, *psi_row = psi + k * n_genes;
        double lf = log_factorial[k];
        for (int64_t g = g0; g < g1; g++) {
            float step = theta[g] + (float)(k - 1);
            acc_value[g] += (double)log_f(step);
            acc_psi[g] += (double)(1.0f / step);
            value_row[g] = (float)(acc_value[g] - lf);
            psi_row[g] = (float)acc_psi[g];
        }
    }
}

typedef struct {
    int64_t n_genes;
    const float *theta;         /* (n_genes,) */
    const float *log_theta_eps; /* log(theta + eps) */
    const float *theta_ratio;   /* theta / (theta + eps) */
    float eps;
    int64_t n_table_rows;
    const float *table_value; /* (n_table_rows, n_genes) */
    const float *table_psi;
} Params;

/* One row: log-likelihood and, when d_mu is not NULL, the local derivatives. pi == NULL: NB.
 * Counts at or above the table size get their gamma terms in a second, scalar loop. */
static inline __attribute__((always_inline)) int64_t row_body(const Params *P, const float *restrict x, const float *restrict mu,
                               const float *restrict pi, float *restrict out, float *restrict d_mu,
                               float *restrict d_theta, float *restrict d_pi, const int zinb, const int grads) {
    const int64_t G = P->n_genes, R = P->n_table_rows;
    const float eps = P->eps;
    const float *restrict theta = P->theta, *restrict log_theta_eps = P->log_theta_eps;
    const float *restrict theta_ratio = P->theta_ratio;
    const float *restrict table_value = P->table_value, *restrict table_psi = P->table_psi;
    const int32_t G32 = (int32_t)G, R32 = (int32_t)R; /* the caller keeps R * G below 2^31 */
    int32_t n_overflow = 0;
    for (int32_t g = 0; g < G32; g++) {
        float xv = x[g], th = theta[g];
        int32_t k = (int32_t)xv;
        n_overflow += k >= R32;
        /* zero (row 0 of the tables) for counts beyond them: see row_overflow */
        int32_t at = (k < R32 ? k : 0) * G32 + g;
        float value = table_value[at], psi = table_psi[at];
        float me = mu[g] + eps;
        float t = me + th;
        float lt = log_f(t);
        float d = log_theta_eps[g] - lt;
        float a = th * d; /* log NB(0) */
        int zero = xv < eps;
        float ll, g0 = 0.0f;
        if (zinb) {
            /* zero counts need softplus(pi - a), the others log(mu + eps): one logarithm serves both */
            float v = pi[g], s = v - a;
            LogisticParts p = logistic_parts(v), ps = logistic_parts(s);
            float shared_log = log_f(zero ? ps.u : me);
            float sp = softplus_from(v, p, log_f(p.u));
            float count_terms = xv * (shared_log - lt) + value;
            g0 = zero ? sigmoid_from(s, ps) : 0.0f; /* share of a zero explained by the NB's own zero */
            ll = a - sp + (zero ? softplus_from(s, ps, shared_log) : count_terms);
            if (grads) d_pi[g] = g0 - sigmoid_from(v, p);
        } else {
            ll = a + (zero ? 0.0f : xv * (log_f(me) - lt) + value);
        }
        out[g] = ll;
        if (grads) {
            float q = (xv + th) / t, keep = 1.0f - g0;
            d_mu[g] = xv / me - keep * q;
            d_theta[g] = keep * (d + theta_ratio[g] - q) + psi;
        }
    }
    return n_overflow;
}

/* Counts k >= R (the table size, R >= 16): from the last row r = R - 1 of the tables,
 *   lgamma(k + theta) - lgamma(theta) - log k! = value[r] + [lgamma(k + theta) - lgamma(r + theta)] - [log k! - log r!]
 *   digamma(k + theta) - digamma(theta)        = psi[r] + digamma(k + theta) - digamma(r + theta)
 * where every argument is at least 15, in the range of the asymptotic series. */
static void row_overflow(const Params *P, const double *log_factorial, const float *x, float *out, float *d_theta,
                         const int grads) {
    const int64_t G = P->n_genes, r = P->n_table_rows - 1;
    for (int64_t g = 0; g < G; g++) {
        if (x[g] <= (float)r) continue;
        double k = x[g], th = P->theta[g];
        double value = P->table_value[r * G + g] + lgamma_large(k + th) - lgamma_large(r + th) -
                       (lgamma_large(k + 1.0) - log_factorial[r]);
        out[g] += (float)value;
        if (grads) d_theta[g] += (float)(P->table_psi[r * G + g] + digamma_large(k + th) - digamma_large(r + th));
    }
}

MULTIVERSION
static int64_t row_nb(const Params *P, const float *x, const float *mu, float *out) {
    return row_body(P, x, mu, NULL, out, NULL, NULL, NULL, 0, 0);
}

MULTIVERSION
static int64_t row_nb_grad(const Params *P, const float *x, const float *mu, float *out, float *d_mu,
                           float *d_theta) {
    return row_body(P, x, mu, NULL, out, d_mu, d_theta, NULL, 0, 1);
}

MULTIVERSION
static int64_t row_zinb(const Params *P, const float *x, const float *mu, const float *pi, float *out) {
    return row_body(P, x, mu, pi, out, NULL, NULL, NULL, 1, 0);
}

MULTIVERSION
static int64_t row_zinb_grad(const Params *P, const float *x, const float *mu, const float *pi, float *out,
                             float *d_mu, float *d_theta, float *d_pi) {
    return row_body(P, x, mu, pi, out, d_mu, d_theta, d_pi, 1, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Python entry points                                                                         */

static const char integer_max_doc[] =
    "integer_max(x_address, n_rows, n_cols) -> int\n\n"
    "Largest value of a C-contiguous float32 (n_rows, n_cols) array when every value is a\n"
    "non-negative integer below 2**24, else -1 (negative, fractional, NaN or infinite values).";

static PyObject *py_integer_max(PyObject *self, PyObject *args) {
    unsigned long long address;
    Py_ssize_t n_rows, n_cols;
    if (!PyArg_ParseTuple(args, "Knn", &address, &n_rows, &n_cols)) return NULL;
    const float *x = (const float *)(uintptr_t)address;
    int32_t high = 0;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for reduction(max : high) reduction(| : bad) if (n_rows * n_cols >= PARALLEL_MIN_ELEMENTS)
    for (Py_ssize_t i = 0; i < n_rows; i++) {
        int32_t h = row_integer_max(x + i * n_cols, n_cols);
        bad |= h < 0;
        high = h > high ? h : high;
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(bad ? -1L : (long)high);
}

/* Per-call buffers of the NB / ZINB kernels: per-gene terms, log k! and the tables. */
typedef struct {
    float *gene_terms;    /* log(theta + eps), theta / (theta + eps) */
    double *accumulators; /* the tables' running sums, per gene */
    double *log_factorial;
    float *tables; /* value rows, then psi rows */
} Workspace;

static void workspace_free(Workspace *w) {
    free(w->gene_terms);
    free(w->accumulators);
    free(w->log_factorial);
    free(w->tables);
}

/* Clamp the requested number of table rows: at least 16 (row_overflow continues from the last
 * row with series that need arguments >= 15), at most max_count + 1 (no count needs more). */
static Py_ssize_t table_rows_for(Py_ssize_t n_table_rows, Py_ssize_t max_count) {
    if (n_table_rows < 16) n_table_rows = 16;
    return n_table_rows > max_count + 1 ? max_count + 1 : n_table_rows;
}

/* The size arguments of nb_family / nb_family_logits: checked (else a ValueError naming the
 * function) and n_table_rows clamped by table_rows_for; 0 when invalid. */
static int check_nb_sizes(const char *function, Py_ssize_t n_rows, Py_ssize_t n_genes, Py_ssize_t max_count,
                          Py_ssize_t *n_table_rows) {
    if (n_rows < 0 || n_genes <= 0 || max_count < 0 || *n_table_rows < 1) {
        PyErr_Format(PyExc_ValueError, "%s: invalid sizes", function);
        return 0;
    }
    *n_table_rows = table_rows_for(*n_table_rows, max_count);
    return 1;
}

/* Allocate the workspace, fill what does not depend on the rows and point P at it; 0 when out
 * of memory (nothing to free then). Called without the GIL. */
static int workspace_init(Workspace *w, Params *P, const float *theta, int64_t n_genes, int64_t n_table_rows,
                          float eps) {
    size_t G = (size_t)n_genes, R = (size_t)n_table_rows;
    w->gene_terms = malloc(2 * G * sizeof(float));
    w->accumulators = malloc(2 * G * sizeof(double));
    w->log_factorial = malloc(R * sizeof(double));
    w->tables = malloc(2 * R * G * sizeof(float));
    if (!w->gene_terms || !w->accumulators || !w->log_factorial || !w->tables) {
        workspace_free(w);
        return 0;
    }
    for (size_t g = 0; g < G; g++) {
        float theta_eps = theta[g] + eps;
        w->gene_terms[g] = logf(theta_eps);
        w->gene_terms[G + g] = theta[g] / theta_eps;
    }
    w->log_factorial[0] = 0.0;
    for (size_t k = 1; k < R; k++) w->log_factorial[k] = w->log_factorial[k - 1] + log((double)k);
    Params p = {n_genes, theta, w->gene_terms, w->gene_terms + G, eps, n_table_rows, w->tables, w->tables + R * G};
    *P = p;
    return 1;
}

/* Inside the parallel region: each thread builds the tables of its genes, then waits for all. */
static void workspace_build_tables(Workspace *w, const Params *P) {
    int64_t g0, g1, G = P->n_genes, R = P->n_table_rows;
    thread_gene_range(G, &g0, &g1);
    if (g0 < g1)
        build_tables(P->theta, G, g0, g1, R, w->log_factorial, w->accumulators, w->accumulators + G, w->tables,
                     w->tables + R * G);
#pragma omp barrier
}

/* One row of the element-wise kernel: log-likelihood into out and, when d_mu != NULL, the local
 * derivatives; counts beyond the tables get their gamma terms from row_overflow. */
static void nb_family_row(const Params *P, const Workspace *w, const float *x, const float *mu, const float *pi,
                          float *out, float *d_mu, float *d_theta, float *d_pi) {
    int grads = d_mu != NULL;
    int64_t n_overflow;
    if (pi == NULL)
        n_overflow = grads ? row_nb_grad(P, x, mu, out, d_mu, d_theta) : row_nb(P, x, mu, out);
    else
        n_overflow = grads ? row_zinb_grad(P, x, mu, pi, out, d_mu, d_theta, d_pi) : row_zinb(P, x, mu, pi, out);
    if (n_overflow) row_overflow(P, w->log_factorial, x, out, grads ? d_theta : NULL, grads);
}

static const char nb_family_doc[] =
    "nb_family(x, mu, theta, pi, out, d_mu, d_theta, d_pi, n_rows, n_genes, eps, max_count, n_table_rows)\n\n"
    "NB (pi == 0) or ZINB log-likelihood of float32 C-contiguous (n_rows, n_genes) arrays given\n"
    "by address; theta has one value per gene. Writes the element-wise log-likelihood into out and,\n"
    "when d_mu != 0, its derivatives in mu, theta (per element) and pi (ZINB) into d_mu, d_theta,\n"
    "d_pi. max_count is integer_max(x) (>= 0); tables cover counts below n_table_rows.";

static PyObject *py_nb_family(PyObject *self, PyObject *args) {
    unsigned long long ax, amu, atheta, api, aout, ad_mu, ad_theta, ad_pi;
    Py_ssize_t n_rows, n_genes, max_count, n_table_rows;
    double eps_d;
    if (!PyArg_ParseTuple(args, "KKKKKKKKnndnn", &ax, &amu, &atheta, &api, &aout, &ad_mu, &ad_theta, &ad_pi, &n_rows,
                          &n_genes, &eps_d, &max_count, &n_table_rows))
        return NULL;
    if (!check_nb_sizes("nb_family", n_rows, n_genes, max_count, &n_table_rows)) return NULL;
    const float *x = (const float *)(uintptr_t)ax, *mu = (const float *)(uintptr_t)amu;
    const float *theta = (const float *)(uintptr_t)atheta, *pi = (const float *)(uintptr_t)api;
    float *out = (float *)(uintptr_t)aout, *d_mu = (float *)(uintptr_t)ad_mu;
    float *d_theta = (float *)(uintptr_t)ad_theta, *d_pi = (float *)(uintptr_t)ad_pi;
    const int grads = d_mu != NULL;
    Workspace w;
    Params P;
    int ok;
    int parallel = n_rows * n_genes >= PARALLEL_MIN_ELEMENTS;

    Py_BEGIN_ALLOW_THREADS
    ok = workspace_init(&w, &P, theta, n_genes, n_table_rows, (float)eps_d);
    if (ok) {
#pragma omp parallel if (parallel)
        {
            workspace_build_tables(&w, &P);
#pragma omp for schedule(static)
            for (Py_ssize_t i = 0; i < n_rows; i++) {
                size_t o = (size_t)i * (size_t)n_genes;
                nb_family_row(&P, &w, x + o, mu + o, pi ? pi + o : NULL, out + o, grads ? d_mu + o : NULL,
                              grads ? d_theta + o : NULL, grads && pi ? d_pi + o : NULL);
            }
        }
        workspace_free(&w);
    }
    Py_END_ALLOW_THREADS

    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* Sum of a row in double, over 8 partial sums (so that the loop vectorises). */
MULTIVERSION
static double row_sum(const float *a, int64_t n) {
    double part[8] = {0.0};
    int64_t g = 0;
    for (; g + 8 <= n; g += 8)
        for (int j = 0; j < 8; j++) part[j] += (double)a[g + j];
    double total = 0.0;
    for (; g < n; g++) total += (double)a[g];
    for (int j = 0; j < 8; j++) total += part[j];
    return total;
}

/* dst = src + bias (bias may be NULL) along one row. */
MULTIVERSION
static void add_bias_row(const float *restrict src, const float *restrict bias, float *restrict dst, int64_t n) {
    if (bias)
        for (int64_t g = 0; g < n; g++) dst[g] = src[g] + bias[g];
    else
        memcpy(dst, src, (size_t)n * sizeof(float));
}

/* s = softmax(h + bias) and mu = exp(library) s along one row (bias may be NULL; exp(v - max) / sum,
 * as torch's softmax; NaN and infinite logits give NaN rows as there). h is only read here, so
 * the caller may overwrite it afterwards (with the row's derivatives). */
MULTIVERSION
static void softmax_rate_row(const float *restrict h, const float *restrict bias, float library, float *restrict s,
                             float *restrict mu, int64_t n) {
    add_bias_row(h, bias, s, n);
    float part[16];
    for (int j = 0; j < 16; j++) part[j] = -INFINITY;
    int64_t g = 0;
    for (; g + 16 <= n; g += 16)
        for (int j = 0; j < 16; j++) part[j] = s[g + j] > part[j] ? s[g + j] : part[j];
    float m = -INFINITY;
    for (int j = 0; j < 16; j++) m = part[j] > m ? part[j] : m;
    for (; g < n; g++) m = s[g] > m ? s[g] : m;
    for (g = 0; g < n; g++) {
        float v = m - s[g];                     /* >= 0, or NaN */
        s[g] = v > 87.3f ? 0.0f : exp_neg_f(v); /* exp(-v) underflows to zero as expf would */
    }
    float inv_total = (float)(1.0 / row_sum(s, n)), rate = expf(library);
    for (g = 0; g < n; g++) {
        s[g] *= inv_total;
        mu[g] = rate * s[g];
    }
}

/* d/dh of the row's log-likelihood through mu = exp(library) softmax(h), from t = mu * d/dmu:
 * d/dh_g = t_g - s_g sum(t) (written over t); returns sum(t), the derivative in library. */
MULTIVERSION
static double softmax_rate_backward_row(const float *restrict s, float *restrict t, int64_t n) {
    double total = row_sum(t, n);
    float total_f = (float)total;
    for (int64_t g = 0; g < n; g++) t[g] -= s[g] * total_f;
    return total;
}

MULTIVERSION
static void multiply_rows(const float *restrict a, const float *restrict b, float *restrict out, int64_t n) {
    for (int64_t g = 0; g < n; g++) out[g] = a[g] * b[g];
}

static const char nb_family_logits_doc[] =
    "nb_family_logits(x, h, h_bias, library, theta, pi, pi_bias, row_ll, d_h, d_library, d_theta, d_pi,\n"
    "                 n_rows, n_genes, eps, max_count, n_table_rows)\n\n"
    "Per-row sums of the NB (pi == 0) or ZINB log-likelihood of the counts x with means\n"
    "exp(library) * softmax(h + h_bias) and zero-inflation logits pi + pi_bias (float32, C-contiguous\n"
    "(n_rows, n_genes) arrays given by address; the biases have one value per gene, or are 0 for\n"
    "none; library has one value per row, theta one per gene) into row_ll (n_rows). When d_h != 0,\n"
    "also the derivatives of each row's sum in h, library (n_rows), theta (per element) and pi; d_h\n"
    "may be h and d_pi may be pi (overwritten in place). max_count is integer_max(x) (>= 0); tables\n"
    "cover counts below n_table_rows.";

static PyObject *py_nb_family_logits(PyObject *self, PyObject *args) {
    unsigned long long ax, ah, ah_bias, alib, atheta, api, api_bias, arow_ll, ad_h, ad_lib, ad_theta, ad_pi;
    Py_ssize_t n_rows, n_genes, max_count, n_table_rows;
    double eps_d;
    if (!PyArg_ParseTuple(args, "KKKKKKKKKKKKnndnn", &ax, &ah, &ah_bias, &alib, &atheta, &api, &api_bias, &arow_ll,
                          &ad_h, &ad_lib, &ad_theta, &ad_pi, &n_rows, &n_genes, &eps_d, &max_count, &n_table_rows))
        return NULL;
    if (!check_nb_sizes("nb_family_logits", n_rows, n_genes, max_count, &n_table_rows)) return NULL;
    const float *x = (const float *)(uintptr_t)ax, *h = (const float *)(uintptr_t)ah;
    const float *h_bias = (const float *)(uintptr_t)ah_bias, *pi_bias = (const float *)(uintptr_t)api_bias;
    const float *library = (const float *)(uintptr_t)alib, *theta = (const float *)(uintptr_t)atheta;
    const float *pi = (const float *)(uintptr_t)api;
    float *row_ll = (float *)(uintptr_t)arow_ll, *d_h = (float *)(uintptr_t)ad_h;
    float *d_library = (float *)(uintptr_t)ad_lib, *d_theta = (float *)(uintptr_t)ad_theta;
    float *d_pi = (float *)(uintptr_t)ad_pi;
    const int grads = d_h != NULL;
    const size_t G = (size_t)n_genes;
    Workspace w;
    Params P;
    int ok, scratch_ok = 1;
    int parallel = n_rows * n_genes >= PARALLEL_MIN_ELEMENTS;

    Py_BEGIN_ALLOW_THREADS
    ok = workspace_init(&w, &P, theta, n_genes, n_table_rows, (float)eps_d);
    if (ok) {
#pragma omp parallel if (parallel) reduction(& : scratch_ok)
        {
            /* the row's softmax, means, element-wise log-likelihood, d/dmu and zero-inflation
             * logits: the row's h and pi are read into these before d_h and d_pi (which may be
             * the same memory) are written */
            float *scratch = malloc(5 * G * sizeof(float));
            workspace_build_tables(&w, &P);
            float *s = scratch, *mu = scratch + G, *ll = scratch + 2 * G, *d_mu = scratch + 3 * G;
            float *pi_row = scratch + 4 * G;
#pragma omp for schedule(static)
            for (Py_ssize_t i = 0; i < n_rows; i++) {
                if (!scratch) continue;
                size_t o = (size_t)i * G;
                softmax_rate_row(h + o, h_bias, library[i], s, mu, n_genes);
                if (pi) add_bias_row(pi + o, pi_bias, pi_row, n_genes);
                nb_family_row(&P, &w, x + o, mu, pi ? pi_row : NULL, ll, grads ? d_mu : NULL,
                              grads ? d_theta + o : NULL, grads && pi ? d_pi + o : NULL);
                row_ll[i] = (float)row_sum(ll, n_genes);
                if (grads) {
                    multiply_rows(mu, d_mu, d_h + o, n_genes);
                    d_library[i] = (float)softmax_rate_backward_row(s, d_h + o, n_genes);
                }
            }
            scratch_ok = scratch != NULL;
            free(scratch);
        }
        workspace_free(&w);
    }
    Py_END_ALLOW_THREADS

    if (!ok || !scratch_ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* Backward pass: out = grad * d along one row. The gradient may be broadcast along genes
 * (column stride 0: the usual sum over genes) or contiguous. */
MULTIVERSION
static void scale_row(const float *restrict grad, int64_t grad_col_stride, const float *restrict d,
                      float *restrict out, int64_t n_genes) {
    if (grad_col_stride == 0) {
        const float c = grad[0];
        for (int64_t g = 0; g < n_genes; g++) out[g] = c * d[g];
    } else {
        for (int64_t g = 0; g < n_genes; g++) out[g] = grad[g] * d[g];
    }
}

/* acc[g] = sum over rows of grad[i, g] d_theta[i, g], for genes [g0, g1), in double. */
MULTIVERSION
static void theta_sums(const float *grad, int64_t grad_row_stride, int64_t grad_col_stride, const float *d_theta,
                       int64_t n_rows, int64_t n_genes, int64_t g0, int64_t g1, double *acc) {
    for (int64_t g = g0; g < g1; g++) acc[g] = 0.0;
    for (int64_t i = 0; i < n_rows; i++) {
        const float *grad_row = grad + i * grad_row_stride, *d_row = d_theta + i * n_genes;
        if (grad_col_stride == 0) {
            const double c = grad_row[0];
            for (int64_t g = g0; g < g1; g++) acc[g] += c * d_row[g];
        } else {
            for (int64_t g = g0; g < g1; g++) acc[g] += (double)(grad_row[g] * d_row[g]);
        }
    }
}

static const char nb_family_backward_doc[] =
    "nb_family_backward(grad, grad_row_stride, grad_col_stride, d_mu, d_theta, d_pi, grad_mu, grad_theta, grad_pi,\n"
    "                   n_rows, n_genes)\n\n"
    "grad_mu = grad * d_mu and grad_pi = grad * d_pi ((n_rows, n_genes) float32, d_pi == 0 for the\n"
    "NB), grad_theta[g] = sum_i grad[i, g] d_theta[i, g] (n_genes float32); grad is float32 with\n"
    "the given strides (in elements, the column stride 0 or 1). grad_mu / grad_theta == 0 skip them.";

static PyObject *py_nb_family_backward(PyObject *self, PyObject *args) {
    unsigned long long agrad, ad_mu, ad_theta, ad_pi, agrad_mu, agrad_theta, agrad_pi;
    Py_ssize_t row_stride, col_stride, n_rows, n_genes;
    if (!PyArg_ParseTuple(args, "KnnKKKKKKnn", &agrad, &row_stride, &col_stride, &ad_mu, &ad_theta, &ad_pi, &agrad_mu,
                          &agrad_theta, &agrad_pi, &n_rows, &n_genes))
        return NULL;
    if (n_rows < 0 || n_genes <= 0 || (col_stride != 0 && col_stride != 1)) {
        PyErr_SetString(PyExc_ValueError, "nb_family_backward: invalid sizes or strides");
        return NULL;
    }
    const float *grad = (const float *)(uintptr_t)agrad, *d_mu = (const float *)(uintptr_t)ad_mu;
    const float *d_theta = (const float *)(uintptr_t)ad_theta, *d_pi = (const float *)(uintptr_t)ad_pi;
    float *grad_mu = (float *)(uintptr_t)agrad_mu, *grad_theta = (float *)(uintptr_t)agrad_theta;
    float *grad_pi = (float *)(uintptr_t)agrad_pi;
    double *acc = grad_theta ? malloc((size_t)n_genes * sizeof(double)) : NULL;
    if (grad_theta && !acc) return PyErr_NoMemory();
    int parallel = n_rows * n_genes >= PARALLEL_MIN_ELEMENTS;

    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel if (parallel)
    {
        if (grad_mu || grad_pi) {
#pragma omp for schedule(static)
            for (Py_ssize_t i = 0; i < n_rows; i++) {
                size_t o = (size_t)i * (size_t)n_genes;
                if (grad_mu) scale_row(grad + i * row_stride, col_stride, d_mu + o, grad_mu + o, n_genes);
                if (grad_pi) scale_row(grad + i * row_stride, col_stride, d_pi + o, grad_pi + o, n_genes);
            }
        }
        if (grad_theta) {
            int64_t g0, g1;
            thread_gene_range(n_genes, &g0, &g1);
            if (g0 < g1) theta_sums(grad, row_stride, col_stride, d_theta, n_rows, n_genes, g0, g1, acc);
        }
    }
    if (grad_theta)
        for (Py_ssize_t g = 0; g < n_genes; g++) grad_theta[g] = (float)acc[g];
    Py_END_ALLOW_THREADS

    free(acc);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* Linear layers whose input is mostly zeros (the encoders' counts)                              */
/*                                                                                              */
/* With x (n, n_in) in compressed sparse rows (CSR) and columns (CSC):                          */
/*   forward      out[i, :] = bias + sum over the non-zeros x[i, k] of x[i, k] W^T[k, :]          */
/*   weight grad  W^T-grad[k, :] = sum over the non-zeros x[i, k] of x[i, k] grad[i, :]           */
/* both O(nnz * n_out) sums of rows accumulated in registers, plus one transpose of W or of the  */
/* gradient (O(n_in * n_out)) against the O(n * n_in * n_out) of the dense products.            */

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_TRANSPOSE 1

/* dst (8 x 8, row stride ds) = src (8 x 8, row stride ss) transposed, in registers. */
__attribute__((target("avx2"))) static void transpose8_avx2(const float *src, int64_t ss, float *dst, int64_t ds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss),
           r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss),
           r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
           t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* dst[c, r] = src[r, c] for the rows r < n_rows of src and its columns [c0, c1), in 8 x 8 tiles
 * (in registers with AVX2; an element-by-element transpose misses the cache at every element). */
static void transpose_columns(const float *restrict src, int64_t src_stride, float *restrict dst, int64_t dst_stride,
                              int64_t n_rows, int64_t c0, int64_t c1) {
#ifdef HAVE_AVX2_TRANSPOSE
    static int avx2 = -1;
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2");
#endif
    for (int64_t rb = 0; rb < n_rows; rb += 8) {
        int64_t nr = n_rows - rb < 8 ? n_rows - rb : 8;
        for (int64_t cb = c0; cb < c1; cb += 8) {
            int64_t nc = c1 - cb < 8 ? c1 - cb : 8;
#ifdef HAVE_AVX2_TRANSPOSE
            if (avx2 && nr == 8 && nc == 8) {
                transpose8_avx2(src + rb * src_stride + cb, src_stride, dst + cb * dst_stride + rb, dst_stride);
                continue;
            }
#endif
            for (int64_t a = 0; a < nr; a++)
                for (int64_t b = 0; b < nc; b++)
                    dst[(cb + b) * dst_stride + rb + a] = src[(rb + a) * src_stride + cb + b];
        }
    }
}

typedef float float16_vector __attribute__((vector_size(64)));

/* 16 floats from memory as a vector (a macro: a function returning it would change the ABI of the
 * default-target clones) */
#define LOAD16(p) (*(const float16_vector_unaligned *)(p))
typedef float float16_vector_unaligned __attribute__((vector_size(64), aligned(4)));

/* out[0:n] = (bias or 0) + sum_p values[p] rows[indices[p] * row_stride + 0:n]: 64 outputs at a time
 * stay in registers across all the terms. */
MULTIVERSION
static void sparse_combination(const int32_t *restrict indices, const float *restrict values, int64_t nnz,
                               const float *restrict rows, int64_t row_stride, const float *restrict bias,
                               float *restrict out, int64_t n) {
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        float16_vector a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        if (bias) {
            a0 = LOAD16(bias + j), a1 = LOAD16(bias + j + 16), a2 = LOAD16(bias + j + 32), a3 = LOAD16(bias + j + 48);
        }
        for (int64_t p = 0; p < nnz; p++) {
            const float v = values[p], *r = rows + (int64_t)indices[p] * row_stride + j;
            a0 += v * LOAD16(r), a1 += v * LOAD16(r + 16), a2 += v * LOAD16(r + 32), a3 += v * LOAD16(r + 48);
        }
        memcpy(out + j, &a0, sizeof a0), memcpy(out + j + 16, &a1, sizeof a1);
        memcpy(out + j + 32, &a2, sizeof a2), memcpy(out + j + 48, &a3, sizeof a3);
    }
    for (; j + 16 <= n; j += 16) {
        float16_vector a = {0};
        if (bias) a = LOAD16(bias + j);
        for (int64_t p = 0; p < nnz; p++) a += values[p] * LOAD16(rows + (int64_t)indices[p] * row_stride + j);
        memcpy(out + j, &a, sizeof a);
    }
    for (; j < n; j++) {
        float a = bias ? bias[j] : 0.0f;
        for (int64_t p = 0; p < nnz; p++) a += values[p] * rows[(int64_t)indices[p] * row_stride + j];
        out[j] = a;
    }
}

/* Number of non-zeros of a row (NaN counts as non-zero). */
MULTIVERSION
static int64_t row_nonzeros(const float *x, int64_t n) {
    int64_t count = 0;
    for (int64_t k = 0; k < n; k++) count += x[k] != 0.0f;
    return count;
}

/* The non-zeros of a row, in order, into buffers of n elements; returns their number (branch-free:
 * every element is written at the current position, which only advances past non-zeros). */
static int64_t row_compress(const float *restrict x, int64_t n, int32_t *restrict indices, float *restrict values) {
    int64_t m = 0;
    for (int64_t k = 0; k < n; k++) {
        float v = x[k];
        indices[m] = (int32_t)k;
        values[m] = v;
        m += v != 0.0f;
    }
    return m;
}

static const char sparse_structure_doc[] =
    "sparse_structure(x, n_rows, n_cols, indptr) -> nnz\n"
    "sparse_structure(x, n_rows, n_cols, indptr, indices, values, col_ptr, row_indices, col_values)\n\n"
    "Compressed sparse rows and columns of a float32 C-contiguous (n_rows, n_cols) array. The first\n"
    "form writes the row pointers (int64, n_rows + 1) and returns the number of non-zeros (NaN\n"
    "included); the second fills, for those nnz non-zeros, the column indices (int32) and values\n"
    "(float32) of the rows, then the column pointers (int64, n_cols + 1), row indices and values of\n"
    "the columns.";

static PyObject *py_sparse_structure(PyObject *self, PyObject *args) {
    unsigned long long ax, aindptr, aindices = 0, avalues = 0, acol_ptr = 0, arow_indices = 0, acol_values = 0;
    Py_ssize_t n_rows, n_cols;
    if (!PyArg_ParseTuple(args, "KnnK|KKKKK", &ax, &n_rows, &n_cols, &aindptr, &aindices, &avalues, &acol_ptr,
                          &arow_indices, &acol_values))
        return NULL;
    /* the form is told by the number of arguments: with no non-zeros, the buffers of the second
     * form are empty tensors, whose address may be 0 */
    const int fill = PyTuple_GET_SIZE(args) > 4;
    if (n_rows < 0 || n_rows >= INT32_MAX || n_cols <= 0 || n_cols >= INT32_MAX ||
        (fill && (PyTuple_GET_SIZE(args) != 9 || !acol_ptr))) {
        PyErr_SetString(PyExc_ValueError, "sparse_structure: invalid sizes or buffers");
        return NULL;
    }
    const float *x = (const float *)(uintptr_t)ax;
    int64_t *indptr = (int64_t *)(uintptr_t)aindptr, *col_ptr = (int64_t *)(uintptr_t)acol_ptr;
    int32_t *indices = (int32_t *)(uintptr_t)aindices, *row_indices = (int32_t *)(uintptr_t)arow_indices;
    float *values = (float *)(uintptr_t)avalues, *col_values = (float *)(uintptr_t)acol_values;
    int parallel = n_rows * n_cols >= PARALLEL_MIN_ELEMENTS, ok = 1;
    Py_BEGIN_ALLOW_THREADS
    if (!fill) {
#pragma omp parallel for schedule(static) if (parallel)
        for (Py_ssize_t i = 0; i < n_rows; i++) indptr[i + 1] = row_nonzeros(x + i * n_cols, n_cols);
        indptr[0] = 0;
        for (Py_ssize_t i = 0; i < n_rows; i++) indptr[i + 1] += indptr[i];
    } else {
#pragma omp parallel if (parallel) reduction(& : ok)
        {
            /* a row's compression writes up to n_cols entries: into the thread's own buffers */
            int32_t *row_buffer = malloc((size_t)n_cols * sizeof(int32_t));
            float *value_buffer = malloc((size_t)n_cols * sizeof(float));
            ok = row_buffer && value_buffer;
#pragma omp for schedule(static)
            for (Py_ssize_t i = 0; i < n_rows; i++) {
                if (!ok) continue;
                int64_t m = row_compress(x + i * n_cols, n_cols, row_buffer, value_buffer);
                if (m == 0) continue; /* (the buffers may be null when there are no non-zeros) */
                memcpy(indices + indptr[i], row_buffer, (size_t)m * sizeof(int32_t));
                memcpy(values + indptr[i], value_buffer, (size_t)m * sizeof(float));
            }
            free(row_buffer);
            free(value_buffer);
        }
        if (ok) {
            /* columns by a counting sort of the rows' entries (rows stay in order within a column) */
            int64_t nnz = indptr[n_rows];
            memset(col_ptr, 0, (size_t)(n_cols + 1) * sizeof(int64_t));
            for (int64_t p = 0; p < nnz; p++) col_ptr[indices[p] + 1]++;
            for (Py_ssize_t k = 0; k < n_cols; k++) col_ptr[k + 1] += col_ptr[k];
            int64_t *next = malloc((size_t)n_cols * sizeof(int64_t));
            ok = next != NULL;
            if (ok) {
                memcpy(next, col_ptr, (size_t)n_cols * sizeof(int64_t));
                for (Py_ssize_t i = 0; i < n_rows; i++)
                    for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) {
                        int64_t q = next[indices[p]]++;
                        row_indices[q] = (int32_t)i;
                        col_values[q] = values[p];
                    }
                free(next);
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (!ok) return PyErr_NoMemory();
    return PyLong_FromLongLong((long long)indptr[n_rows]);
}

static const char sparse_input_linear_doc[] =
    "sparse_input_linear(indptr, indices, values, w, w_t, bias, out, n_rows, n_in, n_out)\n\n"
    "out (n_rows, n_out) = x W^T + bias for x (n_rows, n_in) given by its compressed sparse rows\n"
    "(sparse_structure) and W (n_out, n_in), float32 C-contiguous (bias == 0: none); w_t is an\n"
    "(n_in, n_out) work array (W^T).";

static PyObject *py_sparse_input_linear(PyObject *self, PyObject *args) {
    unsigned long long aindptr, aindices, avalues, aw, aw_t, abias, aout;
    Py_ssize_t n_rows, n_in, n_out;
    if (!PyArg_ParseTuple(args, "KKKKKKKnnn", &aindptr, &aindices, &avalues, &aw, &aw_t, &abias, &aout, &n_rows,
                          &n_in, &n_out))
        return NULL;
    if (n_rows < 0 || n_in <= 0 || n_out <= 0) {
        PyErr_SetString(PyExc_ValueError, "sparse_input_linear: invalid sizes");
        return NULL;
    }
    const int64_t *indptr = (const int64_t *)(uintptr_t)aindptr;
    const int32_t *indices = (const int32_t *)(uintptr_t)aindices;
    const float *values = (const float *)(uintptr_t)avalues, *w = (const float *)(uintptr_t)aw;
    const float *bias = (const float *)(uintptr_t)abias;
    float *w_t = (float *)(uintptr_t)aw_t, *out = (float *)(uintptr_t)aout;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel if (n_rows * n_in >= PARALLEL_MIN_ELEMENTS)
    {
        int64_t k0, k1;
        thread_gene_range(n_in, &k0, &k1);
        transpose_columns(w, n_in, w_t, n_out, n_out, k0, k1); /* rows [k0, k1) of W^T */
#pragma omp barrier
#pragma omp for schedule(static)
        for (Py_ssize_t i = 0; i < n_rows; i++)
            sparse_combination(indices + indptr[i], values + indptr[i], indptr[i + 1] - indptr[i], w_t, n_out, bias,
                               out + i * n_out, n_out);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static const char sparse_input_linear_weight_grad_doc[] =
    "sparse_input_linear_weight_grad(col_ptr, row_indices, col_values, grad, grad_w, grad_w_t, n_rows, n_in,\n"
    "                                n_out)\n\n"
    "grad_w (n_out, n_in) = grad^T x for x (n_rows, n_in) given by its compressed sparse columns\n"
    "(sparse_structure) and grad (n_rows, n_out), float32 C-contiguous; grad_w_t is an (n_in, n_out)\n"
    "work array.";

static PyObject *py_sparse_input_linear_weight_grad(PyObject *self, PyObject *args) {
    unsigned long long acol_ptr, arow_indices, acol_values, agrad, agrad_w, agrad_w_t;
    Py_ssize_t n_rows, n_in, n_out;
    if (!PyArg_ParseTuple(args, "KKKKKKnnn", &acol_ptr, &arow_indices, &acol_values, &agrad, &agrad_w, &agrad_w_t,
                          &n_rows, &n_in, &n_out))
        return NULL;
    if (n_rows < 0 || n_in <= 0 || n_out <= 0) {
        PyErr_SetString(PyExc_ValueError, "sparse_input_linear_weight_grad: invalid sizes");
        return NULL;
    }
    const int64_t *col_ptr = (const int64_t *)(uintptr_t)acol_ptr;
    const int32_t *row_indices = (const int32_t *)(uintptr_t)arow_indices;
    const float *col_values = (const float *)(uintptr_t)acol_values, *grad = (const float *)(uintptr_t)agrad;
    float *grad_w = (float *)(uintptr_t)agrad_w, *grad_w_t = (float *)(uintptr_t)agrad_w_t;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel if (n_rows * n_in >= PARALLEL_MIN_ELEMENTS)
    {
#pragma omp for schedule(static)
        for (Py_ssize_t k = 0; k < n_in; k++)
            sparse_combination(row_indices + col_ptr[k], col_values + col_ptr[k], col_ptr[k + 1] - col_ptr[k], grad,
                               n_out, NULL, grad_w_t + k * n_out, n_out);
        /* the implicit barrier of the loop above: all of W^T's gradient is written */
        int64_t j0, j1;
        thread_gene_range(n_out, &j0, &j1);
        transpose_columns(grad_w_t, n_out, grad_w, n_in, n_in, j0, j1); /* rows [j0, j1) of grad_w */
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* Dropout masks                                                                               */

static inline uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* mask[i] = scale where the i-th 16-bit uniform is at least n_dropped, else 0: each 64-bit word
 * splitmix64(seed + j) gives the uniforms of elements 4j .. 4j + 3. */
MULTIVERSION
static void fill_dropout_mask(uint64_t seed, float *mask, int64_t n, int32_t n_dropped, float scale) {
    int64_t n_words = n / 4;
    for (int64_t j = 0; j < n_words; j++) {
        uint64_t w = splitmix64(seed + (uint64_t)j);
        for (int l = 0; l < 4; l++) mask[4 * j + l] = (int32_t)((w >> (16 * l)) & 0xffff) >= n_dropped ? scale : 0.0f;
    }
    uint64_t w = splitmix64(seed + (uint64_t)n_words);
    for (int64_t i = 4 * n_words; i < n; i++, w >>= 16) mask[i] = (int32_t)(w & 0xffff) >= n_dropped ? scale : 0.0f;
}

static const char dropout_mask_doc[] =
    "dropout_mask(seed, mask_address, n, n_dropped, scale)\n\n"
    "Fill the float32 array of n elements at mask_address with scale or 0: an element is dropped\n"
    "when its 16-bit uniform (from splitmix64 counters seeded by seed) is below n_dropped.";

static PyObject *py_dropout_mask(PyObject *self, PyObject *args) {
    unsigned long long seed, address;
    Py_ssize_t n;
    int n_dropped;
    double scale;
    if (!PyArg_ParseTuple(args, "KKnid", &seed, &address, &n, &n_dropped, &scale)) return NULL;
    if (n < 0 || n_dropped < 0 || n_dropped > 65536) {
        PyErr_SetString(PyExc_ValueError, "dropout_mask: invalid arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    fill_dropout_mask(seed, (float *)(uintptr_t)address, n, n_dropped, (float)scale);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* The small layers of scVI's encoders and decoder (training step, scvi.models._fused_step)     */
/*
 * Between the large products, a training step of the default VAE runs about two hundred torch
 * operations on (cells, n_hidden) and (cells, n_latent) tensors: batch norm, ReLU, dropout, the
 * Gaussian heads, the reparameterisation, the KL terms and all their gradients. Each costs a few
 * microseconds of dispatch for well under a microsecond of arithmetic. These loops do the same
 * work in a handful of calls, in the order and precision torch uses (batch statistics summed in
 * double; running variance unbiased).
 */

/* out = relu(gamma (a - mean) invstd + beta) [* mask] over the batch statistics of the columns
 * of a (n, c); updates the running statistics as torch's BatchNorm1d (momentum, unbiased
 * variance) and counts the batch. */
MULTIVERSION
static int bn_relu_forward(const float *a, int64_t n, int64_t c, const float *gamma, const float *beta,
                            float *running_mean, float *running_var, int64_t *num_batches, double momentum,
                            double eps, const float *mask, float *out, float *save_mean, float *save_invstd) {
    double *sum = calloc((size_t)(2 * c), sizeof(double));
    if (sum == NULL) return -1;
    double *sq = sum + c;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) sum[j] += a[i * c + j];
    for (int64_t j = 0; j < c; j++) sum[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double d = a[i * c + j] - sum[j];
            sq[j] += d * d;
        }
    for (int64_t j = 0; j < c; j++) {
        double var = sq[j] / (double)n;
        save_mean[j] = (float)sum[j];
        save_invstd[j] = (float)(1.0 / sqrt(var + eps));
        running_mean[j] = (float)((1.0 - momentum) * running_mean[j] + momentum * sum[j]);
        double unbiased = n > 1 ? sq[j] / (double)(n - 1) : var;
        running_var[j] = (float)((1.0 - momentum) * running_var[j] + momentum * unbiased);
    }
    if (num_batches != NULL) *num_batches += 1;
    free(sum);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            float y = gamma[j] * ((a[i * c + j] - save_mean[j]) * save_invstd[j]) + beta[j];
            y = y > 0.0f ? y : 0.0f;
            out[i * c + j] = mask != NULL ? y * mask[i * c + j] : y;
        }
    return 0;
}

/* Gradient of bn_relu_forward in a, gamma and beta from the gradient of its output. */
MULTIVERSION
static int bn_relu_backward(const float *d_out, const float *out, const float *mask, const float *a, int64_t n,
                             int64_t c, const float *gamma, const float *save_mean, const float *save_invstd,
                             float *d_a, float *d_gamma, float *d_beta) {
    double *sum_g = calloc((size_t)(2 * c), sizeof(double));
    if (sum_g == NULL) return -1;
    double *sum_gx = sum_g + c;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            int64_t at = i * c + j;
            float g = out[at] > 0.0f ? (mask != NULL ? d_out[at] * mask[at] : d_out[at]) : 0.0f;
            d_a[at] = g; /* the gradient of the normalised value, finished below */
            sum_g[j] += g;
            sum_gx[j] += (double)g * ((a[at] - save_mean[j]) * save_invstd[j]);
        }
    for (int64_t j = 0; j < c; j++) {
        d_beta[j] = (float)sum_g[j];
        d_gamma[j] = (float)sum_gx[j];
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            int64_t at = i * c + j;
            float xhat = (a[at] - save_mean[j]) * save_invstd[j];
            d_a[at] = gamma[j] * save_invstd[j] *
                      (d_a[at] - (float)(sum_g[j] / (double)n) - xhat * (float)(sum_gx[j] / (double)n));
        }
    free(sum_g);
    return 0;
}

/* Wide outputs (the decoder's first layer, n_latent -> n_hidden) are computed from the transposed
 * weights, so that the innermost loops run along the outputs; narrow ones (the Gaussian heads,
 * n_hidden -> n_latent) as dot products along the inputs. */
#define WIDE_OUTPUT 16

/* out (n, m) = x (n, k) W[:, :k]^T + bias [+ W[:, k + cat_i] for row i] (W rows of w_stride). */
MULTIVERSION
static int small_linear(const float *x, int64_t n, int64_t k, const float *w, int64_t w_stride, const float *bias,
                         const int64_t *cat, int64_t m, float *out) {
    if (m >= WIDE_OUTPUT) {
        float *wt = malloc((size_t)(w_stride * m) * sizeof(float)); /* W^T: (w_stride, m) */
        if (wt == NULL) return -1;
        transpose_columns(w, w_stride, wt, m, m, 0, w_stride);
        for (int64_t i = 0; i < n; i++) {
            float *oi = out + i * m;
            const float *first = cat != NULL ? wt + (k + cat[i]) * m : NULL;
            for (int64_t o = 0; o < m; o++) oi[o] = (bias != NULL ? bias[o] : 0.0f) + (first != NULL ? first[o] : 0.0f);
            for (int64_t q = 0; q < k; q++) {
                const float xq = x[i * k + q], *row = wt + q * m;
                for (int64_t o = 0; o < m; o++) oi[o] += xq * row[o];
            }
        }
        free(wt);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * k;
        for (int64_t o = 0; o < m; o++) {
            const float *wo = w + o * w_stride;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t q = 0; q < k; q++) s += xi[q] * wo[q];
            if (bias != NULL) s += bias[o];
            if (cat != NULL) s += wo[k + cat[i]];
            out[i * m + o] = s;
        }
    }
    return 0;
}

/* Gradients of small_linear: d_w (m, w_stride) and d_bias (m) written; d_x (n, k) written or
 * accumulated (accumulate), or skipped (NULL). */
MULTIVERSION
static int small_linear_backward(const float *d_out, int64_t n, int64_t m, const float *x, int64_t k,
                                  const float *w, int64_t w_stride, const int64_t *cat, float *d_w, float *d_bias,
                                  float *d_x, int accumulate) {
    if (d_bias != NULL) {
        memset(d_bias, 0, (size_t)m * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < m; o++) d_bias[o] += d_out[i * m + o];
    }
    if (m >= WIDE_OUTPUT) {
        /* d_w^T (w_stride, m) = sum_i [x_i, onehot(cat_i)]^T d_out_i, then transposed */
        float *dwt = calloc((size_t)(w_stride * m), sizeof(float));
        if (dwt == NULL) return -1;
        for (int64_t i = 0; i < n; i++) {
            const float *gi = d_out + i * m;
            for (int64_t q = 0; q < k; q++) {
                const float xq = x[i * k + q];
                float *row = dwt + q * m;
                for (int64_t o = 0; o < m; o++) row[o] += xq * gi[o];
            }
            if (cat != NULL) {
                float *row = dwt + (k + cat[i]) * m;
                for (int64_t o = 0; o < m; o++) row[o] += gi[o];
            }
        }
        transpose_columns(dwt, m, d_w, w_stride, w_stride, 0, m);
        free(dwt);
    } else {
        memset(d_w, 0, (size_t)(m * w_stride) * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * k;
            for (int64_t o = 0; o < m; o++) {
                float g = d_out[i * m + o];
                float *dwo = d_w + o * w_stride;
                for (int64_t q = 0; q < k; q++) dwo[q] += g * xi[q];
                if (cat != NULL) dwo[k + cat[i]] += g;
            }
        }
    }
    if (d_x == NULL) return 0;
    if (m >= WIDE_OUTPUT) {
        float *wt = malloc((size_t)(k * m) * sizeof(float)); /* W[:, :k]^T */
        if (wt == NULL) return -1;
        transpose_columns(w, w_stride, wt, m, m, 0, k);
        for (int64_t i = 0; i < n; i++) {
            const float *gi = d_out + i * m;
            for (int64_t q = 0; q < k; q++) {
                const float *row = wt + q * m;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int64_t o = 0; o < m; o++) s += gi[o] * row[o];
                d_x[i * k + q] = accumulate ? d_x[i * k + q] + s : s;
            }
        }
        free(wt);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        float *dxi = d_x + i * k;
        if (!accumulate) memset(dxi, 0, (size_t)k * sizeof(float));
        for (int64_t o = 0; o < m; o++) {
            float g = d_out[i * m + o];
            const float *wo = w + o * w_stride;
            for (int64_t q = 0; q < k; q++) dxi[q] += g * wo[q];
        }
    }
    return 0;
}

/* Gaussian latent of each row: qv = exp(lv) + 1e-4, z = qm + sqrt(qv) noise and
 * kl_i = sum_j KL(N(qm, qv) || N(pm_i, pv_i)) (standard normal prior without prior_mean). */
MULTIVERSION
static void gaussian_latent(const float *qm, const float *lv, const float *noise, const float *prior_mean,
                            const float *prior_var, int64_t n, int64_t l, float *qv, float *z, float *kl) {
    for (int64_t i = 0; i < n; i++) {
        float pm = prior_mean != NULL ? prior_mean[i] : 0.0f, pv = prior_var != NULL ? prior_var[i] : 1.0f;
        float log_pv = prior_var != NULL ? logf(pv) : 0.0f, row = 0.0f;
        for (int64_t j = 0; j < l; j++) {
            int64_t at = i * l + j;
            float v = expf(lv[at]) + 1e-4f, dm = qm[at] - pm;
            qv[at] = v;
            z[at] = qm[at] + sqrtf(v) * noise[at];
            row += 0.5f * (log_pv - logf(v) + (v + dm * dm) / pv - 1.0f);
        }
        kl[i] = row;
    }
}

/* Gradients of gaussian_latent in qm and lv from those of z and of each row's KL. */
MULTIVERSION
static void gaussian_latent_backward(const float *qm, const float *qv, const float *noise, const float *prior_mean,
                                     const float *prior_var, const float *d_z, const float *d_kl, int64_t n,
                                     int64_t l, float *d_qm, float *d_lv) {
    for (int64_t i = 0; i < n; i++) {
        float pm = prior_mean != NULL ? prior_mean[i] : 0.0f, pv = prior_var != NULL ? prior_var[i] : 1.0f;
        float gk = d_kl[i];
        for (int64_t j = 0; j < l; j++) {
            int64_t at = i * l + j;
            float v = qv[at];
            d_qm[at] = d_z[at] + gk * (qm[at] - pm) / pv;
            float d_v = d_z[at] * noise[at] * 0.5f / sqrtf(v) + gk * 0.5f * (1.0f / pv - 1.0f / v);
            d_lv[at] = d_v * (v - 1e-4f);
        }
    }
}

#define ADDR(name) ((void *)(uintptr_t)(name))

static const char bn_relu_forward_doc[] =
    "bn_relu_forward(a, n, c, gamma, beta, running_mean, running_var, num_batches, momentum, eps, mask,\n"
    "                out, save_mean, save_invstd)\n\n"
    "Training batch norm of the float32 (n, c) array a, then ReLU, then the mask (0: none);\n"
    "updates the running statistics and the int64 batch count (0: none).";

static PyObject *py_bn_relu_forward(PyObject *self, PyObject *args) {
    unsigned long long a, gamma, beta, rm, rv, nb, mask, out, sm, si;
    Py_ssize_t n, c;
    double momentum, eps;
    if (!PyArg_ParseTuple(args, "KnnKKKKKddKKKK", &a, &n, &c, &gamma, &beta, &rm, &rv, &nb, &momentum, &eps, &mask,
                          &out, &sm, &si))
        return NULL;
    if (n < 1 || c < 1) {
        PyErr_SetString(PyExc_ValueError, "bn_relu_forward: invalid sizes");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = bn_relu_forward(ADDR(a), n, c, ADDR(gamma), ADDR(beta), ADDR(rm), ADDR(rv), ADDR(nb), momentum, eps, ADDR(mask),
                    ADDR(out), ADDR(sm), ADDR(si));
    Py_END_ALLOW_THREADS
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static const char bn_relu_backward_doc[] =
    "bn_relu_backward(d_out, out, mask, a, n, c, gamma, save_mean, save_invstd, d_a, d_gamma, d_beta)\n\n"
    "Gradients of bn_relu_forward.";

static PyObject *py_bn_relu_backward(PyObject *self, PyObject *args) {
    unsigned long long d_out, out, mask, a, gamma, sm, si, d_a, d_gamma, d_beta;
    Py_ssize_t n, c;
    if (!PyArg_ParseTuple(args, "KKKKnnKKKKKK", &d_out, &out, &mask, &a, &n, &c, &gamma, &sm, &si, &d_a, &d_gamma,
                          &d_beta))
        return NULL;
    if (n < 1 || c < 1) {
        PyErr_SetString(PyExc_ValueError, "bn_relu_backward: invalid sizes");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = bn_relu_backward(ADDR(d_out), ADDR(out), ADDR(mask), ADDR(a), n, c, ADDR(gamma), ADDR(sm), ADDR(si), ADDR(d_a),
                     ADDR(d_gamma), ADDR(d_beta));
    Py_END_ALLOW_THREADS
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static const char small_linear_doc[] =
    "small_linear(x, n, k, w, w_stride, bias, cat, m, out)\n\n"
    "out (n, m) = x (n, k) W[:, :k]^T + bias + W[:, k + cat[i]] per row (bias, cat: 0 for none).";

static PyObject *py_small_linear(PyObject *self, PyObject *args) {
    unsigned long long x, w, bias, cat, out;
    Py_ssize_t n, k, w_stride, m;
    if (!PyArg_ParseTuple(args, "KnnKnKKnK", &x, &n, &k, &w, &w_stride, &bias, &cat, &m, &out)) return NULL;
    if (n < 0 || k < 0 || m < 1 || w_stride < k) {
        PyErr_SetString(PyExc_ValueError, "small_linear: invalid sizes");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = small_linear(ADDR(x), n, k, ADDR(w), w_stride, ADDR(bias), ADDR(cat), m, ADDR(out));
    Py_END_ALLOW_THREADS
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static const char small_linear_backward_doc[] =
    "small_linear_backward(d_out, n, m, x, k, w, w_stride, cat, d_w, d_bias, d_x, accumulate)\n\n"
    "Gradients of small_linear (d_bias, d_x: 0 for none).";

static PyObject *py_small_linear_backward(PyObject *self, PyObject *args) {
    unsigned long long d_out, x, w, cat, d_w, d_bias, d_x;
    Py_ssize_t n, m, k, w_stride;
    int accumulate;
    if (!PyArg_ParseTuple(args, "KnnKnKnKKKKp", &d_out, &n, &m, &x, &k, &w, &w_stride, &cat, &d_w, &d_bias, &d_x,
                          &accumulate))
        return NULL;
    if (n < 0 || k < 0 || m < 1 || w_stride < k) {
        PyErr_SetString(PyExc_ValueError, "small_linear_backward: invalid sizes");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = small_linear_backward(ADDR(d_out), n, m, ADDR(x), k, ADDR(w), w_stride, ADDR(cat), ADDR(d_w), ADDR(d_bias),
                          ADDR(d_x), accumulate);
    Py_END_ALLOW_THREADS
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static const char gaussian_latent_doc[] =
    "gaussian_latent(qm, lv, noise, prior_mean, prior_var, n, l, qv, z, kl)\n\n"
    "qv = exp(lv) + 1e-4, z = qm + sqrt(qv) noise, kl per row against N(prior_mean_i, prior_var_i)\n"
    "(0, 0: standard normal).";

static PyObject *py_gaussian_latent(PyObject *self, PyObject *args) {
    unsigned long long qm, lv, noise, pm, pv, qv, z, kl;
    Py_ssize_t n, l;
    if (!PyArg_ParseTuple(args, "KKKKKnnKKK", &qm, &lv, &noise, &pm, &pv, &n, &l, &qv, &z, &kl)) return NULL;
    if (n < 0 || l < 1 || (pm == 0) != (pv == 0)) {
        PyErr_SetString(PyExc_ValueError, "gaussian_latent: invalid arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    gaussian_latent(ADDR(qm), ADDR(lv), ADDR(noise), ADDR(pm), ADDR(pv), n, l, ADDR(qv), ADDR(z), ADDR(kl));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static const char gaussian_latent_backward_doc[] =
    "gaussian_latent_backward(qm, qv, noise, prior_mean, prior_var, d_z, d_kl, n, l, d_qm, d_lv)\n\n"
    "Gradients of gaussian_latent in qm and lv.";

static PyObject *py_gaussian_latent_backward(PyObject *self, PyObject *args) {
    unsigned long long qm, qv, noise, pm, pv, d_z, d_kl, d_qm, d_lv;
    Py_ssize_t n, l;
    if (!PyArg_ParseTuple(args, "KKKKKKKnnKK", &qm, &qv, &noise, &pm, &pv, &d_z, &d_kl, &n, &l, &d_qm, &d_lv))
        return NULL;
    if (n < 0 || l < 1 || (pm == 0) != (pv == 0)) {
        PyErr_SetString(PyExc_ValueError, "gaussian_latent_backward: invalid arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    gaussian_latent_backward(ADDR(qm), ADDR(qv), ADDR(noise), ADDR(pm), ADDR(pv), ADDR(d_z), ADDR(d_kl), n, l,
                             ADDR(d_qm), ADDR(d_lv));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"integer_max", py_integer_max, METH_VARARGS, integer_max_doc},
    {"nb_family", py_nb_family, METH_VARARGS, nb_family_doc},
    {"nb_family_logits", py_nb_family_logits, METH_VARARGS, nb_family_logits_doc},
    {"nb_family_backward", py_nb_family_backward, METH_VARARGS, nb_family_backward_doc},
    {"sparse_structure", py_sparse_structure, METH_VARARGS, sparse_structure_doc},
    {"sparse_input_linear", py_sparse_input_linear, METH_VARARGS, sparse_input_linear_doc},
    {"sparse_input_linear_weight_grad", py_sparse_input_linear_weight_grad, METH_VARARGS,
     sparse_input_linear_weight_grad_doc},
    {"dropout_mask", py_dropout_mask, METH_VARARGS, dropout_mask_doc},
    {"bn_relu_forward", py_bn_relu_forward, METH_VARARGS, bn_relu_forward_doc},
    {"bn_relu_backward", py_bn_relu_backward, METH_VARARGS, bn_relu_backward_doc},
    {"small_linear", py_small_linear, METH_VARARGS, small_linear_doc},
    {"small_linear_backward", py_small_linear_backward, METH_VARARGS, small_linear_backward_doc},
    {"gaussian_latent", py_gaussian_latent, METH_VARARGS, gaussian_latent_doc},
    {"gaussian_latent_backward", py_gaussian_latent_backward, METH_VARARGS, gaussian_latent_backward_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_kernels",
    "Fused CPU kernels: NB / ZINB log-likelihoods, sparse-input linear layers, dropout masks, small VAE layers.",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
