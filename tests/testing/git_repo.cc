#include "tests/testing/git_repo.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace kiln::test {

std::string Sh(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) std::abort();
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (status != 0) {
    std::cerr << "command failed (" << status << "): " << cmd << "\n" << out << std::endl;
    std::abort();
  }
  return out;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

GitRepo::GitRepo(const std::string& dir, const std::string& name) {
  bare_ = dir + "/" + name + ".git";
  work_ = dir + "/" + name + "-work";
  Sh("git init -q --bare -b main '" + bare_ + "' && git init -q -b main '" + work_ + "' && cd '" +
     work_ + "' && git config user.email test@kiln.invalid && git config user.name Kiln-Test && " +
     "git remote add origin '" + bare_ + "'");
}

std::string GitRepo::Commit(const std::map<std::string, std::string>& files, const std::string& message,
                            const std::string& branch) {
  for (const auto& [path, content] : files) {
    std::filesystem::path p = std::filesystem::path(work_) / path;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::trunc | std::ios::binary) << content;
  }
  Sh("cd '" + work_ + "' && git checkout -q -B '" + branch + "' && git add -A && git commit -q -m '" +
     message + "' && git push -q origin '" + branch + "' 2>&1");
  std::string sha = Sh("cd '" + work_ + "' && git rev-parse HEAD");
  while (!sha.empty() && (sha.back() == '\n' || sha.back() == '\r')) sha.pop_back();
  return sha;
}

}  // namespace kiln::test
