// Store contract tests, run against RocksDbStore and MemStore; FaultInjectingStore and
// RocksDbStore's sticky error.
#include <sys/resource.h>

#include <csignal>
#include <functional>
#include <memory>
#include <string>

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
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::Pair;

using KVs = std::vector<std::pair<std::string, std::string>>;

std::string NewTempDir() {
  std::string tmpl = ::testing::TempDir() + "/store_test_XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

std::unique_ptr<RocksDbStore> OpenRocks(const std::string& path) {
  absl::StatusOr<std::unique_ptr<RocksDbStore>> store = RocksDbStore::Open({.path = path});
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(*store) : nullptr;
}

absl::Status Put(Store& store, std::string_view key, std::string_view value) {
  WriteBatch batch;
  batch.Put(key, value);
  return store.Write(batch);
}

TEST(PrefixSuccessorTest, IncrementsLastByteAndDropsTrailingFF) {
  EXPECT_EQ(PrefixSuccessor("a/b"), "a/c");
  EXPECT_EQ(PrefixSuccessor("a\xff\xff"), "b");
  EXPECT_EQ(PrefixSuccessor(""), std::nullopt);
  EXPECT_EQ(PrefixSuccessor("\xff"), std::nullopt);
}

// ---- Contract tests shared by every Store implementation ----

struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<Store>(const std::string& dir)> make;
};

void PrintTo(const StoreFactory& factory, std::ostream* os) { *os << factory.name; }

class StoreContractTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    dir_ = NewTempDir();
    store_ = GetParam().make(dir_);
    ASSERT_NE(store_, nullptr);
  }
  absl::Status Put(std::string_view k, std::string_view v) {
    return coordinator::Put(*store_, k, v);
  }
  KVs Scan(std::string_view prefix, size_t limit = 0, bool reverse = false) {
    absl::StatusOr<KVs> kvs = store_->Scan(prefix, limit, reverse);
    EXPECT_THAT(kvs, IsOk());
    return kvs.ok() ? *kvs : KVs{};
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContractTest, GetReturnsNulloptForMissingKey) {
  absl::StatusOr<std::optional<std::string>> value = store_->Get("nope");
  ASSERT_THAT(value, IsOk());
  EXPECT_EQ(*value, std::nullopt);
}

TEST_P(StoreContractTest, BatchAppliesPutsAndDeletesInOrder) {
  ASSERT_THAT(Put("a", "1"), IsOk());
  WriteBatch batch;
  batch.Put("b", "2");
  batch.Delete("a");
  batch.Put("c", "3");
  batch.Put("c", "4");  // later op wins
  batch.Delete("missing");
  ASSERT_THAT(store_->Write(batch), IsOk());
  EXPECT_THAT(Scan(""), ElementsAre(Pair("b", "2"), Pair("c", "4")));
}

TEST_P(StoreContractTest, EmptyBatchIsOk) { EXPECT_THAT(store_->Write(WriteBatch()), IsOk()); }

TEST_P(StoreContractTest, BinaryKeysAndValuesRoundTrip) {
  const std::string key("k\0\xff", 3);
  const std::string value("\0v\xfe", 3);
  ASSERT_THAT(Put(key, value), IsOk());
  EXPECT_THAT(store_->Get(key), IsOkAndHolds(Optional(value)));
}

TEST_P(StoreContractTest, ScanReturnsOnlyKeysWithPrefixInOrder) {
  for (const char* k : {"a/a", "a/b", "a/b/1", "a/b0", "a/c", "a/", "a", "b/b"}) {
    ASSERT_THAT(Put(k, k), IsOk());
  }
  // "a/c" is exactly the successor of prefix "a/b" (differs only by the last byte): excluded.
  EXPECT_THAT(Scan("a/b"),
              ElementsAre(Pair("a/b", "a/b"), Pair("a/b/1", "a/b/1"), Pair("a/b0", "a/b0")));
  EXPECT_THAT(Scan("a/b", 0, /*reverse=*/true),
              ElementsAre(Pair("a/b0", "a/b0"), Pair("a/b/1", "a/b/1"), Pair("a/b", "a/b")));
  EXPECT_THAT(Scan("a/c", 0, true), ElementsAre(Pair("a/c", "a/c")));
  EXPECT_THAT(Scan("a/d"), IsEmpty());
  EXPECT_THAT(Scan("a/d", 0, true), IsEmpty());
  EXPECT_THAT(Scan("c", 0, true), IsEmpty());
  EXPECT_EQ(Scan("").size(), 8u);
}

