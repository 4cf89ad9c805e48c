//===- Jit.cpp - JIT compilation of kernels for the CPU -------------------===//

#include "attnc/Execution/Jit.h"
#include "attnc/Runtime/HalfFloat.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/ExecutionEngine/Orc/Mangling.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Object/ObjectFile.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/Transforms/Utils/Cloning.h"

#include <cstdlib>
#include <cstring>

using namespace mlir;

// The half-precision conversion builtins LLVM's instruction selection calls
// on CPUs without native conversions (for example when it promotes bf16
// values carried through a phi to f32), with the signatures of compiler-rt's.
namespace {
template <typename To> To fromBits(uint16_t bits) {
  To value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
template <typename From> uint16_t toBits(From value) {
  uint16_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}
__bf16 truncSfBf(float x) {
  return fromBits<__bf16>(attnc::floatToBFloat16(x));
}
__bf16 truncDfBf(double x) {
  return fromBits<__bf16>(attnc::doubleToBFloat16(x));
}
_Float16 truncSfHf(float x) {
  return fromBits<_Float16>(attnc::floatToHalf(x));
}
_Float16 truncDfHf(double x) {
  return fromBits<_Float16>(attnc::doubleToHalf(x));
}
float extendBfSf(__bf16 x) { return attnc::bfloat16ToFloat(toBits(x)); }
float extendHfSf(_Float16 x) { return attnc::halfToFloat(toBits(x)); }
double extendHfDf(_Float16 x) { return attnc::halfToFloat(toBits(x)); }
// The older ARM names pass the half as the low 16 bits of an integer.
float gnuH2fIeee(uint16_t x) { return attnc::halfToFloat(x); }
uint16_t gnuF2hIeee(float x) { return attnc::floatToHalf(x); }

struct Builtin {
  const char *name;
  void *function;
};
const Builtin kConversionBuiltins[] = {
    {"__truncsfbf2", reinterpret_cast<void *>(&truncSfBf)},
    {"__truncdfbf2", reinterpret_cast<void *>(&truncDfBf)},
    {"__truncsfhf2", reinterpret_cast<void *>(&truncSfHf)},
    {"__truncdfhf2", reinterpret_cast<void *>(&truncDfHf)},
    {"__extendbfsf2", reinterpret_cast<void *>(&extendBfSf)},
    {"__extendhfsf2", reinterpret_cast<void *>(&extendHfSf)},
    {"__extendhfdf2", reinterpret_cast<void *>(&extendHfDf)},
    {"__gnu_h2f_ieee", reinterpret_cast<void *>(&gnuH2fIeee)},
    {"__gnu_f2h_ieee", reinterpret_cast<void *>(&gnuF2hIeee)},
};

bool isProvidedBuiltin(llvm::StringRef name) {
  return llvm::any_of(kConversionBuiltins, [&](const Builtin &builtin) {
    return name == builtin.name;
  });
}
} // namespace

std::vector<std::string>
attnc::runtimeBuiltinCalls(const llvm::Module &module,
                           llvm::TargetMachine &target) {
  std::unique_ptr<llvm::Module> clone = llvm::CloneModule(module);
  llvm::SmallVector<char, 0> object;
  llvm::raw_svector_ostream stream(object);
  llvm::legacy::PassManager codegen;
  if (target.addPassesToEmitFile(codegen, stream, nullptr,
                                 llvm::CodeGenFileType::ObjectFile))
    return {"<the target cannot emit object files>"};
  codegen.run(*clone);
  auto file = llvm::object::ObjectFile::createObjectFile(llvm::MemoryBufferRef(
      llvm::StringRef(object.data(), object.size()), module.getName()));
  if (!file) {
    llvm::consumeError(file.takeError());
    return {"<unreadable object file>"};
  }
  std::vector<std::string> builtins;
  for (const llvm::object::SymbolRef &symbol : (*file)->symbols()) {
    llvm::Expected<uint32_t> flags = symbol.getFlags();
    llvm::Expected<llvm::StringRef> name = symbol.getName();
    if (!flags || !name) {
      llvm::consumeError(flags.takeError());
      llvm::consumeError(name.takeError());
      continue;
    }
    if ((*flags & llvm::object::SymbolRef::SF_Undefined) &&
        name->starts_with("__") && !isProvidedBuiltin(*name))
      builtins.push_back(name->str());
  }
  return builtins;
}

static bool isKnownCpu(llvm::StringRef cpu) {
  std::string triple = llvm::sys::getProcessTriple(), message;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, message);
  if (!target)
    return false;
  std::unique_ptr<llvm::MCSubtargetInfo> subtarget(
      target->createMCSubtargetInfo(llvm::Triple(triple), "", ""));
  return subtarget && subtarget->isCPUStringValid(cpu);
}

