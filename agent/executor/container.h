// Build containers for projects with environment.image (CodeBuild
// ProjectEnvironment.image / privilegedMode): one long-lived container per
// build, through the `docker` CLI found in PATH.
//
// The container runs `sleep infinity` (the image must provide `sleep` and the
// build's shell); the build's shells are started in it with `docker exec -i`
// (DockerExecLauncher). The workspace is bind-mounted at the same absolute
// path, so CODEBUILD_SRC_DIR and the executor's command and state files mean
// the same inside and outside. With privileged mode the host's Docker socket is
// mounted at /var/run/docker.sock, as CodeBuild's docker-in-docker builds
// expect (Kiln does not add
// --privileged: the build talks to the host's engine instead of running its
// own).
//
// Containers carry the labels kiln.build-id=<build id> and
// kiln.workspace=<workspace>; a restarted agent removes those left under its
// work dir (RemoveLeftoverContainers).
//
// Thread-safety: free functions, thread-safe.
#ifndef KILN_AGENT_EXECUTOR_CONTAINER_H_
#define KILN_AGENT_EXECUTOR_CONTAINER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::agent {

struct ContainerSpec {
  std::string name;      // docker container name, [a-zA-Z0-9][a-zA-Z0-9_.-]*
  std::string image;     // e.g. "python:3.11-slim"
  std::string workspace; // absolute; bind-mounted at the same path
  std::string build_id;  // label only
  bool privileged = false;
};

// Runs `argv` (argv[0] searched in PATH) with stdin from /dev/null and
// stdout+stderr captured (at most 64 KiB kept) and waits at most `timeout`,
// then SIGKILLs it. Returns the output on exit 0. Errors: Unavailable
// ("<argv[0]> exited with status N: <output>", or not found), DeadlineExceeded.
absl::StatusOr<std::string> RunProcess(const std::vector<std::string> &argv,
                                       absl::Duration timeout);

// `docker run -d` of the build container. Errors: RunProcess's, with docker's
// message.
absl::Status StartContainer(const ContainerSpec &spec);
// `docker rm -f <name>` (bounded to 30 s); errors are ignored: the container
// may be gone already.
void RemoveContainer(const std::string &name);
// Removes every container whose kiln.workspace label lies under `work_dir`
// (agent restart).
void RemoveLeftoverContainers(const std::string &work_dir);

// The ShellSession launcher that starts a shell in the container: docker exec
// -i -w <cwd>
// [-u <user>] <name>.
std::vector<std::string> DockerExecLauncher(const std::string &name,
                                            const std::string &cwd,
                                            const std::string &user);

} // namespace kiln::agent

#endif // KILN_AGENT_EXECUTOR_CONTAINER_H_
