#include "coordinator/logs/log_store.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kiln::coordinator {

struct LogStore::BuildLog {
  // On first use: reads the index `log/<build_id>` from `store` and cuts the file `path` to the
  // indexed size (dropping bytes of an append whose index write never happened).
  absl::Status EnsureLoaded(Store* store, const std::string& build_id, const std::string& path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  absl::Mutex mu;
  bool loaded ABSL_GUARDED_BY(mu) = false;
  int64_t size ABSL_GUARDED_BY(mu) = 0;      // bytes of the log (the file may hold more, unindexed)
  int64_t next_seq ABSL_GUARDED_BY(mu) = 0;  // seq of the next chunk to append
  int fd ABSL_GUARDED_BY(mu) = -1;            // open for writing while the build is active

  ~BuildLog() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

constexpr size_t kMaxFileStem = 200;  // bytes; keeps names well under NAME_MAX (255)

std::string IndexKey(std::string_view build_id) {
  return absl::StrCat("log/", absl::string_view(build_id.data(), build_id.size()));
}

absl::Status FileError(int err, std::string_view op, const std::string& path) {
  return absl::ErrnoToStatus(err, absl::StrCat(absl::string_view(op.data(), op.size()), " ", path));
}

// Writes all of `data` at `offset` of the file `path`, opening it (creating it if missing) into *fd
// unless it is open already. The file stays open for the next append.
absl::Status WriteAt(int* fd_ptr, const std::string& path, int64_t offset, std::string_view data) {
  if (*fd_ptr < 0) {
    *fd_ptr = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (*fd_ptr < 0) return FileError(errno, "open", path);
  }
  const int fd = *fd_ptr;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done,
                         static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      *fd_ptr = -1;
      return FileError(err, "write", path);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LogStore::BuildLog::EnsureLoaded(Store* store, const std::string& build_id,
                                              const std::string& path) {
  if (loaded) return absl::OkStatus();
  int64_t indexed_size = 0;
  int64_t indexed_next_seq = 0;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> index, store->Get(IndexKey(build_id)));
  if (index.has_value()) {
    const nlohmann::json j = nlohmann::json::parse(*index, nullptr, /*allow_exceptions=*/false);
    auto field = [&j](const char* name) -> int64_t {
      return j.is_object() && j.contains(name) && j[name].is_number_integer()
                 ? j[name].get<int64_t>()
                 : -1;
    };
    indexed_size = field("size");
    indexed_next_seq = field("next_seq");
    if (indexed_size < 0 || indexed_next_seq < 0) {
      return absl::DataLossError(
          absl::StrCat("log index of build ", build_id, " is corrupt: ", *index));
    }
  }
  struct stat st;
  int64_t file_size = 0;
  if (::stat(path.c_str(), &st) == 0) {
    file_size = st.st_size;
  } else if (errno != ENOENT) {
    return FileError(errno, "stat", path);
  }
  if (file_size < indexed_size) {
    return absl::DataLossError(absl::StrCat("log file ", path, " of build ", build_id, " has ",
                                            file_size, " bytes but its index says ", indexed_size));
  }
  // Bytes past the indexed size belong to an append whose index write never happened: drop them.
  if (file_size > indexed_size && ::truncate(path.c_str(), static_cast<off_t>(indexed_size)) != 0) {
    return FileError(errno, "truncate", path);
  }
  size = indexed_size;
  next_seq = indexed_next_seq;
  loaded = true;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LogStore>> LogStore::Open(Store* store, const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("LogStore: empty directory");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return FileError(ec.value(), "create directory", dir);
  return std::unique_ptr<LogStore>(new LogStore(store, dir));
}

LogStore::LogStore(Store* store, std::string dir) : store_(store), dir_(std::move(dir)) {}

LogStore::~LogStore() = default;

std::string LogStore::PathFor(std::string_view build_id) const {
  std::string stem;
  for (char c : build_id) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') {
      stem.push_back(c);
    } else {
      absl::StrAppendFormat(&stem, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  if (stem.size() > kMaxFileStem) {
    // Too long for a file name: keep a readable head and make it unique with a hash ('~' is never
    // produced by the escaping above, so these names cannot collide with short ones).
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(build_id.data()), build_id.size(), digest);
    stem = absl::StrCat(stem.substr(0, 120), "~",
                        absl::BytesToHexString(absl::string_view(
                            reinterpret_cast<const char*>(digest), sizeof(digest))));
  }
  return absl::StrCat(dir_, "/", stem, ".log");
}

std::shared_ptr<LogStore::BuildLog> LogStore::Entry(const std::string& build_id) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<BuildLog>& log = logs_[build_id];
  if (log == nullptr) log = std::make_shared<BuildLog>();
  return log;
}

void LogStore::Close(const std::string& build_id) {
  std::shared_ptr<BuildLog> log;
  {
    absl::MutexLock lock(&mu_);
    auto it = logs_.find(build_id);
    if (it == logs_.end()) return;
    log = std::move(it->second);
    logs_.erase(it);
  }
  // The file closes when the last user lets go of `log`.
}

absl::StatusOr<bool> LogStore::Append(const std::string& build_id, int64_t seq,
                                      std::string_view data) {
  if (build_id.empty()) return absl::InvalidArgumentError("empty build id");
  if (seq < 0) return absl::InvalidArgumentError(absl::StrCat("negative log chunk seq ", seq));
  std::shared_ptr<BuildLog> log = Entry(build_id);
  absl::MutexLock lock(&log->mu);
  KILN_RETURN_IF_ERROR(log->EnsureLoaded(store_, build_id, PathFor(build_id)));
  if (seq < log->next_seq) return false;
  if (seq > log->next_seq) {
    return absl::FailedPreconditionError(absl::StrCat("log chunk ", seq, " of build ", build_id,
                                                      " arrived before chunk ", log->next_seq));
  }
  // Bytes first, index second: a crash in between leaves only unindexed bytes, cut off on load.
  // Writing at the indexed size (not O_APPEND) also overwrites bytes of an earlier append whose
  // index write failed.
  if (!data.empty()) KILN_RETURN_IF_ERROR(WriteAt(&log->fd, PathFor(build_id), log->size, data));
  const int64_t size = log->size + static_cast<int64_t>(data.size());
  WriteBatch batch;
  batch.Put(IndexKey(build_id), nlohmann::json{{"size", size}, {"next_seq", seq + 1}}.dump());
  KILN_RETURN_IF_ERROR(store_->Write(batch));
  log->size = size;
  log->next_seq = seq + 1;
  return true;
}

absl::StatusOr<std::pair<int64_t, int64_t>> LogStore::SizeAndNextSeq(const std::string& build_id) {
  if (build_id.empty()) return absl::InvalidArgumentError("empty build id");
  // Reads do not cache: only appends (active builds) keep an entry until Close(), so reading the
  // logs of completed builds costs no memory.
  std::shared_ptr<BuildLog> log;
  {
    absl::MutexLock lock(&mu_);
    auto it = logs_.find(build_id);
    if (it != logs_.end()) log = it->second;
  }
  if (log == nullptr) log = std::make_shared<BuildLog>();
  absl::MutexLock lock(&log->mu);
  KILN_RETURN_IF_ERROR(log->EnsureLoaded(store_, build_id, PathFor(build_id)));
  return std::make_pair(log->size, log->next_seq);
}

absl::StatusOr<int64_t> LogStore::Size(const std::string& build_id) {
  KILN_ASSIGN_OR_RETURN(auto state, SizeAndNextSeq(build_id));
  return state.first;
}

absl::StatusOr<int64_t> LogStore::NextSeq(const std::string& build_id) {
  KILN_ASSIGN_OR_RETURN(auto state, SizeAndNextSeq(build_id));
  return state.second;
}

absl::StatusOr<std::string> LogStore::Read(const std::string& build_id, int64_t offset,
                                           int64_t max_bytes) {
  if (offset < 0 || max_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("negative log offset or length: ", offset, ", ", max_bytes));
  }
  KILN_ASSIGN_OR_RETURN(int64_t size, Size(build_id));
  // Bytes below `size` never change once indexed, so they are read without the build's lock.
  if (offset >= size || max_bytes == 0) return std::string();
  const std::string path = PathFor(build_id);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "open", path);
  std::string out(static_cast<size_t>(std::min(max_bytes, size - offset)), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                        static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : 0;
      ::close(fd);
      if (err != 0) return FileError(err, "read", path);
      return absl::DataLossError(absl::StrCat("log file ", path, " is shorter than its index"));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

}  // namespace kiln::coordinator
