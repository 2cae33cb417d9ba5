#include "agent/artifacts/local_cache.h"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/artifacts/artifact_files.h"
#include "agent/artifacts/zip_writer.h"
#include "common/status_macros.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;

constexpr char kSrcPrefix[] = "src/";
constexpr char kAbsPrefix[] = "abs/";
constexpr size_t kPrefixLen = 4;

std::string Sha256Hex(std::string_view s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), n));
}

std::optional<std::string> ReadSmallFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::Status WriteSmallFileAtomic(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", tmp.string()));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot write ", path.string(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status MakePrivateDir(const fs::path& dir) {
  std::error_code ec;
  if (fs::create_directories(dir, ec)) fs::permissions(dir, fs::perms::owner_all, ec);
  if (ec || !fs::is_directory(dir, ec)) {
    return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

struct Entry {
  std::string key;
  fs::path tar;
  fs::file_time_type mtime;
};

// The project's complete entries (a .tar with its .key), newest first (ties: by key).
std::vector<Entry> ListEntries(const fs::path& dir) {
  std::vector<Entry> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const fs::path& tar = it->path();
    if (tar.extension() != ".tar") continue;
    std::optional<std::string> key = ReadSmallFile(fs::path(tar).replace_extension(".key"));
    std::error_code ec2;
    fs::file_time_type mtime = fs::last_write_time(tar, ec2);
    if (key && !ec2) out.push_back(Entry{std::move(*key), tar, mtime});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.mtime != b.mtime ? a.mtime > b.mtime : a.key < b.key;
  });
  return out;
}

bool HasDotDot(std::string_view path) {
  for (absl::string_view c : absl::StrSplit(absl::string_view(path.data(), path.size()), '/')) {
    if (c == "..") return true;
  }
  return false;
}

struct ReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

// Extracts the tar written by Save; returns the number of members.
// "abs/" members are restored only when `allow_abs` (the restoring spec names absolute paths);
// otherwise they are skipped.
absl::StatusOr<int64_t> Extract(const fs::path& tar, const std::string& src_dir, bool allow_abs) {
  std::unique_ptr<archive, ReadDeleter> in(archive_read_new());
  archive_read_support_format_tar(in.get());
  if (archive_read_open_filename(in.get(), tar.c_str(), 64 * 1024) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("cannot open ", tar.string(), ": ", archive_error_string(in.get())));
  }
  std::unique_ptr<archive, WriteDeleter> out(archive_write_disk_new());
  // SECURE_SYMLINKS: never write through a symlink the build planted (node_modules -> /root/.ssh).
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                ARCHIVE_EXTRACT_UNLINK);
  std::error_code ec;
  const std::string src = fs::absolute(src_dir, ec).lexically_normal().string();
  if (ec) return absl::InternalError(absl::StrCat("bad source directory ", src_dir));
  int64_t files = 0;
  archive_entry* entry = nullptr;
  while (true) {
    int rc = archive_read_next_header(in.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      return absl::InternalError(
          absl::StrCat("cannot read ", tar.string(), ": ", archive_error_string(in.get())));
    }
    const std::string name = archive_entry_pathname(entry);
    const std::string rest = name.size() > kPrefixLen ? name.substr(kPrefixLen) : "";
    std::string dest;
    if (absl::StartsWith(name, kSrcPrefix)) dest = (fs::path(src) / rest).string();
    if (absl::StartsWith(name, kAbsPrefix)) dest = "/" + rest;
    if (dest.empty() || rest.empty() || HasDotDot(rest)) {
      return absl::DataLossError(
          absl::StrCat("cache entry ", tar.string(), " has an invalid member '", name, "'"));
    }
    if (absl::StartsWith(name, kAbsPrefix) && !allow_abs) {
      archive_read_data_skip(in.get());
      continue;
    }
    archive_entry_set_pathname(entry, dest.c_str());
    if (archive_write_header(out.get(), entry) < ARCHIVE_WARN) {
      return absl::InternalError(
          absl::StrCat("cannot restore ", dest, ": ", archive_error_string(out.get())));
    }
    const void* buf;
    size_t size;
    la_int64_t offset;
    while ((rc = archive_read_data_block(in.get(), &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out.get(), buf, size, offset) < ARCHIVE_WARN) {
        return absl::InternalError(
            absl::StrCat("cannot write ", dest, ": ", archive_error_string(out.get())));
      }
    }
    if (rc != ARCHIVE_EOF) {
      return absl::InternalError(
          absl::StrCat("cannot read ", tar.string(), ": ", archive_error_string(in.get())));
    }
    if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN) {
      return absl::InternalError(
          absl::StrCat("cannot restore ", dest, ": ", archive_error_string(out.get())));
    }
    ++files;
  }
  return files;
}

