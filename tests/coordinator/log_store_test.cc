#include "coordinator/logs/log_store.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/rocksdb_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/mem_store.h"
#include "tests/testing/status_matchers.h"

namespace kiln::coordinator {
namespace {

using ::kiln::test::FaultInjectingStore;
using ::kiln::test::IsOk;
using ::kiln::test::IsOkAndHolds;
using ::kiln::test::MemStore;
using ::kiln::test::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kBuild[] = "my-project:0f8fad5b-d9cb-469f-a165-70867728950e";

std::string NewTempDir() {
  std::string tmpl = ::testing::TempDir() + "/logs_test_XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewTempDir() + "/logs";
    Reopen();
  }
  // A new LogStore over the same Store and directory: what a coordinator restart sees.
  void Reopen() {
    logs_.reset();
    absl::StatusOr<std::unique_ptr<LogStore>> logs = LogStore::Open(&store_, dir_);
    ASSERT_THAT(logs, IsOk());
    logs_ = std::move(*logs);
  }
  std::string ReadAll(const std::string& build_id) {
    absl::StatusOr<std::string> data = logs_->Read(build_id, 0, 1 << 30);
    EXPECT_THAT(data, IsOk());
    return data.ok() ? *data : "";
  }

  std::string dir_;
  MemStore store_;
  std::unique_ptr<LogStore> logs_;
};

TEST_F(LogStoreTest, UnknownBuildHasEmptyLog) {
  EXPECT_THAT(logs_->Size(kBuild), IsOkAndHolds(0));
  EXPECT_THAT(logs_->NextSeq(kBuild), IsOkAndHolds(0));
  EXPECT_EQ(ReadAll(kBuild), "");
}

TEST_F(LogStoreTest, InOrderAppendsConcatenate) {
  EXPECT_THAT(logs_->Append(kBuild, 0, "hello "), IsOkAndHolds(true));
  EXPECT_THAT(logs_->Append(kBuild, 1, ""), IsOkAndHolds(true));
  EXPECT_THAT(logs_->Append(kBuild, 2, "world\n"), IsOkAndHolds(true));
  EXPECT_THAT(logs_->Size(kBuild), IsOkAndHolds(12));
  EXPECT_THAT(logs_->NextSeq(kBuild), IsOkAndHolds(3));
  EXPECT_EQ(ReadAll(kBuild), "hello world\n");
}

TEST_F(LogStoreTest, DuplicateChunkIsIgnored) {
  ASSERT_THAT(logs_->Append(kBuild, 0, "a"), IsOk());
  ASSERT_THAT(logs_->Append(kBuild, 1, "b"), IsOk());
  EXPECT_THAT(logs_->Append(kBuild, 0, "a"), IsOkAndHolds(false));
  EXPECT_THAT(logs_->Append(kBuild, 1, "different"), IsOkAndHolds(false));
  EXPECT_EQ(ReadAll(kBuild), "ab");
  EXPECT_THAT(logs_->NextSeq(kBuild), IsOkAndHolds(2));
}

TEST_F(LogStoreTest, GapIsRejectedAndWritesNothing) {
  ASSERT_THAT(logs_->Append(kBuild, 0, "a"), IsOk());
  EXPECT_THAT(logs_->Append(kBuild, 2, "c"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("before chunk 1")));
  EXPECT_EQ(ReadAll(kBuild), "a");
  EXPECT_THAT(logs_->Append(kBuild, 1, "b"), IsOkAndHolds(true));
  EXPECT_EQ(ReadAll(kBuild), "ab");
}

TEST_F(LogStoreTest, InvalidArgumentsAreRejected) {
  EXPECT_THAT(logs_->Append("", 0, "x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(logs_->Append(kBuild, -1, "x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(logs_->Read(kBuild, -1, 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(logs_->Read(kBuild, 0, -1), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(LogStoreTest, ReadReturnsRequestedRange) {
  ASSERT_THAT(logs_->Append(kBuild, 0, "0123456789"), IsOk());
  EXPECT_THAT(logs_->Read(kBuild, 0, 4), IsOkAndHolds("0123"));
  EXPECT_THAT(logs_->Read(kBuild, 3, 4), IsOkAndHolds("3456"));
  EXPECT_THAT(logs_->Read(kBuild, 8, 100), IsOkAndHolds("89"));
  EXPECT_THAT(logs_->Read(kBuild, 10, 100), IsOkAndHolds(""));
  EXPECT_THAT(logs_->Read(kBuild, 50, 100), IsOkAndHolds(""));
  EXPECT_THAT(logs_->Read(kBuild, 2, 0), IsOkAndHolds(""));
}

TEST_F(LogStoreTest, BuildsAreIndependentAndFileNamesAreSafe) {
  const std::string other = "other:build";
  ASSERT_THAT(logs_->Append(kBuild, 0, "mine"), IsOk());
  ASSERT_THAT(logs_->Append(other, 0, "theirs"), IsOk());
  EXPECT_EQ(ReadAll(kBuild), "mine");
  EXPECT_EQ(ReadAll(other), "theirs");
  EXPECT_EQ(std::filesystem::path(logs_->PathFor(other)).filename(), "other%3Abuild.log");
  for (const char* id : {"../escape", "a/b", ".", "..", "a:b"}) {
    const std::filesystem::path path = logs_->PathFor(id);
    EXPECT_EQ(path.parent_path(), dir_) << id;
    EXPECT_EQ(path.filename().string().find('/'), std::string::npos) << id;
  }
  const std::string long_id = std::string(255, 'p') + ":0f8fad5b-d9cb-469f-a165-70867728950e";
  EXPECT_LT(std::filesystem::path(logs_->PathFor(long_id)).filename().string().size(), 255u);
  EXPECT_NE(logs_->PathFor(long_id), logs_->PathFor(long_id + "x"));
  ASSERT_THAT(logs_->Append(long_id, 0, "long"), IsOk());
  EXPECT_EQ(ReadAll(long_id), "long");
}

TEST_F(LogStoreTest, LogSurvivesReopen) {
  ASSERT_THAT(logs_->Append(kBuild, 0, "first "), IsOk());
  ASSERT_THAT(logs_->Append(kBuild, 1, "second"), IsOk());
  Reopen();
  EXPECT_THAT(logs_->NextSeq(kBuild), IsOkAndHolds(2));
  EXPECT_EQ(ReadAll(kBuild), "first second");
  EXPECT_THAT(logs_->Append(kBuild, 1, "second"), IsOkAndHolds(false));
  EXPECT_THAT(logs_->Append(kBuild, 2, " third"), IsOkAndHolds(true));
  EXPECT_EQ(ReadAll(kBuild), "first second third");
}

// A crash after the bytes reached the file but before the index did: the bytes are dropped on the
// next start and the chunk, resent by the agent, is appended once.
TEST_F(LogStoreTest, UnindexedBytesAreDroppedAfterRestart) {
  ASSERT_THAT(logs_->Append(kBuild, 0, "kept "), IsOk());
  {
    std::ofstream out(logs_->PathFor(kBuild), std::ios::binary | std::ios::app);
    out << "lost-in-crash";
  }
  Reopen();
  EXPECT_THAT(logs_->Size(kBuild), IsOkAndHolds(5));
  EXPECT_EQ(ReadFile(logs_->PathFor(kBuild)), "kept ");
  ASSERT_THAT(logs_->Append(kBuild, 1, "resent"), IsOkAndHolds(true));
  EXPECT_EQ(ReadAll(kBuild), "kept resent");
}

// The same crash, produced by a failing index write: nothing beyond the index is readable, and the
// next attempt overwrites the orphaned bytes.
TEST(LogStoreFaultTest, FailedIndexWriteExposesNothing) {
  MemStore base;
  FaultInjectingStore faulty(&base);
  const std::string dir = NewTempDir();
  auto logs = LogStore::Open(&faulty, dir);
  ASSERT_THAT(logs, IsOk());
  ASSERT_THAT((*logs)->Append(kBuild, 0, "ok "), IsOk());
  faulty.FailWritesAfter(0, absl::UnavailableError("store down"));
  EXPECT_THAT((*logs)->Append(kBuild, 1, "orphan"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(ReadFile((*logs)->PathFor(kBuild)), "ok orphan");  // bytes went first

  // Restart over the surviving store: the orphaned bytes are cut, chunk 1 is accepted again.
  auto restarted = LogStore::Open(&base, dir);
  ASSERT_THAT(restarted, IsOk());
  EXPECT_THAT((*restarted)->NextSeq(kBuild), IsOkAndHolds(1));
  EXPECT_THAT((*restarted)->Read(kBuild, 0, 100), IsOkAndHolds("ok "));
  EXPECT_EQ(ReadFile((*restarted)->PathFor(kBuild)), "ok ");
  ASSERT_THAT((*restarted)->Append(kBuild, 1, "again"), IsOk());
  EXPECT_THAT((*restarted)->Read(kBuild, 0, 100), IsOkAndHolds("ok again"));
}

TEST_F(LogStoreTest, FileShorterThanIndexIsDataLoss) {
  ASSERT_THAT(logs_->Append(kBuild, 0, "0123456789"), IsOk());
  std::filesystem::resize_file(logs_->PathFor(kBuild), 4);
  Reopen();
  EXPECT_THAT(logs_->Read(kBuild, 0, 10), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(logs_->Append(kBuild, 1, "x"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(LogStoreTest, CorruptIndexIsDataLoss) {
  WriteBatch batch;
  batch.Put(std::string("log/") + kBuild, "{\"size\": \"many\"}");
  ASSERT_THAT(store_.Write(batch), IsOk());
  EXPECT_THAT(logs_->Size(kBuild), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(LogStoreTest, ConcurrentAppendsToDifferentBuildsAreAllStored) {
  constexpr int kBuilds = 4;
  constexpr int kChunks = 200;
  std::vector<std::thread> threads;
  for (int b = 0; b < kBuilds; ++b) {
    threads.emplace_back([this, b] {
      const std::string id = "p:" + std::to_string(b);
      for (int i = 0; i < kChunks; ++i) {
        EXPECT_THAT(logs_->Append(id, i, std::to_string(i % 10)), IsOkAndHolds(true));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::string expected;
  for (int i = 0; i < kChunks; ++i) expected += std::to_string(i % 10);
  for (int b = 0; b < kBuilds; ++b) {
    EXPECT_EQ(ReadAll("p:" + std::to_string(b)), expected);
    EXPECT_THAT(logs_->NextSeq("p:" + std::to_string(b)), IsOkAndHolds(kChunks));
  }
}

TEST_F(LogStoreTest, ConcurrentResendsOfOneChunkAppendOnce) {
  std::atomic<int> appended{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, &appended] {
      absl::StatusOr<bool> r = logs_->Append(kBuild, 0, "chunk");
      EXPECT_THAT(r, IsOk());
      if (r.ok() && *r) ++appended;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(appended.load(), 1);
  EXPECT_EQ(ReadAll(kBuild), "chunk");
}

TEST(LogStoreRocksDbTest, IndexPersistsInRocksDb) {
  const std::string dir = NewTempDir();
  {
    auto store = RocksDbStore::Open({.path = dir + "/db"});
    ASSERT_THAT(store, IsOk());
    auto logs = LogStore::Open(store->get(), dir + "/logs");
    ASSERT_THAT(logs, IsOk());
    ASSERT_THAT((*logs)->Append(kBuild, 0, "persisted"), IsOk());
  }
  auto store = RocksDbStore::Open({.path = dir + "/db"});
  ASSERT_THAT(store, IsOk());
  auto logs = LogStore::Open(store->get(), dir + "/logs");
  ASSERT_THAT(logs, IsOk());
  EXPECT_THAT((*logs)->Read(kBuild, 0, 100), IsOkAndHolds("persisted"));
  EXPECT_THAT((*logs)->NextSeq(kBuild), IsOkAndHolds(1));
}

}  // namespace
}  // namespace kiln::coordinator
