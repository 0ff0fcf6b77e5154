#pragma once
// std::expected for clang before 16 with libstdc++ 12. The code includes <expected> as usual; CMake includes
// this header ahead of every source only when the compiler is such a clang (see CMakeLists.txt).
//
// GCC 12's libstdc++ has std::expected, and that is what every ordinary build uses. Clang 14 (Debian 12's
// clang, which the libFuzzer build uses) compiles against the same libstdc++ 12, whose <expected> needs C++20
// conditionally trivial special members (P0848, in clang from 16 on) and so declares nothing there. Only in
// that case does this header define a small std::expected / std::unexpected with the members twinbridge uses
// (construction from a value or an unexpected, in-place construction, has_value, operator bool, *, ->, value,
// error, value_or, emplace, comparison); monadic operations are left out. It is a compatibility shim for one
// toolchain, not a second implementation to grow: when the fuzz build moves to a newer clang it goes away.

#include <version>
#if __has_include(<expected>)
#include <expected>
#endif

#if !defined(__cpp_lib_expected)

#include <exception>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <utility>

namespace std {

template <class E>
class unexpected {
 public:
  constexpr unexpected(const unexpected&) = default;
  constexpr unexpected(unexpected&&) = default;
  template <class Err = E>
  requires(!is_same_v<remove_cvref_t<Err>, unexpected> && !is_same_v<remove_cvref_t<Err>, in_place_t> &&
           is_constructible_v<E, Err>) constexpr explicit unexpected(Err&& e)
      : error_(std::forward<Err>(e)) {}
  template <class... Args>
  requires is_constructible_v<E, Args...>
  constexpr explicit unexpected(in_place_t, Args&&... args) : error_(std::forward<Args>(args)...) {}

  constexpr unexpected& operator=(const unexpected&) = default;
  constexpr unexpected& operator=(unexpected&&) = default;

  constexpr const E& error() const& noexcept { return error_; }
  constexpr E& error() & noexcept { return error_; }
  constexpr const E&& error() const&& noexcept { return std::move(error_); }
  constexpr E&& error() && noexcept { return std::move(error_); }

  template <class E2>
  friend constexpr bool operator==(const unexpected& x, const unexpected<E2>& y) {
    return x.error() == y.error();
  }

 private:
  E error_;
};

template <class E>
unexpected(E) -> unexpected<E>;

struct unexpect_t {
  explicit unexpect_t() = default;
};
inline constexpr unexpect_t unexpect{};

template <class E>
class bad_expected_access;

template <>
class bad_expected_access<void> : public exception {
 public:
  const char* what() const noexcept override { return "bad access to std::expected without expected value"; }
};

template <class E>
class bad_expected_access : public bad_expected_access<void> {
 public:
  explicit bad_expected_access(E e) : error_(std::move(e)) {}
  const E& error() const& noexcept { return error_; }
  E& error() & noexcept { return error_; }

 private:
  E error_;
};

namespace twinbridge_expected_detail {

template <class T>
struct is_unexpected : false_type {};
template <class E>
struct is_unexpected<unexpected<E>> : true_type {};

// Deletes copying of an expected whose value or error cannot be copied; the storage's own copy members are
// then never instantiated.
template <bool Copyable>
struct copy_control {};
template <>
struct copy_control<false> {
  copy_control() = default;
  copy_control(const copy_control&) = delete;
  copy_control(copy_control&&) = default;
  copy_control& operator=(const copy_control&) = delete;
  copy_control& operator=(copy_control&&) = default;
};

// The value (absent for void) or the error, and which one it is.
template <class T, class E>
class storage {
 public:
  constexpr storage() : value_(), has_(true) {}
  template <class... Args>
  constexpr explicit storage(in_place_t, Args&&... args) : value_(std::forward<Args>(args)...), has_(true) {}
  template <class... Args>
  constexpr explicit storage(unexpect_t, Args&&... args) : error_(std::forward<Args>(args)...), has_(false) {}
  constexpr storage(const storage& o) : has_(o.has_) {
    if (has_)
      std::construct_at(std::addressof(value_), o.value_);
    else
      std::construct_at(std::addressof(error_), o.error_);
  }
  constexpr storage(storage&& o) noexcept(
      is_nothrow_move_constructible_v<T>&& is_nothrow_move_constructible_v<E>)
      : has_(o.has_) {
    if (has_)
      std::construct_at(std::addressof(value_), std::move(o.value_));
    else
      std::construct_at(std::addressof(error_), std::move(o.error_));
  }
  constexpr storage& operator=(const storage& o) {
    if (this != &o) {
      if (o.has_)
        assign_value(o.value_);
      else
        assign_error(o.error_);
    }
    return *this;
  }
  constexpr storage& operator=(storage&& o) noexcept(
      is_nothrow_move_constructible_v<T>&& is_nothrow_move_constructible_v<E>) {
    if (this != &o) {
      if (o.has_)
        assign_value(std::move(o.value_));
      else
        assign_error(std::move(o.error_));
    }
    return *this;
  }
  constexpr ~storage() { destroy(); }

