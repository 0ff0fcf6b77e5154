# tb_embed_text(<output.cpp> <namespace> <function> <file>): compiles the text of <file> into the function
# `std::string_view <namespace>::<function>()`. Editing <file> re-runs CMake.
function(tb_embed_text output namespace function file)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  file(READ ${file} TB_EMBED_TEXT)
  set(TB_EMBED_NAMESPACE ${namespace})
  set(TB_EMBED_FUNCTION ${function})
  file(CONFIGURE OUTPUT ${output} CONTENT [=[
#include <string_view>
namespace @TB_EMBED_NAMESPACE@ {
std::string_view @TB_EMBED_FUNCTION@() {
  static constexpr std::string_view kText = R"tbembed(@TB_EMBED_TEXT@)tbembed";
  return kText;
}
}  // namespace @TB_EMBED_NAMESPACE@
]=] @ONLY)
endfunction()
