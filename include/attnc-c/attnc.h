/*===- attnc.h - The attnc C API ------------------------------------------===*\
|*                                                                            *|
|* Compile attention specs and run the kernels, from C. No C++ types cross     *|
|* this boundary; every object is opaque and owned by the caller, who frees   *|
|* it with the matching _destroy call. Functions that can fail return an      *|
|* attnc_status and leave a one-line message (attnc_last_error) and, for      *|
|* spec errors, structured diagnostics on the context.                        *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNC_C_ATTNC_H
#define ATTNC_C_ATTNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attnc_context attnc_context;
typedef struct attnc_kernel attnc_kernel;

typedef enum {
  ATTNC_OK = 0,
  ATTNC_ERROR_SPEC,     /* the spec does not parse or verify: see diagnostics */
  ATTNC_ERROR_TARGET,   /* unknown target or compilation for it failed */
  ATTNC_ERROR_ARGUMENT, /* a bad argument: index out of range, null pointer */
  ATTNC_ERROR_LAUNCH    /* shapes, dtypes or data rejected at launch */
} attnc_status;

typedef enum {
  ATTNC_F32 = 0,
  ATTNC_F16,
  ATTNC_BF16,
  ATTNC_I32,
  ATTNC_I8,
  ATTNC_BOOL
} attnc_dtype;

typedef enum { ATTNC_SEVERITY_ERROR = 0, ATTNC_SEVERITY_WARNING, ATTNC_SEVERITY_NOTE } attnc_severity;

typedef struct {
  attnc_severity severity;
  const char *file;    /* the source name given to attnc_compile */
  unsigned line, col;  /* 1-based; 0 when unknown */
  const char *message;
  const char *hint;    /* "" when there is none */
} attnc_diagnostic;

/* A tensor in caller memory: `rank` sizes and strides (in elements; NULL
 * strides mean contiguous row-major). For an omitted optional input pass
 * data = NULL. */
typedef struct {
  void *data;
  attnc_dtype dtype;
  int32_t rank;
  const int64_t *shape;
  const int64_t *strides;
} attnc_tensor;

attnc_context *attnc_context_create(void);
void attnc_context_destroy(attnc_context *context);

/* The message of the last failed call on this context or its kernels. */
const char *attnc_last_error(const attnc_context *context);
/* Diagnostics of the last attnc_compile call. */
size_t attnc_diagnostic_count(const attnc_context *context);
const attnc_diagnostic *attnc_diagnostic_get(const attnc_context *context,
                                             size_t index);

/* Compiles kernel `kernel_name` (NULL: the first) of the spec text for
 * `target`: "cpu" (the tiled path), "cpu-reference" (the oracle), "sm_80"
 * (Ampere and later), "sm_90a" (Hopper), "cuda" (the architecture of the
 * GPU present: sm_90a on Hopper, sm_80 otherwise; fails without a driver) or
 * "gpu-emulator" (the GPU kernel run by the CPU warp emulator on host
 * pointers: slow, for checking GPU logic without a GPU).
 * Compiling for a GPU needs no GPU. GPU kernels are cached on disk (see
 * attnc_context_set_cache_dir); a hit skips compilation. */
attnc_status attnc_compile(attnc_context *context, const char *spec,
                           size_t spec_length, const char *source_name,
                           const char *kernel_name, const char *target,
                           attnc_kernel **kernel);
/* attnc_compile with tuning `options` (NULL or "": the defaults), NAME=VALUE
 * pairs separated by spaces or commas. GPU targets and gpu-emulator take
 * warps=N (per CTA), block-k=N (keys per tile), rows-per-warp=16|32,
 * mma=sync|wgmma (wgmma: sm_90a softmax kernels), split-keys=N|auto
 * (softmax keys per CTA, combined across CTAs; auto: each launch chooses
 * the number of splits for the GPU), block-v=N and
 * segment-chunks=N (linear kernels) and the flags warp-specialize (with
 * mma=wgmma: a producer warpgroup), pack-gqa (the query heads of a GQA
 * group share a CTA's rows) and from-tile-program; "cpu"
 * takes block-q=N and block-k=N; "cpu-reference" takes none. A bad option
 * fails with ATTNC_ERROR_ARGUMENT; one a kernel cannot use (block-k=20) with
 * ATTNC_ERROR_TARGET, naming it.
 * Options are part of the cache key. */
