#include "agent/artifacts/local_cache.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/file_tree.h"
#include "tests/testing/status_matchers.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;
using ::kiln::agent::testing::FileTree;
using ::kiln::test::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

common::BuildspecCache Cache(std::vector<std::string> paths, std::string key = "",
                             std::vector<std::string> fallback = {}, std::string action = "") {
  common::BuildspecCache c;
  c.paths = std::move(paths);
  c.key = std::move(key);
  c.fallback_keys = std::move(fallback);
  c.action = std::move(action);
  return c;
}

std::vector<fs::path> Files(const std::string& dir, const std::string& ext) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.path().extension() == ext) out.push_back(e.path());
  }
  return out;
}
int CountFiles(const std::string& dir, const std::string& ext) {
  return static_cast<int>(Files(dir, ext).size());
}

class LocalCacheTest : public ::testing::Test {
 protected:
  // Saves `content` in src/dep.txt under `key` from a fresh source dir.
  void SaveKey(const std::string& key, const std::string& content) {
    FileTree src;
    src.Write("deps/dep.txt", content);
    auto saved = cache_.Save("proj", Cache({"deps/**/*"}, key), src.root());
    ASSERT_TRUE(saved.ok()) << saved.status();
    ASSERT_TRUE(saved->saved);
  }
  // Restores into a fresh source dir; returns deps/dep.txt's content ("" if not restored).
  std::string RestoreKey(const common::BuildspecCache& spec, std::string* restored_key = nullptr) {
    FileTree dst;
    auto r = cache_.Restore("proj", spec, dst.root());
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || !r->restored) return "";
    if (restored_key) *restored_key = r->key;
    return dst.Read("deps/dep.txt");
  }

  FileTree work_;
  LocalCache cache_{work_.Path("cache")};
};

TEST_F(LocalCacheTest, SaveThenRestoreIntoFreshSourceDirRestoresContentModeAndSymlinks) {
  FileTree src;
  src.Write("node_modules/a/index.js", "module.exports = 1;\n");
  src.Write("node_modules/.bin/tool", "#!/bin/sh\n", 0755);
  src.Symlink("../a/index.js", "node_modules/.bin/a");
  src.Write("other.txt", "not cached");
  auto saved = cache_.Save("proj", Cache({"node_modules/**/*"}, "npm-1"), src.root());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->saved);
  EXPECT_EQ(saved->files, 3);
  std::vector<fs::path> tars = Files(work_.Path("cache"), ".tar");
  ASSERT_EQ(tars.size(), 1u);
  EXPECT_EQ(saved->bytes, static_cast<int64_t>(fs::file_size(tars[0])));

  FileTree dst;
  auto restored = cache_.Restore("proj", Cache({"node_modules/**/*"}, "npm-1"), dst.root());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->restored);
  EXPECT_EQ(restored->key, "npm-1");
  EXPECT_EQ(restored->files, 3);
  EXPECT_EQ(dst.Read("node_modules/a/index.js"), "module.exports = 1;\n");
  EXPECT_EQ(fs::status(dst.Path("node_modules/.bin/tool")).permissions() & fs::perms::all,
            fs::perms(0755));
  EXPECT_TRUE(fs::is_symlink(dst.Path("node_modules/.bin/a")));
  EXPECT_EQ(fs::read_symlink(dst.Path("node_modules/.bin/a")), "../a/index.js");
  EXPECT_FALSE(fs::exists(dst.Path("other.txt")));
}

TEST_F(LocalCacheTest, CacheDirectoryIsPrivate) {
  SaveKey("k", "x");
  EXPECT_EQ(fs::status(work_.Path("cache")).permissions() & fs::perms::all, fs::perms(0700));
}

TEST_F(LocalCacheTest, ExactKeyWinsOverFallback) {
  SaveKey("v1-abc", "abc");
  SaveKey("v1-def", "def");  // newer, also matches the fallback
  std::string key;
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "v1-abc", {"v1-"}), &key), "abc");
  EXPECT_EQ(key, "v1-abc");
}

TEST_F(LocalCacheTest, FallbackPrefixPicksNewestOfTheFirstMatchingFallback) {
  SaveKey("v1-a", "a");
  SaveKey("v1-b", "b");
  SaveKey("v2-c", "c");
  std::string key;
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "v1-zzz", {"v3-", "v1-", "v2-"}), &key), "b");
  EXPECT_EQ(key, "v1-b");
  // Re-saving v1-a makes it the newest v1- entry.
  SaveKey("v1-a", "a2");
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "v1-zzz", {"v1-"}), &key), "a2");
  EXPECT_EQ(key, "v1-a");
}

