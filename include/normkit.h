/*
 * normkit — SIMD CPU kernels for the normalization layers of deep learning.
 *
 * The public C API (C99, also valid C++). Every function returns an
 * nk_status; on failure nk_last_error() says what was wrong and no output
 * has been written. Nothing here keeps state between calls besides the
 * settings (ISA cap, thread count).
 *
 * Tensors are dense, row-major, described by nk_tensor_desc: up to
 * NK_MAX_DIMS dimensions and the set of feature axes (TensorFlow's `axis`).
 * Parameters and statistics are indexed by the feature axes (row-major over
 * them, in axis order of the tensor); statistics reduce over every other axis.
 * NCHW: axis 1. NHWC: axis -1 (or 3). NC: axis 1. NCDHW: 1. NDHWC: -1.
 */
#ifndef NORMKIT_H
#define NORMKIT_H

#include <math.h> /* INFINITY */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NK_VERSION_MAJOR 0
#define NK_VERSION_MINOR 1
#define NK_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as nk_version() returns. */
#define NK_VERSION (NK_VERSION_MAJOR * 10000 + NK_VERSION_MINOR * 100 + NK_VERSION_PATCH)

#if defined(NK_BUILDING_LIBRARY) && defined(__GNUC__)
#define NK_API __attribute__((visibility("default")))
#else
#define NK_API
#endif

/* ---- Status codes: values fixed forever. ------------------------------- */
typedef int32_t nk_status;
#define NK_OK 0
#define NK_ERR_NULL_POINTER 1    /* a required pointer is NULL */
#define NK_ERR_BAD_SHAPE 2       /* ndim or a dimension out of range */
#define NK_ERR_BAD_AXIS 3        /* a feature axis out of range or repeated */
#define NK_ERR_BAD_ARGUMENT 4    /* an option value out of its domain */
#define NK_ERR_OVERFLOW 5        /* a size product overflows int64 */
#define NK_ERR_BAD_STRUCT_SIZE 6 /* option struct too small, or unknown tail not zero */
#define NK_ERR_UNSUPPORTED 7     /* valid request this build cannot do (e.g. a dtype) */
#define NK_ERR_OUT_OF_MEMORY 8   /* scratch memory could not be allocated */
#define NK_ERR_BAD_ISA 9         /* unknown ISA name (NK_MAX_ISA or nk_set_max_isa) */
#define NK_ERR_INTERNAL 10       /* a bug in normkit; please report */

/* Buffers: an output may equal an input only where a function says so (in
 * place); otherwise outputs and inputs must not overlap, nor two outputs
 * each other (e.g. saved_mean and moving_mean). Overlaps are not detected. */

/* A constant description of a status; never NULL (unknown codes included). */
NK_API const char* nk_status_string(nk_status status);
/* What was wrong in this thread's last call that returned an nk_status: its
 * message if the call failed, "" if it succeeded (every such call clears it
 * on entry, so read it before the next one). */
NK_API const char* nk_last_error(void);

/* ---- Version: the macros above and these functions agree. -------------- */
NK_API int32_t nk_version(void);
NK_API int32_t nk_version_major(void);
NK_API int32_t nk_version_minor(void);
NK_API int32_t nk_version_patch(void);
NK_API const char* nk_version_string(void);

/* ---- ISA dispatch and threads ----------------------------------------- *
 * The best ISA of the CPU is chosen at load time: "avx512" (F/CD/DQ/BW),
 * "avx2" (with FMA), "sse2", "scalar" on x86-64; "neon", "scalar" on aarch64.
 * The environment variable NK_MAX_ISA, read at load time, caps the choice;
 * an unknown value makes every operation fail with NK_ERR_BAD_ISA until
 * nk_set_max_isa() is given a valid name. */
NK_API nk_status nk_set_max_isa(const char* name); /* NULL: no cap */
/* The active ISA's name, or "none" while NK_MAX_ISA holds an unknown value. */
NK_API const char* nk_active_isa(void);
/* Whether this CPU and build can run the named ISA (0 or 1; unknown: 0). */
NK_API int32_t nk_isa_available(const char* name);

/* Threads used by every operation: n >= 1, or 0 for the OpenMP default
 * (OMP_NUM_THREADS, else the number of cores). Results are bitwise the same
 * for any thread count. */
NK_API nk_status nk_set_num_threads(int32_t n);
NK_API int32_t nk_get_num_threads(void);

/* Operations that move at least this many bytes write their outputs with
 * non-temporal stores, which bypass the cache: right where the data would not
 * stay in cache anyway. bytes >= 0, or -1 for the default (the size of the
 * last-level cache, at most 16 MiB). Results do not depend on it. */
