#include "agent/artifacts/artifact_files.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/file_tree.h"
#include "tests/testing/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln::agent::testing::FileTree;
using ::kiln::test::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

common::BuildspecArtifacts Spec(std::vector<std::string> files, std::string base = "") {
  common::BuildspecArtifacts spec;
  spec.files = std::move(files);
  spec.base_directory = std::move(base);
  return spec;
}

std::vector<std::string> ZipPaths(const ArtifactSelection& sel) {
  std::vector<std::string> out;
  for (const ArtifactFile& f : sel.files) out.push_back(f.zip_path);
  return out;
}

// --- GlobMatch ---

TEST(GlobMatchTest, DoubleStarSlashStarMatchesEveryFileIncludingDotFiles) {
  EXPECT_TRUE(GlobMatch("**/*", "a"));
  EXPECT_TRUE(GlobMatch("**/*", "a/b/c.txt"));
  EXPECT_TRUE(GlobMatch("**/*", ".env"));
  EXPECT_TRUE(GlobMatch("**/*", ".git/config"));
}

TEST(GlobMatchTest, DirStarMatchesOnlyFilesDirectlyInDir) {
  EXPECT_TRUE(GlobMatch("dir/*", "dir/x"));
  EXPECT_FALSE(GlobMatch("dir/*", "dir/a/x"));
  EXPECT_FALSE(GlobMatch("dir/*", "x"));
  EXPECT_FALSE(GlobMatch("dir/*", "other/x"));
}

TEST(GlobMatchTest, DirDoubleStarMatchesAnyDepthUnderDir) {
  EXPECT_TRUE(GlobMatch("dir/**/*", "dir/x"));
  EXPECT_TRUE(GlobMatch("dir/**/*", "dir/a/b/x"));
  EXPECT_FALSE(GlobMatch("dir/**/*", "dir"));
  EXPECT_FALSE(GlobMatch("dir/**/*", "other/dir/x"));
  EXPECT_TRUE(GlobMatch("a/**/b", "a/b"));
  EXPECT_TRUE(GlobMatch("a/**/b", "a/x/y/b"));
  EXPECT_FALSE(GlobMatch("a/**/b", "a/x/y/c"));
}

TEST(GlobMatchTest, StarAndQuestionMarkStayWithinOneComponent) {
  EXPECT_TRUE(GlobMatch("*.xml", "report.xml"));
  EXPECT_TRUE(GlobMatch("*.xml", ".xml"));
  EXPECT_FALSE(GlobMatch("*.xml", "sub/report.xml"));
  EXPECT_FALSE(GlobMatch("a*", "ab/c"));
  EXPECT_TRUE(GlobMatch("a?c", "abc"));
  EXPECT_FALSE(GlobMatch("a?c", "ac"));
  EXPECT_FALSE(GlobMatch("a?c", "a/c"));
  EXPECT_TRUE(GlobMatch("*-*.jar", "app-1.0.jar"));
  EXPECT_FALSE(GlobMatch("*-*.jar", "app.jar"));
}

TEST(GlobMatchTest, OtherCharactersAreLiteralAndDotComponentsIgnored) {
  EXPECT_TRUE(GlobMatch("[a].txt", "[a].txt"));
  EXPECT_FALSE(GlobMatch("[a].txt", "a.txt"));
  EXPECT_TRUE(GlobMatch("./a//b", "a/b"));
  EXPECT_FALSE(GlobMatch("a/b", "a/bc"));
}

TEST(GlobMatchTest, ExcludePatternsFromTheDocs) {
  EXPECT_TRUE(GlobMatch("**/.*/**/*", ".git/objects/ab/cd"));
  EXPECT_TRUE(GlobMatch("**/.*/**/*", "sub/.cache/x"));
  EXPECT_FALSE(GlobMatch("**/.*/**/*", "src/main.c"));
  EXPECT_TRUE(GlobMatch("**/.*", "sub/.env"));
  EXPECT_FALSE(GlobMatch("**/.*", ".git/config"));
  EXPECT_TRUE(GlobMatch("**/node_modules/**/*", "web/node_modules/x/index.js"));
}

// --- SelectArtifactFiles: the worked example of §1.10 ---

class WorkedExampleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_.Write("my-build-1/my-file-1.txt", "1");
    tree_.Write("my-build-2/my-file-2.txt", "2");
    tree_.Write("my-build-2/my-subdirectory/my-file-3.txt", "3");
  }
  FileTree tree_;
};

TEST_F(WorkedExampleTest, BaseDirectoryIsStrippedFromPaths) {
  auto sel = SelectArtifactFiles(tree_.root(), Spec({"*/my-file-3.txt"}, "my-build-2"));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("my-subdirectory/my-file-3.txt"));
  EXPECT_EQ(sel->files[0].source_path, tree_.Path("my-build-2/my-subdirectory/my-file-3.txt"));
  EXPECT_FALSE(sel->files[0].symlink);
}

TEST_F(WorkedExampleTest, GlobBaseDirectoryWithDiscardPathsFlattensAllThree) {
  auto spec = Spec({"**/*"}, "my-build*");
  spec.discard_paths = true;
  auto sel = SelectArtifactFiles(tree_.root(), spec);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("my-file-1.txt", "my-file-2.txt", "my-file-3.txt"));
}

TEST_F(WorkedExampleTest, GlobBaseDirectoryMergesContentsWithoutTheirNames) {
  auto sel = SelectArtifactFiles(tree_.root(), Spec({"**/*"}, "my-build*"));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel),
              ElementsAre("my-file-1.txt", "my-file-2.txt", "my-subdirectory/my-file-3.txt"));
}

TEST_F(WorkedExampleTest, NoBaseDirectoryKeepsFullRelativePaths) {
  auto sel = SelectArtifactFiles(tree_.root(), Spec({"**/*"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("my-build-1/my-file-1.txt", "my-build-2/my-file-2.txt",
                                          "my-build-2/my-subdirectory/my-file-3.txt"));
}

// --- SelectArtifactFiles: one test per rule ---

TEST(SelectArtifactFilesTest, LogLinesImitateCodeBuild) {
  FileTree tree;
  tree.Write("dist/app.js", "x");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"app.js", "missing.map"}, "dist"));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(sel->log_lines,
              ElementsAre("Expanding base directory path: dist", "Assembling file list",
                          "Expanding dist", "Expanding file paths for base directory dist",
                          "Assembling file list", "Expanding app.js", "Expanding missing.map",
                          "Skipping invalid file path missing.map", "Found 1 file(s)"));
}

TEST(SelectArtifactFilesTest, LiteralPathsInSubdirectoriesAndWithoutBaseDirectory) {
  FileTree tree;
  tree.Write("file.jar", "a");
  tree.Write("sub/dir/file.jar", "b");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"file.jar", "sub/dir/file.jar"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("file.jar", "sub/dir/file.jar"));
  EXPECT_EQ(sel->log_lines.front(), "Expanding base directory path: .");
}

TEST(SelectArtifactFilesTest, NothingMatchedIsNoMatchingArtifactPaths) {
  FileTree tree;
  tree.Write("a.txt", "a");
  EXPECT_THAT(SelectArtifactFiles(tree.root(), Spec({"missing.jar", "*.zip"})),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no matching artifact paths found"));
}

TEST(SelectArtifactFilesTest, MissingBaseDirectoryIsNoMatchingBaseDirectoryPath) {
  FileTree tree;
  tree.Write("a.txt", "a");
  EXPECT_THAT(
      SelectArtifactFiles(tree.root(), Spec({"**/*"}, "target")),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no matching base directory path found"));
  EXPECT_THAT(
      SelectArtifactFiles(tree.root(), Spec({"**/*"}, "build*")),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no matching base directory path found"));
  // A file is not a base directory.
  EXPECT_THAT(
      SelectArtifactFiles(tree.root(), Spec({"**/*"}, "a.txt")),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no matching base directory path found"));
}

TEST(SelectArtifactFilesTest, MultiComponentBaseDirectory) {
  FileTree tree;
  tree.Write("target/site/index.html", "i");
  tree.Write("target/other.txt", "o");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"**/*"}, "target/site"));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("index.html"));
}