TEST_P(StoreContractTest, ReverseScanOfLastPrefixAndOfEverything) {
  for (const char* k : {"a", "b/1", "b/2"}) ASSERT_THAT(Put(k, "v"), IsOk());
  // No key after the range: SeekForPrev lands past the end of the database.
  EXPECT_THAT(Scan("b/", 0, true), ElementsAre(Pair("b/2", "v"), Pair("b/1", "v")));
  EXPECT_THAT(Scan("", 2, true), ElementsAre(Pair("b/2", "v"), Pair("b/1", "v")));
}

TEST_P(StoreContractTest, ScanPrefixEndingInFFExcludesItsSuccessor) {
  const std::string prefix = "x\xff";
  for (const std::string& k :
       {std::string("x\xfe"), prefix, prefix + "\x01", prefix + "\xff", std::string("y")}) {
    ASSERT_THAT(Put(k, "v"), IsOk());
  }
  EXPECT_THAT(Scan(prefix), ElementsAre(Pair(prefix, "v"), Pair(prefix + "\x01", "v"),
                                        Pair(prefix + "\xff", "v")));
  EXPECT_THAT(Scan(prefix, 0, true), ElementsAre(Pair(prefix + "\xff", "v"),
                                                 Pair(prefix + "\x01", "v"), Pair(prefix, "v")));
  const std::string all_ff = "\xff\xff";
  ASSERT_THAT(Put(all_ff + "z", "w"), IsOk());
  EXPECT_THAT(Scan(all_ff, 0, true), ElementsAre(Pair(all_ff + "z", "w")));
}

TEST_P(StoreContractTest, ScanLimitKeepsTheFirstKeysInScanOrder) {
  for (int i = 0; i < 10; ++i)
    ASSERT_THAT(Put("q/" + std::to_string(i), std::to_string(i)), IsOk());
  ASSERT_THAT(Put("r", "x"), IsOk());
  EXPECT_THAT(Scan("q/", 3), ElementsAre(Pair("q/0", "0"), Pair("q/1", "1"), Pair("q/2", "2")));
  EXPECT_THAT(Scan("q/", 2, true), ElementsAre(Pair("q/9", "9"), Pair("q/8", "8")));
  EXPECT_EQ(Scan("q/", 100, true).size(), 10u);
}

TEST_P(StoreContractTest, ScanSkipsDeletedKeys) {
  for (const char* k : {"p/1", "p/2", "p/3"}) ASSERT_THAT(Put(k, "v"), IsOk());
  WriteBatch batch;
  batch.Delete("p/3");
  batch.Delete("p/1");
  ASSERT_THAT(store_->Write(batch), IsOk());
  EXPECT_THAT(Scan("p/", 0, true), ElementsAre(Pair("p/2", "v")));
  EXPECT_THAT(Scan("p/"), ElementsAre(Pair("p/2", "v")));
}

INSTANTIATE_TEST_SUITE_P(
    AllStores, StoreContractTest,
    ::testing::Values(StoreFactory{"RocksDb",
                                   [](const std::string& dir) -> std::unique_ptr<Store> {
                                     return OpenRocks(dir + "/db");
                                   }},
                      StoreFactory{"Mem",
                                   [](const std::string&) -> std::unique_ptr<Store> {
                                     return std::make_unique<MemStore>();
                                   }}),
    [](const ::testing::TestParamInfo<StoreFactory>& info) { return info.param.name; });

// ---- RocksDbStore specifics ----

TEST(RocksDbStoreTest, DataSurvivesReopen) {
  const std::string path = NewTempDir() + "/db";
  {
    std::unique_ptr<RocksDbStore> store = OpenRocks(path);
    ASSERT_NE(store, nullptr);
    WriteBatch batch;
    batch.Put("build/1", "one");
    batch.Put("build/2", "two");
    ASSERT_THAT(store->Write(batch), IsOk());
  }
  std::unique_ptr<RocksDbStore> store = OpenRocks(path);
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->Get("build/2"), IsOkAndHolds(Optional(std::string("two"))));
  EXPECT_THAT(store->Scan("build/"),
              IsOkAndHolds(ElementsAre(Pair("build/1", "one"), Pair("build/2", "two"))));
}

