//===- PassOptions.h - Option checks of lowering passes ---------*- C++ -*-===//
//
// A base for passes whose options need checks beyond their parsing.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_KERNELLOWERING_PASSOPTIONS_H
#define ATTNC_CONVERSION_KERNELLOWERING_PASSOPTIONS_H

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Location.h"
#include "mlir/Pass/Pass.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"

#include <string>

namespace attnc::lowering {

/// A pass (`Derived`, generated base `Base`) whose option values
/// `Derived::optionProblem()` checks, returning what is wrong or "". Values
/// from a pipeline string are reported while it is parsed; values set in
/// C++ (create...(options)) when the pass runs, without a location, since
/// no op is at fault.
template <typename Derived, template <typename> class Base>
struct CheckedOptionsPass : public Base<Derived> {
  using Base<Derived>::Base;

  mlir::LogicalResult
  initializeOptions(llvm::StringRef options,
                    llvm::function_ref<mlir::LogicalResult(const llvm::Twine &)>
                        errorHandler) override {
    if (mlir::failed(Base<Derived>::initializeOptions(options, errorHandler)))
      return mlir::failure();
    std::string problem = static_cast<Derived *>(this)->optionProblem();
    return problem.empty() ? mlir::success() : errorHandler(problem);
  }

  /// Reports bad options and fails the pass; false when they are fine.
  bool failedOnBadOptions() {
    std::string problem = static_cast<Derived *>(this)->optionProblem();
    if (problem.empty())
      return false;
    mlir::emitError(mlir::UnknownLoc::get(&this->getContext())) << problem;
    this->signalPassFailure();
    return true;
  }
};

} // namespace attnc::lowering

#endif // ATTNC_CONVERSION_KERNELLOWERING_PASSOPTIONS_H
