// Install instructions: generation rules of reference/aws-semantics.md §4.2/§4.3 and the
// cleanup rules of §4.8, each test named after its rule.
#include "deploy/instructions.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::deploy {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class InstructionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/kiln_instr_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = fs::path(tmpl).lexically_normal();
    archive_ = root_ / "archive";
    dest_ = (root_ / "dest").string();
    fs::create_directories(archive_);
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const fs::path& p, const std::string& content, mode_t mode = 0644) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  absl::StatusOr<InstallInstructions> Generate(const AppSpec& spec,
                                               std::string_view behavior = "DISALLOW") {
    return GenerateInstructions(spec, archive_, behavior);
  }
  // "copy <dest>", "mkdir <dir>", "chmod <mode> <file>", "chown <o>:<g> <file>", root-relative.
  std::vector<std::string> Summary(const InstallInstructions& ins) {
    std::vector<std::string> out;
    auto rel = [&](const std::string& p) { return fs::path(p).lexically_relative(root_).string(); };
    for (const Instruction& i : ins.instructions) {
      switch (i.type) {
        case Instruction::Type::kCopy:
          out.push_back("copy " + rel(i.path));
          break;
        case Instruction::Type::kMkdir:
          out.push_back("mkdir " + rel(i.path));
          break;
        case Instruction::Type::kChmod:
          out.push_back("chmod " + i.mode + " " + rel(i.path));
          break;
        case Instruction::Type::kChown:
          out.push_back("chown " + i.owner.value_or("") + ":" + i.group.value_or("") + " " +
                        rel(i.path));
          break;
      }
    }
    return out;
  }
  static AppSpec Files(std::vector<AppSpecFile> files) {
    AppSpec spec;
    spec.os = "linux";
    spec.files = std::move(files);
    return spec;
  }

  fs::path root_;
  fs::path archive_;
  std::string dest_;
};

TEST_F(InstructionsTest, SourceDirectoryCopiesItsContentsNotItself) {
  Write(archive_ / "app/a.txt", "a");
  Write(archive_ / "app/sub/b.txt", "b");
  auto ins = Generate(Files({{"app", dest_}}));
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins),
              ElementsAre("mkdir dest", "copy dest/a.txt", "mkdir dest/sub", "copy dest/sub/b.txt"));
}

TEST_F(InstructionsTest, SourceFileLandsInsideDestinationDirectory) {
  Write(archive_ / "config.txt", "c");
  auto ins = Generate(Files({{"config.txt", dest_ + "/config.txt"}}));
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins), ElementsAre("mkdir dest", "mkdir dest/config.txt",
                                         "copy dest/config.txt/config.txt"));
}

TEST_F(InstructionsTest, MissingAncestorsAreCreatedOutermostFirst) {
  Write(archive_ / "f", "f");
  auto ins = Generate(Files({{"f", dest_ + "/a/b"}}));
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins), ElementsAre("mkdir dest", "mkdir dest/a", "mkdir dest/a/b",
                                         "copy dest/a/b/f"));
}

TEST_F(InstructionsTest, SourceSlashIsTheWholeRevisionIncludingAppspec) {
  Write(archive_ / "appspec.yml", "version: 0.0");
  Write(archive_ / "index.html", "x");
  fs::create_directories(dest_);
  auto ins = Generate(Files({{"/", dest_}}));
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins), ElementsAre("copy dest/appspec.yml", "copy dest/index.html"));
}

TEST_F(InstructionsTest, MissingSourceIsReported) {
  auto ins = Generate(Files({{"nope", dest_}}));
  EXPECT_THAT(std::string(ins.status().message()), HasSubstr("the source nope, which does not exist"));
}

TEST_F(InstructionsTest, ExistingFileWithDisallowFails) {
  Write(archive_ / "a.txt", "new");
  Write(dest_ + "/a.txt", "old");
  auto ins = Generate(Files({{"a.txt", dest_}}));
  EXPECT_EQ(ins.status().message(),
            "The deployment failed because a specified file already exists at this location: " +
                dest_ + "/a.txt");
}

TEST_F(InstructionsTest, ExistingFileWithOverwriteIsCopied) {
  Write(archive_ / "a.txt", "new");
  Write(dest_ + "/a.txt", "old");
  auto ins = Generate(Files({{"a.txt", dest_}}), "OVERWRITE");
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins), ElementsAre("copy dest/a.txt"));
}

