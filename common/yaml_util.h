// Shared pieces of Kiln's YAML parsers (buildspec.yml, project.yaml): node references that remember
// where in the file they came from, and errors of the form "<file>:<line>:<col>: <key path>: <problem>".
// Thread-safe (no shared state).
#ifndef KILN_COMMON_YAML_UTIL_H_
#define KILN_COMMON_YAML_UTIL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "yaml-cpp/yaml.h"

namespace kiln::common::yaml {

// A node and where it is: `mark` is yaml-cpp's 0-based position (for an empty value, the position of
// its key or list dash); `path` the key path ("phases.build.commands[2]").
struct Ref {
  YAML::Node node;
  YAML::Mark mark;
  std::string path;
};

// One key of a map, with its position, and its value.
struct Entry {
  std::string key;
  YAML::Mark key_mark;
  Ref value;
};

// For messages: "the string 'x'" (cut to 40 characters), "a list", "a map" or "an empty value".
std::string Describe(const YAML::Node& n);

// Base of a parser for one file: formats positions and INVALID_ARGUMENT errors naming file, line,
// column and key path.
class ErrorReporter {
 public:
  explicit ErrorReporter(std::string_view file) : file_(file) {}
  // "<file>:<line>:<col>", 1-based ("<file>:1:1" for a mark with no position).
  std::string Where(const YAML::Mark& m) const;
  absl::Status Error(const YAML::Mark& m, std::string_view path, std::string_view problem) const;
  absl::Status Error(const Ref& r, std::string_view problem) const { return Error(r.mark, r.path, problem); }

 protected:
  std::string file_;
};

}  // namespace kiln::common::yaml

#endif  // KILN_COMMON_YAML_UTIL_H_
