/* Compiles a causal GQA attention spec through the attnc C API, prints its
 * signature, runs it on the CPU and checks that every output row is a convex
 * combination of value rows; then shows the structured diagnostics of a spec
 * with an error. Exits non-zero on any failure. */

#include "attnc-c/attnc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kSpec =
    "kernel causal(q: f32[B, Hq, N, 8], k: f32[B, Hk, N, 8], v: f32[B, Hk, N, 8])\n"
    "    -> (o: f32[B, Hq, N, 8], lse: f32[B, Hq, N]) {\n"
    "  o, lse = softmax(q, k, v) { mask = causal }\n"
    "}\n";

static const char *kBadSpec =
    "kernel bad(q: f32[B, H, N, 8], k: f32[B, H, N, 8], v: f32[B, H, N, 8])\n"
    "    -> (o: f32[B, H, N, 8]) {\n"
    "  o = softmax(q, k, v) { score = s * slope[h] }\n"
    "}\n";

static const char *dtypeName(attnc_dtype dtype) {
  static const char *names[] = {"f32", "f16", "bf16", "i32", "i8", "bool"};
  return names[dtype];
}

int main(void) {
  attnc_context *context = attnc_context_create();
  attnc_kernel *kernel = NULL;
  if (attnc_compile(context, kSpec, strlen(kSpec), "causal.attn", NULL, "cpu",
                    &kernel) != ATTNC_OK) {
    fprintf(stderr, "compile failed: %s\n", attnc_last_error(context));
    return 1;
  }
  printf("kernel %s\n", attnc_kernel_name(kernel));
  for (size_t index = 0; index < attnc_kernel_num_params(kernel); ++index) {
    attnc_tensor_info info;
    attnc_kernel_param(kernel, index, &info);
    printf("  param  %s: %s rank %d\n", info.name, dtypeName(info.dtype),
           info.rank);
  }

  enum { B = 1, HQ = 4, HK = 2, N = 10, D = 8 };
  static float q[B * HQ * N * D], k[B * HK * N * D], v[B * HK * N * D];
  static float o[B * HQ * N * D], lse[B * HQ * N];
  srand(7);
  for (int i = 0; i < B * HQ * N * D; ++i)
    q[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
  for (int i = 0; i < B * HK * N * D; ++i) {
    k[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
    v[i] = (float)((double)rand() / RAND_MAX);
  }
  const int64_t qShape[] = {B, HQ, N, D}, kvShape[] = {B, HK, N, D},
                lseShape[] = {B, HQ, N};
  attnc_tensor inputs[] = {{q, ATTNC_F32, 4, qShape, NULL},
                           {k, ATTNC_F32, 4, kvShape, NULL},
                           {v, ATTNC_F32, 4, kvShape, NULL}};
  attnc_tensor outputs[] = {{o, ATTNC_F32, 4, qShape, NULL},
                            {lse, ATTNC_F32, 3, lseShape, NULL}};
  int64_t shape[4];
  if (attnc_kernel_output_shape(kernel, inputs, 0, shape) != ATTNC_OK ||
      shape[0] != B || shape[1] != HQ || shape[2] != N || shape[3] != D) {
    fprintf(stderr, "unexpected output shape: %s\n", attnc_last_error(context));
    return 1;
  }
  if (attnc_launch(kernel, inputs, outputs, NULL) != ATTNC_OK) {
    fprintf(stderr, "launch failed: %s\n", attnc_last_error(context));
    return 1;
  }
  /* v is in [0, 1], so every output lies in [0, 1]; row 0 sees only key 0. */
  for (int i = 0; i < B * HQ * N * D; ++i)
    if (!(o[i] >= 0.0f && o[i] <= 1.0f)) {
      fprintf(stderr, "output %d = %f is not a convex combination\n", i, o[i]);
      return 1;
    }
  for (int d = 0; d < D; ++d)
    if (fabsf(o[d] - v[d]) > 1e-6f) {
      fprintf(stderr, "row 0 must equal v[0]\n");
      return 1;
    }
  printf("ran: o[0][0][%d][0] = %.6f, lse = %.6f\n", N - 1,
         o[(N - 1) * D], lse[N - 1]);

  /* A shape mismatch is refused with a message naming the tensor. */
  const int64_t badShape[] = {B, HK, N + 1, D};
  inputs[1].shape = badShape;
  if (attnc_launch(kernel, inputs, outputs, NULL) != ATTNC_ERROR_LAUNCH) {
    fprintf(stderr, "a bad shape was accepted\n");
    return 1;
  }
  printf("bad shape: %s\n", attnc_last_error(context));
  attnc_kernel_destroy(kernel);

  /* Spec errors come back as structured diagnostics. */
  if (attnc_compile(context, kBadSpec, strlen(kBadSpec), "bad.attn", NULL,
                    "cpu", &kernel) != ATTNC_ERROR_SPEC) {
    fprintf(stderr, "a bad spec compiled\n");
    return 1;
  }
  for (size_t index = 0; index < attnc_diagnostic_count(context); ++index) {
    const attnc_diagnostic *diag = attnc_diagnostic_get(context, index);
    printf("diagnostic %s:%u:%u: %s (hint: %s)\n", diag->file, diag->line,
           diag->col, diag->message, diag->hint);
  }
  attnc_context_destroy(context);
  return 0;
}