TEST_F(InstructionsTest, ExistingFileWithRetainIsNeitherCopiedNorListed) {
  Write(archive_ / "a.txt", "new");
  Write(archive_ / "b.txt", "new");
  Write(dest_ + "/a.txt", "old");
  auto ins = Generate(Files({{"a.txt", dest_}, {"b.txt", dest_}}), "RETAIN");
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins), ElementsAre("copy dest/b.txt"));
}

TEST_F(InstructionsTest, InvalidFileExistsBehaviorFailsOnlyWhenAnExistingFileReachesIt) {
  Write(archive_ / "a.txt", "new");
  EXPECT_TRUE(Generate(Files({{"a.txt", dest_}}), "MERGE").ok());
  Write(dest_ + "/a.txt", "old");
  EXPECT_EQ(Generate(Files({{"a.txt", dest_}}), "MERGE").status().message(),
            "The deployment failed because an invalid option was specified for "
            "fileExistsBehavior: MERGE. Valid options include OVERWRITE, RETAIN, and DISALLOW.");
}

TEST_F(InstructionsTest, ConflictTwoSourcesWithTheSameDestination) {
  Write(archive_ / "one/a.txt", "1");
  Write(archive_ / "two/a.txt", "2");
  auto ins = Generate(Files({{"one/a.txt", dest_}, {"two/a.txt", dest_}}));
  EXPECT_THAT(std::string(ins.status().message()),
              HasSubstr("specifies two source files named " + archive_.string() + "/two/a.txt and " +
                        archive_.string() + "/one/a.txt for the same destination (" + dest_ +
                        "/a.txt)"));
}

TEST_F(InstructionsTest, ConflictCopyOntoADirectoryBeingCreated) {
  Write(archive_ / "tree/x/inner.txt", "i");
  Write(archive_ / "file/x", "file named x");
  auto ins = Generate(Files({{"tree", dest_}, {"file/x", dest_}}));
  EXPECT_THAT(std::string(ins.status().message()),
              HasSubstr("calls for installing the file " + archive_.string() +
                        "/file/x, but a file with that name already exists at the location (" +
                        dest_ + "/x)"));
}

TEST_F(InstructionsTest, ConflictDirectoryCreatedOverACopyTarget) {
  Write(archive_ / "file/x", "file named x");
  Write(archive_ / "tree/x/inner.txt", "i");
  auto ins = Generate(Files({{"file/x", dest_}, {"tree", dest_}}));
  EXPECT_THAT(std::string(ins.status().message()),
              HasSubstr("includes an mkdir command more than once for the same destination path (" +
                        dest_ + "/x)"));
}

TEST_F(InstructionsTest, PermissionOnACopiedFileAppliesChmodThenChown) {
  Write(archive_ / "run.sh", "#!/bin/sh\n");
  AppSpec spec = Files({{"run.sh", dest_}});
  AppSpecPermission p;
  p.object = dest_ + "/run.sh";
  p.mode = "750";
  p.owner = "root";
  spec.permissions.push_back(p);
  auto ins = Generate(spec);
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins), ElementsAre("mkdir dest", "copy dest/run.sh", "chmod 750 dest/run.sh",
                                         "chown root: dest/run.sh"));
}

TEST_F(InstructionsTest, PermissionOnACopiedFileRejectsAPattern) {
  Write(archive_ / "run.sh", "x");
  AppSpec spec = Files({{"run.sh", dest_}});
  AppSpecPermission p;
  p.object = dest_ + "/run.sh";
  p.pattern = "*.sh";
  spec.permissions.push_back(p);
  EXPECT_THAT(std::string(Generate(spec).status().message()),
              HasSubstr("includes an object (" + dest_ + "/run.sh) with an invalid pattern (*.sh)"));
}

TEST_F(InstructionsTest, PermissionOnACopiedFileRejectsExcept) {
  Write(archive_ / "run.sh", "x");
  AppSpec spec = Files({{"run.sh", dest_}});
  AppSpecPermission p;
  p.object = dest_ + "/run.sh";
  p.except = {"a"};
  spec.permissions.push_back(p);
  EXPECT_THAT(std::string(Generate(spec).status().message()),
              HasSubstr("the except parameter for a pattern in the permissions section ([\"a\"])"));
}

