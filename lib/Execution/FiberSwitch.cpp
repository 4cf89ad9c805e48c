//===- FiberSwitch.cpp - Stack switching for the warp emulator ------------===//

#include "FiberSwitch.h"

#include <cstdint>
#include <cstring>

using namespace attnc;

#ifdef ATTNC_FIBERS_USE_UCONTEXT

void attnc::prepareFiber(FiberContext &fiber, char *stack, size_t bytes,
                         void (*entry)()) {
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = stack;
  fiber.context.uc_stack.ss_size = bytes;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, entry, 0);
}

void attnc::switchFiber(FiberContext &from, FiberContext &to) {
  swapcontext(&from.context, &to.context);
}

#else

// attnc_fiber_switch(void **save, void *load): pushes the callee-saved
// registers and the SSE/x87 control words on the running stack, stores the
// stack pointer in *save, then pops the same from the stack at `load` and
// returns into the code that stored it.
extern "C" void attnc_fiber_switch(void **save, void *load);
asm(R"(
  .text
  .p2align 4
  .globl attnc_fiber_switch
  .hidden attnc_fiber_switch
  .type attnc_fiber_switch, @function
attnc_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size attnc_fiber_switch, .-attnc_fiber_switch
)");

void attnc::prepareFiber(FiberContext &fiber, char *stack, size_t bytes,
                         void (*entry)()) {
  // The frame attnc_fiber_switch pops, from the lowest address: the control
  // words, r15, r14, r13, r12, rbx, rbp, the return address (`entry`), and
  // a null return address for `entry` itself. The top is 16-byte aligned,
  // so `entry` starts with the stack as a call leaves it (rsp = 8 mod 16).
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15);
  auto *frame = reinterpret_cast<uint64_t *>(top) - 9;
  std::memset(frame, 0, 9 * sizeof(uint64_t));
  uint32_t mxcsr;
  uint16_t x87Control;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(x87Control));
  std::memcpy(frame, &mxcsr, sizeof(mxcsr));
  std::memcpy(reinterpret_cast<char *>(frame) + 4, &x87Control,
              sizeof(x87Control));
  frame[7] = reinterpret_cast<uint64_t>(entry);
  fiber.stackPointer = frame;
}

void attnc::switchFiber(FiberContext &from, FiberContext &to) {
  attnc_fiber_switch(&from.stackPointer, to.stackPointer);
}

#endif
