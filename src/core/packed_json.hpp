#pragma once
// A compact, read-only form of a JSON value for values kept long and read often (the twin index keeps every
// served TD in it): about the size of the JSON text, where a boost::json value takes about three times it.
//
// The form is a byte string, written once by pack() and read in place through Ref, a pointer-sized handle:
//   node    := tag payload
//   null | false | true                     (tag only)
//   int64   := zigzag LEB128                uint64 := LEB128 (only above INT64_MAX, as boost::json reads
//   them) double  := 8 bytes, native order        string := LEB128 length, UTF-8 bytes array   := LEB128
//   count, LEB128 bytes of the elements, elements object  := LEB128 count, LEB128 bytes of the members, (key
//   node)* key     := LEB128 k; odd k: term k >> 1 of a fixed vocabulary (the W3C WoT TD 1.1 and JSON Schema
//   terms
//              and twinbridge's served members); even k: k >> 1 bytes of the key follow.
// Containers carry their byte size, so a reader skips a member or an element in constant time; member lookup
// is a linear scan in document order (objects of a TD are small). The form lives only in memory and only in
// the process that wrote it (the vocabulary may change between versions): never store or send it.
//
// Thread safety: packed bytes are immutable; any number of threads read them at once.

#include <boost/json/kind.hpp>
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twinbridge::core::packed {

namespace detail {

enum Tag : std::uint8_t {
  kNull = 0,
  kFalse = 1,
  kTrue = 2,
  kInt64 = 3,
  kUint64 = 4,
  kDouble = 5,
  kString = 6,
  kArray = 7,
  kObject = 8,
};

inline std::uint64_t read_varint(const std::uint8_t*& p) {
  std::uint64_t v = 0;
  for (unsigned shift = 0;; shift += 7) {
    const std::uint8_t b = *p++;
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
}

inline void skip_varint(const std::uint8_t*& p) {
  while ((*p++ & 0x80) != 0) {
  }
}

// The vocabulary term `index` (valid for what pack() wrote).
std::string_view term(std::size_t index);

// A key at p: its text, and p moved past it.
inline std::string_view read_key(const std::uint8_t*& p) {
  const std::uint64_t k = read_varint(p);
  if ((k & 1) != 0) return term(static_cast<std::size_t>(k >> 1));
  const auto size = static_cast<std::size_t>(k >> 1);
  const std::string_view key(reinterpret_cast<const char*>(p), size);
  p += size;
  return key;
}

// One past the node at p.
inline const std::uint8_t* skip(const std::uint8_t* p) {
  switch (*p++) {
    case kInt64:
    case kUint64:
      skip_varint(p);
      return p;
    case kDouble:
      return p + 8;
    case kString:
    case kArray:
    case kObject: {
      if (p[-1] != kString) skip_varint(p);  // the count
      const auto size = static_cast<std::size_t>(read_varint(p));
      return p + size;
    }
    default:
      return p;
  }
}

}  // namespace detail

// A node of packed bytes, or nothing (a default Ref: a member or element that is not there).
class Ref {
 public:
  Ref() = default;
  explicit Ref(const std::uint8_t* node) : p_(node) {}

  explicit operator bool() const { return p_ != nullptr; }
  bool operator==(const Ref&) const = default;

  boost::json::kind kind() const {
    switch (*p_) {
      case detail::kNull:
        return boost::json::kind::null;
      case detail::kFalse:
      case detail::kTrue:
        return boost::json::kind::bool_;
      case detail::kInt64:
        return boost::json::kind::int64;
      case detail::kUint64:
        return boost::json::kind::uint64;
      case detail::kDouble:
        return boost::json::kind::double_;
      case detail::kString:
        return boost::json::kind::string;
      case detail::kArray:
        return boost::json::kind::array;
      default:
        return boost::json::kind::object;
    }
  }
  // Whether the node is of a kind (false for nothing).
  bool is_null() const { return tag() == detail::kNull; }
  bool is_bool() const { return tag() == detail::kFalse || tag() == detail::kTrue; }
  bool is_int64() const { return tag() == detail::kInt64; }
  bool is_uint64() const { return tag() == detail::kUint64; }
  bool is_double() const { return tag() == detail::kDouble; }
  bool is_number() const { return tag() >= detail::kInt64 && tag() <= detail::kDouble; }
  bool is_string() const { return tag() == detail::kString; }
  bool is_array() const { return tag() == detail::kArray; }
  bool is_object() const { return tag() == detail::kObject; }

  // The value; the node must be of that kind. kind() needs a node (not nothing).
  bool get_bool() const { return *p_ == detail::kTrue; }
  std::int64_t get_int64() const {
    const std::uint8_t* p = p_ + 1;
    const std::uint64_t z = detail::read_varint(p);
    return static_cast<std::int64_t>(z >> 1) ^ -static_cast<std::int64_t>(z & 1);
  }
  std::uint64_t get_uint64() const {
    const std::uint8_t* p = p_ + 1;
    return detail::read_varint(p);
  }
  double get_double() const {
    double d = 0;
    std::memcpy(&d, p_ + 1, sizeof d);
    return d;
  }
  std::string_view get_string() const {
    const std::uint8_t* p = p_ + 1;
    const auto size = static_cast<std::size_t>(detail::read_varint(p));
    return {reinterpret_cast<const char*>(p), size};
  }
  // A string's text, or `fallback` for any other node or nothing.
  std::string_view string_or(std::string_view fallback = {}) const {
    return is_string() ? get_string() : fallback;
  }

  // Elements of an array, members of an object (0 for anything else).
  std::size_t size() const {
    if (!is_array() && !is_object()) return 0;
    const std::uint8_t* p = p_ + 1;
    return static_cast<std::size_t>(detail::read_varint(p));
  }

  // The bytes of this node (a node: not nothing).
  const std::uint8_t* data() const { return p_; }
  std::size_t byte_size() const { return static_cast<std::size_t>(detail::skip(p_) - p_); }

  struct Member;
  class MemberIterator;
  class ElementIterator;
  template <class Iterator>
  struct Range {
    Iterator first, last;
    Iterator begin() const { return first; }
    Iterator end() const { return last; }
  };

  // Members of an object, elements of an array, in document order (nothing for any other node).
  Range<MemberIterator> members() const;
  Range<ElementIterator> elements() const;
  // The member `key` of an object, or nothing (also for nothing and for any other node).
  Ref find(std::string_view key) const;
  // Element i of an array, or nothing.
  Ref at(std::size_t i) const;

 private:
  std::uint8_t tag() const { return p_ != nullptr ? *p_ : std::uint8_t{0xff}; }

  // The first child and one past the last child of a container.
  std::pair<const std::uint8_t*, const std::uint8_t*> contents() const {
    const std::uint8_t* p = p_ + 1;
    detail::skip_varint(p);
    const auto size = static_cast<std::size_t>(detail::read_varint(p));
    return {p, p + size};
  }

  const std::uint8_t* p_ = nullptr;
};

struct Ref::Member {
  std::string_view key;
  Ref value;
};

class Ref::MemberIterator {
 public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = Member;
  using difference_type = std::ptrdiff_t;
  using pointer = const Member*;
  using reference = const Member&;
  MemberIterator() = default;
  MemberIterator(const std::uint8_t* p, const std::uint8_t* end) : end_(end) { load(p); }
  reference operator*() const { return current_; }
  pointer operator->() const { return &current_; }
  MemberIterator& operator++() {
    load(detail::skip(current_.value.p_));
    return *this;
  }
  bool operator==(const MemberIterator& other) const { return current_.value == other.current_.value; }

 private:
  void load(const std::uint8_t* p) {
    if (p == end_) {
      current_ = {};
      return;
    }
    current_.key = detail::read_key(p);
    current_.value = Ref(p);
  }
  const std::uint8_t* end_ = nullptr;
  Member current_{};
};

class Ref::ElementIterator {
 public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = Ref;
  using difference_type = std::ptrdiff_t;
  using pointer = const Ref*;
  using reference = const Ref&;
  ElementIterator() = default;
  ElementIterator(const std::uint8_t* p, const std::uint8_t* end)
      : current_(p == end ? Ref() : Ref(p)), end_(end) {}
  reference operator*() const { return current_; }
  pointer operator->() const { return &current_; }
  ElementIterator& operator++() {
    const std::uint8_t* next = detail::skip(current_.p_);
    current_ = next == end_ ? Ref() : Ref(next);
    return *this;
  }
  bool operator==(const ElementIterator& other) const { return current_ == other.current_; }

 private:
  Ref current_;
  const std::uint8_t* end_ = nullptr;
};

inline Ref::Range<Ref::MemberIterator> Ref::members() const {
  if (p_ == nullptr || !is_object()) return {};
  const auto [first, end] = contents();
  return {MemberIterator(first, end), MemberIterator()};
}
inline Ref::Range<Ref::ElementIterator> Ref::elements() const {
  if (p_ == nullptr || !is_array()) return {};
  const auto [first, end] = contents();
  return {ElementIterator(first, end), ElementIterator()};
}

inline Ref Ref::find(std::string_view key) const {
  for (const auto& m : members()) {
    if (m.key == key) return m.value;
  }
  return {};
}
inline Ref Ref::at(std::size_t i) const {
  if (i >= size()) return {};
  for (const Ref e : elements()) {
    if (i-- == 0) return e;
  }
  return {};
}

// Packs a value in two passes: measure() says how many bytes its form takes, write() writes them. A Packer
// keeps its scratch memory between values (one thread; reuse it for many values).
class Packer {
 public:
  // The bytes of the form of `value`, which must live until write() returns.
  std::size_t measure(const boost::json::value& value);
  // Writes the form of the value measured last to out (measure()'s bytes); returns one past them.
  std::uint8_t* write(std::uint8_t* out);

 private:
  std::size_t measure_node(const boost::json::value& v);
  std::uint8_t* write_node(const boost::json::value& v, std::uint8_t* out);

  const boost::json::value* value_ = nullptr;
  std::vector<std::uint64_t> codes_;  // pre-order: each container's content bytes, each key's code
  std::size_t next_ = 0;
};

// The packed form of `value` in a string (tests, small values).
std::string pack(const boost::json::value& value);

// Appends the JSON text of a node, exactly as boost::json::serialize writes the value it was packed from.
void append_json(Ref node, std::string& out);
std::string serialize(Ref node);

// The node as a boost::json value in `sp`'s memory.
boost::json::value unpack(Ref node, boost::json::storage_ptr sp = {});

}  // namespace twinbridge::core::packed