TEST_F(InstructionsTest, PermissionOnADirectoryAppliesToInstalledDescendantsNotTheObject) {
  Write(archive_ / "app/a.sh", "a");
  Write(archive_ / "app/sub/b.sh", "b");
  AppSpec spec = Files({{"app", dest_}});
  AppSpecPermission p;
  p.object = dest_;
  p.mode = "700";
  spec.permissions.push_back(p);
  auto ins = Generate(spec);
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_THAT(Summary(*ins),
              ElementsAre("mkdir dest", "copy dest/a.sh", "mkdir dest/sub", "copy dest/sub/b.sh",
                          "chmod 700 dest/a.sh", "chmod 700 dest/sub/b.sh", "chmod 700 dest/sub"));
}

TEST_F(InstructionsTest, PermissionPatternMatchesOnlyNamesDirectlyUnderObjectMinusExcept) {
  Write(archive_ / "app/a.sh", "a");
  Write(archive_ / "app/keep.sh", "k");
  Write(archive_ / "app/b.txt", "b");
  Write(archive_ / "app/sub/c.sh", "c");
  AppSpec spec = Files({{"app", dest_}});
  AppSpecPermission p;
  p.object = dest_;
  p.pattern = "*.sh";
  p.except = {"keep*"};
  p.directories = false;
  p.mode = "755";
  spec.permissions.push_back(p);
  auto ins = Generate(spec);
  ASSERT_TRUE(ins.ok()) << ins.status();
  std::vector<std::string> chmods;
  for (const std::string& s : Summary(*ins)) {
    if (s.rfind("chmod", 0) == 0) chmods.push_back(s);
  }
  EXPECT_THAT(chmods, ElementsAre("chmod 755 dest/a.sh"));
}

TEST_F(InstructionsTest, PermissionTypeDirectorySelectsCreatedDirectoriesOnly) {
  Write(archive_ / "app/sub/c.sh", "c");
  AppSpec spec = Files({{"app", dest_}});
  AppSpecPermission p;
  p.object = dest_;
  p.files = false;
  p.group = "root";
  spec.permissions.push_back(p);
  auto ins = Generate(spec);
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_EQ(Summary(*ins).back(), "chown :root dest/sub");
}

TEST_F(InstructionsTest, PermissionsOnTheSamePathTwiceIsAnError) {
  Write(archive_ / "app/a", "a");
  AppSpec spec = Files({{"app", dest_}});
  AppSpecPermission p;
  p.object = dest_;
  p.mode = "644";
  spec.permissions = {p, p};
  EXPECT_THAT(std::string(Generate(spec).status().message()),
              HasSubstr("the permissions setting for (" + dest_ +
                        "/a) is specified more than once"));
}

TEST_F(InstructionsTest, AclsAndContextAreNotSupportedByKiln) {
  Write(archive_ / "a", "a");
  AppSpec spec = Files({{"a", dest_}});
  AppSpecPermission p;
  p.object = dest_;
  p.acls = std::vector<std::string>{"u:app:rw"};
  spec.permissions.push_back(p);
  absl::Status s = Generate(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("acls are not supported by Kiln"));
  spec.permissions[0].acls.reset();
  spec.permissions[0].context = AppSpecContext{std::nullopt, "httpd_t", std::nullopt};
  EXPECT_THAT(std::string(Generate(spec).status().message()),
              HasSubstr("an SELinux context are not supported by Kiln"));
}

TEST_F(InstructionsTest, JsonHasTheAgentsShape) {
  Write(archive_ / "a", "a");
  AppSpec spec = Files({{"a", dest_}});
  AppSpecPermission p;
  p.object = dest_ + "/a";
  p.mode = "644";
  p.group = "root";
  spec.permissions.push_back(p);
  auto ins = Generate(spec);
  ASSERT_TRUE(ins.ok()) << ins.status();
  nlohmann::json j = ins->ToJson();
  ASSERT_EQ(j["instructions"].size(), 4u);
  EXPECT_EQ(j["instructions"][0], (nlohmann::json{{"type", "mkdir"}, {"directory", dest_}}));
  EXPECT_EQ(j["instructions"][1]["type"], "copy");
  EXPECT_EQ(j["instructions"][1]["source"], archive_.string() + "/a");
  EXPECT_EQ(j["instructions"][1]["destination"], dest_ + "/a");
  EXPECT_EQ(j["instructions"][2],
            (nlohmann::json{{"type", "chmod"}, {"mode", "644"}, {"file", dest_ + "/a"}}));
  EXPECT_TRUE(j["instructions"][3]["owner"].is_null());
  EXPECT_EQ(j["instructions"][3]["group"], "root");
}

