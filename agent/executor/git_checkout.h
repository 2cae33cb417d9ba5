// Fetches a build's source with libgit2: clone, then a detached checkout of the requested version.
// Thread-safe (libgit2 is initialised once; each call uses its own repository object).
#ifndef KILN_AGENT_EXECUTOR_GIT_CHECKOUT_H_
#define KILN_AGENT_EXECUTOR_GIT_CHECKOUT_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace kiln::agent {

// Clones `location` (a local path to a bare or non-bare repository, a file:// or other URL libgit2
// supports) into `dest` (absent or empty directory) and checks out `version` as a detached HEAD.
// `version` is tried as a branch of the remote, a tag, a full ref ("refs/heads/x", "refs/tags/v1"),
// then any revision git understands (full or abbreviated commit id, "origin/x", "HEAD~1"); empty
// means the remote's default branch. `cancelled` (may be empty) is polled during the transfer and
// aborts it when it returns true.
// Returns the full commit id (40 hex digits) checked out.
// Errors: NotFound (version unknown), InvalidArgument (version ambiguous or not a commit),
// Unavailable (clone failed), Cancelled (`cancelled` said so), Internal (checkout failed).
// `credentials` ("username:password", may be empty) answer an HTTP(S) server's authentication
// request (once; a rejected pair fails the clone). `extra_ref` (may be empty), e.g.
// "refs/pull/42/head", is fetched after the clone when the remote has it: a pull request's head
// commit may exist only there.
absl::StatusOr<std::string> CloneAndCheckout(const std::string& location,
                                             const std::string& version, const std::string& dest,
                                             const std::function<bool()>& cancelled,
                                             const std::string& credentials = "",
                                             const std::string& extra_ref = "");

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_GIT_CHECKOUT_H_
