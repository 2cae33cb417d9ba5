// Test helpers for the agent executor tests: temp dirs and git repositories made with the `git`
// CLI.
#ifndef KILN_TESTS_AGENT_TEST_REPO_H_
#define KILN_TESTS_AGENT_TEST_REPO_H_

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace kiln::agent::testing {

// A fresh directory under the test temp dir; removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string base = ::testing::TempDir();
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    std::string tmpl = base + "/kiln-agent-XXXXXX";
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs a shell command line; returns its stdout (stderr goes to the test log). Fails the test on a
// non-zero exit.
inline std::string Sh(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (p != nullptr && (n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = p != nullptr ? pclose(p) : -1;
  EXPECT_EQ(rc, 0) << cmd;
  return out;
}

// A non-bare git repository on branch "main".
class TestRepo {
 public:
  explicit TestRepo(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    Git("init -q -b main");
  }
  const std::string& dir() const { return dir_; }

  void Write(const std::string& rel, const std::string& content) {
    const std::filesystem::path p = std::filesystem::path(dir_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }
  // Commits everything; returns the full commit id.
  std::string Commit(const std::string& message) {
    Git("add -A");
    Git("commit -q --allow-empty -m '" + message + "'");
    return Head();
  }
  std::string Head() {
    std::string sha = Git("rev-parse HEAD");
    while (!sha.empty() && sha.back() == '\n') sha.pop_back();
    return sha;
  }
  std::string Git(const std::string& args) {
    return Sh("git -C '" + dir_ + "' -c user.name=Kiln -c user.email=kiln@example.com " +
              "-c init.defaultBranch=main " + args);
  }

 private:
  std::string dir_;
};

}  // namespace kiln::agent::testing

#endif  // KILN_TESTS_AGENT_TEST_REPO_H_