NK_API nk_status nk_set_stream_threshold(int64_t bytes);
NK_API int64_t nk_get_stream_threshold(void);

/* ---- Tensors ------------------------------------------------------------ */
#define NK_MAX_DIMS 8

typedef int32_t nk_dtype;
#define NK_DTYPE_F32 0
#define NK_DTYPE_BF16 1 /* reserved: not yet supported (NK_ERR_UNSUPPORTED) */

typedef struct nk_tensor_desc {
  nk_dtype dtype;
  int32_t ndim;                   /* 1 .. NK_MAX_DIMS */
  int64_t dims[NK_MAX_DIMS];      /* each >= 1 */
  int32_t num_axes;               /* number of feature axes, 1 .. ndim */
  int32_t axes[NK_MAX_DIMS];      /* feature axes; negative counts from the end */
} nk_tensor_desc;

/* Fills a float32 descriptor with one feature axis (e.g. 1 for NCHW, -1 for
 * NHWC). Checks only what it needs to copy dims (NK_ERR_NULL_POINTER for a
 * NULL desc or dims, NK_ERR_BAD_SHAPE for ndim outside 1..NK_MAX_DIMS);
 * operations check the rest of the descriptor. */
NK_API nk_status nk_tensor_desc_init(nk_tensor_desc* desc, int32_t ndim, const int64_t* dims,
                                     int32_t axis);

/* ---- Batch Normalization ------------------------------------------------ */

/* Moving-statistics update convention (option momentum_convention). */
#define NK_MOMENTUM_TF 0    /* moving = momentum * moving + (1 - momentum) * batch */
#define NK_MOMENTUM_TORCH 1 /* running = (1 - momentum) * running + momentum * batch */

/* Which batch variance feeds the moving variance (option moving_variance).
 * m: the values per feature in the batch, or in one virtual batch under
 * virtual batches (each virtual batch's variance is corrected, then they
 * are averaged). */
#define NK_VARIANCE_BIASED 0   /* sum((x - mean)^2) / m (TF's general path) */
#define NK_VARIANCE_UNBIASED 1 /* sum((x - mean)^2) / (m - 1) (PyTorch; TF's fused path) */

/* Virtual batches (Ghost Batch Norm; option virtual_grouping). With N the
 * size of axis 0 and V the virtual batch size, there are G = N / V virtual
 * batches of V samples each. */
#define NK_GHOST_STRIDED 0    /* TF: batch g holds the samples n with n mod G = g */
#define NK_GHOST_CONTIGUOUS 1 /* the paper: batch g holds samples g*V .. g*V + V - 1 */

/* Options of Batch Norm, each with the tf.layers.batch_normalization
 * argument it stands for and its default there. Start from
 * nk_bn_options_init() (or NK_BN_OPTIONS_INIT), which gives those defaults
 * (as does a NULL options pointer, here and for every options struct);
 * struct_size lets later releases append fields without breaking callers
 * built against this one (fields past a caller's struct_size take their
 * defaults). TF's center/scale are NULL beta/gamma; its initializers,
 * regularizers and constraints belong to whoever owns the variables; its
 * `fused` is moot (normkit is always fused); `trainable=False` is NULL
 * dgamma/dbeta in backward — and in TF2 a frozen layer runs in inference
 * mode, nk_bn_forward_inference. */
typedef struct nk_bn_options {
  uint64_t struct_size;        /* sizeof(nk_bn_options) */
  float epsilon;               /* epsilon = 1e-3; must be > 0 */
  float momentum;              /* momentum = 0.99; in [0, 1] */
  int32_t momentum_convention; /* NK_MOMENTUM_TF (default) or NK_MOMENTUM_TORCH */
  int32_t moving_variance;     /* NK_VARIANCE_BIASED (default) or NK_VARIANCE_UNBIASED */
  /* Training only, like TF; inference ignores them. */
  int32_t virtual_batch_size;  /* virtual_batch_size = None: 0; else V >= 1 dividing N */
  int32_t virtual_grouping;    /* NK_GHOST_STRIDED (TF, default) or NK_GHOST_CONTIGUOUS */
  int32_t renorm;              /* renorm = False: 0; 1 for Batch Renormalization */
  float renorm_momentum;       /* renorm_momentum = 0.99; in [0, 1]; weights the old
                                  value (TF's convention) whatever
                                  momentum_convention says */
  float rmax;                  /* renorm_clipping['rmax'], missing = INFINITY */
  float rmin;                  /* renorm_clipping['rmin'], missing = 0 */
  float dmax;                  /* renorm_clipping['dmax'], missing = INFINITY; >= 0 */
} nk_bn_options;

