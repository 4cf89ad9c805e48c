// RUN: attnc-opt %s -split-input-file -attnc-nvgpu-to-emulator -verify-diagnostics | FileCheck %s

// A kernel becomes a host function whose last argument is the CTA's shared
// memory; its GPU operations become calls of the emulator's runtime or
// loads and stores, and its launch facts stay.

// CHECK-LABEL: module {
// CHECK-DAG:   func.func private @attnc_emu_thread_id() -> i64
// CHECK-DAG:   func.func private @attnc_emu_mma(i32, i32, i32, i32, i32, i32, f32, f32, f32, f32, i32, i32) -> f32
// CHECK-NOT:   func.func private @attnc_emu_wgmma
// CHECK:       func.func @k(%[[SRC:.*]]: memref<?x64xbf16>, %[[COUNT:.*]]: index, %[[FLAG:.*]]: !llvm.ptr, %[[SHARED:.*]]: memref<?xi8>)
// CHECK-SAME:    attn.launch = #attn.launch<threads = 32, sharedBytes = 4096
// CHECK-SAME:    llvm.emit_c_interface
// CHECK:         %[[TID:.*]] = call @attnc_emu_thread_id() : () -> i64
// CHECK:         %[[AXIS1:.*]] = arith.constant 1 : i64
// CHECK:         call @attnc_emu_block_id(%[[AXIS1]])
// CHECK:         %[[AXIS2:.*]] = arith.constant 2 : i64
// CHECK:         call @attnc_emu_grid_dim(%[[AXIS2]])
// CHECK:         %[[TILE:.*]] = memref.view %[[SHARED]][%{{.*}}][] : memref<?xi8> to memref<16x16xbf16>
// The copy: 8 elements, each loaded when below the source count, else 0.
// CHECK:         arith.cmpi ult, %{{.*}}, %[[COUNT]] : index
// CHECK-NEXT:    scf.if
// CHECK-NEXT:      memref.load %[[SRC]]
// CHECK:         } else {
// CHECK-NEXT:      arith.constant 0.000000e+00 : bf16
// CHECK:         memref.store %{{.*}}, %[[TILE]]
// CHECK-COUNT-7: memref.store %{{.*}}, %[[TILE]]
// CHECK-NOT:     nvgpu.device_async
// CHECK:         call @attnc_emu_barrier()
// ldmatrix.x2: the row's byte address in shared memory, then one call per
// register.
// CHECK:         %[[ADDRESS:.*]] = arith.index_cast %{{.*}} : index to i64
// CHECK:         call @attnc_emu_ldmatrix(%[[ADDRESS]], %{{.*}}, %{{.*}}, %{{.*}}) : (i64, i32, i32, i32) -> i32
// CHECK:         llvm.bitcast %{{.*}} : i32 to vector<2xbf16>
// CHECK:         call @attnc_emu_ldmatrix(%[[ADDRESS]],
// CHECK-COUNT-4: call @attnc_emu_mma(
// CHECK:         call @attnc_emu_shfl_xor(
// An mbarrier is named by its byte in shared memory: the tile's view offset
// plus 8.
// CHECK:         llvm.ptrtoint %{{.*}} : !llvm.ptr<3> to i64
// CHECK:         call @attnc_emu_mbarrier_init(
// CHECK:         call @attnc_emu_mbarrier_arrive(
// CHECK:         call @attnc_emu_mbarrier_wait(
// An acquire load is a plain load whose flag must be set.
// CHECK:         %[[PUBLISHED:.*]] = llvm.load %[[FLAG]] {alignment = 4 : i64} : !llvm.ptr -> i32
// CHECK:         call @attnc_emu_expect_published(%[[PUBLISHED]])
// CHECK-NOT:     llvm.fence
// CHECK-NOT:     nvvm.
// CHECK-NOT:     gpu.
// CHECK:         return
module attributes {gpu.container_module} {
  gpu.module @attnc_kernels {
    gpu.func @k(%src: memref<?x64xbf16>, %count: index, %flag: !llvm.ptr) kernel attributes {attn.launch = #attn.launch<threads = 32, sharedBytes = 4096, grid = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], copiedParams = [], offsetParams = [], headDim = 1, sequenceResult = -1>} {
      %c0 = arith.constant 0 : index
      %c8 = arith.constant 8 : index
      %c256 = arith.constant 256 : index
      %tid = gpu.thread_id x
      %bid = gpu.block_id y
      %grid = gpu.grid_dim z
      %shared = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
      %tile = memref.view %shared[%c256][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<16x16xbf16, #gpu.address_space<workgroup>>
      %token = nvgpu.device_async_copy %src[%tid, %c0], %tile[%bid, %c8], 8, %count {bypassL1} : memref<?x64xbf16> to memref<16x16xbf16, #gpu.address_space<workgroup>>
      %group = nvgpu.device_async_create_group %token
      nvgpu.device_async_wait %group {numGroups = 0 : i32}
      gpu.barrier
      %m = nvgpu.ldmatrix %tile[%tid, %c0] {numTiles = 2 : i32, transpose = false} : memref<16x16xbf16, #gpu.address_space<workgroup>> -> vector<2x2xbf16>
      %r0 = vector.extract %m[0] : vector<2xbf16> from vector<2x2xbf16>
      %r1 = vector.extract %m[1] : vector<2xbf16> from vector<2x2xbf16>
      %a0 = llvm.bitcast %r0 : vector<2xbf16> to i32
      %a1 = llvm.bitcast %r1 : vector<2xbf16> to i32
      %f = arith.constant 1.0 : f32
      %d = nvvm.mma.sync A[%a0, %a1, %a0, %a1] B[%a0, %a1] C[%f, %f, %f, %f] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
      %c1_i32 = arith.constant 1 : i32
      %c32_i32 = arith.constant 32 : i32
      %s, %valid = gpu.shuffle xor %f, %c1_i32, %c32_i32 : f32
      %base = memref.extract_aligned_pointer_as_index %tile : memref<16x16xbf16, #gpu.address_space<workgroup>> -> index
      %barrier = arith.addi %base, %c8 : index
      %b64 = arith.index_cast %barrier : index to i64
      %p = llvm.inttoptr %b64 : i64 to !llvm.ptr<3>
      nvvm.mbarrier.init %p, %c32_i32 : !llvm.ptr<3>, i32
      %state = nvvm.mbarrier.arrive %p : !llvm.ptr<3> -> i64
      nvvm.mbarrier.try_wait.parity %p, %c1_i32, %c32_i32 : !llvm.ptr<3>, i32, i32
      llvm.fence syncscope("device") release
      nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
      %published = llvm.load %flag atomic syncscope("device") acquire {alignment = 4 : i64} : !llvm.ptr -> i32
      gpu.return
    }
  }
}

// -----

// CTAs are one-dimensional in the emulator.
module attributes {gpu.container_module} {
  gpu.module @attnc_kernels {
    gpu.func @two_d() kernel attributes {attn.launch = #attn.launch<threads = 32, sharedBytes = 4096, grid = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], copiedParams = [], offsetParams = [], headDim = 1, sequenceResult = -1>} {
      // expected-error @below {{failed to legalize operation 'gpu.thread_id'}}
      %tid = gpu.thread_id y
      gpu.return
    }
  }
}

// -----

// Inline PTX other than the wgmma attnc writes has no emulation.
module attributes {gpu.container_module} {
  gpu.module @attnc_kernels {
    gpu.func @asm() kernel attributes {attn.launch = #attn.launch<threads = 32, sharedBytes = 4096, grid = [array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>, array<i64: 0, 0, 0, 0>], copiedParams = [], offsetParams = [], headDim = 1, sequenceResult = -1>} {
      // expected-error @below {{failed to legalize operation 'llvm.inline_asm'}}
      %0 = llvm.inline_asm has_side_effects "mov.u32 $0, %laneid;", "=r" : () -> i32
      gpu.return
    }
  }
}

// -----

// A kernel without launch facts is not attnc's.
module attributes {gpu.container_module} {
  gpu.module @attnc_kernels {
    // expected-error @below {{carries no launch facts (attn.launch)}}
    gpu.func @bare() kernel {
      gpu.return
    }
  }
}
