kiln_cc_library(NAME buildspec HDRS buildspec.h SRCS buildspec.cc DEPS kiln::status_macros yaml-cpp absl::strings absl::statusor)
kiln_cc_library(NAME project_yaml HDRS project_yaml.h SRCS project_yaml.cc DEPS kiln::proto kiln::ids kiln::status_macros yaml-cpp absl::strings absl::statusor)
