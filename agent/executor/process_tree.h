// Process-tree helpers for build processes (ARCHITECTURE.md "Agent execution": a process group per
// build under a subreaper, laminar leader.cpp style). Linux only; reads /proc. Thread-safe.
#ifndef KILN_AGENT_EXECUTOR_PROCESS_TREE_H_
#define KILN_AGENT_EXECUTOR_PROCESS_TREE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"

namespace kiln::agent {

// Makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphans of build processes
// are re-parented to the agent instead of init, so KillSession() can find and reap them. The
// agent's main() should call it once, before starting builds. Errors: Internal if prctl fails.
absl::Status BecomeChildSubreaper();

// SIGKILLs every process of session `sid` and of process group `sid`, plus every descendant of
// those (including ones that left the session with setsid while their parent still lived), and
// waits (at most ~1 s in total) until all of them are dead. Reaps the dead ones that are children
// of this process, except `sid` itself: the caller owns the session leader and reaps it to learn
// its exit status. Never signals this process. `sid` <= 1 is ignored.
void KillSession(pid_t sid);

// Reaps the zombie children of this process that belong to session `sid` (orphans of the build
// adopted by the subreaper), except `sid` itself. Scans /proc: call it per phase, not per line.
void ReapSessionOrphans(pid_t sid);

// Records the session of a build's shell in <workspace>/session as "<sid>\n<build id>\n", so a
// restarted agent can clean up after a crash. Best effort (errors are ignored).
void WriteSessionFile(const std::string& workspace, pid_t sid, const std::string& build_id);

// Cleans up after an agent process that died: for every <builds_dir>/<workspace>/session file, if the
// recorded session leader still runs with CODEBUILD_BUILD_ID=<build id> in its environment (so a
// recycled pid is never touched), kills the session's whole tree (KillSession); then deletes the
// workspace. Call at agent start, before any build runs. Returns the number of sessions killed.
int KillLeftoverSessions(const std::string& builds_dir);

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_PROCESS_TREE_H_