TEST(SelectArtifactFilesTest, DirStarSelectsFilesNotDirectories) {
  FileTree tree;
  tree.Write("dir/a.txt", "a");
  tree.Write("dir/sub/b.txt", "b");
  tree.MakeDir("dir/empty");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"dir/*"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("dir/a.txt"));

  sel = SelectArtifactFiles(tree.root(), Spec({"dir/**/*"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("dir/a.txt", "dir/sub/b.txt"));
}

TEST(SelectArtifactFilesTest, TopLevelStarPatternDoesNotDescend) {
  FileTree tree;
  tree.Write("a.xml", "a");
  tree.Write("reports/b.xml", "b");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"*.xml"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("a.xml"));
}

TEST(SelectArtifactFilesTest, LiteralDirectoryIsNotAFile) {
  FileTree tree;
  tree.Write("dist/a.js", "a");
  tree.Write("b.txt", "b");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"dist", "b.txt"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("b.txt"));
  EXPECT_THAT(sel->log_lines, Contains("Skipping invalid file path dist"));
}

TEST(SelectArtifactFilesTest, DotFilesMatch) {
  FileTree tree;
  tree.Write(".env", "e");
  tree.Write(".config/x", "x");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"**/*"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre(".config/x", ".env"));
}

TEST(SelectArtifactFilesTest, ExcludePathsAreRelativeToBaseDirectory) {
  FileTree tree;
  tree.Write("out/app.js", "a");
  tree.Write("out/debug.log", "l");
  tree.Write("out/.cache/blob", "c");
  tree.Write("out/lib/.secret", "s");
  tree.Write("out/lib/util.js", "u");
  auto spec = Spec({"**/*"}, "out");
  spec.exclude_paths = {"**/*.log", "**/.*/**/*", "**/.*"};
  auto sel = SelectArtifactFiles(tree.root(), spec);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("app.js", "lib/util.js"));

  spec.exclude_paths = {"out/*.log"};  // relative to base-directory, so this matches nothing
  sel = SelectArtifactFiles(tree.root(), spec);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), Contains("debug.log"));
}

TEST(SelectArtifactFilesTest, ExcludingEverythingIsNoMatchingArtifactPaths) {
  FileTree tree;
  tree.Write("a.log", "a");
  auto spec = Spec({"**/*"});
  spec.exclude_paths = {"*.log"};
  EXPECT_THAT(SelectArtifactFiles(tree.root(), spec),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no matching artifact paths found"));
}

TEST(SelectArtifactFilesTest, DiscardPathsCollisionKeepsLastAndWarns) {
  FileTree tree;
  tree.Write("a/x.txt", "from a");
  tree.Write("b/x.txt", "from b");
  auto spec = Spec({"**/*"});
  spec.discard_paths = true;
  auto sel = SelectArtifactFiles(tree.root(), spec);
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_THAT(ZipPaths(*sel), ElementsAre("x.txt"));
  EXPECT_EQ(sel->files[0].source_path, tree.Path("b/x.txt"));
  EXPECT_THAT(sel->log_lines,
              Contains(AllOf(HasSubstr("Warning"), HasSubstr("b/x.txt"), HasSubstr("a/x.txt"))));
  EXPECT_EQ(sel->log_lines.back(), "Found 1 file(s)");
}

TEST(SelectArtifactFilesTest, FileMatchedByTwoPatternsIsListedOnceWithoutWarning) {
  FileTree tree;
  tree.Write("a.txt", "a");
  tree.Write("b.txt", "b");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"**/*", "a.txt", "*.txt"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("a.txt", "b.txt"));
  EXPECT_THAT(sel->log_lines, Not(Contains(HasSubstr("Warning"))));
}

TEST(SelectArtifactFilesTest, SymlinkToFileWithoutEnableSymlinksIsItsContent) {
  FileTree tree;
  tree.Write("real.txt", "r");
  tree.Symlink("real.txt", "link.txt");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"link.txt", "*.txt"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_THAT(ZipPaths(*sel), ElementsAre("link.txt", "real.txt"));
  EXPECT_FALSE(sel->files[0].symlink);
  EXPECT_EQ(sel->files[0].source_path, tree.Path("link.txt"));
}