/// The target machine for the host, or for the CPU ATTNC_JIT_CPU names with
/// that CPU's default features.
static llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createJitTargetMachine(const char *cpu) {
  if (!cpu) {
    auto host = llvm::orc::JITTargetMachineBuilder::detectHost();
    if (!host)
      return host.takeError();
    return host->createTargetMachine();
  }
  llvm::orc::JITTargetMachineBuilder builder{
      llvm::Triple(llvm::sys::getProcessTriple())};
  builder.setCPU(cpu);
  return builder.createTargetMachine();
}

std::unique_ptr<ExecutionEngine>
attnc::jitCompile(ModuleOp module, unsigned optLevel, std::string &error) {
  static bool targetsInitialized = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)targetsInitialized;
  registerBuiltinDialectTranslation(*module.getContext());
  registerLLVMDialectTranslation(*module.getContext());

  const char *cpu = std::getenv("ATTNC_JIT_CPU");
  if (cpu && !*cpu)
    cpu = nullptr;
  if (cpu && !isKnownCpu(cpu)) {
    error = std::string("ATTNC_JIT_CPU=") + cpu + " is not a CPU of " +
            llvm::sys::getProcessTriple() + " that LLVM knows";
    return nullptr;
  }
  auto target = createJitTargetMachine(cpu);
  if (!target) {
    error = "JIT compilation failed: no target machine: " +
            llvm::toString(target.takeError());
    return nullptr;
  }
  if (optLevel == 0)
    (*target)->setOptLevel(llvm::CodeGenOptLevel::None);
  std::unique_ptr<llvm::TargetMachine> checkTarget;
  if (cpu)
    checkTarget = cantFail(createJitTargetMachine(cpu));

  // The options hold a function_ref: the transformer must outlive create().
  std::function<llvm::Error(llvm::Module *)> optimize =
      makeOptimizingTransformer(optLevel, /*sizeLevel=*/0, nullptr);
  std::vector<std::string> builtins;
  std::function<llvm::Error(llvm::Module *)> transform =
      [&](llvm::Module *llvmModule) -> llvm::Error {
    if (llvm::Error failure = optimize(llvmModule))
      return failure;
    if (checkTarget)
      builtins = runtimeBuiltinCalls(*llvmModule, *checkTarget);
    return llvm::Error::success();
  };
  ExecutionEngineOptions options;
  options.transformer = transform;
  auto engine = ExecutionEngine::create(module, options, std::move(*target));
  if (!engine) {
    error = "JIT compilation failed: " + llvm::toString(engine.takeError());
    return nullptr;
  }
  (*engine)->registerSymbols([](llvm::orc::MangleAndInterner interner) {
    llvm::orc::SymbolMap symbols;
    for (const Builtin &builtin : kConversionBuiltins)
      symbols[interner(builtin.name)] = {
          llvm::orc::ExecutorAddr::fromPtr(builtin.function),
          llvm::JITSymbolFlags::Exported};
    return symbols;
  });
  if (!builtins.empty()) {
    error = std::string("JIT compilation for ATTNC_JIT_CPU=") + cpu +
            " failed: the code calls compiler-runtime builtins that the "
            "host's libgcc may lack:";
    for (const std::string &name : builtins)
      error += " " + name;
    return nullptr;
  }
  return std::move(*engine);
}
