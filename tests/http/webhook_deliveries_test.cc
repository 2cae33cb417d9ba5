// WebhookDeliveryLog over a real RocksDbStore (and MemStore): newest-first listing, per-project
// listing, the retention window, the delivery-id index and reopening.
#include "coordinator/http/webhook_deliveries.h"

#include <memory>
#include <string>
#include <vector>

#include "coordinator/store/rocksdb_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/mem_store.h"

namespace kiln::coordinator {
namespace {

using ::kiln::v1::WebhookDelivery;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

WebhookDelivery Delivery(const std::string& id, const std::string& build = "") {
  WebhookDelivery d;
  d.set_delivery_id(id);
  d.set_github_event("push");
  if (!build.empty()) d.add_build_ids(build);
  return d;
}

std::vector<std::string> Ids(const std::vector<WebhookDelivery>& ds) {
  std::vector<std::string> ids;
  for (const auto& d : ds) ids.push_back(d.delivery_id());
  return ids;
}

WebhookDeliveryLog::RecordOptions Indexed(std::vector<std::string> projects = {}) {
  WebhookDeliveryLog::RecordOptions o;
  o.index_delivery_id = true;
  o.evaluated_projects = std::move(projects);
  return o;
}

TEST(WebhookDeliveryLog, ListsNewestFirstWithLimit) {
  test::MemStore store;
  auto log = WebhookDeliveryLog::Open(&store);
  ASSERT_TRUE(log.ok()) << log.status();
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE((*log)->Record(Delivery(id), {}).ok());
  auto all = (*log)->List("", 10);
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Ids(*all), ElementsAre("c", "b", "a"));
  EXPECT_THAT(Ids(*(*log)->List("", 2)), ElementsAre("c", "b"));
}

TEST(WebhookDeliveryLog, ListsByEvaluatedProject) {
  test::MemStore store;
  auto log = *WebhookDeliveryLog::Open(&store);
  ASSERT_TRUE(log->Record(Delivery("1"), Indexed({"app", "lib"})).ok());
  ASSERT_TRUE(log->Record(Delivery("2"), Indexed({"lib"})).ok());
  ASSERT_TRUE(log->Record(Delivery("3"), Indexed({"app-2"})).ok());  // not a prefix match
  ASSERT_TRUE(log->Record(Delivery("4"), Indexed({"app"})).ok());
  EXPECT_THAT(Ids(*log->List("app", 10)), ElementsAre("4", "1"));
  EXPECT_THAT(Ids(*log->List("lib", 1)), ElementsAre("2"));
  EXPECT_THAT(Ids(*log->List("nope", 10)), IsEmpty());
}

TEST(WebhookDeliveryLog, FindReturnsNewestIndexedRecordOnly) {
  test::MemStore store;
  auto log = *WebhookDeliveryLog::Open(&store);
  ASSERT_TRUE(log->Record(Delivery("g", "app:1"), Indexed()).ok());
  // An unauthenticated record with the same id must not shadow the real one.
  ASSERT_TRUE(log->Record(Delivery("g"), {}).ok());
  auto found = log->Find("g");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_THAT((*found)->build_ids(), ElementsAre("app:1"));
  EXPECT_FALSE(log->Find("other")->has_value());
  EXPECT_FALSE(log->Find("")->has_value());
}

TEST(WebhookDeliveryLog, KeepsOnlyTheNewestMaxRecordsAndTheirIndexEntries) {
  test::MemStore store;
  auto log = *WebhookDeliveryLog::Open(&store, /*max_deliveries=*/2);
  ASSERT_TRUE(log->Record(Delivery("a", "p:1"), Indexed({"p"})).ok());
  ASSERT_TRUE(log->Record(Delivery("b", "p:2"), Indexed({"p"})).ok());
  ASSERT_TRUE(log->Record(Delivery("c", "p:3"), Indexed({"p"})).ok());
  EXPECT_THAT(Ids(*log->List("", 10)), ElementsAre("c", "b"));
  EXPECT_THAT(Ids(*log->List("p", 10)), ElementsAre("c", "b"));
  EXPECT_FALSE(log->Find("a")->has_value());
  EXPECT_TRUE(log->Find("b")->has_value());
  // Nothing of "a" is left in the store.
  for (const auto& [key, value] : store.Contents()) {
    EXPECT_EQ(key.find("/00000000000000000001"), std::string::npos) << key;
    EXPECT_NE(key, "webhook-delivery-id/a");
  }
}

TEST(WebhookDeliveryLog, RecordCommitsExtraWritesAtomically) {
  test::MemStore store;
  auto log = *WebhookDeliveryLog::Open(&store);
  WriteBatch extra;
  extra.Put("poll/app", "state");
  WebhookDeliveryLog::RecordOptions o;
  o.number = log->Allocate();
  o.extra = &extra;
  ASSERT_TRUE(log->Record(Delivery("poll-1"), o).ok());
  EXPECT_EQ(store.Contents().at("poll/app"), "state");
  EXPECT_GT(log->Allocate(), o.number);
}

TEST(WebhookDeliveryLog, ReopenedLogContinuesNumberingAndFindsOldDeliveries) {
  const std::string dir = test::MakeTempDir("deliveries");
  {
    auto store = RocksDbStore::Open({dir + "/db"});
    ASSERT_TRUE(store.ok()) << store.status();
    auto log = *WebhookDeliveryLog::Open(store->get(), 3);
    for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(log->Record(Delivery(id, "p:1"), Indexed()).ok());
  }
  auto store = RocksDbStore::Open({dir + "/db"});
  ASSERT_TRUE(store.ok()) << store.status();
  auto log = *WebhookDeliveryLog::Open(store->get(), 3);
  EXPECT_TRUE(log->Find("b")->has_value());
  ASSERT_TRUE(log->Record(Delivery("d"), {}).ok());
  // The window is still 3 after the restart: "a" was pruned, "d" is the newest.
  EXPECT_THAT(Ids(*log->List("", 10)), ElementsAre("d", "c", "b"));
}

}  // namespace
}  // namespace kiln::coordinator
