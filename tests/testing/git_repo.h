// Test helper: real git repositories made with the git CLI in a temp dir. Test-only.
#ifndef KILN_TESTS_TESTING_GIT_REPO_H_
#define KILN_TESTS_TESTING_GIT_REPO_H_

#include <map>
#include <string>

namespace kiln::test {

// A bare repository <dir>/<name>.git plus a working clone used to make commits.
class GitRepo {
 public:
  // Creates both (crashes the test on failure: setup, not behaviour under test).
  GitRepo(const std::string& dir, const std::string& name);
  // Writes `files` (path -> content) into the clone, commits with `message`, pushes to the bare
  // repository's `branch`. Returns the new commit's full sha.
  std::string Commit(const std::map<std::string, std::string>& files, const std::string& message,
                     const std::string& branch = "main");
  const std::string& bare_path() const { return bare_; }
  const std::string& work_path() const { return work_; }

 private:
  std::string bare_;
  std::string work_;
};

// Runs `cmd` with /bin/sh; returns its stdout. Aborts if it exits non-zero.
std::string Sh(const std::string& cmd);

// A fresh directory under the test temp dir.
std::string MakeTempDir(const std::string& prefix);

}  // namespace kiln::test

#endif  // KILN_TESTS_TESTING_GIT_REPO_H_