// Files matched by one cache path (§1.11), named with their "src/" or "abs/" member prefix.
absl::StatusOr<std::vector<ArtifactFile>> ExpandCachePath(const std::string& path,
                                                          const std::string& src_dir) {
  if (HasDotDot(path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache path '", path, "' contains '..'; name the directory directly"));
  }
  std::string base = src_dir, pattern = path, prefix = kSrcPrefix;
  if (absl::StartsWith(path, "/")) {
    std::vector<std::string> comps = absl::StrSplit(path, '/', absl::SkipEmpty());
    size_t split = 0;
    while (split < comps.size() && !HasGlobWildcard(comps[split])) ++split;
    if (split == comps.size() && split > 0) --split;  // a literal path: its parent + its name
    base = "/" + absl::StrJoin(comps.begin(), comps.begin() + split, "/");
    pattern = absl::StrJoin(comps.begin() + split, comps.end(), "/");
    prefix = absl::StrCat(kAbsPrefix, base.substr(1), split > 0 ? "/" : "");
  }
  KILN_ASSIGN_OR_RETURN(std::vector<ArtifactFile> files,
                        ExpandGlob(base, pattern, /*keep_symlinks=*/true));
  // A source-relative path must not lead out of the source directory through a symlink.
  if (prefix == kSrcPrefix) {
    std::erase_if(files, [&src_dir](const ArtifactFile& f) {
      return !f.symlink && !ResolvesInside(f.source_path, src_dir);
    });
  }
  for (ArtifactFile& f : files) f.zip_path = prefix + f.zip_path;
  return files;
}

}  // namespace

LocalCache::LocalCache(std::string root) : root_(std::move(root)) {}

absl::Mutex& LocalCache::ProjectMutex(const std::string& project) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<absl::Mutex>& mu = project_mu_[project];
  if (!mu) mu = std::make_unique<absl::Mutex>();
  return *mu;
}

absl::StatusOr<CacheRestoreResult> LocalCache::Restore(const std::string& project,
                                                       const common::BuildspecCache& spec,
                                                       const std::string& src_dir) {
  if (project.empty()) return absl::InvalidArgumentError("cache restore: empty project name");
  CacheRestoreResult result;
  if (spec.action == "save") {
    result.log_lines.push_back("Cache action is save: not restoring the cache");
    return result;
  }
  absl::MutexLock lock(&ProjectMutex(project));
  const std::vector<Entry> entries = ListEntries(fs::path(root_) / Sha256Hex(project));
  auto chosen = std::find_if(entries.begin(), entries.end(),
                             [&spec](const Entry& e) { return e.key == spec.key; });
  for (size_t i = 0; chosen == entries.end() && !spec.key.empty() && i < spec.fallback_keys.size();
       ++i) {
    chosen = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) {
      return absl::StartsWith(e.key, spec.fallback_keys[i]);
    });
  }
  if (chosen == entries.end()) {
    result.log_lines.push_back(
        spec.key.empty() ? "No local cache for this project yet"
                         : absl::StrCat("No local cache matches key ", spec.key,
                                        spec.fallback_keys.empty() ? "" : " or its fallback keys"));
    return result;
  }
  const bool allow_abs = std::any_of(spec.paths.begin(), spec.paths.end(),
                                     [](const std::string& p) { return absl::StartsWith(p, "/"); });
  KILN_ASSIGN_OR_RETURN(result.files, Extract(chosen->tar, src_dir, allow_abs));
  result.restored = true;
  result.key = chosen->key;
  result.log_lines.push_back(absl::StrCat(
      "Restored local cache", chosen->key.empty() ? "" : " key " + chosen->key,
      chosen->key == spec.key ? "" : " (fallback key match)", ": ", result.files, " file(s)"));
  return result;
}

