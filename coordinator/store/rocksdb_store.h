// RocksDbStore: the single-node Store, one RocksDB database in a directory.
//
// Tuned for the coordinator's load: many small writes (one batch per build phase, log-index updates
// at thousands per second) and prefix scans. Durability: by default every Write() reaches RocksDB's
// write-ahead log in the OS page cache before it returns, so an acknowledged write survives a crash
// or kill of this process but not a power loss or kernel crash. Set Options::sync to fsync the WAL
// on every write (power-loss durable, ~1-10 ms per write on typical disks).
//
// Thread-safe. A failed Write() makes the error sticky: every later Get/Write/Scan returns it until
// the store is reopened.
#ifndef KILN_COORDINATOR_STORE_ROCKSDB_STORE_H_
#define KILN_COORDINATOR_STORE_ROCKSDB_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/store/store.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace kiln::coordinator {

class RocksDbStore final : public Store {
 public:
  struct Options {
    // Database directory; created (with missing parents) if absent.
    std::string path;
    // fsync the WAL on every Write(): durable against power loss, much slower. Default false:
    // durable against a crash of the process only (see the file comment).
    bool sync = false;
  };

  // Opens or creates the database at options.path. Errors: InvalidArgument (empty path); DataLoss
  // (corruption); Internal (I/O errors, including the database being open in another RocksDbStore or
  // process).
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(const Options& options);

  ~RocksDbStore() override;
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) override;
  absl::Status Write(const WriteBatch& batch) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      std::string_view prefix, size_t limit = 0, bool reverse = false) override;

  // Writes the in-memory table to SST files and waits for it (orderly shutdown, tests). Errors as
  // Write.
  absl::Status Flush();

 private:
  RocksDbStore(std::unique_ptr<rocksdb::DB> db, bool sync);
  absl::Status StickyError() const;
  // Returns `status`; if it is an error, makes it sticky (the first error wins).
  absl::Status Persisted(absl::Status status);

  const std::unique_ptr<rocksdb::DB> db_;
  const bool sync_;
  mutable absl::Mutex mu_;
  absl::Status sticky_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_STORE_ROCKSDB_STORE_H_
