kiln_cc_library(NAME yaml_util HDRS yaml_util.h SRCS yaml_util.cc DEPS yaml-cpp absl::status absl::strings)
kiln_cc_library(NAME buildspec HDRS buildspec.h SRCS buildspec.cc DEPS kiln::yaml_util kiln::status_macros yaml-cpp absl::status absl::statusor absl::strings PkgConfig::RE2)
kiln_cc_library(NAME project_yaml HDRS project_yaml.h SRCS project_yaml.cc DEPS kiln::yaml_util kiln::buildspec kiln::proto kiln::ids kiln::status_macros yaml-cpp absl::status absl::statusor absl::strings PkgConfig::RE2)
