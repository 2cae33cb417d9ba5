// Test helper for the artifact and cache tests: a fresh temp directory with helpers to create
// files, directories and symlinks in it; removed by the destructor.
#ifndef KILN_TESTS_AGENT_FILE_TREE_H_
#define KILN_TESTS_AGENT_FILE_TREE_H_

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace kiln::agent::testing {

class FileTree {
 public:
  FileTree() {
    std::string base = ::testing::TempDir();
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    std::string tmpl = base + "/kiln-files-XXXXXX";
    root_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
    EXPECT_FALSE(root_.empty());
  }
  ~FileTree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  FileTree(const FileTree&) = delete;
  FileTree& operator=(const FileTree&) = delete;

  const std::string& root() const { return root_; }
  std::string Path(const std::string& rel) const { return root_ + "/" + rel; }

  // Writes `content` to `rel` (parents created) with permission bits `mode`.
  void Write(const std::string& rel, const std::string& content, int mode = 0644) const {
    std::filesystem::create_directories(std::filesystem::path(Path(rel)).parent_path());
    std::ofstream(Path(rel), std::ios::binary | std::ios::trunc) << content;
    chmod(Path(rel).c_str(), mode);
  }
  void MakeDir(const std::string& rel) const { std::filesystem::create_directories(Path(rel)); }
  void Symlink(const std::string& target, const std::string& rel) const {
    std::filesystem::create_directories(std::filesystem::path(Path(rel)).parent_path());
    std::filesystem::create_symlink(target, Path(rel));
  }
  std::string Read(const std::string& rel) const {
    std::ifstream in(Path(rel), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string root_;
};

}  // namespace kiln::agent::testing

#endif  // KILN_TESTS_AGENT_FILE_TREE_H_
