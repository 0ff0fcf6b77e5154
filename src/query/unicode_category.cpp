#include "query/unicode_category.hpp"

#include <algorithm>
#include <cstddef>

namespace twinbridge::query::unicode {

std::uint8_t category_of(char32_t c) {
  const auto runs = category_runs();
  // The last run whose first code point is <= c; the table starts at U+0000, so there always is one.
  const auto after = std::upper_bound(runs.begin(), runs.end(), c,
                                      [](char32_t cp, std::uint32_t run) { return cp < (run >> 5); });
  return static_cast<std::uint8_t>(*(after - 1) & 0x1F);
}

std::optional<std::uint32_t> category_mask(std::string_view name) {
  if (name.empty() || name.size() > 2) return std::nullopt;
  std::uint32_t mask = 0;
  for (std::size_t i = 0; i < kCategoryNames.size(); ++i) {
    const std::string_view candidate = kCategoryNames[i];
    if (name.size() == 1 ? candidate[0] == name[0] : candidate == name) mask |= 1U << i;
  }
  if (mask == 0) return std::nullopt;
  return mask;
}

}  // namespace twinbridge::query::unicode