#define NK_BN_OPTIONS_INIT                                                          \
  { sizeof(nk_bn_options), 1e-3f, 0.99f, NK_MOMENTUM_TF, NK_VARIANCE_BIASED, 0,    \
    NK_GHOST_STRIDED, 0, 0.99f, INFINITY, 0.0f, INFINITY }
NK_API void nk_bn_options_init(nk_bn_options* opt);

/* Training forward. Per feature: batch mean and biased variance over all
 * other axes; y = gamma * (x - mean) / sqrt(var + eps) + beta.
 * gamma, beta: optional (NULL: 1 and 0; TF scale=False / center=False).
 * saved_mean, saved_invstd: optional outputs for the backward pass (G*C
 * floats with G virtual batches, see nk_bn_forward_training_ex).
 * moving_mean, moving_var: optional (both or neither); updated in place.
 * y may equal x. Arrays of parameters and statistics hold C floats, C the
 * product of the feature dimensions. Renorm and adjustment need
 * nk_bn_forward_training_ex. */
NK_API nk_status nk_bn_forward_training(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                        const void* x, void* y, const float* gamma,
                                        const float* beta, float* saved_mean,
                                        float* saved_invstd, float* moving_mean,
                                        float* moving_var);

/* Inference forward: y = gamma * (x - moving_mean) / sqrt(moving_var + eps) + beta.
 * (TF2: a layer with trainable=False runs in inference mode.) y may equal x. */
NK_API nk_status nk_bn_forward_inference(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                         const void* x, void* y, const float* gamma,
                                         const float* beta, const float* moving_mean,
                                         const float* moving_var);

/* Training backward from the saved mean and invstd of the forward pass:
 * dx, and dgamma = sum(dy * xhat), dbeta = sum(dy). dgamma and dbeta are
 * optional: NULL skips them (TF trainable=False). gamma: NULL means 1.
 * dx may equal dy. */
NK_API nk_status nk_bn_backward(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                const void* x, const void* dy, const float* gamma,
                                const float* saved_mean, const float* saved_invstd, void* dx,
                                float* dgamma, float* dbeta);

/* ---- Batch Norm with TensorFlow's whole option set ----------------------- *
 * The arrays a training step reads and writes besides x, y and the
 * parameters. C is the number of features, G the number of virtual batches
 * (1 without them). NULL where unused. Start from nk_bn_state_init(). A
 * NULL state pointer stands for a state whose arrays are all NULL (a
 * training forward then keeps no statistics; a backward fails for want of
 * saved_mean). */
typedef struct nk_bn_state {
  uint64_t struct_size;           /* sizeof(nk_bn_state) */
  float* moving_mean;             /* [C] in/out: moving_mean (both or neither) */
  float* moving_var;              /* [C] in/out: moving_variance; under renorm it is
                                     written as relu(moving_stddev^2 - epsilon) */
  float* moving_stddev;           /* [C] in/out, renorm: TF's moving_stddev; NULL derives
                                     it from moving_var as sqrt(moving_var + epsilon) */
  float* renorm_mean;             /* [C] in/out, renorm: TF's renorm_mean (starts at 0) */
  float* renorm_stddev;           /* [C] in/out, renorm: TF's renorm_stddev (starts at 1) */
  const float* adjustment_scale;  /* [C] TF adjustment's scale (both or neither); not
                                     with virtual batches, as in TF */
  const float* adjustment_bias;   /* [C] TF adjustment's bias */
  float* saved_mean;              /* [G*C] out (forward), in (backward): mean of virtual
                                     batch g, feature c at g*C + c */
  float* saved_invstd;            /* [G*C] likewise, 1/sqrt(var + epsilon) */
  float* saved_r;                 /* [C] out (forward), in (backward): renorm's r */
  float* saved_d;                 /* [C] likewise, renorm's d */
} nk_bn_state;
NK_API void nk_bn_state_init(nk_bn_state* state);

/* Training forward with every option: with a the adjustment scale and b its
 * bias (1 and 0 when absent), r and d the renorm corrections (1 and 0 when
 * off), and mean/var those of x's virtual batch,
 *   y = gamma * (a * (xhat * r + d) + b) + beta,  xhat = (x - mean) / sqrt(var + eps),
 * composed in TensorFlow's order (renorm's correction first, then the
 * adjustment, then gamma and beta). Renorm (arXiv 1702.03275, TF's rules):
 * sigma_B = sqrt(var + eps) and mean of the batch (under virtual batches: the
 * averages over them); s = max(renorm_stddev, sqrt(eps)); r = clip(sigma_B / s,
 * rmin, rmax), d = clip((mean - renorm_mean) / s, -dmax, dmax), from the state
 * before this step; renorm_mean and renorm_stddev then move toward mean and
 * sigma_B with renorm_momentum; moving_mean and moving_stddev move toward mean
 * and sqrt(var' + eps) with momentum (var' Bessel-corrected if asked). Virtual
 * batches: one moving-statistics update per call, from the mean over virtual
 * batches of their means and of their biased variances. */
