#include "coordinator/artifacts/artifact_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"

namespace kiln::coordinator {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(std::string_view what, const std::string &path) {
  return absl::InternalError(
      absl::StrCat(std::string(what), " ", path, ": ", std::strerror(errno)));
}

bool IsSha256Hex(const std::string &s) {
  if (s.size() != 64)
    return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f'))
      return false;
  }
  return true;
}

class FileWriter final : public ArtifactStore::Writer {
public:
  FileWriter(int fd, std::string tmp_path, std::string blobs_dir,
             int64_t max_bytes)
      : fd_(fd), tmp_(std::move(tmp_path)), blobs_(std::move(blobs_dir)),
        max_(max_bytes), md_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(md_, EVP_sha256(), nullptr);
  }
  ~FileWriter() override {
    if (fd_ >= 0)
      close(fd_);
    if (!committed_)
      unlink(tmp_.c_str());
    EVP_MD_CTX_free(md_);
  }

  absl::Status Append(std::string_view bytes) override {
    if (fd_ < 0)
      return absl::FailedPreconditionError("the upload was already ended");
    if (size_ + static_cast<int64_t>(bytes.size()) > max_) {
      close(fd_);
      fd_ = -1;
      return absl::ResourceExhaustedError(
          absl::StrCat("artifact is larger than the coordinator's limit of ",
                       max_, " bytes"));
    }
    EVP_DigestUpdate(md_, bytes.data(), bytes.size());
    while (!bytes.empty()) {
      ssize_t n = write(fd_, bytes.data(), bytes.size());
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return Errno("write", tmp_);
      }
      bytes.remove_prefix(static_cast<size_t>(n));
      size_ += n;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<BlobInfo> Commit() override {
    if (fd_ < 0)
      return absl::FailedPreconditionError("the upload was already ended");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md_, digest, &len);
    BlobInfo info{absl::BytesToHexString(absl::string_view(
                      reinterpret_cast<const char *>(digest), len)),
                  size_};
    if (fsync(fd_) != 0)
      return Errno("fsync", tmp_);
    close(fd_);
    fd_ = -1;
    const std::string shard =
        absl::StrCat(blobs_, "/", info.sha256.substr(0, 2));
    if (mkdir(shard.c_str(), 0700) == 0) {
      // A new shard directory: make its entry in sha256/ durable too.
      int pfd = open(blobs_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (pfd >= 0) {
        fsync(pfd);
        close(pfd);
      }
    } else if (errno != EEXIST) {
      return Errno("mkdir", shard);
    }
    const std::string dest = absl::StrCat(shard, "/", info.sha256);
    if (rename(tmp_.c_str(), dest.c_str()) != 0)
      return Errno("rename", dest);
    committed_ = true;
    // Make the rename durable.
    int dfd = open(shard.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
    return info;
  }

private:
  int fd_;
  const std::string tmp_, blobs_;
  const int64_t max_;
  EVP_MD_CTX *md_;
  int64_t size_ = 0;
  bool committed_ = false;
};

class FileReader final : public ArtifactStore::Reader {
public:
  FileReader(int fd, int64_t size, std::string path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  ~FileReader() override { close(fd_); }
  absl::StatusOr<std::string> Read(int64_t max_bytes) override {
    std::string buf(static_cast<size_t>(std::max<int64_t>(max_bytes, 0)), '\0');
    for (;;) {
      ssize_t n = read(fd_, buf.data(), buf.size());
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return Errno("read", path_);
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
  }
  int64_t size_bytes() const override { return size_; }

private:
  int fd_;
  int64_t size_;
  std::string path_;
};

} // namespace

absl::StatusOr<std::unique_ptr<ArtifactStore>>
ArtifactStore::Open(std::string dir, int64_t max_blob_bytes) {
  if (dir.empty())
    return absl::InvalidArgumentError("artifact store: empty directory");
  if (max_blob_bytes <= 0)
    return absl::InvalidArgumentError("artifact store: max_blob_bytes <= 0");
  std::error_code ec;
  for (const char *sub : {"", "/sha256", "/tmp"}) {
    const std::string d = dir + sub;
    fs::create_directories(d, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("mkdir ", d, ": ", ec.message()));
    chmod(d.c_str(), 0700);
  }
  for (const auto &e : fs::directory_iterator(dir + "/tmp", ec))
    fs::remove(e.path(), ec);
  return std::unique_ptr<ArtifactStore>(
      new ArtifactStore(std::move(dir), max_blob_bytes));
}

absl::StatusOr<std::unique_ptr<ArtifactStore::Writer>>
ArtifactStore::NewWriter() {
  const std::string tmp = absl::StrCat(dir_, "/tmp/", common::NewUuid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return Errno("create", tmp);
  return std::unique_ptr<Writer>(
      new FileWriter(fd, tmp, dir_ + "/sha256", max_blob_bytes_));
}

absl::StatusOr<std::string>
ArtifactStore::BlobPath(const std::string &sha256) const {
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", sha256, "' is not a SHA-256 (64 lowercase hex digits)"));
  }
  return absl::StrCat(dir_, "/sha256/", sha256.substr(0, 2), "/", sha256);
}

absl::StatusOr<std::unique_ptr<ArtifactStore::Reader>>
ArtifactStore::OpenBlob(const std::string &sha256) {
  KILN_ASSIGN_OR_RETURN(std::string path, BlobPath(sha256));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("no artifact blob ", sha256));
    return Errno("open", path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Errno("stat", path);
  }
  return std::unique_ptr<Reader>(new FileReader(fd, st.st_size, path));
}

absl::StatusOr<int64_t> ArtifactStore::BlobSize(const std::string &sha256) {
  KILN_ASSIGN_OR_RETURN(std::string path, BlobPath(sha256));
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("no artifact blob ", sha256));
    return Errno("stat", path);
  }
  return static_cast<int64_t>(st.st_size);
}

} // namespace kiln::coordinator