  template <class... Args>
  constexpr void assign_value(Args&&... args) {
    destroy();
    std::construct_at(std::addressof(value_), std::forward<Args>(args)...);
    has_ = true;
  }
  template <class... Args>
  constexpr void assign_error(Args&&... args) {
    destroy();
    std::construct_at(std::addressof(error_), std::forward<Args>(args)...);
    has_ = false;
  }

  union {
    T value_;
    E error_;
  };
  bool has_;

 private:
  constexpr void destroy() {
    if (has_)
      value_.~T();
    else
      error_.~E();
  }
};

struct empty_value {};

}  // namespace twinbridge_expected_detail

template <class T, class E>
class expected : private twinbridge_expected_detail::copy_control<is_copy_constructible_v<T> &&
                                                                  is_copy_constructible_v<E>> {
  using storage_type = twinbridge_expected_detail::storage<T, E>;

 public:
  using value_type = T;
  using error_type = E;
  using unexpected_type = unexpected<E>;

  constexpr expected() = default;
  constexpr expected(const expected&) = default;
  constexpr expected(expected&&) = default;
  constexpr expected& operator=(const expected&) = default;
  constexpr expected& operator=(expected&&) = default;

  template <class U = T>
  requires(!is_same_v<remove_cvref_t<U>, in_place_t> && !is_same_v<remove_cvref_t<U>, expected> &&
           !is_same_v<remove_cvref_t<U>, unexpect_t> &&
           !twinbridge_expected_detail::is_unexpected<remove_cvref_t<U>>::value &&
           is_constructible_v<T, U>) constexpr explicit(!is_convertible_v<U, T>) expected(U&& v)
      : s_(in_place, std::forward<U>(v)) {}

  template <class G>
  requires is_constructible_v<E, const G&>
  constexpr explicit(!is_convertible_v<const G&, E>) expected(const unexpected<G>& e)
      : s_(unexpect, e.error()) {}
  template <class G>
  requires is_constructible_v<E, G>
  constexpr explicit(!is_convertible_v<G, E>) expected(unexpected<G>&& e)
      : s_(unexpect, std::move(e).error()) {}

  template <class... Args>
  requires is_constructible_v<T, Args...>
  constexpr explicit expected(in_place_t, Args&&... args) : s_(in_place, std::forward<Args>(args)...) {}
  template <class... Args>
  requires is_constructible_v<E, Args...>
  constexpr explicit expected(unexpect_t, Args&&... args) : s_(unexpect, std::forward<Args>(args)...) {}

  template <class U = T>
  requires(!is_same_v<remove_cvref_t<U>, expected> &&
           !twinbridge_expected_detail::is_unexpected<remove_cvref_t<U>>::value && is_constructible_v<T, U> &&
           is_assignable_v<T&, U>) constexpr expected&
  operator=(U&& v) {
    s_.assign_value(std::forward<U>(v));
    return *this;
  }
  template <class G>
  constexpr expected& operator=(const unexpected<G>& e) {
    s_.assign_error(e.error());
    return *this;
  }
  template <class G>
  constexpr expected& operator=(unexpected<G>&& e) {
    s_.assign_error(std::move(e).error());
    return *this;
  }

  template <class... Args>
  constexpr T& emplace(Args&&... args) {
    s_.assign_value(std::forward<Args>(args)...);
    return s_.value_;
  }

  constexpr bool has_value() const noexcept { return s_.has_; }
  constexpr explicit operator bool() const noexcept { return s_.has_; }

  constexpr const T* operator->() const noexcept { return std::addressof(s_.value_); }
  constexpr T* operator->() noexcept { return std::addressof(s_.value_); }
  constexpr const T& operator*() const& noexcept { return s_.value_; }
  constexpr T& operator*() & noexcept { return s_.value_; }
  constexpr const T&& operator*() const&& noexcept { return std::move(s_.value_); }
  constexpr T&& operator*() && noexcept { return std::move(s_.value_); }

  constexpr const T& value() const& {
    check();
    return s_.value_;
  }
  constexpr T& value() & {
    check();
    return s_.value_;
  }
  constexpr T&& value() && {
    check();
    return std::move(s_.value_);
  }
  constexpr const T&& value() const&& {
    check();
    return std::move(s_.value_);
  }

  constexpr const E& error() const& noexcept { return s_.error_; }
  constexpr E& error() & noexcept { return s_.error_; }
  constexpr E&& error() && noexcept { return std::move(s_.error_); }
  constexpr const E&& error() const&& noexcept { return std::move(s_.error_); }

  template <class U>
  constexpr T value_or(U&& other) const& {
    return s_.has_ ? s_.value_ : static_cast<T>(std::forward<U>(other));
  }
  template <class U>
  constexpr T value_or(U&& other) && {
    return s_.has_ ? std::move(s_.value_) : static_cast<T>(std::forward<U>(other));
  }

  template <class T2, class E2>
  requires(!is_void_v<T2>) friend constexpr bool operator==(const expected& x, const expected<T2, E2>& y) {
    if (x.has_value() != y.has_value()) return false;
    return x.has_value() ? *x == *y : x.error() == y.error();
  }
  template <class T2>
  requires(!twinbridge_expected_detail::is_unexpected<T2>::value) friend constexpr bool operator==(
      const expected& x, const T2& v) {
    return x.has_value() && *x == v;
  }
  template <class E2>
  friend constexpr bool operator==(const expected& x, const unexpected<E2>& e) {
    return !x.has_value() && x.error() == e.error();
  }

 private:
  constexpr void check() const {
    if (!s_.has_) throw bad_expected_access<E>(s_.error_);
  }

  storage_type s_;
};

template <class E>
class expected<void, E> : private twinbridge_expected_detail::copy_control<is_copy_constructible_v<E>> {
  using storage_type = twinbridge_expected_detail::storage<twinbridge_expected_detail::empty_value, E>;

