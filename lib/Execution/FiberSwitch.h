//===- FiberSwitch.h - Stack switching for the warp emulator ----*- C++ -*-===//
//
// The emulator runs each GPU thread as a fiber and switches fibers at every
// barrier and warp collective: millions of switches per test. glibc's
// swapcontext saves and restores the signal mask with a system call on each
// switch, which made it most of the emulator's run time; on x86-64 ELF the
// switch here saves only the registers the SysV ABI asks a callee to keep.
// Elsewhere, and under AddressSanitizer (which follows stack switches only
// through swapcontext), it is swapcontext.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_EXECUTION_FIBERSWITCH_H
#define ATTNC_LIB_EXECUTION_FIBERSWITCH_H

#include <cstddef>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTNC_FIBERS_USE_UCONTEXT 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || !defined(__x86_64__) || !defined(__ELF__)
#define ATTNC_FIBERS_USE_UCONTEXT 1
#endif

#ifdef ATTNC_FIBERS_USE_UCONTEXT
#include <ucontext.h>
#endif

namespace attnc {

/// A suspended fiber (or the scheduler that runs fibers).
struct FiberContext {
#ifdef ATTNC_FIBERS_USE_UCONTEXT
  ucontext_t context;
#else
  void *stackPointer = nullptr;
#endif
};

/// Makes `context` start `entry` on the stack [stack, stack + bytes) when
/// first switched to. `entry` must never return: it ends by switching away
/// for good.
void prepareFiber(FiberContext &context, char *stack, size_t bytes,
                  void (*entry)());

/// Suspends the running code into `from` and resumes `to`.
void switchFiber(FiberContext &from, FiberContext &to);

} // namespace attnc

#endif // ATTNC_LIB_EXECUTION_FIBERSWITCH_H
