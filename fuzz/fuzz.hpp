#pragma once
// Shared by the fuzz targets of this folder. Each target defines the libFuzzer entry point
// LLVMFuzzerTestOneInput; the same source links either with libFuzzer (the fuzz preset) or with
// replay_main.cpp (every other build, where CTest replays the corpus and the crash regressions through it).
//
// A target fails by crashing: a sanitizer report, an uncaught exception, or TB_FUZZ_CHECK, which checks a
// property of the code under test in every build type (unlike assert, it is not compiled out by NDEBUG).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace twinbridge::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

[[noreturn]] inline void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
  std::abort();
}

}  // namespace twinbridge::fuzz

#define TB_FUZZ_CHECK(condition) \
  ((condition) ? static_cast<void>(0) : ::twinbridge::fuzz::check_failed(#condition, __FILE__, __LINE__))