NK_API nk_status nk_bn_forward_training_ex(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                           const void* x, void* y, const float* gamma,
                                           const float* beta, nk_bn_state* state);
/* Backward of nk_bn_forward_training_ex, from the saved arrays (and the
 * adjustment) of its state: r, d and the adjustment are constants for the
 * gradient. dgamma, dbeta optional (NULL: not trainable). */
NK_API nk_status nk_bn_backward_ex(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                   const void* x, const void* dy, const float* gamma,
                                   const nk_bn_state* state, void* dx, float* dgamma,
                                   float* dbeta);

/* ---- Split statistics, for Sync Batch Norm across processes ------------- *
 * Forward: each process computes its partials (count, mean, M2 per feature,
 * M2 = sum((x - mean)^2)); all partials are gathered (e.g. MPI_Allgather)
 * and merged (Chan et al.; exact, any counts); finalize gives invstd and
 * updates the moving statistics; apply normalizes the local part.
 * Backward: each process reduces sum(dy) and sum(dy * xhat); these are
 * summed across processes (MPI_Allreduce) and backward_apply gives dx.
 * The *_mean64 forms take the merged mean as the double it is: a float mean
 * is off by up to half its ulp (5e-4 at 1e4), which moves xhat by that over
 * the standard deviation; with the double mean, data whose mean is large
 * against its spread normalize as exactly as nk_bn_forward_training does. */
NK_API nk_status nk_bn_partial_stats(const nk_tensor_desc* desc, const void* x, int64_t* count,
                                     double* mean, double* m2);
/* Merges num_parts partials (means/m2s: num_parts rows of `channels`). The
 * output may be fed to another merge. A part of count 0 adds nothing (its
 * rows are not read); parts all of count 0 give count 0, mean 0 and M2 0.
 * A negative M2 (of a part with a nonzero count) is an error; NaN passes
 * through. count, mean and m2 may alias the inputs (e.g. counts[0] and the
 * first rows of means and m2s: merging into part 0). */
NK_API nk_status nk_bn_merge_stats(int64_t channels, int64_t num_parts, const int64_t* counts,
                                   const double* means, const double* m2s, int64_t* count,
                                   double* mean, double* m2);
/* From merged statistics: mean and invstd as float (for apply and backward;
 * the *_mean64 forms take the merged double mean instead of mean_out), and
 * the moving statistics updated as nk_bn_forward_training would
 * (moving_mean, moving_var optional, both or neither). A negative M2 is an
 * error. mean_out and invstd_out must not be the moving statistics. */
NK_API nk_status nk_bn_finalize_stats(int64_t channels, const nk_bn_options* opt, int64_t count,
                                      const double* mean, const double* m2, float* mean_out,
                                      float* invstd_out, float* moving_mean, float* moving_var);
/* y = gamma * (x - mean) * invstd + beta. y may equal x. */
NK_API nk_status nk_bn_apply(const nk_tensor_desc* desc, const void* x, void* y,
                             const float* gamma, const float* beta, const float* mean,
                             const float* invstd);
NK_API nk_status nk_bn_apply_mean64(const nk_tensor_desc* desc, const void* x, void* y,
                                    const float* gamma, const float* beta, const double* mean,
                                    const float* invstd);
NK_API nk_status nk_bn_backward_reduce(const nk_tensor_desc* desc, const void* x, const void* dy,
                                       const float* mean, const float* invstd, double* sum_dy,
                                       double* sum_dy_xhat);
NK_API nk_status nk_bn_backward_reduce_mean64(const nk_tensor_desc* desc, const void* x,
                                              const void* dy, const double* mean,
                                              const float* invstd, double* sum_dy,
                                              double* sum_dy_xhat);
/* count: the total number of elements per feature over all processes (at
 * least this part's own; less is NK_ERR_BAD_ARGUMENT).
 * The parameter gradients are the reduced sums themselves:
 * dgamma = sum_dy_xhat, dbeta = sum_dy. dx may equal dy. */
NK_API nk_status nk_bn_backward_apply(const nk_tensor_desc* desc, int64_t count, const void* x,
                                      const void* dy, const float* gamma, const float* mean,
                                      const float* invstd, const double* sum_dy,
                                      const double* sum_dy_xhat, void* dx);
NK_API nk_status nk_bn_backward_apply_mean64(const nk_tensor_desc* desc, int64_t count,
                                             const void* x, const void* dy, const float* gamma,
                                             const double* mean, const float* invstd,
                                             const double* sum_dy, const double* sum_dy_xhat,
                                             void* dx);