TEST(SelectArtifactFilesTest, DirectorySymlinksAreNotFollowed) {
  FileTree tree;
  tree.Write("d/f.txt", "f");
  tree.Symlink(".", "d/loop");      // a loop
  tree.Symlink("../d", "d/alias");  // another path to the same files
  tree.Symlink("missing", "d/dangling");
  auto sel = SelectArtifactFiles(tree.root(), Spec({"**/*"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(ZipPaths(*sel), ElementsAre("d/f.txt"));
}

TEST(SelectArtifactFilesTest, EnableSymlinksKeepsEverySymlinkAsSymlink) {
  FileTree tree;
  tree.Write("d/f.txt", "f");
  tree.Symlink("f.txt", "d/file-link");
  tree.Symlink(".", "d/loop");
  auto spec = Spec({"**/*"});
  spec.enable_symlinks = true;
  auto sel = SelectArtifactFiles(tree.root(), spec);
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_THAT(ZipPaths(*sel), ElementsAre("d/f.txt", "d/file-link", "d/loop"));
  EXPECT_FALSE(sel->files[0].symlink);
  EXPECT_TRUE(sel->files[1].symlink);
  EXPECT_EQ(sel->files[1].link_target, "f.txt");
  EXPECT_TRUE(sel->files[2].symlink);
  EXPECT_EQ(sel->files[2].link_target, ".");
}

TEST(SelectArtifactFilesTest, RejectsPathsThatEscapeTheSourceDirectory) {
  FileTree tree;
  tree.Write("a/b.txt", "b");
  EXPECT_THAT(SelectArtifactFiles(tree.root(), Spec({"../secret"})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("../secret")));
  EXPECT_THAT(SelectArtifactFiles(tree.root(), Spec({"a/**/../../x"})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a/**/../../x")));
  EXPECT_THAT(SelectArtifactFiles(tree.root(), Spec({"**/*"}, "a/../..")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a/../..")));
  EXPECT_THAT(SelectArtifactFiles(tree.root(), Spec({"/etc/passwd"})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/etc/passwd")));
  auto spec = Spec({"**/*"});
  spec.exclude_paths = {"../x"};
  EXPECT_THAT(SelectArtifactFiles(tree.root(), spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("../x")));
}

TEST(SelectArtifactFilesTest, MissingSourceDirectoryIsNotFound) {
  FileTree tree;
  EXPECT_THAT(SelectArtifactFiles(tree.Path("nope"), Spec({"**/*"})),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(SelectArtifactFilesTest, SourcePathsAreAbsoluteEvenForARelativeSrcDir) {
  FileTree tree;
  tree.Write("a.txt", "a");
  const std::string rel = std::filesystem::relative(tree.root()).string();
  auto sel = SelectArtifactFiles(rel, Spec({"a.txt"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_EQ(sel->files.size(), 1u);
  EXPECT_TRUE(std::filesystem::path(sel->files[0].source_path).is_absolute());
  EXPECT_EQ(std::filesystem::weakly_canonical(sel->files[0].source_path),
            std::filesystem::weakly_canonical(tree.Path("a.txt")));
}

TEST(ExpandGlobTest, MissingBaseDirectoryGivesNoFiles) {
  FileTree tree;
  auto files = ExpandGlob(tree.Path("missing"), "**/*", false);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_TRUE(files->empty());
}

}  // namespace
TEST(SelectArtifactFilesTest, FilesResolvingOutsideTheSourceDirAreSkipped) {
  FileTree host;
  host.Write("etc/shadow", "root:x\n");
  FileTree src;
  src.Write("dist/app.txt", "app\n");
  src.Symlink(host.root(), "host");                       // ln -s / host
  src.Symlink(host.Path("etc/shadow"), "dist/shadow");    // a file symlink out of the workspace
  auto sel = SelectArtifactFiles(src.root(), Spec({"host/etc/shadow", "dist/*"}));
  ASSERT_TRUE(sel.ok()) << sel.status();
  std::vector<std::string> names;
  for (const auto& f : sel->files) names.push_back(f.zip_path);
  EXPECT_THAT(names, ElementsAre("dist/app.txt"));
  EXPECT_THAT(sel->log_lines, Contains(HasSubstr("resolves outside the source directory")));
}

}  // namespace kiln::agent
