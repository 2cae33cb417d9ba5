// project.yaml (the `kiln project apply -f` format) ↔ kiln.v1.Project, and project validation shared by
// the CLI and the coordinator. Pure functions; thread-safe.
//
//   name: flask-app
//   source: {type: git, location: /srv/git/flask-app.git, branch: main, buildspec: buildspec.yml}
//   concurrent_build_limit: 1          # 0 or absent = no limit
//   on_limit: queue                    # queue (default) | reject
//   timeout_minutes: 60                # 5..2160, default 60
//   queued_timeout_minutes: 480        # 5..480, default 480
//   agent_labels: {docker: "true"}
//   environment:
//     variables: {APP_ENV: ci}
//     parameter_store: {DB_PASSWORD: /flask-app/db-password}
//   webhook: {secret_parameter: /kiln/webhooks/flask-app}
#ifndef KILN_COMMON_PROJECT_YAML_H_
#define KILN_COMMON_PROJECT_YAML_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kiln/v1/build.pb.h"

namespace kiln::common {

// Parses project YAML. Unknown keys and wrong types are rejected. Errors: INVALID_ARGUMENT
// "<file>:<line>:<col>: <key path>: <problem>". Defaults are filled in (branch "main", buildspec
// "buildspec.yml", timeout 60, queued timeout 480). The result passes ValidateProject.
absl::StatusOr<kiln::v1::Project> ParseProjectYaml(std::string_view yaml_text,
                                                   std::string_view file_name);

// Checks a project as received over the API (field names in messages are the proto field names).
// Errors: INVALID_ARGUMENT naming the field, e.g. "project.timeout_in_minutes: 3 is outside 5..2160".
absl::Status ValidateProject(const kiln::v1::Project& project);

}  // namespace kiln::common

#endif  // KILN_COMMON_PROJECT_YAML_H_
