// RUN: attnc-opt %s -split-input-file -attnc-guard-emulated-accesses -verify-diagnostics | FileCheck %s

// Each load and store is preceded by an unsigned comparison of every index
// with its dim and a call of the emulator's hook, told whether one is
// outside (no branch); the
// function lists what each site touches: a shared tile (a view of an
// argument at a byte offset), a tensor argument through a cast, a local
// buffer.

// CHECK-LABEL: func.func private @attnc_emu_check_access(i32, i32, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64)
// CHECK-LABEL: func.func @kernel(
// CHECK-SAME:  attnc.access_sites = [{argument = 1 : i64, byte = 256 : i64, op = "memref.load", type = memref<4x8xbf16>},
// CHECK-SAME:  {argument = 0 : i64, op = "memref.store", type = memref<?x?xbf16>},
// CHECK-SAME:  {local, op = "memref.atomic_rmw", type = memref<2xi32>}]
// CHECK:       %[[C4:.*]] = arith.constant 4 : index
// CHECK:       %[[R:.*]] = arith.cmpi uge, %[[ROW:.*]], %[[C4]] : index
// CHECK:       %[[C8:.*]] = arith.constant 8 : index
// CHECK:       %[[C:.*]] = arith.cmpi uge, %[[COL:.*]], %[[C8]] : index
// CHECK:       %[[OUT:.*]] = arith.ori %[[R]], %[[C]] : i1
// CHECK-NOT:   scf.if
// CHECK:       %[[FLAG:.*]] = arith.extui %[[OUT]] : i1 to i32
// CHECK:       %[[SITE:.*]] = arith.constant 0 : i32
// CHECK:       %[[ZERO:.*]] = arith.constant 0 : i64
// CHECK:       %[[ROW64:.*]] = arith.index_cast %[[ROW]] : index to i64
// CHECK:       %[[COL64:.*]] = arith.index_cast %[[COL]] : index to i64
// CHECK:       %[[SIZE0:.*]] = arith.index_cast %[[C4]] : index to i64
// CHECK:       %[[SIZE1:.*]] = arith.index_cast %[[C8]] : index to i64
// CHECK:       call @attnc_emu_check_access(%[[FLAG]], %[[SITE]], %[[ROW64]], %[[COL64]], %[[ZERO]], %[[ZERO]], %[[ZERO]], %[[ZERO]], %[[ZERO]], %[[ZERO]], %[[SIZE0]], %[[SIZE1]], %[[ZERO]],
// CHECK:       %[[V:.*]] = memref.load %{{.*}}[%[[ROW]], %[[COL]]] : memref<4x8xbf16>
// CHECK:       %[[CAST:.*]] = memref.cast
// CHECK:       %[[DIM0:.*]] = memref.dim %{{.*}}, %{{.*}} : memref<?x?xbf16, strided<[?, 1], offset: ?>>
// CHECK:       arith.cmpi uge, %[[ROW]], %[[DIM0]] : index
// CHECK:       arith.constant 1 : i32
// CHECK:       call @attnc_emu_check_access(
// CHECK:       memref.store %[[V]], %[[CAST]][%[[ROW]], %[[COL]]]
// CHECK:       arith.constant 2 : i32
// CHECK:       call @attnc_emu_check_access(
// CHECK:       memref.atomic_rmw addi
func.func @kernel(%out: memref<?x?xbf16, strided<[?, 1], offset: ?>>,
                  %shared: memref<?xi8>, %row: index, %col: index) {
  %c256 = arith.constant 256 : index
  %tile = memref.view %shared[%c256][] : memref<?xi8> to memref<4x8xbf16>
  %v = memref.load %tile[%row, %col] : memref<4x8xbf16>
  %cast = memref.cast %out : memref<?x?xbf16, strided<[?, 1], offset: ?>> to memref<?x?xbf16>
  memref.store %v, %cast[%row, %col] : memref<?x?xbf16>
  %counts = memref.alloca() : memref<2xi32>
  %one = arith.constant 1 : i32
  %old = memref.atomic_rmw addi %one, %counts[%row] : (i32, memref<2xi32>) -> i32
  return
}

// -----

// A rank-0 access has no index to check: no site, no hook.

// CHECK-LABEL: func.func @scalar(
// CHECK-SAME:  attnc.access_sites = []
// CHECK-NOT:   func.call
// CHECK:       memref.load
func.func @scalar(%x: memref<f32>) -> f32 {
  %v = memref.load %x[] : memref<f32>
  return %v : f32
}

// -----

func.func @too_deep(%x: memref<1x1x1x1x1x1x1x1x1xf32>, %i: index) -> f32 {
  // expected-error @+1 {{cannot guard an access of rank 9 (at most 8)}}
  %v = memref.load %x[%i, %i, %i, %i, %i, %i, %i, %i, %i] : memref<1x1x1x1x1x1x1x1x1xf32>
  return %v : f32
}
