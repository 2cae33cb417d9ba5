#include "common/yaml_util.h"

#include "absl/strings/str_cat.h"

namespace kiln::common::yaml {

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: {
      std::string s = n.Scalar();
      if (s.size() > 40) s = s.substr(0, 37) + "...";
      return absl::StrCat("the string '", s, "'");
    }
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "an empty value";
  }
}

std::string ErrorReporter::Where(const YAML::Mark& m) const {
  if (m.line < 0) return absl::StrCat(file_, ":1:1");
  return absl::StrCat(file_, ":", m.line + 1, ":", m.column + 1);
}

absl::Status ErrorReporter::Error(const YAML::Mark& m, std::string_view path,
                                  std::string_view problem) const {
  return absl::InvalidArgumentError(
      absl::StrCat(Where(m), ": ", std::string(path), ": ", std::string(problem)));
}

}  // namespace kiln::common::yaml
