// I-Regexp matching time against text length, for patterns that make backtracking engines exponential: the
// Thompson simulation must stay linear (time per byte flat as the text grows). Moved here from the unit
// tests, which assert results, never durations.
//
//   build/release/bench/bench_iregexp --benchmark_counters_tabular=true

#include <benchmark/benchmark.h>

#include <string>

#include "query/iregexp.hpp"

namespace {

using twinbridge::query::IRegexp;

void run(benchmark::State& state, const char* pattern, bool whole, bool expected) {
  const auto re = IRegexp::compile(pattern);
  if (!re) {
    state.SkipWithError("pattern does not compile");
    return;
  }
  const std::string text(static_cast<std::size_t>(state.range(0)), 'a');
  for (auto _ : state) {
    const bool matched = whole ? re->full_match(text) : re->search(text);
    if (matched != expected) state.SkipWithError("wrong answer");
    benchmark::DoNotOptimize(matched);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.SetComplexityN(state.range(0));
}

void NestedStarFullMatch(benchmark::State& state) {
  run(state, "(a*)*b", true, false);
}
void AlternationSearch(benchmark::State& state) {
  run(state, "(a|a)*b", false, false);
}
void OverlappingAlternativesFullMatch(benchmark::State& state) {
  run(state, "(a|aa)*", true, true);
}

BENCHMARK(NestedStarFullMatch)->RangeMultiplier(10)->Range(1000, 1'000'000)->Complexity(benchmark::oN);
BENCHMARK(AlternationSearch)->RangeMultiplier(10)->Range(1000, 1'000'000)->Complexity(benchmark::oN);
BENCHMARK(OverlappingAlternativesFullMatch)
    ->RangeMultiplier(10)
    ->Range(1000, 1'000'000)
    ->Complexity(benchmark::oN);

}  // namespace

BENCHMARK_MAIN();