 public:
  using value_type = void;
  using error_type = E;
  using unexpected_type = unexpected<E>;

  constexpr expected() = default;
  constexpr expected(const expected&) = default;
  constexpr expected(expected&&) = default;
  constexpr expected& operator=(const expected&) = default;
  constexpr expected& operator=(expected&&) = default;

  template <class G>
  requires is_constructible_v<E, const G&>
  constexpr explicit(!is_convertible_v<const G&, E>) expected(const unexpected<G>& e)
      : s_(unexpect, e.error()) {}
  template <class G>
  requires is_constructible_v<E, G>
  constexpr explicit(!is_convertible_v<G, E>) expected(unexpected<G>&& e)
      : s_(unexpect, std::move(e).error()) {}
  constexpr explicit expected(in_place_t) : s_() {}
  template <class... Args>
  requires is_constructible_v<E, Args...>
  constexpr explicit expected(unexpect_t, Args&&... args) : s_(unexpect, std::forward<Args>(args)...) {}

  template <class G>
  constexpr expected& operator=(const unexpected<G>& e) {
    s_.assign_error(e.error());
    return *this;
  }
  template <class G>
  constexpr expected& operator=(unexpected<G>&& e) {
    s_.assign_error(std::move(e).error());
    return *this;
  }
  constexpr void emplace() noexcept { s_.assign_value(); }

  constexpr bool has_value() const noexcept { return s_.has_; }
  constexpr explicit operator bool() const noexcept { return s_.has_; }
  constexpr void operator*() const noexcept {}
  constexpr void value() const& {
    if (!s_.has_) throw bad_expected_access<E>(s_.error_);
  }
  constexpr void value() && {
    if (!s_.has_) throw bad_expected_access<E>(std::move(s_.error_));
  }

  constexpr const E& error() const& noexcept { return s_.error_; }
  constexpr E& error() & noexcept { return s_.error_; }
  constexpr E&& error() && noexcept { return std::move(s_.error_); }
  constexpr const E&& error() const&& noexcept { return std::move(s_.error_); }

  template <class E2>
  friend constexpr bool operator==(const expected& x, const expected<void, E2>& y) {
    if (x.has_value() != y.has_value()) return false;
    return x.has_value() || x.error() == y.error();
  }
  template <class E2>
  friend constexpr bool operator==(const expected& x, const unexpected<E2>& e) {
    return !x.has_value() && x.error() == e.error();
  }

 private:
  storage_type s_;
};

}  // namespace std

#endif
