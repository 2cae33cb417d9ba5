#include "coordinator/store/rocksdb_store.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace kiln::coordinator {
namespace {

// The one conversion of rocksdb::Status to absl::Status. `context` names the operation.
absl::Status FromRocksDb(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("rocksdb ", absl::string_view(context.data(), context.size()),
                                 ": ", s.ToString());
  if (s.IsNotFound() || s.IsPathNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsNotSupported()) return absl::UnimplementedError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsShutdownInProgress()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsAborted()) return absl::AbortedError(msg);
  return absl::InternalError(msg);  // IOError and the rest.
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

rocksdb::Options DbOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  // Background flush + compaction threads; the machine is small and the data set is small.
  o.IncreaseParallelism(2);
  // Many concurrent small writers: the WAL append of one group overlaps the memtable insert of the
  // previous one.
  o.enable_pipelined_write = true;
  // manual_wal_flush stays false: each Write() hands its WAL record to the OS before returning,
  // which is what makes a write survive a crash of the process.
  o.write_buffer_size = 32 << 20;
  o.max_write_buffer_number = 3;
  o.max_total_wal_size = 256 << 20;
  o.bytes_per_sync = 1 << 20;  // smooth SST write-back instead of one large burst
  o.keep_log_file_num = 5;     // RocksDB's own info LOG files
  o.max_log_file_size = 16 << 20;
  rocksdb::BlockBasedTableOptions t;
  // Point lookups (Get of a build, a parameter, a log index) skip SST files via Bloom filters.
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  t.block_cache = rocksdb::NewLRUCache(64 << 20);
  t.cache_index_and_filter_blocks = true;
  t.pin_l0_filter_and_index_blocks_in_cache = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(const Options& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("RocksDbStore: empty path");
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("RocksDbStore: cannot create ", options.path, ": ", ec.message()));
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(DbOptions(), options.path, &db);
  if (!s.ok()) return FromRocksDb(s, absl::StrCat("open ", options.path));
  return std::unique_ptr<RocksDbStore>(
      new RocksDbStore(std::unique_ptr<rocksdb::DB>(db), options.sync));
}

RocksDbStore::RocksDbStore(std::unique_ptr<rocksdb::DB> db, bool sync)
    : db_(std::move(db)), sync_(sync) {}

RocksDbStore::~RocksDbStore() = default;

absl::Status RocksDbStore::StickyError() const {
  absl::MutexLock lock(&mu_);
  return sticky_error_;
}

absl::Status RocksDbStore::Persisted(absl::Status status) {
  if (status.ok()) return status;
  absl::MutexLock lock(&mu_);
  if (sticky_error_.ok()) sticky_error_ = std::move(status);
  return sticky_error_;
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Get(std::string_view key) {
  if (absl::Status s = StickyError(); !s.ok()) return s;
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocksDb(s, "get");
  return value;
}

absl::Status RocksDbStore::Write(const WriteBatch& batch) {
  if (absl::Status s = StickyError(); !s.ok()) return s;
  if (batch.empty()) return absl::OkStatus();
  rocksdb::WriteBatch wb;
  for (const WriteBatch::Op& op : batch.ops()) {
    rocksdb::Status s = op.is_delete ? wb.Delete(op.key) : wb.Put(op.key, op.value);
    if (!s.ok()) return FromRocksDb(s, "batch");  // only on a key/value over 4 GiB; not sticky
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return Persisted(FromRocksDb(db_->Write(wo, &wb), "write"));
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RocksDbStore::Scan(
    std::string_view prefix, size_t limit, bool reverse) {
  if (absl::Status s = StickyError(); !s.ok()) return s;
  const std::optional<std::string> end = PrefixSuccessor(prefix);
  const rocksdb::Slice lower = ToSlice(prefix);
  rocksdb::Slice upper;
  rocksdb::ReadOptions ro;
  // Bound the side the iterator moves towards so it stops at the range's end without visiting
  // (possibly many deleted) keys beyond it.
  if (reverse) {
    ro.iterate_lower_bound = &lower;
  } else if (end.has_value()) {
    upper = rocksdb::Slice(*end);
    ro.iterate_upper_bound = &upper;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  if (!reverse) {
    it->Seek(lower);
  } else if (end.has_value()) {
    it->SeekForPrev(*end);  // the last key <= end; `end` itself is outside the prefix
    if (it->Valid() && it->key() == rocksdb::Slice(*end)) it->Prev();
  } else {
    it->SeekToLast();
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (; it->Valid() && (limit == 0 || out.size() < limit); reverse ? it->Prev() : it->Next()) {
    if (!it->key().starts_with(lower)) break;
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  if (!it->status().ok()) return FromRocksDb(it->status(), "scan");
  return out;
}

absl::Status RocksDbStore::Flush() {
  if (absl::Status s = StickyError(); !s.ok()) return s;
  return Persisted(FromRocksDb(db_->Flush(rocksdb::FlushOptions()), "flush"));
}

}  // namespace kiln::coordinator