TEST(RocksDbStoreTest, SyncOptionWritesAndFlushKeepsData) {
  const std::string path = NewTempDir() + "/db";
  absl::StatusOr<std::unique_ptr<RocksDbStore>> store =
      RocksDbStore::Open({.path = path, .sync = true});
  ASSERT_THAT(store, IsOk());
  ASSERT_THAT(Put(**store, "k", "v"), IsOk());
  ASSERT_THAT((*store)->Flush(), IsOk());
  EXPECT_THAT((*store)->Get("k"), IsOkAndHolds(Optional(std::string("v"))));
}

TEST(RocksDbStoreTest, SecondOpenOfSameDirectoryFails) {
  const std::string path = NewTempDir() + "/db";
  std::unique_ptr<RocksDbStore> first = OpenRocks(path);
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(RocksDbStore::Open({.path = path}), ::testing::Not(IsOk()));
}

TEST(RocksDbStoreTest, EmptyPathIsInvalid) {
  EXPECT_THAT(RocksDbStore::Open({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

// A WAL append that fails (file size limit exceeded, EFBIG) makes every later call fail with the
// same error, even after the cause is gone; the failed batch is not applied.
TEST(RocksDbStoreTest, FailedWriteMakesErrorSticky) {
  const std::string path = NewTempDir() + "/db";
  {
    std::unique_ptr<RocksDbStore> store = OpenRocks(path);
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(Put(*store, "before", "ok"), IsOk());

    std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
    struct rlimit saved;
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
    struct rlimit small = saved;
    small.rlim_cur = 64 << 10;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    const absl::Status failed = Put(*store, "big", std::string(1 << 20, 'x'));
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);

    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(Put(*store, "after", "small"), failed);
    EXPECT_EQ(store->Get("before").status(), failed);
    EXPECT_EQ(store->Scan("").status(), failed);
  }
  std::unique_ptr<RocksDbStore> reopened = OpenRocks(path);
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(reopened->Scan(""), IsOkAndHolds(ElementsAre(Pair("before", "ok"))));
}

// ---- FaultInjectingStore ----

TEST(FaultInjectingStoreTest, FailsAfterNWritesAndStaysFailed) {
  MemStore base;
  FaultInjectingStore store(&base);
  store.FailWritesAfter(2, absl::UnavailableError("disk gone"));
  EXPECT_THAT(Put(store, "a", "1"), IsOk());
  EXPECT_THAT(Put(store, "b", "2"), IsOk());
  EXPECT_THAT(Put(store, "c", "3"), StatusIs(absl::StatusCode::kUnavailable, "disk gone"));
  EXPECT_THAT(Put(store, "d", "4"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store.Get("a"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store.Scan(""), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(store.writes(), 2);
  EXPECT_THAT(base.Contents(), ElementsAre(Pair("a", "1"), Pair("b", "2")));
}

TEST(FaultInjectingStoreTest, PassesThroughWhenNotArmed) {
  MemStore base;
  FaultInjectingStore store(&base);
  ASSERT_THAT(Put(store, "k", "v"), IsOk());
  EXPECT_THAT(store.Get("k"), IsOkAndHolds(Optional(std::string("v"))));
  EXPECT_THAT(store.Scan("k"), IsOkAndHolds(ElementsAre(Pair("k", "v"))));
}

// ---- Matchers (tests/testing/status_matchers.h) ----

TEST(StatusMatchersTest, MatchStatusAndStatusOr) {
  using ::testing::HasSubstr;
  using ::testing::Not;
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(absl::NotFoundError("x")), Not(IsOk()));
  EXPECT_THAT(absl::NotFoundError("no such thing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("such")));
  EXPECT_THAT(absl::NotFoundError("no such thing"),
              Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("other"))));
  EXPECT_THAT(absl::StatusOr<std::string>(absl::InternalError("e")),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(absl::StatusOr<std::string>("v"), Not(StatusIs(absl::StatusCode::kInternal)));
}

}  // namespace
}  // namespace kiln::coordinator