TEST_F(LocalCacheTest, NoMatchingKeyIsNotAnError) {
  SaveKey("v1-a", "a");
  FileTree dst;
  auto r = cache_.Restore("proj", Cache({"deps/**/*"}, "v2-a", {"v2-"}), dst.root());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->restored);
  EXPECT_THAT(r->log_lines, ElementsAre(HasSubstr("v2-a")));
  // Another project sees nothing.
  r = cache_.Restore("other", Cache({"deps/**/*"}, "v1-a"), dst.root());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->restored);
}

TEST_F(LocalCacheTest, FallbackKeysAreIgnoredWithoutKey) {
  SaveKey("v1-a", "a");
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "", {"v1-"})), "");
}

TEST_F(LocalCacheTest, EmptyKeyIsTheProjectsDefaultEntry) {
  SaveKey("", "default");
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"})), "default");
  SaveKey("", "default2");  // replaced, not added
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"})), "default2");
  EXPECT_EQ(CountFiles(work_.Path("cache"), ".tar"), 1);
}

TEST_F(LocalCacheTest, ActionRestoreNeverSaves) {
  FileTree src;
  src.Write("deps/dep.txt", "x");
  auto saved = cache_.Save("proj", Cache({"deps/**/*"}, "k", {}, "restore"), src.root());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_FALSE(saved->saved);
  EXPECT_THAT(cache_.WarmProjects(), IsEmpty());
  EXPECT_EQ(CountFiles(work_.Path("cache"), ".tar"), 0);
}

TEST_F(LocalCacheTest, ActionSaveNeverRestores) {
  SaveKey("k", "x");
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "k", {}, "save")), "");
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "k", {}, "restore")), "x");
}

TEST_F(LocalCacheTest, AbsolutePathGlobIsRestoredAtItsAbsolutePath) {
  FileTree home;  // stands in for /root
  home.Write(".m2/repository/org/x/x-1.jar", "jar");
  home.Write(".m2/settings.xml", "<settings/>");
  home.Write("unrelated.txt", "u");
  FileTree src;
  src.Write("target/classes/A.class", "A");
  auto saved =
      cache_.Save("proj", Cache({home.root() + "/.m2/**/*", "target/**/*"}, "mvn"), src.root());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->files, 3);

  fs::remove_all(home.Path(".m2"));
  FileTree dst;
  auto r = cache_.Restore("proj", Cache({home.root() + "/.m2/**/*", "target/**/*"}, "mvn"),
                          dst.root());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files, 3);
  EXPECT_EQ(home.Read(".m2/repository/org/x/x-1.jar"), "jar");
  EXPECT_EQ(home.Read(".m2/settings.xml"), "<settings/>");
  EXPECT_EQ(dst.Read("target/classes/A.class"), "A");
  EXPECT_FALSE(fs::exists(dst.Path(".m2")));
}

TEST_F(LocalCacheTest, AbsoluteMembersAreRestoredOnlyWhenTheSpecNamesAbsolutePaths) {
  FileTree home;
  home.Write("tool.cfg", "cfg");
  FileTree src;
  ASSERT_TRUE(cache_.Save("proj", Cache({home.Path("tool.cfg")}, "k"), src.root()).ok());
  fs::remove(home.Path("tool.cfg"));
  // A later buildspec of the project without absolute paths (a container build, a PR) restores none.
  ASSERT_TRUE(cache_.Restore("proj", Cache({"deps/**/*"}, "k"), src.root()).ok());
  EXPECT_FALSE(fs::exists(home.Path("tool.cfg")));
}

TEST_F(LocalCacheTest, AbsoluteLiteralPathSavesThatFile) {
  FileTree home;
  home.Write("tool.cfg", "cfg");
  FileTree src;
  auto saved = cache_.Save("proj", Cache({home.Path("tool.cfg")}, "k"), src.root());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->files, 1);
  fs::remove(home.Path("tool.cfg"));
  ASSERT_TRUE(cache_.Restore("proj", Cache({home.Path("tool.cfg")}, "k"), src.root()).ok());
  EXPECT_EQ(home.Read("tool.cfg"), "cfg");
}

TEST_F(LocalCacheTest, KeepsAtMostFiveKeysEvictingTheOldest) {
  for (int i = 0; i < 6; ++i) SaveKey("k" + std::to_string(i), "v" + std::to_string(i));
  EXPECT_EQ(CountFiles(work_.Path("cache"), ".tar"), LocalCache::kMaxKeysPerProject);
  EXPECT_EQ(CountFiles(work_.Path("cache"), ".key"), LocalCache::kMaxKeysPerProject);
  EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "k0")), "");
  for (int i = 1; i < 6; ++i) {
    EXPECT_EQ(RestoreKey(Cache({"deps/**/*"}, "k" + std::to_string(i))), "v" + std::to_string(i));
  }
}

