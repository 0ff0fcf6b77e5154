#pragma once
// Unicode General_Category data for the \p{..} escapes of I-Regexp (RFC 9485). The table itself is generated
// (unicode_category_table.cpp, by gen_unicode_category_table.py); this header gives its numbering and
// lookups. Everything here is immutable and safe to use from any thread.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace twinbridge::query::unicode {

// The two-letter General_Category values, in the numbering the table uses.
inline constexpr std::array<std::string_view, 30> kCategoryNames = {
    "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
    "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn",
};

inline constexpr char32_t kMaxCodePoint = 0x10FFFF;

// Sorted runs covering U+0000..U+10FFFF: entry = (first code point << 5) | index into kCategoryNames.
std::span<const std::uint32_t> category_runs();

// The Unicode version the table was generated from, e.g. "14.0.0".
std::string_view table_version();

// The index into kCategoryNames of the General_Category of `c` (c <= kMaxCodePoint).
std::uint8_t category_of(char32_t c);

// The set of categories a one- or two-letter name denotes, as a bit mask over kCategoryNames: "Lu" is one
// category, "L" all five letter categories. Nothing for a name that is no category.
std::optional<std::uint32_t> category_mask(std::string_view name);

}  // namespace twinbridge::query::unicode