/* ---- Activations ---------------------------------------------------------- *
 * Element-wise over n >= 0 floats (any shape: pass the element count); y may
 * equal x and dx may equal dy (in place). Backward takes the forward's input
 * x (not its output y) and dy. At x = 0 ReLU's and CReLU's gradient is 0
 * (as PyTorch's) and the others' that of the x > 0 side; NaN in x gives NaN in y (ReLU too). Results are bitwise the same for
 * any thread count. */
NK_API nk_status nk_relu_forward(int64_t n, const float* x, float* y);        /* x < 0 ? 0 : x */
NK_API nk_status nk_relu_backward(int64_t n, const float* x, const float* dy, float* dx); /* x > 0 ? dy : 0 */
/* x < 0 ? slope * x : x; slope finite. */
NK_API nk_status nk_leaky_relu_forward(int64_t n, float slope, const float* x, float* y);
NK_API nk_status nk_leaky_relu_backward(int64_t n, float slope, const float* x, const float* dy, float* dx);
/* x < 0 ? alpha * expm1(x) : x; alpha finite. Backward: x < 0 ? alpha * exp(x) * dy : dy. */
NK_API nk_status nk_elu_forward(int64_t n, float alpha, const float* x, float* y);
NK_API nk_status nk_elu_backward(int64_t n, float alpha, const float* x, const float* dy, float* dx);
/* lambda * (x < 0 ? alpha * expm1(x) : x) with the constants below; within
 * 8 ulp of the exact value over the whole float range. */
NK_API nk_status nk_selu_forward(int64_t n, const float* x, float* y);
NK_API nk_status nk_selu_backward(int64_t n, const float* x, const float* dy, float* dx);
NK_API double nk_selu_alpha(void);  /* 1.6732632423543772848170429916717 */
NK_API double nk_selu_lambda(void); /* 1.0507009873554804934193349852946 */

/* PReLU: y = x < 0 ? slope[c] * x : x, c the index over desc's feature axes
 * (e.g. axis 1 for NCHW, -1 for NHWC); num_slopes is C (one per feature) or
 * 1 (one shared slope). y may equal x. Backward: dx = x < 0 ? slope * dy : dy
 * (dx may equal dy), and dslope[k] = sum over its elements of
 * (x < 0 ? x * dy : 0) (num_slopes floats; NULL skips it), reduced in a fixed
 * order: bitwise the same for any thread count. */
NK_API nk_status nk_prelu_forward(const nk_tensor_desc* desc, const void* x, void* y,
                                  const float* slope, int64_t num_slopes);
NK_API nk_status nk_prelu_backward(const nk_tensor_desc* desc, const void* x, const void* dy,
                                   const float* slope, int64_t num_slopes, void* dx, float* dslope);

/* CReLU: y = concat(relu(x), relu(-x)) along the feature axis of desc (one
 * axis, e.g. 1 for NCHW, -1 for NHWC): y has desc's shape with that axis
 * doubled, channels [0, C) relu(x) and [C, 2C) relu(-x). y must not overlap x.
 * Backward: dy has y's shape; dx = (x > 0 ? dy[c] : 0) - (x < 0 ? dy[C + c] : 0);
 * dx must not overlap dy. */
NK_API nk_status nk_crelu_forward(const nk_tensor_desc* desc, const void* x, void* y);
NK_API nk_status nk_crelu_backward(const nk_tensor_desc* desc, const void* x, const void* dy, void* dx);

/* ---- Random: AlphaDropout and LeCun-normal initialization ------------------ *
 * Both draw from Philox4x32-10 keyed by seed, with the counter (element block,
 * offset): the same (seed, offset) gives the same numbers on every ISA and
 * for any thread count; distinct offsets give independent streams (use one
 * per step or per layer). */

/* AlphaDropout (SNN paper), keep probability q = 1 - rate, rate in [0, 1):
 * y = a * (x * m + alpha' * (1 - m)) + b with alpha' = -lambda * alpha (SELU),
 * a = (q + alpha'^2 q (1 - q))^(-1/2), b = -a alpha' (1 - q). The mask m of
 * element i is 1 when the top 24 bits of Philox word i % 4 of counter block
 * i / 4 are below round(q * 2^24). Backward regenerates the mask from the same
 * seed and offset: dx = a * m * dy. A NaN or Inf in x (dy) gives NaN where it
 * is dropped, as x * 0 does. y may equal x, dx may equal dy. */
NK_API nk_status nk_alpha_dropout_forward(int64_t n, float rate, uint64_t seed, uint64_t offset,
                                          const float* x, float* y);