TEST_F(LocalCacheTest, KeysAndProjectNamesCannotEscapeTheRoot) {
  FileTree src;
  src.Write("deps/dep.txt", "x");
  auto saved = cache_.Save("../../p", Cache({"deps/**/*"}, "../../../../evil"), src.root());
  ASSERT_TRUE(saved.ok()) << saved.status();
  int outside = 0;
  for (auto& e : fs::recursive_directory_iterator(work_.root())) {
    if (e.is_regular_file() && e.path().string().rfind(work_.Path("cache/"), 0) != 0) ++outside;
  }
  EXPECT_EQ(outside, 0);
  EXPECT_THAT(cache_.WarmProjects(), ElementsAre("../../p"));
}

TEST_F(LocalCacheTest, WarmProjectsListsProjectsWithSavedEntries) {
  EXPECT_THAT(cache_.WarmProjects(), IsEmpty());  // root not even created yet
  FileTree src;
  src.Write("deps/dep.txt", "x");
  ASSERT_TRUE(cache_.Save("web", Cache({"deps/**/*"}, "k"), src.root()).ok());
  ASSERT_TRUE(cache_.Save("api", Cache({"deps/**/*"}), src.root()).ok());
  auto nothing = cache_.Save("empty", Cache({"missing/**/*"}, "k"), src.root());
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_FALSE(nothing->saved);
  EXPECT_THAT(cache_.WarmProjects(), ElementsAre("api", "web"));
}

TEST_F(LocalCacheTest, RejectsDotDotPathsAndEmptyProject) {
  FileTree src;
  EXPECT_THAT(cache_.Save("proj", Cache({"../x/**/*"}, "k"), src.root()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("../x/**/*")));
  EXPECT_THAT(cache_.Save("proj", Cache({"/root/../etc/*"}, "k"), src.root()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/root/../etc/*")));
  EXPECT_THAT(cache_.Save("", Cache({"**/*"}, "k"), src.root()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cache_.Restore("", Cache({"**/*"}, "k"), src.root()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(LocalCacheTest, DifferentProjectsSaveAndRestoreConcurrently) {
  FileTree src;
  src.Write("deps/dep.txt", "shared");
  std::vector<std::thread> threads;
  std::vector<int> ok(8, 0);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      const std::string project = "p" + std::to_string(i % 4);
      auto saved = cache_.Save(project, Cache({"deps/**/*"}, "k" + std::to_string(i)), src.root());
      FileTree dst;
      auto restored = cache_.Restore(project, Cache({}, "k" + std::to_string(i)), dst.root());
      ok[i] = saved.ok() && saved->saved && restored.ok() && restored->restored &&
              dst.Read("deps/dep.txt") == "shared";
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(ok[i]) << i;
  EXPECT_THAT(cache_.WarmProjects(), ElementsAre("p0", "p1", "p2", "p3"));
}

}  // namespace
TEST_F(LocalCacheTest, RestoreNeverWritesThroughASymlinkTheBuildPlanted) {
  SaveKey("k", "attacker content\n");
  // The next build's checkout makes deps a symlink to a host directory (node_modules -> /root/.ssh).
  FileTree host;
  FileTree dst;
  dst.Symlink(host.root(), "deps");
  auto r = cache_.Restore("proj", Cache({"deps/**/*"}, "k"), dst.root());
  ASSERT_TRUE(r.ok()) << r.status();
  // The planted symlink is replaced, never followed: the host directory stays untouched.
  EXPECT_FALSE(std::filesystem::exists(host.Path("dep.txt")));
  EXPECT_FALSE(std::filesystem::is_symlink(dst.Path("deps")));
  EXPECT_EQ(dst.Read("deps/dep.txt"), "attacker content\n");
}

TEST_F(LocalCacheTest, SaveSkipsFilesThatResolveOutsideTheSourceDir) {
  FileTree host;
  host.Write("secret.txt", "host secret\n");
  FileTree src;
  src.Write("deps/ok.txt", "ok\n");
  src.Symlink(host.root(), "deps/host");  // a directory symlink out of the workspace
  src.Symlink(host.Path("secret.txt"), "deps/secret-link");
  auto saved = cache_.Save("proj", Cache({"deps/**/*"}, "k"), src.root());
  ASSERT_TRUE(saved.ok()) << saved.status();
  FileTree dst;
  auto r = cache_.Restore("proj", Cache({"deps/**/*"}, "k"), dst.root());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(dst.Read("deps/ok.txt"), "ok\n");
  // Symlinks are cached as symlinks, never as the host content they point at.
  EXPECT_TRUE(std::filesystem::is_symlink(dst.Path("deps/host")));
  EXPECT_TRUE(std::filesystem::is_symlink(dst.Path("deps/secret-link")));
  std::filesystem::remove_all(host.root());
  EXPECT_FALSE(std::filesystem::exists(dst.Path("deps/host/secret.txt")));
}

}  // namespace kiln::agent
