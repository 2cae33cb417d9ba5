// LogStore: build logs as append-only files in a directory, indexed in the Store.
//
// Each build's log is the file `<dir>/<escaped build id>.log` (bytes outside [A-Za-z0-9_-] of the
// id, such as the ':' of "project:uuid", are written %XX) plus the Store record `log/<build id>` =
// {"size": bytes, "next_seq": n}. Only the first `size` bytes of the file are the log: an append
// writes the bytes to the file first and then the index, so a crash in between leaves unindexed
// bytes that are never read and are cut off when the build is first touched after a restart. Chunks
// are numbered 0, 1, 2... per build (agent.proto LogChunk.seq); a resent chunk is ignored, so
// agents may resend after a reconnect (idempotent).
//
// Durability follows the Store: log bytes reach the OS page cache before Append returns (survive a
// crash of the process); they are not fsynced.
//
// Thread-safe. Operations on one build are serialised; different builds proceed in parallel. After
// the first access the index of a build is cached in memory, so an append costs one file write and
// one Store write.
#ifndef KILN_COORDINATOR_LOGS_LOG_STORE_H_
#define KILN_COORDINATOR_LOGS_LOG_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/store/store.h"

namespace kiln::coordinator {

class LogStore {
 public:
  // `store` is borrowed and must outlive the LogStore; `dir` is created if missing. Only one
  // LogStore may use a directory and a Store at a time. Errors: InvalidArgument (empty dir);
  // errno-derived statuses (e.g. PermissionDenied) when the directory cannot be created.
  static absl::StatusOr<std::unique_ptr<LogStore>> Open(Store* store, const std::string& dir);

  ~LogStore();
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // Appends chunk `seq` of `build_id`'s log. Returns true if appended, false if it is a duplicate
  // (seq < NextSeq: nothing written). Errors: InvalidArgument (empty build id, seq < 0);
  // FailedPrecondition (seq > NextSeq: a gap; resend the missing chunks first); DataLoss (the log
  // file is shorter than its index); errno-derived file errors; the Store's errors.
  absl::StatusOr<bool> Append(const std::string& build_id, int64_t seq, std::string_view data);

  // Bytes in `build_id`'s log; 0 for a build without a log. Errors: as Append.
  absl::StatusOr<int64_t> Size(const std::string& build_id);

  // The seq the next Append must carry; 0 for a build without a log. Errors: as Append.
  absl::StatusOr<int64_t> NextSeq(const std::string& build_id);

  // Up to `max_bytes` bytes of the log starting `offset` bytes in; empty when offset >= Size()
  // (also for a build without a log). Errors: InvalidArgument (offset or max_bytes negative); as
  // Append.
  absl::StatusOr<std::string> Read(const std::string& build_id, int64_t offset, int64_t max_bytes);

  // The build's log is complete: closes its file and drops its in-memory state (a later call for the
  // build loads it again from the index). Never fails.
  void Close(const std::string& build_id);

  // The file holding `build_id`'s log (tests, tools).
  std::string PathFor(std::string_view build_id) const;

 private:
  struct BuildLog;
  LogStore(Store* store, std::string dir);
  // The in-memory state of `build_id`, created (not yet loaded) on first use and kept until
  // Close(build_id); callers hold a reference while they use it.
  std::shared_ptr<BuildLog> Entry(const std::string& build_id);
  // (size, next_seq) of `build_id`, loading the build first if needed. Errors: as Append.
  absl::StatusOr<std::pair<int64_t, int64_t>> SizeAndNextSeq(const std::string& build_id);

  Store* const store_;
  const std::string dir_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<BuildLog>> logs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_LOGS_LOG_STORE_H_
