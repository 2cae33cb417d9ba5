// Writes the files selected for an artifact (artifact_files.h) into a zip, as CodeBuild uploads
// them (reference/aws-semantics.md §1.10), or into a tar for the local cache (§1.11). libarchive,
// streamed in 64 KiB chunks (a file is never loaded whole). Thread-safe (no shared state).
#ifndef KILN_AGENT_ARTIFACTS_ZIP_WRITER_H_
#define KILN_AGENT_ARTIFACTS_ZIP_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/artifacts/artifact_files.h"

namespace kiln::agent {

struct ZipInfo {
  int64_t file_count = 0;  // members written (files and symlinks)
  int64_t size_bytes = 0;  // size of the archive file, bytes
};

enum class ArchiveFormat { kZip /* deflate */, kTar /* POSIX pax, uncompressed */ };

// Writes one member per entry of `files`, in the given order, named zip_path: a regular file with
// the content, permission bits and mtime of source_path (following a symlink), or, for
// `symlink` entries, a symlink to link_target (readlink(source_path) when link_target is empty).
// Writes `out_path + ".tmp"` and renames it to `out_path` on success (removed on failure); the
// parent directory must exist.
// Errors: NotFound (a source file is missing, naming it); Internal (read or write failure, or a
// file that changed size while being read, naming the path).
absl::StatusOr<ZipInfo> WriteArchive(const std::vector<ArtifactFile>& files,
                                     const std::string& out_path, ArchiveFormat format);

// WriteArchive(files, out_path, ArchiveFormat::kZip).
absl::StatusOr<ZipInfo> WriteZip(const std::vector<ArtifactFile>& files,
                                 const std::string& out_path);

}  // namespace kiln::agent

#endif  // KILN_AGENT_ARTIFACTS_ZIP_WRITER_H_