TEST_F(InstructionsTest, ExecuteCopiesKeepingModeTimesAndSymlinks) {
  Write(archive_ / "app/run.sh", "#!/bin/sh\n", 0750);
  struct timespec old_times[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (archive_ / "app/run.sh").c_str(), old_times, 0), 0);
  fs::create_symlink("run.sh", archive_ / "app/link");
  auto ins = Generate(Files({{"app", dest_}}));
  ASSERT_TRUE(ins.ok()) << ins.status();
  fs::path cleanup = root_ / "dg-cleanup";
  ASSERT_TRUE(ExecuteInstructions(*ins, cleanup).ok());
  struct stat st;
  ASSERT_EQ(::stat((dest_ + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1000000000);
  EXPECT_EQ(Read(dest_ + "/run.sh"), "#!/bin/sh\n");
  EXPECT_TRUE(fs::is_symlink(dest_ + "/link"));
  EXPECT_EQ(fs::read_symlink(dest_ + "/link"), "run.sh");
  EXPECT_EQ(Read(cleanup), dest_ + "\n" + dest_ + "/link\n" + dest_ + "/run.sh\n");
}

TEST_F(InstructionsTest, ExecuteAppliesMode) {
  Write(archive_ / "a", "a", 0644);
  AppSpec spec = Files({{"a", dest_}});
  AppSpecPermission p;
  p.object = dest_ + "/a";
  p.mode = "600";
  spec.permissions.push_back(p);
  auto ins = Generate(spec);
  ASSERT_TRUE(ins.ok());
  ASSERT_TRUE(ExecuteInstructions(*ins, root_ / "cleanup").ok());
  struct stat st;
  ASSERT_EQ(::stat((dest_ + "/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(InstructionsTest, ExecuteFailsWhenADirectoryToCreateAlreadyExists) {
  InstallInstructions ins;
  fs::create_directories(dest_);
  ins.instructions.push_back({Instruction::Type::kMkdir, "", dest_});
  EXPECT_EQ(ExecuteInstructions(ins, root_ / "cleanup").message(),
            "The deployment failed because a specified file already exists at this location: " +
                dest_ + ".");
}

TEST_F(InstructionsTest, CleanupRemovesInReverseKeepsNonEmptyDirsIgnoresUnfinishedLine) {
  fs::create_directories(dest_ + "/sub");
  Write(dest_ + "/sub/installed", "i");
  Write(dest_ + "/sub/script-made", "s");
  Write(dest_ + "/top", "t");
  Write(dest_ + "/unfinished", "u");
  fs::path cleanup = root_ / "dg-cleanup";
  std::ofstream(cleanup) << dest_ << "\n"
                         << dest_ << "/sub\n"
                         << dest_ << "/sub/installed\n"
                         << dest_ << "/top\n"
                         << dest_ << "/missing\n"
                         << dest_ << "/unfinished";
  ASSERT_TRUE(RemovePreviousInstall(cleanup).ok());
  EXPECT_FALSE(fs::exists(dest_ + "/sub/installed"));
  EXPECT_FALSE(fs::exists(dest_ + "/top"));
  EXPECT_TRUE(fs::exists(dest_ + "/sub/script-made"));
  EXPECT_TRUE(fs::exists(dest_ + "/unfinished"));
  EXPECT_TRUE(fs::is_directory(dest_ + "/sub"));
  EXPECT_FALSE(fs::exists(cleanup));
}

TEST_F(InstructionsTest, CleanupRemovesEmptiedDirectories) {
  fs::create_directories(dest_ + "/sub");
  Write(dest_ + "/sub/f", "f");
  fs::path cleanup = root_ / "dg-cleanup";
  std::ofstream(cleanup) << dest_ << "\n" << dest_ << "/sub\n" << dest_ << "/sub/f\n";
  ASSERT_TRUE(RemovePreviousInstall(cleanup).ok());
  EXPECT_FALSE(fs::exists(dest_));
}

TEST_F(InstructionsTest, CleanupWithoutAFileIsANoOp) {
  EXPECT_TRUE(RemovePreviousInstall(root_ / "absent").ok());
  EXPECT_THAT(Summary(InstallInstructions{}), IsEmpty());
}

}  // namespace
}  // namespace kiln::deploy