NK_API nk_status nk_alpha_dropout_backward(int64_t n, float rate, uint64_t seed, uint64_t offset,
                                           const float* dy, float* dx);

/* LeCun-normal initialization of n weights: N(0, 1/fan_in) (truncated = 0),
 * or Keras' truncated variant (truncated = 1): normal with stddev
 * sqrt(1/fan_in) / 0.87962566103423978, redrawn beyond 2 stddev. Weight i is
 * Box-Muller on Philox block (i, offset) (redraws use further keys). */
#define NK_LECUN_NORMAL 0
#define NK_LECUN_TRUNCATED 1
NK_API nk_status nk_lecun_normal_init(int64_t n, int64_t fan_in, int32_t truncated, uint64_t seed,
                                      uint64_t offset, float* w);

/* ---- Group, Instance, Layer and RMS Normalization ---------------------- *
 * Statistics per sample: axis 0 of the descriptor is the batch (N). For
 * Group and Instance Norm the descriptor's one feature axis says where the
 * channels are: 1 for NCHW (any number of spatial dims, including none),
 * -1 for NHWC; it must not be axis 0. Layer Norm and RMSNorm normalize each
 * row of the last D elements: the feature axes must be the trailing axes of
 * the tensor (e.g. -1, or -2 and -1), D the product of their dims.
 * Outputs may equal inputs (y = x, dx = dy). Statistics are exact for any
 * offset; results are bitwise the same for any thread count. */

/* Group Norm: G groups of C/G contiguous channels; per sample and group,
 * mean and biased variance over the group's channels and every spatial
 * position; y = gamma[c] * (x - mean) / sqrt(var + eps) + beta[c]. */
typedef struct nk_gn_options {
  uint64_t struct_size; /* sizeof(nk_gn_options) */
  float epsilon;        /* 1e-5 (PyTorch); > 0 */
  int32_t groups;       /* G = 32 (as Keras and most models); must divide C */
} nk_gn_options;
#define NK_GN_OPTIONS_INIT { sizeof(nk_gn_options), 1e-5f, 32 }
NK_API void nk_gn_options_init(nk_gn_options* opt);

/* gamma, beta: [C], optional (NULL: 1 and 0). saved_mean, saved_invstd:
 * [N*G] optional outputs (sample n, group g at n*G + g). */
NK_API nk_status nk_groupnorm_forward(const nk_tensor_desc* desc, const nk_gn_options* opt,
                                      const void* x, void* y, const float* gamma,
                                      const float* beta, float* saved_mean,
                                      float* saved_invstd);
/* From the forward's saved mean and invstd: dx, and dgamma = sum(dy * xhat),
 * dbeta = sum(dy) over samples and positions ([C], optional). */
NK_API nk_status nk_groupnorm_backward(const nk_tensor_desc* desc, const nk_gn_options* opt,
                                       const void* x, const void* dy, const float* gamma,
                                       const float* saved_mean, const float* saved_invstd,
                                       void* dx, float* dgamma, float* dbeta);

/* Instance Norm: statistics per (sample, channel) over the spatial
 * positions (Group Norm with G = C). Moving statistics as PyTorch's
 * track_running_stats: per channel, the mean over the batch of the instance
 * means and of the instance variances (Bessel-corrected if asked) move into
 * moving_mean / moving_var with momentum. */
typedef struct nk_in_options {
  uint64_t struct_size;        /* sizeof(nk_in_options) */
  float epsilon;               /* 1e-5 (PyTorch); > 0 */
  float momentum;              /* 0.1 (PyTorch); in [0, 1] */
  int32_t momentum_convention; /* NK_MOMENTUM_TORCH (default) or NK_MOMENTUM_TF */
  int32_t moving_variance;     /* NK_VARIANCE_UNBIASED (default, PyTorch) or NK_VARIANCE_BIASED */
} nk_in_options;
#define NK_IN_OPTIONS_INIT { sizeof(nk_in_options), 1e-5f, 0.1f, NK_MOMENTUM_TORCH, NK_VARIANCE_UNBIASED }
NK_API void nk_in_options_init(nk_in_options* opt);

/* gamma, beta: [C] optional. saved_mean, saved_invstd: [N*C] optional
 * (n*C + c). moving_mean, moving_var: [C], optional (both or neither). */
NK_API nk_status nk_instancenorm_forward_training(const nk_tensor_desc* desc,
                                                  const nk_in_options* opt, const void* x,
                                                  void* y, const float* gamma, const float* beta,
                                                  float* saved_mean, float* saved_invstd,
                                                  float* moving_mean, float* moving_var);
