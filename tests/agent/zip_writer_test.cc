#include "agent/artifacts/zip_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <filesystem>
#include <map>
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Member {
  std::string content;
  int perm = 0;
  bool symlink = false;
  std::string link_target;
  int64_t mtime = 0;
};

// Reads an archive back with libarchive: member name -> Member, in archive order.
std::vector<std::pair<std::string, Member>> ReadBack(const std::string& path) {
  std::vector<std::pair<std::string, Member>> out;
  archive* a = archive_read_new();
  archive_read_support_format_all(a);
  EXPECT_EQ(archive_read_open_filename(a, path.c_str(), 16384), ARCHIVE_OK)
      << archive_error_string(a);
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    Member m;
    m.perm = archive_entry_perm(e);
    m.mtime = archive_entry_mtime(e);
    m.symlink = archive_entry_filetype(e) == AE_IFLNK;
    if (m.symlink) m.link_target = archive_entry_symlink(e);
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) m.content.append(buf, n);
    out.emplace_back(archive_entry_pathname(e), m);
  }
  archive_read_free(a);
  return out;
}

void SetMtime(const std::string& path, time_t seconds) {
  struct timeval tv[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(utimes(path.c_str(), tv), 0);
}

TEST(ZipWriterTest, WritesMembersWithContentModeMtimeAndSymlinks) {
  FileTree tree;
  tree.Write("src/run.sh", "#!/bin/sh\necho hi\n", 0755);
  tree.Write("src/app/config.json", "{}", 0640);
  SetMtime(tree.Path("src/run.sh"), 1600000000);
  tree.Symlink("run.sh", "src/start");
  std::vector<ArtifactFile> files = {
      {"app/config.json", tree.Path("src/app/config.json")},
      {"run.sh", tree.Path("src/run.sh")},
      {"start", tree.Path("src/start"), true, "run.sh"},
  };
  const std::string zip = tree.Path("out.zip");
  auto info = WriteZip(files, zip);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->file_count, 3);
  EXPECT_EQ(info->size_bytes, static_cast<int64_t>(std::filesystem::file_size(zip)));
  EXPECT_FALSE(std::filesystem::exists(zip + ".tmp"));

  auto members = ReadBack(zip);
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].first, "app/config.json");
  EXPECT_EQ(members[0].second.content, "{}");
  EXPECT_EQ(members[0].second.perm, 0640);
  EXPECT_EQ(members[1].first, "run.sh");
  EXPECT_EQ(members[1].second.content, "#!/bin/sh\necho hi\n");
  EXPECT_EQ(members[1].second.perm, 0755);
  EXPECT_EQ(members[1].second.mtime, 1600000000);
  EXPECT_EQ(members[2].first, "start");
  EXPECT_TRUE(members[2].second.symlink);
  EXPECT_EQ(members[2].second.link_target, "run.sh");
}

TEST(ZipWriterTest, NonSymlinkEntryForASymlinkStoresTheTargetsContent) {
  FileTree tree;
  tree.Write("real.txt", "real content");
  tree.Symlink("real.txt", "link.txt");
  auto info = WriteZip({{"link.txt", tree.Path("link.txt")}}, tree.Path("out.zip"));
  ASSERT_TRUE(info.ok()) << info.status();
  auto members = ReadBack(tree.Path("out.zip"));
  ASSERT_EQ(members.size(), 1u);
  EXPECT_FALSE(members[0].second.symlink);
  EXPECT_EQ(members[0].second.content, "real content");
}

TEST(ZipWriterTest, SymlinkTargetIsReadWhenNotGiven) {
  FileTree tree;
  tree.Symlink("../elsewhere", "link");
  auto info = WriteZip({{"link", tree.Path("link"), true, ""}}, tree.Path("out.zip"));
  ASSERT_TRUE(info.ok()) << info.status();
  auto members = ReadBack(tree.Path("out.zip"));
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].second.link_target, "../elsewhere");
}