absl::StatusOr<CacheSaveResult> LocalCache::Save(const std::string& project,
                                                 const common::BuildspecCache& spec,
                                                 const std::string& src_dir) {
  if (project.empty()) return absl::InvalidArgumentError("cache save: empty project name");
  CacheSaveResult result;
  if (spec.action == "restore") {
    result.log_lines.push_back("Cache action is restore: not saving the cache");
    return result;
  }
  std::map<std::string, ArtifactFile> members;
  for (const std::string& path : spec.paths) {
    KILN_ASSIGN_OR_RETURN(std::vector<ArtifactFile> files, ExpandCachePath(path, src_dir));
    for (ArtifactFile& f : files) members[f.zip_path] = std::move(f);
  }
  if (members.empty()) {
    result.log_lines.push_back("No cache paths matched any file: nothing saved");
    return result;
  }
  std::vector<ArtifactFile> files;
  for (auto& [name, f] : members) files.push_back(std::move(f));

  absl::MutexLock lock(&ProjectMutex(project));
  const fs::path dir = fs::path(root_) / Sha256Hex(project);
  KILN_RETURN_IF_ERROR(MakePrivateDir(root_));
  KILN_RETURN_IF_ERROR(MakePrivateDir(dir));
  std::error_code ec;
  if (!fs::exists(dir / "project", ec)) {
    KILN_RETURN_IF_ERROR(WriteSmallFileAtomic(dir / "project", project));
  }
  const std::string stem = Sha256Hex(spec.key);
  KILN_RETURN_IF_ERROR(WriteSmallFileAtomic(dir / (stem + ".key"), spec.key));
  const fs::path tar = dir / (stem + ".tar");
  std::optional<fs::file_time_type> newest_other;
  for (const Entry& e : ListEntries(dir)) {
    if (e.tar != tar) newest_other = std::max(newest_other.value_or(e.mtime), e.mtime);
  }
  KILN_ASSIGN_OR_RETURN(ZipInfo info, WriteArchive(files, tar.string(), ArchiveFormat::kTar));

  // Newest-entry order must not depend on the filesystem's timestamp granularity.
  if (newest_other && fs::last_write_time(tar, ec) <= *newest_other) {
    fs::last_write_time(tar, *newest_other + std::chrono::nanoseconds(1), ec);
  }
  result.saved = true;
  result.files = info.file_count;
  result.bytes = info.size_bytes;
  result.log_lines.push_back(absl::StrCat("Saved local cache", spec.key.empty() ? "" : " key ",
                                          spec.key, ": ", info.file_count, " file(s), ",
                                          info.size_bytes, " bytes"));

  const std::vector<Entry> entries = ListEntries(dir);
  for (size_t i = kMaxKeysPerProject; i < entries.size(); ++i) {
    fs::remove(entries[i].tar, ec);
    fs::remove(fs::path(entries[i].tar).replace_extension(".key"), ec);
    result.log_lines.push_back(absl::StrCat("Removed old local cache key ", entries[i].key));
  }
  return result;
}

std::vector<std::string> LocalCache::WarmProjects() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(root_, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (ListEntries(it->path()).empty()) continue;
    if (std::optional<std::string> name = ReadSmallFile(it->path() / "project")) {
      out.push_back(std::move(*name));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kiln::agent
