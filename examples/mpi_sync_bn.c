/* Sync Batch Norm across MPI processes with normkit's split statistics.
 *
 * Each rank holds an unequal share of one batch (rank r: r + 2 samples).
 * Forward: partial statistics of the local share -> MPI_Allgather ->
 * nk_bn_merge_stats -> nk_bn_finalize_stats (invstd; every rank updates its
 * moving statistics alike) -> nk_bn_apply_mean64 on the local share.
 * Backward: nk_bn_backward_reduce_mean64 -> MPI_Allreduce of (sum dy,
 * sum dy*xhat), which are also dbeta and dgamma -> nk_bn_backward_apply_mean64.
 * The *_mean64 forms take the merged mean as the double it is, so data whose
 * mean is large against its spread normalize as exactly as in one process.
 * Rank 0 then runs single-process Batch Norm over the whole batch and checks
 * that outputs, moving statistics and gradients agree to float32 rounding;
 * the exit status says whether they do. NCHW and NHWC are both run.
 *
 *   mpicc -std=c99 -Iinclude examples/mpi_sync_bn.c -Lbuild -lnormkit -o mpi_sync_bn
 *   mpirun -np 3 ./mpi_sync_bn
 */
#include <math.h>
#include <mpi.h>
#include <normkit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C 5
#define H 3
#define W 4

#define CHECK_NK(call)                                                                \
  do {                                                                                \
    nk_status s_ = (call);                                                            \
    if (s_ != NK_OK) {                                                                \
      fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,              \
              nk_status_string(s_), nk_last_error());                                 \
      MPI_Abort(MPI_COMM_WORLD, 2);                                                   \
    }                                                                                 \
  } while (0)

/* The same pseudo-random batch on every rank (a 64-bit LCG, Box-Muller). */
static void fill_normal(float* v, int64_t n, uint64_t seed, double mean, double sd) {
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (int64_t i = 0; i < n; ++i) {
    double u[2];
    for (int k = 0; k < 2; ++k) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      u[k] = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
    }
    v[i] = (float)(mean + sd * sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
  }
}

/* max |got - want| / max(|want|, 1) */
static double rel_err(const float* got, const float* want, int64_t n) {
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = fabs((double)got[i] - (double)want[i]);
    if (d != d) return INFINITY;
    double r = d / fmax(fabs((double)want[i]), 1.0);
    if (r > e) e = r;
  }
  return e;
}

static nk_tensor_desc desc_of(int64_t n, int nhwc) {
  nk_tensor_desc d;
  int64_t dims[4] = {n, C, H, W};
  if (nhwc) dims[1] = H, dims[2] = W, dims[3] = C;
  nk_tensor_desc_init(&d, 4, dims, nhwc ? -1 : 1);
  return d;
}

static int check(const char* what, double err, double tol, int nhwc) {
  int ok = err <= tol;
  printf("  %s %-14s rel. error %.3g (tolerance %.0e) %s\n", nhwc ? "NHWC" : "NCHW", what, err, tol,
         ok ? "ok" : "FAILED");
  return ok;
}