TEST(ZipWriterTest, LargeFileSpanningManyChunksRoundTrips) {
  FileTree tree;
  std::string big;
  for (int i = 0; big.size() < 300 * 1024; ++i) big += std::to_string(i * 7919) + "\n";
  tree.Write("big.txt", big);
  auto info = WriteZip({{"big.txt", tree.Path("big.txt")}}, tree.Path("out.zip"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_LT(info->size_bytes, static_cast<int64_t>(big.size()));  // deflated
  auto members = ReadBack(tree.Path("out.zip"));
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].second.content, big);
}

TEST(ZipWriterTest, UnzipListsTheMembers) {
  if (!std::filesystem::exists("/usr/bin/unzip")) GTEST_SKIP() << "unzip not installed";
  FileTree tree;
  tree.Write("a/b.txt", "b");
  tree.Write("c.txt", "c");
  const std::string zip = tree.Path("out.zip");
  ASSERT_TRUE(
      WriteZip({{"a/b.txt", tree.Path("a/b.txt")}, {"c.txt", tree.Path("c.txt")}}, zip).ok());
  FILE* p = popen(("/usr/bin/unzip -Z1 '" + zip + "'").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string listing;
  char buf[256];
  while (fgets(buf, sizeof(buf), p) != nullptr) listing += buf;
  EXPECT_EQ(pclose(p), 0);
  EXPECT_EQ(listing, "a/b.txt\nc.txt\n");
  // And unzip's integrity test passes (CRCs and deflate streams are valid).
  EXPECT_EQ(system(("/usr/bin/unzip -tqq '" + zip + "' >/dev/null").c_str()), 0);
}

TEST(ZipWriterTest, MissingSourceIsNotFoundAndLeavesNoOutput) {
  FileTree tree;
  tree.Write("a.txt", "a");
  const std::string zip = tree.Path("out.zip");
  auto info = WriteZip({{"a.txt", tree.Path("a.txt")}, {"gone.txt", tree.Path("gone.txt")}}, zip);
  EXPECT_THAT(info, StatusIs(absl::StatusCode::kNotFound, HasSubstr(tree.Path("gone.txt"))));
  EXPECT_FALSE(std::filesystem::exists(zip));
  EXPECT_FALSE(std::filesystem::exists(zip + ".tmp"));
}

TEST(ZipWriterTest, UnwritableOutputIsInternalNamingThePath) {
  FileTree tree;
  tree.Write("a.txt", "a");
  EXPECT_THAT(WriteZip({{"a.txt", tree.Path("a.txt")}}, tree.Path("no-such-dir/out.zip")),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("no-such-dir/out.zip")));
}

TEST(ZipWriterTest, ReplacesAnExistingOutputFile) {
  FileTree tree;
  tree.Write("a.txt", "new");
  tree.Write("out.zip", "old garbage");
  ASSERT_TRUE(WriteZip({{"a.txt", tree.Path("a.txt")}}, tree.Path("out.zip")).ok());
  auto members = ReadBack(tree.Path("out.zip"));
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].second.content, "new");
}

TEST(WriteArchiveTest, TarFormatRoundTrips) {
  FileTree tree;
  tree.Write("x/y.bin", std::string("\0\1\2", 3), 0600);
  tree.Symlink("y.bin", "x/z");
  auto info =
      WriteArchive({{"src/x/y.bin", tree.Path("x/y.bin")}, {"src/x/z", tree.Path("x/z"), true}},
                   tree.Path("out.tar"), ArchiveFormat::kTar);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->file_count, 2);
  auto members = ReadBack(tree.Path("out.tar"));
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].first, "src/x/y.bin");
  EXPECT_EQ(members[0].second.content, std::string("\0\1\2", 3));
  EXPECT_EQ(members[0].second.perm, 0600);
  EXPECT_TRUE(members[1].second.symlink);
  EXPECT_EQ(members[1].second.link_target, "y.bin");
}

}  // namespace
}  // namespace kiln::agent
