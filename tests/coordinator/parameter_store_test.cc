#include "coordinator/params/parameter_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "coordinator/store/rocksdb_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/mem_store.h"
#include "tests/testing/status_matchers.h"

namespace kiln::coordinator {
namespace {

using ::kiln::test::IsOk;
using ::kiln::test::IsOkAndHolds;
using ::kiln::test::MemStore;
using ::kiln::test::StatusIs;
using ::kiln::v1::Parameter;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSecret[] = "hunter2-very-secret-Value";

std::string NewTempDir() {
  std::string tmpl = ::testing::TempDir() + "/params_test_XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ParameterStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewTempDir();
    key_path_ = dir_ + "/params.key";
    absl::StatusOr<std::unique_ptr<ParameterStore>> params =
        ParameterStore::Create(&store_, key_path_);
    ASSERT_THAT(params, IsOk());
    params_ = std::move(*params);
  }

  std::string dir_;
  std::string key_path_;
  MemStore store_;
  std::unique_ptr<ParameterStore> params_;
};

TEST_F(ParameterStoreTest, VersionsStartAtOneAndIncreaseOnOverwrite) {
  EXPECT_THAT(params_->Put("/app/db", "v1", Parameter::STRING, false), IsOkAndHolds(1));
  EXPECT_THAT(params_->Put("/app/db", "v2", Parameter::STRING, true), IsOkAndHolds(2));
  EXPECT_THAT(params_->Put("/app/db", "v3", Parameter::SECURE_STRING, true), IsOkAndHolds(3));
  absl::StatusOr<Parameter> p = params_->Get("/app/db");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->value(), "v3");
  EXPECT_EQ(p->version(), 3);
  EXPECT_EQ(p->type(), Parameter::SECURE_STRING);
}

