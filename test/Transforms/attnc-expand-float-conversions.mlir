// RUN: attnc-opt %s -split-input-file -attnc-expand-float-conversions | FileCheck %s

// bf16 -> f32 keeps the exponent range: the bits move up by 16.
// CHECK-LABEL: func.func @extend_bf16
// CHECK-NOT:   arith.extf
// CHECK:       %[[BITS:.*]] = arith.bitcast %{{.*}} : bf16 to i16
// CHECK:       %[[WIDE:.*]] = arith.extui %[[BITS]] : i16 to i32
// CHECK:       arith.shli %{{.*}}, %c16_i32 : i32
// CHECK:       %[[R:.*]] = arith.bitcast %{{.*}} : i32 to f32
// CHECK:       return %[[R]]
func.func @extend_bf16(%x: bf16) -> f32 {
  %y = arith.extf %x : bf16 to f32
  return %y : f32
}

// -----

// f16 -> f32 rebiases (112 << 23) and normalises subnormals with ctlz.
// CHECK-LABEL: func.func @extend_f16
// CHECK-NOT:   arith.extf
// CHECK:       arith.constant 939524096 : i32
// CHECK:       math.ctlz
// CHECK:       arith.select
// CHECK:       arith.bitcast %{{.*}} : i32 to f32
func.func @extend_f16(%x: f16) -> f32 {
  %y = arith.extf %x : f16 to f32
  return %y : f32
}

// -----

// Truncation rounds to nearest even on the source's bits: no arith.truncf,
// no float op; vectors stay vectors.
// CHECK-LABEL: func.func @truncate
// CHECK-NOT:   arith.truncf
// CHECK:       arith.bitcast %{{.*}} : vector<8xf32> to vector<8xi32>
// CHECK:       arith.minui
// CHECK:       arith.trunci %{{.*}} : vector<8xi32> to vector<8xi16>
// CHECK:       arith.bitcast %{{.*}} : vector<8xi16> to vector<8xbf16>
// CHECK:       arith.bitcast %{{.*}} : f64 to i64
// CHECK:       arith.trunci %{{.*}} : i64 to i16
// CHECK:       arith.bitcast %{{.*}} : i16 to f16
// CHECK-NOT:   arith.truncf
func.func @truncate(%v: vector<8xf32>, %d: f64) -> (vector<8xbf16>, f16) {
  %a = arith.truncf %v : vector<8xf32> to vector<8xbf16>
  %b = arith.truncf %d : f64 to f16
  return %a, %b : vector<8xbf16>, f16
}

// -----

// Arithmetic on half-precision values runs in f32 between the conversions,
// which are then expanded; f32 <-> f64 conversions are left to LLVM.
// CHECK-LABEL: func.func @arithmetic
// CHECK-NOT:   arith.extf {{.*}} bf16
// CHECK:       %[[SUM:.*]] = arith.addf %{{.*}}, %{{.*}} : f32
// CHECK:       arith.bitcast %[[SUM]] : f32 to i32
// CHECK:       arith.extf %{{.*}} : f32 to f64
// CHECK-NOT:   arith.truncf {{.*}} to bf16
func.func @arithmetic(%x: bf16, %y: bf16, %z: f32) -> (bf16, f64) {
  %s = arith.addf %x, %y : bf16
  %w = arith.extf %z : f32 to f64
  return %s, %w : bf16, f64
}