/* y = gamma * (x - moving_mean) / sqrt(moving_var + eps) + beta, per channel. */
NK_API nk_status nk_instancenorm_forward_inference(const nk_tensor_desc* desc,
                                                   const nk_in_options* opt, const void* x,
                                                   void* y, const float* gamma, const float* beta,
                                                   const float* moving_mean,
                                                   const float* moving_var);
NK_API nk_status nk_instancenorm_backward(const nk_tensor_desc* desc, const nk_in_options* opt,
                                          const void* x, const void* dy, const float* gamma,
                                          const float* saved_mean, const float* saved_invstd,
                                          void* dx, float* dgamma, float* dbeta);

/* Layer Norm and RMSNorm over rows of D elements (R rows). */
typedef struct nk_ln_options {
  uint64_t struct_size; /* sizeof(nk_ln_options) */
  float epsilon;        /* 1e-5 (PyTorch's LayerNorm); > 0. PyTorch's RMSNorm
                           defaults to the dtype's machine epsilon: set it. */
} nk_ln_options;
#define NK_LN_OPTIONS_INIT { sizeof(nk_ln_options), 1e-5f }
NK_API void nk_ln_options_init(nk_ln_options* opt);

/* y = (x - mean) / sqrt(var + eps) * gamma[d] + beta[d], per row.
 * gamma, beta: [D] optional. saved_mean, saved_invstd: [R] optional. */
NK_API nk_status nk_layernorm_forward(const nk_tensor_desc* desc, const nk_ln_options* opt,
                                      const void* x, void* y, const float* gamma,
                                      const float* beta, float* saved_mean,
                                      float* saved_invstd);
/* dx; dgamma = sum over rows of dy * xhat, dbeta = sum of dy ([D], optional). */
NK_API nk_status nk_layernorm_backward(const nk_tensor_desc* desc, const nk_ln_options* opt,
                                       const void* x, const void* dy, const float* gamma,
                                       const float* saved_mean, const float* saved_invstd,
                                       void* dx, float* dgamma, float* dbeta);
/* y = x / sqrt(mean(x^2) + eps) * gamma[d]. gamma: [D] optional.
 * saved_rstd: [R] optional, 1/sqrt(mean(x^2) + eps). */
NK_API nk_status nk_rmsnorm_forward(const nk_tensor_desc* desc, const nk_ln_options* opt,
                                    const void* x, void* y, const float* gamma,
                                    float* saved_rstd);
/* dx, and dgamma = sum over rows of dy * x * rstd ([D], optional). */
NK_API nk_status nk_rmsnorm_backward(const nk_tensor_desc* desc, const nk_ln_options* opt,
                                     const void* x, const void* dy, const float* gamma,
                                     const float* saved_rstd, void* dx, float* dgamma);

/* ---- Switchable Normalization (arXiv 1806.10779) ------------------------ *
 * The authors' reference conventions. Per (sample n, channel c) over the L
 * spatial positions: mean_in and the *unbiased* var_in (divided by L - 1;
 * L >= 2). mean_ln[n] = mean over c of mean_in, var_ln[n] = mean over c of
 * (var_in + mean_in^2) - mean_ln^2; mean_bn[c], var_bn[c] likewise over n.
 * mean = sum_k softmax(mean_weight)_k * mean_k, var = sum_k
 * softmax(var_weight)_k * var_k over k = IN, LN, BN (in that order), and
 * y = gamma[c] * (x - mean) / sqrt(var + eps) + beta[c]. With use_bn = 0
 * the BN part is left out and the weight vectors have 2 elements (IN, LN).
 * Layout as Group Norm (axis 0 the batch, channel axis 1 or -1). */
typedef struct nk_sn_options {
  uint64_t struct_size; /* sizeof(nk_sn_options) */
  float epsilon;        /* 1e-5 (the authors'); > 0 */
  float momentum;       /* 0.997 (the authors'): moving = momentum * moving + (1 - momentum) * batch */
  int32_t use_bn;       /* 1 (default): IN, LN and BN; 0: IN and LN only */
} nk_sn_options;
#define NK_SN_OPTIONS_INIT { sizeof(nk_sn_options), 1e-5f, 0.997f, 1 }
NK_API void nk_sn_options_init(nk_sn_options* opt);

/* Training forward: the BN part from the batch. mean_weight, var_weight:
 * [3] (or [2] without BN), the raw weights before the softmax. gamma, beta:
 * [C] optional. moving_mean, moving_var: [C] optional (both or neither),
 * updated with mean_bn and var_bn (no extra Bessel factor); unused without BN.
 * y may equal x (in both forwards). */