static int run(int rank, int size, int nhwc) {
  const int64_t per = (int64_t)C * H * W;
  int64_t N = 0, first = 0;
  for (int r = 0; r < size; ++r) {
    if (r == rank) first = N;
    N += r + 2;
  }
  const int64_t n = rank + 2; /* this rank's share */
  float* x = malloc(sizeof(float) * N * per);
  float* dy = malloc(sizeof(float) * N * per);
  float gamma[C], beta[C];
  fill_normal(x, N * per, 1, 3.0, 2.0);
  fill_normal(dy, N * per, 2, 0.0, 1.0);
  fill_normal(gamma, C, 3, 1.0, 0.5);
  fill_normal(beta, C, 4, 0.0, 0.5);
  const float* lx = x + first * per; /* the local share: samples first .. first+n-1 */
  const float* ldy = dy + first * per;

  nk_bn_options opt;
  nk_bn_options_init(&opt); /* PyTorch's conventions, as SyncBatchNorm */
  opt.epsilon = 1e-5f;
  opt.momentum = 0.1f;
  opt.momentum_convention = NK_MOMENTUM_TORCH;
  opt.moving_variance = NK_VARIANCE_UNBIASED;

  /* ---- forward ---- */
  nk_tensor_desc ld = desc_of(n, nhwc);
  int64_t count;
  double mean[C], m2[C];
  CHECK_NK(nk_bn_partial_stats(&ld, lx, &count, mean, m2));
  int64_t* counts = malloc(sizeof(int64_t) * size);
  double* means = malloc(sizeof(double) * size * C);
  double* m2s = malloc(sizeof(double) * size * C);
  MPI_Allgather(&count, 1, MPI_INT64_T, counts, 1, MPI_INT64_T, MPI_COMM_WORLD);
  MPI_Allgather(mean, C, MPI_DOUBLE, means, C, MPI_DOUBLE, MPI_COMM_WORLD);
  MPI_Allgather(m2, C, MPI_DOUBLE, m2s, C, MPI_DOUBLE, MPI_COMM_WORLD);
  int64_t total;
  double gmean[C], gm2[C];
  CHECK_NK(nk_bn_merge_stats(C, size, counts, means, m2s, &total, gmean, gm2));
  float fmean[C], finvstd[C], mm[C], mv[C];
  for (int c = 0; c < C; ++c) mm[c] = 0.0f, mv[c] = 1.0f;
  CHECK_NK(nk_bn_finalize_stats(C, &opt, total, gmean, gm2, fmean, finvstd, mm, mv));
  float* ly = malloc(sizeof(float) * n * per);
  CHECK_NK(nk_bn_apply_mean64(&ld, lx, ly, gamma, beta, gmean, finvstd));

  /* ---- backward ---- */
  double sums[2 * C]; /* sum dy, then sum dy*xhat: one all-reduce */
  CHECK_NK(nk_bn_backward_reduce_mean64(&ld, lx, ldy, gmean, finvstd, sums, sums + C));
  MPI_Allreduce(MPI_IN_PLACE, sums, 2 * C, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  float* ldx = malloc(sizeof(float) * n * per);
  CHECK_NK(nk_bn_backward_apply_mean64(&ld, total, lx, ldy, gamma, gmean, finvstd, sums, sums + C, ldx));
  float dgamma[C], dbeta[C];
  for (int c = 0; c < C; ++c) dbeta[c] = (float)sums[c], dgamma[c] = (float)sums[C + c];

  /* ---- gather to rank 0 and compare with single-process Batch Norm ---- */
  int* rc = malloc(sizeof(int) * size);
  int* displ = malloc(sizeof(int) * size);
  for (int r = 0, off = 0; r < size; ++r) rc[r] = (r + 2) * (int)per, displ[r] = off, off += rc[r];
  float* y = malloc(sizeof(float) * N * per);
  float* dx = malloc(sizeof(float) * N * per);
  float* all_mm = malloc(sizeof(float) * size * 2 * C);
  float mine[2 * C];
  memcpy(mine, mm, sizeof mm);
  memcpy(mine + C, mv, sizeof mv);
  MPI_Gatherv(ly, (int)(n * per), MPI_FLOAT, y, rc, displ, MPI_FLOAT, 0, MPI_COMM_WORLD);
  MPI_Gatherv(ldx, (int)(n * per), MPI_FLOAT, dx, rc, displ, MPI_FLOAT, 0, MPI_COMM_WORLD);
  MPI_Gather(mine, 2 * C, MPI_FLOAT, all_mm, 2 * C, MPI_FLOAT, 0, MPI_COMM_WORLD);

  int ok = 1;
  if (rank == 0) {
    nk_tensor_desc wd = desc_of(N, nhwc);
    float* ry = malloc(sizeof(float) * N * per);
    float* rdx = malloc(sizeof(float) * N * per);
    float sm[C], si[C], rmm[C], rmv[C], rdg[C], rdb[C];
    for (int c = 0; c < C; ++c) rmm[c] = 0.0f, rmv[c] = 1.0f;
    CHECK_NK(nk_bn_forward_training(&wd, &opt, x, ry, gamma, beta, sm, si, rmm, rmv));
    CHECK_NK(nk_bn_backward(&wd, &opt, x, dy, gamma, sm, si, rdx, rdg, rdb));
    printf("%d ranks, shares", size);
    for (int r = 0; r < size; ++r) printf(" %d", r + 2);
    printf(" of %lld samples\n", (long long)N);
    ok &= check("y", rel_err(y, ry, N * per), 1e-5, nhwc);
    ok &= check("mean", rel_err(fmean, sm, C), 1e-6, nhwc);
    ok &= check("invstd", rel_err(finvstd, si, C), 1e-6, nhwc);
    ok &= check("moving_mean", rel_err(mm, rmm, C), 1e-6, nhwc);
    ok &= check("moving_var", rel_err(mv, rmv, C), 1e-6, nhwc);
    int same = 1;
    for (int r = 1; r < size; ++r) same &= memcmp(all_mm, all_mm + r * 2 * C, sizeof mine) == 0;
    ok &= check("moving, ranks", same ? 0.0 : INFINITY, 0.0, nhwc);
    ok &= check("dx", rel_err(dx, rdx, N * per), 1e-5, nhwc);
    ok &= check("dgamma", rel_err(dgamma, rdg, C), 1e-5, nhwc);
    ok &= check("dbeta", rel_err(dbeta, rdb, C), 1e-5, nhwc);
    free(ry);
    free(rdx);
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  free(x), free(dy), free(counts), free(means), free(m2s), free(ly), free(ldx), free(rc), free(displ);
  free(y), free(dx), free(all_mm);
  return ok;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  nk_set_num_threads(1); /* ranks share the cores */
  int ok = run(rank, size, 0);
  ok &= run(rank, size, 1);
  if (rank == 0) printf("%s\n", ok ? "sync BN equals single-process BN" : "MISMATCH");
  MPI_Finalize();
  return ok ? 0 : 1;
}
