// Process-tree helpers for build processes (ARCHITECTURE.md "Agent execution": a process group per
// build under a subreaper, laminar leader.cpp style). Linux only; reads /proc. Thread-safe.
#ifndef KILN_AGENT_EXECUTOR_PROCESS_TREE_H_
#define KILN_AGENT_EXECUTOR_PROCESS_TREE_H_

#include <sys/types.h>

#include "absl/status/status.h"

namespace kiln::agent {

// Makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphans of build processes
// are re-parented to the agent instead of init, so KillSession() can find and reap them. The agent's
// main() should call it once, before starting builds. Errors: Internal if prctl fails.
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

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_PROCESS_TREE_H_