NK_API nk_status nk_switchnorm_forward_training(const nk_tensor_desc* desc, const nk_sn_options* opt,
                                                const void* x, void* y, const float* gamma,
                                                const float* beta, const float* mean_weight,
                                                const float* var_weight, float* moving_mean,
                                                float* moving_var);
/* Inference forward: the BN part from moving_mean and moving_var (required
 * with BN, ignored without); IN and LN from x as in training. */
NK_API nk_status nk_switchnorm_forward_inference(const nk_tensor_desc* desc, const nk_sn_options* opt,
                                                 const void* x, void* y, const float* gamma,
                                                 const float* beta, const float* mean_weight,
                                                 const float* var_weight, const float* moving_mean,
                                                 const float* moving_var);
/* Backward of the training forward, exact (the statistics are recomputed
 * from x): dx; dgamma, dbeta ([C]) and dmean_weight, dvar_weight ([3] or
 * [2]), each optional. dx may equal dy. */
NK_API nk_status nk_switchnorm_backward(const nk_tensor_desc* desc, const nk_sn_options* opt,
                                        const void* x, const void* dy, const float* gamma,
                                        const float* mean_weight, const float* var_weight, void* dx,
                                        float* dgamma, float* dbeta, float* dmean_weight,
                                        float* dvar_weight);

/* ---- Normalization fused with a residual add and an activation ---------- *
 * y = act(norm(x) + residual) in one pass over memory, and its backward in
 * two (the reductions, then dx), for Batch Norm (every option of
 * nk_bn_forward_training_ex) and Group Norm. residual is optional (NULL: no
 * add) and has x's shape. act is one of NK_ACT_*; act_param is LeakyReLU's
 * slope or ELU's alpha (finite), unused otherwise. The activations are those
 * of nk_relu_forward .. nk_selu_forward, bit for bit.
 *
 * The pre-activation z = norm(x) + residual is never stored: backward
 * recomputes it from x (and residual) with the saved statistics, so the
 * fused forward normalizes with the float mean and invstd it saves (plain BN
 * also carries the mean's low-order part; the two differ by rounding only).
 * Backward takes the forward's x, residual, gamma, beta and saved
 * statistics, and gives dz = act'(z) * dy: dx = the norm's backward of dz,
 * dresidual = dz (optional; only with a residual; not dx's or x's buffer),
 * and dgamma, dbeta (optional). y may equal x or residual; dx and dresidual
 * may equal dy. */
#define NK_ACT_NONE 0       /* identity: norm (+ residual) alone */
#define NK_ACT_RELU 1       /* as nk_relu_forward */
#define NK_ACT_LEAKY_RELU 2 /* as nk_leaky_relu_forward, slope = act_param */
#define NK_ACT_ELU 3        /* as nk_elu_forward, alpha = act_param */
#define NK_ACT_SELU 4       /* as nk_selu_forward */

/* Batch Norm: training forward with its state, as nk_bn_forward_training_ex. */
NK_API nk_status nk_bn_act_forward_training(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                            int32_t act, float act_param, const void* x,
                                            const void* residual, void* y, const float* gamma,
                                            const float* beta, nk_bn_state* state);
/* Inference forward from the moving statistics, as nk_bn_forward_inference. */
NK_API nk_status nk_bn_act_forward_inference(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                             int32_t act, float act_param, const void* x,
                                             const void* residual, void* y, const float* gamma,
                                             const float* beta, const float* moving_mean,
                                             const float* moving_var);
/* Backward from the state the training forward filled (saved_mean and
 * saved_invstd required; saved_r, saved_d under renorm; the adjustment). */
NK_API nk_status nk_bn_act_backward(const nk_tensor_desc* desc, const nk_bn_options* opt,
                                    int32_t act, float act_param, const void* x,
                                    const void* residual, const void* dy, const float* gamma,
                                    const float* beta, const nk_bn_state* state, void* dx,
                                    void* dresidual, float* dgamma, float* dbeta);
/* Group Norm, as nk_groupnorm_forward and nk_groupnorm_backward. */
NK_API nk_status nk_groupnorm_act_forward(const nk_tensor_desc* desc, const nk_gn_options* opt,
                                          int32_t act, float act_param, const void* x,
                                          const void* residual, void* y, const float* gamma,
                                          const float* beta, float* saved_mean,
                                          float* saved_invstd);
NK_API nk_status nk_groupnorm_act_backward(const nk_tensor_desc* desc, const nk_gn_options* opt,
                                           int32_t act, float act_param, const void* x,
                                           const void* residual, const void* dy,
                                           const float* gamma, const float* beta,
                                           const float* saved_mean, const float* saved_invstd,
                                           void* dx, void* dresidual, float* dgamma,
                                           float* dbeta);

#ifdef __cplusplus
}
#endif

#endif /* NORMKIT_H */
