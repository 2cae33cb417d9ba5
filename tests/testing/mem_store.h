// Test-only Store implementations (fakes, leveldb EnvWrapper style).
//
//   MemStore: an in-memory Store with RocksDbStore's semantics (ordered keys, atomic batches,
//   prefix scans); it never fails by itself. FaultInjectingStore: wraps another Store and makes its
//   writes fail on demand, to test how callers react to a store that cannot persist.
//
// Both are thread-safe.
#ifndef KILN_TESTS_TESTING_MEM_STORE_H_
#define KILN_TESTS_TESTING_MEM_STORE_H_

#include <functional>
#include <map>
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

namespace kiln::test {

class MemStore final : public coordinator::Store {
 public:
  MemStore() = default;
  MemStore(const MemStore&) = delete;
  MemStore& operator=(const MemStore&) = delete;

  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) override;
  absl::Status Write(const coordinator::WriteBatch& batch) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      std::string_view prefix, size_t limit = 0, bool reverse = false) override;

  // Every key/value pair, in key order (for assertions on the whole state).
  std::map<std::string, std::string> Contents() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::string, std::less<>> data_ ABSL_GUARDED_BY(mu_);
};

// Forwards to `base` (not owned; must outlive this) until told to fail.
class FaultInjectingStore final : public coordinator::Store {
 public:
  explicit FaultInjectingStore(coordinator::Store* base) : base_(base) {}
  FaultInjectingStore(const FaultInjectingStore&) = delete;
  FaultInjectingStore& operator=(const FaultInjectingStore&) = delete;

  // The next `n` writes (n >= 0) reach `base`; the one after returns `error` (not OK) without
  // reaching base, and from then on every Get/Write/Scan returns `error` (the Store contract's
  // sticky error).
  void FailWritesAfter(int n, absl::Status error);

  // Number of Write() calls that reached `base` so far.
  int writes() const;

  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) override;
  absl::Status Write(const coordinator::WriteBatch& batch) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      std::string_view prefix, size_t limit = 0, bool reverse = false) override;

 private:
  coordinator::Store* const base_;
  mutable absl::Mutex mu_;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<int> writes_left_ ABSL_GUARDED_BY(mu_);  // nullopt: never fail
  absl::Status pending_error_ ABSL_GUARDED_BY(mu_);
  absl::Status sticky_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::test

#endif  // KILN_TESTS_TESTING_MEM_STORE_H_
