#include "core/error.hpp"

#include <gtest/gtest.h>

namespace twinbridge::core {
namespace {

TEST(ErrcTest, NamesTheCode) {
  EXPECT_EQ(to_string(Errc::not_found), "not_found");
}

}  // namespace
}  // namespace twinbridge::core