attnc_status attnc_compile_with_options(attnc_context *context,
                                        const char *spec, size_t spec_length,
                                        const char *source_name,
                                        const char *kernel_name,
                                        const char *target, const char *options,
                                        attnc_kernel **kernel);

/* Which kernel attnc_compile_part makes of the spec's kernel (see
 * docs/semantics.md section 8). */
typedef enum {
  ATTNC_PART_FORWARD = 0, /* the kernel as written (attnc_compile's) */
  /* The forward that training runs: a softmax kernel that does not return
   * its log-sum-exp also returns it, as a last result named "lse", and a
   * top-k kernel its selection, as a last result "topk_blocks" (what the
   * backward takes); any other kernel is the forward. */
  ATTNC_PART_TRAINING_FORWARD,
  /* The backward, named <kernel>_backward. Its parameters are the
   * forward's, then o (the forward's output), lse (softmax normalizer),
   * topk_blocks (top-k), d_<o> and, when the forward returns lse, d_<lse>;
   * its results are
   * d_q, d_k, d_v and d_<x> for every float tensor x the score expression
   * reads, in the order of the forward's parameters, each with its
   * input's shape. Softmax-family specs compile for "cpu" (the tiled
   * backward), "cpu-reference" and the GPU targets (the GPU kernel sums
   * the d_<x> of float inputs from a copy per CTA in its workspace:
   * attnc_kernel_workspace_bytes). A linear spec's backward takes the forward's
   * parameters, then d_<o> and d_<final state>, and returns d_q, d_k, d_v,
   * d_<initial state> and d_<x> for each float tensor the gate reads; it
   * compiles for "cpu-reference" and, when the gate is not per key
   * dimension, for "cpu" (the chunkwise backward). Others fail with
   * ATTNC_ERROR_TARGET. A score the compiler cannot differentiate fails
   * with ATTNC_ERROR_TARGET naming the operation and its line:col. */
  ATTNC_PART_BACKWARD
} attnc_kernel_part;

/* attnc_compile_with_options for one part of the kernel. */
attnc_status attnc_compile_part(attnc_context *context, const char *spec,
                                size_t spec_length, const char *source_name,
                                const char *kernel_name, const char *target,
                                const char *options, attnc_kernel_part part,
                                attnc_kernel **kernel);
void attnc_kernel_destroy(attnc_kernel *kernel);

/* The signature: parameters (inputs) and results (outputs). */
const char *attnc_kernel_name(const attnc_kernel *kernel);
size_t attnc_kernel_num_params(const attnc_kernel *kernel);
size_t attnc_kernel_num_results(const attnc_kernel *kernel);

typedef struct {
  const char *name;
  attnc_dtype dtype;
  int32_t rank;
  int optional; /* inputs only */
} attnc_tensor_info;

attnc_status attnc_kernel_param(const attnc_kernel *kernel, size_t index,
                                attnc_tensor_info *info);
attnc_status attnc_kernel_result(const attnc_kernel *kernel, size_t index,
                                 attnc_tensor_info *info);
/* Dimension `dim` of parameter (is_result = 0) or result `index`: its symbol,
 * or NULL when the size is fixed, in which case *size is set. */
const char *attnc_kernel_dim(const attnc_kernel *kernel, int is_result,
                             size_t index, int32_t dim, int64_t *size);

/* Shape of result `index` for these inputs (one per parameter); `shape` has
 * room for the result's rank. */
attnc_status attnc_kernel_output_shape(attnc_kernel *kernel,
                                       const attnc_tensor *inputs,
                                       size_t index, int64_t *shape);
/* The same from the inputs' dtypes, ranks and shapes alone, for tracers that
 * have no data (torch.compile's fake tensors): data pointers only tell a
 * present input (non-NULL) from an omitted one and are never read, so
 * checks of values (cu_seqlens contents, GPU alignment) wait for the
 * launch. */
attnc_status attnc_kernel_infer_output_shape(attnc_kernel *kernel,
                                             const attnc_tensor *inputs,
                                             size_t index, int64_t *shape);

/* Runs the kernel on one attnc_tensor per parameter and per result. For the
 * CPU, host pointers and `stream` NULL; the call returns when done. For GPU
 * targets, device pointers and a CUstream (NULL: the default stream); the
 * kernel is enqueued (the CUDA driver is loaded on first use) and the call
 * returns; attnc_synchronize waits and reports bad input found on the
 * device. q, k and v must be contiguous in their last dim with 16-byte
 * aligned rows on the GPU. */
