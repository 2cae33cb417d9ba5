// The buildspec `cache` kept on the agent's own disk (reference/aws-semantics.md §1.11): Restore
// before INSTALL, Save after the build. One uncompressed tar per (project, key), at most
// kMaxKeysPerProject keys per project.
//
// Layout under `root` (directories 0700):
//   <sha256hex(project)>/project              the project name (for WarmProjects)
//   <sha256hex(project)>/<sha256hex(key)>.key  the key text ("" = the project's default entry)
//   <sha256hex(project)>/<sha256hex(key)>.tar  members "src/<path relative to src_dir>" and
//                                              "abs/<absolute path without its leading '/'>"
// Hashing keeps any project name or key from escaping `root`. Entry age is the tar's mtime; Save
// makes each new entry strictly newer than the project's others.
//
// Thread-safety: all methods may be called concurrently. Calls for the same project are
// serialised (a Restore never sees a half-written or half-evicted entry); calls for different
// projects run in parallel. One LocalCache per root: two processes sharing a root are not
// coordinated (tar files are still replaced atomically by rename).
#ifndef KILN_AGENT_ARTIFACTS_LOCAL_CACHE_H_
#define KILN_AGENT_ARTIFACTS_LOCAL_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/buildspec.h"

namespace kiln::agent {

struct CacheRestoreResult {
  bool restored = false;
  std::string key;                     // key of the entry restored (may differ: fallback)
  int64_t files = 0;                   // members extracted
  std::vector<std::string> log_lines;  // for the build log, no timestamp
};

struct CacheSaveResult {
  bool saved = false;
  int64_t files = 0;  // members written
  int64_t bytes = 0;  // size of the tar, bytes
  std::vector<std::string> log_lines;
};

class LocalCache {
 public:
  static constexpr int kMaxKeysPerProject = 5;

  // `root`: the cache directory, normally <agent work dir>/cache; created (0700) by the first Save.
  explicit LocalCache(std::string root);
  LocalCache(const LocalCache&) = delete;
  LocalCache& operator=(const LocalCache&) = delete;

  // Restores `project`'s cache entry into place: "src/" members under `src_dir`, "abs/" members at
  // their absolute path (directories created, existing files replaced, mode and mtime kept).
  // `spec` has its key and fallback keys already evaluated by the build's shell. Entry choice: the
  // entry whose key equals spec.key; else, for each fallback key in order, the newest entry whose
  // key starts with it; with an empty spec.key the project's default entry (fallback keys are
  // ignored, §1.11). spec.action "save" never restores. Nothing to restore is not an error
  // (restored = false, with a log line saying why).
  // Errors: InvalidArgument (empty project); DataLoss (a member name outside "src/" or "abs/", or
  // with a ".." component); Internal (read or extract failure, naming the path).
  absl::StatusOr<CacheRestoreResult> Restore(const std::string& project,
                                             const common::BuildspecCache& spec,
                                             const std::string& src_dir);

  // Saves the files matched by spec.paths: relative globs against `src_dir`, absolute globs split
  // at the first component with a wildcard into a base directory and a pattern
  // ("/root/.m2/**/*" = pattern "**/*" under /root/.m2); a path without wildcards names one file.
  // Only files and symlinks (kept as symlinks) are stored; directory symlinks are not followed.
  // Replaces the entry for spec.key atomically (tmp + rename), then removes the oldest entries
  // beyond kMaxKeysPerProject. spec.action "restore" never saves; nothing matched saves nothing
  // (saved = false).
  // Errors: InvalidArgument (empty project, or a path with a ".." component); NotFound (a file
  // vanished while being saved); Internal (I/O failure, naming the path).
  absl::StatusOr<CacheSaveResult> Save(const std::string& project,
                                       const common::BuildspecCache& spec,
                                       const std::string& src_dir);

  // Projects with at least one saved entry, sorted (for AgentHello.warm_cache_projects).
  std::vector<std::string> WarmProjects() const;

 private:
  absl::Mutex& ProjectMutex(const std::string& project);

  const std::string root_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<absl::Mutex>> project_mu_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_ARTIFACTS_LOCAL_CACHE_H_
