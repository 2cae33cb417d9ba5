// The coordinator's content-addressed artifact store: build artifact zips kept
// as files named by the SHA-256 of their bytes (issue 3, reference §1.10).
//
// Layout under `dir` (created 0700):
//   sha256/<first 2 hex>/<64 hex>   one immutable blob per distinct content
//   tmp/<random>                    uploads in progress (removed on abort and
//   at Open)
// A blob becomes visible only complete and fsynced: an upload is written to
// tmp/ while it is hashed, then renamed to its address. The same content
// uploaded twice is stored once.
//
// Thread-safety: all methods are thread-safe; a Writer or Reader is used by one
// thread at a time.
#ifndef KILN_COORDINATOR_ARTIFACTS_ARTIFACT_STORE_H_
#define KILN_COORDINATOR_ARTIFACTS_ARTIFACT_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::coordinator {

struct BlobInfo {
  std::string sha256; // lowercase hex
  int64_t size_bytes = 0;
};

class ArtifactStore {
public:
  // One upload. Destroying it without Commit() discards the bytes.
  class Writer {
  public:
    virtual ~Writer() = default;
    // Appends bytes. ResourceExhausted once the total exceeds the store's
    // max_blob_bytes (the writer is then unusable); Internal on a disk error.
    virtual absl::Status Append(std::string_view bytes) = 0;
    // Fsyncs and publishes the blob under its SHA-256. Internal on a disk
    // error.
    virtual absl::StatusOr<BlobInfo> Commit() = 0;
  };

  // A blob being read.
  class Reader {
  public:
    virtual ~Reader() = default;
    // Up to `max_bytes` next bytes; empty at the end. Internal on a disk error.
    virtual absl::StatusOr<std::string> Read(int64_t max_bytes) = 0;
    virtual int64_t size_bytes() const = 0;
  };

  // Opens (creating) the store in `dir` and removes leftover tmp/ files.
  // `max_blob_bytes` bounds one upload. Errors: InvalidArgument (empty dir,
  // max_blob_bytes <= 0), Internal (filesystem).
  static absl::StatusOr<std::unique_ptr<ArtifactStore>>
  Open(std::string dir, int64_t max_blob_bytes);

  absl::StatusOr<std::unique_ptr<Writer>> NewWriter();
  // InvalidArgument (not 64 lowercase hex), NotFound (no such blob), Internal.
  absl::StatusOr<std::unique_ptr<Reader>> OpenBlob(const std::string &sha256);
  // Size of a stored blob. InvalidArgument, NotFound.
  absl::StatusOr<int64_t> BlobSize(const std::string &sha256);

  const std::string &dir() const { return dir_; }

private:
  ArtifactStore(std::string dir, int64_t max_blob_bytes)
      : dir_(std::move(dir)), max_blob_bytes_(max_blob_bytes) {}
  absl::StatusOr<std::string> BlobPath(const std::string &sha256) const;

  const std::string dir_;
  const int64_t max_blob_bytes_;
};

} // namespace kiln::coordinator

#endif // KILN_COORDINATOR_ARTIFACTS_ARTIFACT_STORE_H_