attnc_status attnc_launch(attnc_kernel *kernel, const attnc_tensor *inputs,
                          const attnc_tensor *outputs, void *stream);

/* Waits for `stream` and reports the first thing that the GPU launches on
 * `stream` since its last synchronize found wrong in their inputs (an index
 * read out of bounds, bad cu_seqlens); the report is then cleared. Launches
 * on other streams do not affect it. A no-op for the CPU. */
attnc_status attnc_synchronize(attnc_kernel *kernel, void *stream);

/* CPU kernels: the host threads that share the (batch, head) grid of later
 * launches; 0 restores the default ($ATTNC_NUM_THREADS, else one per
 * hardware thread). ATTNC_ERROR_ARGUMENT for GPU targets or a negative
 * count. */
attnc_status attnc_kernel_set_cpu_threads(attnc_kernel *kernel, int threads);
/* CPU kernels: the host threads of a launch; 0 for GPU targets. */
int attnc_kernel_cpu_threads(const attnc_kernel *kernel);

/* The target the kernel was compiled for ("cpu", "sm_90a", ...). */
const char *attnc_kernel_target(const attnc_kernel *kernel);
/* 1 when attnc_compile found the GPU kernel in the disk cache. */
int attnc_kernel_from_cache(const attnc_kernel *kernel);
/* GPU kernels: the PTX (NUL-terminated, `size` bytes); NULL for the CPU. */
const char *attnc_kernel_image(const attnc_kernel *kernel, size_t *size);
/* GPU kernels: the whole image, launch facts and PTX (what `attnc compile
 * --emit=image` writes), for attnc_kernel_load elsewhere; NULL for the CPU
 * and the emulator. The bytes stay valid until the next call or the kernel's
 * destruction. */
const char *attnc_kernel_serialize(attnc_kernel *kernel, size_t *size);
/* A GPU kernel from image bytes (attnc_kernel_serialize, `attnc compile
 * --emit=image`). Needs no compiler: it is how the runtime-only libattnc
 * (built with ATTNC_RUNTIME_ONLY, no LLVM or MLIR) gets kernels. Truncated
 * or corrupted images are refused with ATTNC_ERROR_ARGUMENT. */
attnc_status attnc_kernel_load(attnc_context *context, const void *image,
                               size_t size, attnc_kernel **kernel);
/* 1 when this libattnc compiles (the full build); 0 for the runtime-only
 * build, whose attnc_compile fails with ATTNC_ERROR_TARGET. */
int attnc_has_compiler(void);
/* GPU kernels: the launch grid, CTA size and dynamic shared memory for
 * these inputs (shapes only are read, and checked against the signature).
 * A split-keys=auto kernel's grid also depends on the GPU: this loads it
 * onto the device (ATTNC_ERROR_LAUNCH without one); the emulator's stands
 * for an H100. */
attnc_status attnc_kernel_launch_config(attnc_kernel *kernel,
                                        const attnc_tensor *inputs,
                                        int64_t grid[3], int64_t block[3],
                                        int64_t *shared_bytes);
/* The device memory a launch on these inputs (shapes only are read, and
 * checked against the signature) allocates for itself in stream order
 * (cuMemAllocAsync) and frees once the kernel is done: the workspace through which CTAs that split a sequence
 * (causal linear segments) or its keys (split-keys) hand on partial
 * results; 0 for other kernels and for CPU kernels. Besides it, each
 * stream's first launch allocates 64 bytes of status words that the kernel
 * keeps. Like the grid, a split-keys=auto kernel's workspace depends on the
 * GPU (see attnc_kernel_launch_config). */
attnc_status attnc_kernel_workspace_bytes(attnc_kernel *kernel,
                                          const attnc_tensor *inputs,
                                          int64_t *bytes);

/* The disk cache of GPU kernels: `directory`, or NULL/"" to disable it. The
 * default is $ATTNC_CACHE_DIR, else $XDG_CACHE_HOME/attnc, else
 * ~/.cache/attnc. */
attnc_status attnc_context_set_cache_dir(attnc_context *context,
                                         const char *directory);
const char *attnc_context_cache_dir(const attnc_context *context);

#ifdef __cplusplus
}
#endif

#endif /* ATTNC_C_ATTNC_H */
