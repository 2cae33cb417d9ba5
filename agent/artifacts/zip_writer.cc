#include "agent/artifacts/zip_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kiln::agent {
namespace {

constexpr size_t kChunkBytes = 64 * 1024;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

absl::Status ArchiveError(archive* a, const std::string& what) {
  const char* msg = archive_error_string(a);
  return absl::InternalError(absl::StrCat(what, ": ", msg ? msg : "unknown libarchive error"));
}

absl::Status ErrnoError(int err, const std::string& what, const std::string& path) {
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
}

absl::Status WriteMember(archive* a, const ArtifactFile& f, std::vector<char>& buf) {
  struct stat st;
  const int rc = f.symlink ? lstat(f.source_path.c_str(), &st) : stat(f.source_path.c_str(), &st);
  if (rc != 0) return ErrnoError(errno, "cannot stat", f.source_path);
  EntryPtr entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), f.zip_path.c_str());
  archive_entry_set_mtime(entry.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);

  if (f.symlink) {
    std::string target = f.link_target;
    if (target.empty()) {
      target.resize(PATH_MAX);
      ssize_t n = readlink(f.source_path.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoError(errno, "cannot read symlink", f.source_path);
      target.resize(n);
    }
    archive_entry_set_filetype(entry.get(), AE_IFLNK);
    archive_entry_set_perm(entry.get(), 0777);
    archive_entry_set_symlink(entry.get(), target.c_str());
    if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
      return ArchiveError(a, absl::StrCat("cannot add ", f.zip_path));
    }
    return absl::OkStatus();
  }

  if (!S_ISREG(st.st_mode)) {
    return absl::InternalError(absl::StrCat(f.source_path, " is not a regular file"));
  }
  const int fd = open(f.source_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open", f.source_path);
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), st.st_mode & 07777);
  archive_entry_set_size(entry.get(), st.st_size);
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
    return ArchiveError(a, absl::StrCat("cannot add ", f.zip_path));
  }
  int64_t remaining = st.st_size;
  while (remaining > 0) {
    const ssize_t n = read(fd, buf.data(), std::min<int64_t>(remaining, buf.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "cannot read", f.source_path);
    if (n == 0) break;
    if (archive_write_data(a, buf.data(), n) != n) {
      return ArchiveError(a, absl::StrCat("cannot write ", f.zip_path));
    }
    remaining -= n;
  }
  if (remaining != 0) {
    return absl::InternalError(absl::StrCat(f.source_path, " changed size while being archived"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ZipInfo> WriteAll(const std::vector<ArtifactFile>& files, const std::string& tmp,
                                 ArchiveFormat format) {
  ArchivePtr a(archive_write_new());
  if (format == ArchiveFormat::kZip) {
    if (archive_write_set_format_zip(a.get()) != ARCHIVE_OK ||
        archive_write_zip_set_compression_deflate(a.get()) != ARCHIVE_OK) {
      return ArchiveError(a.get(), "cannot set up zip output");
    }
  } else if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "cannot set up tar output");
  }
  if (archive_write_open_filename(a.get(), tmp.c_str()) != ARCHIVE_OK) {
    return ArchiveError(a.get(), absl::StrCat("cannot create ", tmp));
  }
  std::vector<char> buf(kChunkBytes);
  for (const ArtifactFile& f : files) KILN_RETURN_IF_ERROR(WriteMember(a.get(), f, buf));
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return ArchiveError(a.get(), absl::StrCat("cannot finish ", tmp));
  }
  struct stat st;
  if (stat(tmp.c_str(), &st) != 0) return ErrnoError(errno, "cannot stat", tmp);
  return ZipInfo{static_cast<int64_t>(files.size()), static_cast<int64_t>(st.st_size)};
}

}  // namespace

absl::StatusOr<ZipInfo> WriteArchive(const std::vector<ArtifactFile>& files,
                                     const std::string& out_path, ArchiveFormat format) {
  const std::string tmp = out_path + ".tmp";
  absl::StatusOr<ZipInfo> info = WriteAll(files, tmp, format);
  if (info.ok() && std::rename(tmp.c_str(), out_path.c_str()) != 0) {
    info = ErrnoError(errno, "cannot rename to", out_path);
  }
  if (!info.ok()) unlink(tmp.c_str());
  return info;
}

absl::StatusOr<ZipInfo> WriteZip(const std::vector<ArtifactFile>& files,
                                 const std::string& out_path) {
  return WriteArchive(files, out_path, ArchiveFormat::kZip);
}

}  // namespace kiln::agent