TEST_F(ParameterStoreTest, PutWithoutOverwriteOfExistingNameFailsAndKeepsValue) {
  ASSERT_THAT(params_->Put("name", "old", Parameter::STRING, false), IsOk());
  EXPECT_THAT(params_->Put("name", "new", Parameter::STRING, false),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(params_->Get("name")->value(), "old");
  EXPECT_EQ(params_->Get("name")->version(), 1);
}

TEST_F(ParameterStoreTest, NameRulesAreEnforced) {
  for (const std::string& good : {std::string("a"), std::string("/a/b-c_d.e/F9"), std::string("Z"),
                                  "/" + std::string(1010, 'x')}) {
    EXPECT_THAT(params_->Put(good, "v", Parameter::STRING, false), IsOk()) << good;
  }
  for (const std::string& bad :
       {std::string(""), std::string("1abc"), std::string("_a"), std::string(".a"),
        std::string("-a"), std::string("a b"), std::string("a:b"), std::string("a*"),
        std::string("é"), "/" + std::string(1011, 'x')}) {
    EXPECT_THAT(params_->Put(bad, "v", Parameter::STRING, false),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(params_->Get("bad name"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ParameterStoreTest, ValueOverLimitIsRejected) {
  EXPECT_THAT(params_->Put("ok", std::string(4096, 'v'), Parameter::STRING, false), IsOk());
  EXPECT_THAT(params_->Put("big", std::string(4097, 'v'), Parameter::STRING, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4096")));
  EXPECT_THAT(params_->Put("big", std::string(4097, 'v'), Parameter::SECURE_STRING, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ParameterStoreTest, NonUtf8PlainValueIsRejectedButSecureBytesRoundTrip) {
  const std::string bytes("\xff\xfe\0x", 4);
  EXPECT_THAT(params_->Put("plain", bytes, Parameter::STRING, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(params_->Put("secure", bytes, Parameter::SECURE_STRING, false), IsOk());
  EXPECT_EQ(params_->Get("secure")->value(), bytes);
}

TEST_F(ParameterStoreTest, SecureValueRoundTripsAndSurvivesNewInstanceWithSameKey) {
  ASSERT_THAT(params_->Put("/db/password", kSecret, Parameter::SECURE_STRING, false), IsOk());
  EXPECT_EQ(params_->Get("/db/password")->value(), kSecret);
  absl::StatusOr<std::unique_ptr<ParameterStore>> again =
      ParameterStore::Create(&store_, key_path_);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ((*again)->Get("/db/password")->value(), kSecret);
}

TEST_F(ParameterStoreTest, GetOfMissingNameIsNotFound) {
  EXPECT_THAT(params_->Get("/nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nope")));
}

TEST_F(ParameterStoreTest, ListHidesSecureValuesAndSortsByName) {
  ASSERT_THAT(params_->Put("b/plain", "visible", Parameter::STRING, false), IsOk());
  ASSERT_THAT(params_->Put("a/secret", kSecret, Parameter::SECURE_STRING, false), IsOk());
  ASSERT_THAT(params_->Put("a/secret", kSecret, Parameter::SECURE_STRING, true), IsOk());
  absl::StatusOr<std::vector<Parameter>> list = params_->List();
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name(), "a/secret");
  EXPECT_EQ((*list)[0].type(), Parameter::SECURE_STRING);
  EXPECT_EQ((*list)[0].version(), 2);
  EXPECT_THAT((*list)[0].value(), IsEmpty());
  EXPECT_EQ((*list)[1].name(), "b/plain");
  EXPECT_EQ((*list)[1].value(), "visible");
}

TEST_F(ParameterStoreTest, SecurePlaintextNeverReachesTheStore) {
  ASSERT_THAT(params_->Put("/s", kSecret, Parameter::SECURE_STRING, false), IsOk());
  ASSERT_THAT(params_->Put("/s", kSecret, Parameter::SECURE_STRING, true), IsOk());
  ASSERT_THAT(params_->Put("/plain", "control-value", Parameter::STRING, false), IsOk());
  bool saw_control = false;
  for (const auto& [key, value] : store_.Contents()) {
    EXPECT_THAT(key, ::testing::Not(HasSubstr(kSecret)));
    EXPECT_THAT(value, ::testing::Not(HasSubstr(kSecret))) << key;
    saw_control |= value.find("control-value") != std::string::npos;
  }
  EXPECT_TRUE(saw_control);  // the scan does see stored values
  // The secure record holds only the encrypted form.
  nlohmann::json record = nlohmann::json::parse(*store_.Get("param//s").value());
  EXPECT_EQ(record["type"], "SECURE_STRING");
  EXPECT_FALSE(record.contains("value"));
  EXPECT_TRUE(record.contains("ciphertext") && record.contains("nonce") && record.contains("tag"));
}

TEST_F(ParameterStoreTest, EachEncryptionUsesAFreshNonce) {
  ASSERT_THAT(params_->Put("/a", kSecret, Parameter::SECURE_STRING, false), IsOk());
  const std::string first = *store_.Get("param//a").value();
  ASSERT_THAT(params_->Put("/a", kSecret, Parameter::SECURE_STRING, true), IsOk());
  const std::string second = *store_.Get("param//a").value();
  EXPECT_NE(nlohmann::json::parse(first)["nonce"], nlohmann::json::parse(second)["nonce"]);
  EXPECT_NE(nlohmann::json::parse(first)["ciphertext"],
            nlohmann::json::parse(second)["ciphertext"]);
}

TEST_F(ParameterStoreTest, CiphertextMovedToAnotherNameFailsWithDataLoss) {
  ASSERT_THAT(params_->Put("/a", kSecret, Parameter::SECURE_STRING, false), IsOk());
  WriteBatch batch;
  batch.Put("param//b", *store_.Get("param//a").value());
  ASSERT_THAT(store_.Write(batch), IsOk());
  EXPECT_THAT(params_->Get("/b"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(params_->Resolve({"/b"}), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(params_->Get("/a")->value(), kSecret);
}

TEST_F(ParameterStoreTest, TamperedCiphertextFailsWithDataLoss) {
  ASSERT_THAT(params_->Put("/a", kSecret, Parameter::SECURE_STRING, false), IsOk());
  nlohmann::json record = nlohmann::json::parse(*store_.Get("param//a").value());
  std::string tag = record["tag"];
  tag[0] = tag[0] == 'A' ? 'B' : 'A';
  record["tag"] = tag;
  WriteBatch batch;
  batch.Put("param//a", record.dump());
  ASSERT_THAT(store_.Write(batch), IsOk());
  EXPECT_THAT(params_->Get("/a"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(ParameterStoreTest, CorruptRecordIsDataLoss) {
  WriteBatch batch;
  batch.Put("param/x", "{not json");
  ASSERT_THAT(store_.Write(batch), IsOk());
  EXPECT_THAT(params_->Get("x"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(params_->List(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(ParameterStoreTest, ResolveMasksEveryValueAndReportsMissingNames) {
  ASSERT_THAT(params_->Put("/plain", "p", Parameter::STRING, false), IsOk());
  ASSERT_THAT(params_->Put("/secure", kSecret, Parameter::SECURE_STRING, false), IsOk());
  absl::StatusOr<ParameterStore::Resolved> r =
      params_->Resolve({"/secure", "/missing", "/plain", "/secure", "bad name", "/missing"});
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->parameters.size(), 2u);
  EXPECT_EQ(r->parameters[0].name(), "/secure");
  EXPECT_EQ(r->parameters[0].value(), kSecret);
  EXPECT_TRUE(r->parameters[0].mask());
  EXPECT_EQ(r->parameters[1].name(), "/plain");
  EXPECT_EQ(r->parameters[1].value(), "p");
  EXPECT_TRUE(r->parameters[1].mask());
  EXPECT_THAT(r->missing, ElementsAre("/missing", "bad name"));
}

TEST_F(ParameterStoreTest, StoreErrorsPropagate) {
  test::FaultInjectingStore faulty(&store_);
  absl::StatusOr<std::unique_ptr<ParameterStore>> params =
      ParameterStore::Create(&faulty, key_path_);
  ASSERT_THAT(params, IsOk());
  faulty.FailWritesAfter(0, absl::InternalError("boom"));
  EXPECT_THAT((*params)->Put("/a", "v", Parameter::STRING, false),
              StatusIs(absl::StatusCode::kInternal, "boom"));
  EXPECT_THAT(store_.Contents(), IsEmpty());
}

// ---- Key file ----

TEST(ParameterKeyFileTest, CreatedWithMode0600And32Bytes) {
  const std::string path = NewTempDir() + "/k";
  MemStore store;
  ASSERT_THAT(ParameterStore::Create(&store, path), IsOk());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 32);
}

TEST(ParameterKeyFileTest, GroupOrOtherAccessIsRejected) {
  const std::string path = NewTempDir() + "/k";
  MemStore store;
  ASSERT_THAT(ParameterStore::Create(&store, path), IsOk());
  for (mode_t mode : {0640, 0604, 0660}) {
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    EXPECT_THAT(ParameterStore::Create(&store, path),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chmod 600")));
  }
  ASSERT_EQ(chmod(path.c_str(), 0400), 0);
  EXPECT_THAT(ParameterStore::Create(&store, path), IsOk());
}

TEST(ParameterKeyFileTest, WrongSizeIsRejected) {
  const std::string path = NewTempDir() + "/k";
  { std::ofstream(path) << "short"; }
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  MemStore store;
  EXPECT_THAT(ParameterStore::Create(&store, path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("32 bytes")));
}

TEST(ParameterKeyFileTest, MissingDirectoryIsAnError) {
  MemStore store;
  EXPECT_THAT(ParameterStore::Create(&store, NewTempDir() + "/no/such/dir/k"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ParameterKeyFileTest, AnotherKeyCannotDecrypt) {
  const std::string dir = NewTempDir();
  MemStore store;
  auto a = ParameterStore::Create(&store, dir + "/a.key");
  auto b = ParameterStore::Create(&store, dir + "/b.key");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(ReadFile(dir + "/a.key"), ReadFile(dir + "/b.key"));
  ASSERT_THAT((*a)->Put("/s", kSecret, Parameter::SECURE_STRING, false), IsOk());
  EXPECT_THAT((*b)->Get("/s"), StatusIs(absl::StatusCode::kDataLoss));
}

// On disk: neither RocksDB's WAL nor its SST files hold the plaintext, before and after a flush.
TEST(ParameterAtRestTest, RocksDbFilesHoldNoPlaintext) {
  const std::string dir = NewTempDir();
  absl::StatusOr<std::unique_ptr<RocksDbStore>> store = RocksDbStore::Open({.path = dir + "/db"});
  ASSERT_THAT(store, IsOk());
  auto params = ParameterStore::Create(store->get(), dir + "/params.key");
  ASSERT_THAT(params, IsOk());
  ASSERT_THAT((*params)->Put("/s", kSecret, Parameter::SECURE_STRING, false), IsOk());
  ASSERT_THAT((*params)->Put("/plain", "control-value-7f3a", Parameter::STRING, false), IsOk());

  auto check_files = [&](const char* when) {
    bool saw_control = false;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir + "/db")) {
      if (!entry.is_regular_file()) continue;
      const std::string bytes = ReadFile(entry.path());
      EXPECT_EQ(bytes.find(kSecret), std::string::npos) << when << ": " << entry.path();
      saw_control |= bytes.find("control-value-7f3a") != std::string::npos;
    }
    EXPECT_TRUE(saw_control) << when << ": the plain control value should be visible on disk";
  };
  check_files("before flush");
  ASSERT_THAT((*store)->Flush(), IsOk());
  check_files("after flush");
}

}  // namespace
}  // namespace kiln::coordinator
