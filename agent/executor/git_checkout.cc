#include "agent/executor/git_checkout.h"

#include <git2.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln::agent {
namespace {

struct RepoFree {
  void operator()(git_repository* r) const { git_repository_free(r); }
};
struct ObjectFree {
  void operator()(git_object* o) const { git_object_free(o); }
};
using Repo = std::unique_ptr<git_repository, RepoFree>;
using Object = std::unique_ptr<git_object, ObjectFree>;

std::string LastGitError() {
  const git_error* e = git_error_last();
  return e != nullptr && e->message != nullptr ? e->message : "unknown libgit2 error";
}

struct Payload {
  const std::function<bool()>* cancelled;
  const std::string* credentials;
  bool credentials_tried = false;
};

int TransferProgress(const git_indexer_progress*, void* payload) {
  const auto* cancelled = static_cast<Payload*>(payload)->cancelled;
  return (*cancelled && (*cancelled)()) ? -1 : 0;
}

int Credentials(git_credential** out, const char*, const char*, unsigned int allowed,
                void* payload) {
  auto* p = static_cast<Payload*>(payload);
  const size_t colon = p->credentials->find(':');
  if (p->credentials->empty() || colon == std::string::npos || p->credentials_tried ||
      (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) == 0) {
    return GIT_PASSTHROUGH;
  }
  p->credentials_tried = true;
  return git_credential_userpass_plaintext_new(out, p->credentials->substr(0, colon).c_str(),
                                              p->credentials->substr(colon + 1).c_str());
}

}  // namespace

absl::StatusOr<std::string> CloneAndCheckout(const std::string& location,
                                             const std::string& version, const std::string& dest,
                                             const std::function<bool()>& cancelled,
                                             const std::string& credentials,
                                             const std::string& extra_ref) {
  static std::once_flag init;
  std::call_once(init, [] { git_libgit2_init(); });  // never shut down: other threads may use it

  git_clone_options clone_opts = GIT_CLONE_OPTIONS_INIT;
  clone_opts.checkout_opts.checkout_strategy = GIT_CHECKOUT_NONE;  // we check out `version` below
  Payload payload{&cancelled, &credentials};
  clone_opts.fetch_opts.callbacks.transfer_progress = TransferProgress;
  clone_opts.fetch_opts.callbacks.credentials = Credentials;
  clone_opts.fetch_opts.callbacks.payload = &payload;
  git_repository* raw_repo = nullptr;
  const int rc = git_clone(&raw_repo, location.c_str(), dest.c_str(), &clone_opts);
  Repo repo(raw_repo);
  if (rc == GIT_EUSER || (cancelled && cancelled())) return absl::CancelledError("clone cancelled");
  if (rc < 0) return absl::UnavailableError(absl::StrCat("git clone failed: ", LastGitError()));
  if (!extra_ref.empty()) {
    git_remote* remote = nullptr;
    if (git_remote_lookup(&remote, repo.get(), "origin") == 0) {
      std::string spec = absl::StrCat("+", extra_ref, ":refs/kiln/extra");
      char* specs[] = {spec.data()};
      git_strarray refspecs = {specs, 1};
      git_fetch_options fetch_opts = GIT_FETCH_OPTIONS_INIT;
      fetch_opts.callbacks = clone_opts.fetch_opts.callbacks;
      (void)git_remote_fetch(remote, &refspecs, &fetch_opts, nullptr);  // absent ref: no error
      git_remote_free(remote);
    }
  }

  std::vector<std::string> candidates;
  if (version.empty()) {
    candidates = {"HEAD"};
  } else if (absl::StartsWith(version, "refs/heads/")) {
    candidates = {absl::StrCat("refs/remotes/origin/", version.substr(11))};
  } else {
    candidates = {absl::StrCat("refs/remotes/origin/", version),
                  absl::StrCat("refs/tags/", version), version};
  }
  Object target;
  for (const std::string& spec : candidates) {
    git_object* obj = nullptr;
    const int r = git_revparse_single(&obj, repo.get(), spec.c_str());
    if (r == 0) {
      target.reset(obj);
      break;
    }
    if (r == GIT_EAMBIGUOUS) {
      return absl::InvalidArgumentError(
          absl::StrCat("source version '", version, "' is ambiguous"));
    }
  }
  if (target == nullptr) {
    return absl::NotFoundError(absl::StrCat("source version '", version.empty() ? "HEAD" : version,
                                            "' not found in the repository"));
  }
  git_object* raw_commit = nullptr;
  if (git_object_peel(&raw_commit, target.get(), GIT_OBJECT_COMMIT) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("source version '", version, "' is not a commit"));
  }
  Object commit(raw_commit);
  git_checkout_options checkout_opts = GIT_CHECKOUT_OPTIONS_INIT;
  checkout_opts.checkout_strategy = GIT_CHECKOUT_FORCE;
  if (git_checkout_tree(repo.get(), commit.get(), &checkout_opts) != 0 ||
      git_repository_set_head_detached(repo.get(), git_object_id(commit.get())) != 0) {
    return absl::InternalError(absl::StrCat("git checkout failed: ", LastGitError()));
  }
  return std::string(git_oid_tostr_s(git_object_id(commit.get())));
}

}  // namespace kiln::agent
