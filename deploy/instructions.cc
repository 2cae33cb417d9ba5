// Install instructions (reference/aws-semantics.md §4.2, §4.3, §4.8; agent installer.rb,
// install_instruction.rb).
#include "deploy/instructions.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace kiln::deploy {
namespace {

namespace fs = std::filesystem;
using ::absl::StrCat;

// Ruby File.expand_path for our inputs: absolute, normalised, no trailing '/'.
std::string Expand(const std::string& p) {
  fs::path path(p);
  if (path.is_relative()) path = fs::current_path() / path;
  std::string s = path.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool Lexists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}
bool IsRealDirectory(const std::string& p) {  // a directory, not a symlink to one
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool IsDirectory(const std::string& p) {  // follows symlinks, like Ruby File.directory?
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::Status Errno(std::string_view what, const std::string& path, int err = errno) {
  return absl::InternalError(StrCat(std::string(what), " ", path, ": ", std::strerror(err)));
}

// The agent's simple glob: `*` is the only wildcard; a name containing '/' never matches.
bool SimpleGlob(std::string_view name, std::string_view pattern) {
  if (name.find('/') != std::string_view::npos) return false;
  // Classic two-pointer wildcard match.
  size_t n = 0, p = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] != '*' && pattern[p] == name[n]) {
      ++n;
      ++p;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string RubyList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const std::string& s : items) quoted.push_back(StrCat("\"", s, "\""));
  return StrCat("[", absl::StrJoin(quoted, ", "), "]");
}

// The agent's CommandBuilder.
class Builder {
 public:
  explicit Builder(std::string_view behavior) : behavior_(behavior) {}

  absl::Status Copy(const std::string& source, const std::string& destination) {
    std::string dest = Expand(destination);
    auto it = copy_targets_.find(dest);
    if (it != copy_targets_.end()) {
      return absl::FailedPreconditionError(
          StrCat("The deployment failed because the application specification file specifies "
                 "two source files named ",
                 source, " and ", it->second, " for the same destination (", dest,
                 "). Remove one of the source file paths from the AppSpec file, and then try "
                 "again."));
    }
    if (mkdir_targets_.count(dest)) {
      return absl::FailedPreconditionError(
          StrCat("The deployment failed because the application specification file calls for "
                 "installing the file ",
                 source, ", but a file with that name already exists at the location (", dest,
                 "). Update your AppSpec file or directory structure, and then try again."));
    }
    out_.instructions.push_back({Instruction::Type::kCopy, source, dest});
    copy_targets_[dest] = source;
    copy_order_.push_back(dest);
    return absl::OkStatus();
  }

  absl::Status Mkdir(const std::string& directory) {
    std::string dir = Expand(directory);
    auto it = copy_targets_.find(dir);
    if (it != copy_targets_.end()) {
      return absl::FailedPreconditionError(
          StrCat("The deployment failed because the application specification file includes an "
                 "mkdir command more than once for the same destination path (",
                 dir, ") from (", it->second,
                 "). Update the files section of the AppSpec file, and then try again."));
    }
    if (mkdir_targets_.insert(dir).second) {
      out_.instructions.push_back({Instruction::Type::kMkdir, "", dir});
      mkdir_order_.push_back(dir);
    }
    return absl::OkStatus();
  }

  // installer.rb fill_in_missing_ancestors: outermost first.
  absl::Status FillInMissingAncestors(const std::string& destination) {
    std::vector<std::string> missing;
    std::string parent = fs::path(Expand(destination)).parent_path().string();
    while (parent != "/" && parent != "." && !parent.empty() && !fs::exists(parent)) {
      missing.insert(missing.begin(), parent);
      parent = fs::path(parent).parent_path().string();
    }
    for (const std::string& dir : missing) KILN_RETURN_IF_ERROR(Mkdir(dir));
    return absl::OkStatus();
  }

  absl::Status NormalCopy(const std::string& source, const std::string& destination) {
    if (Lexists(destination)) {
      if (behavior_ == "DISALLOW") {
        return absl::FailedPreconditionError(
            StrCat("The deployment failed because a specified file already exists at this "
                   "location: ",
                   destination));
      }
      if (behavior_ == "RETAIN") return absl::OkStatus();  // neither copy nor fail
      if (behavior_ != "OVERWRITE") {
        return absl::FailedPreconditionError(
            StrCat("The deployment failed because an invalid option was specified for "
                   "fileExistsBehavior: ",
                   behavior_, ". Valid options include OVERWRITE, RETAIN, and DISALLOW."));
      }
    }
    return Copy(source, destination);
  }

  absl::Status DirectoryCopy(const std::string& source, const std::string& destination) {
    if (!IsDirectory(destination)) KILN_RETURN_IF_ERROR(Mkdir(destination));
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(source, ec)) {
      names.push_back(entry.path().filename().string());
    }
    if (ec) return Errno("cannot list", source, ec.value());
    std::sort(names.begin(), names.end());  // deterministic (Ruby Dir.entries is unordered)
    for (const std::string& name : names) {
      std::string src = StrCat(source, "/", name);
      std::string dst = StrCat(destination, "/", name);
      if (IsRealDirectory(src)) {
        KILN_RETURN_IF_ERROR(DirectoryCopy(src, dst));
      } else {
        KILN_RETURN_IF_ERROR(NormalCopy(src, dst));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ApplyPermission(const AppSpecPermission& p) {
    if (p.acls.has_value() || p.context.has_value()) {
      return absl::FailedPreconditionError(
          StrCat("permissions for ", p.object, ": ", p.acls ? "acls" : "an SELinux context",
                 " are not supported by Kiln (§4.3); remove them from the appspec and set them "
                 "from a hook script (setfacl / semanage)"));
    }
    std::string object = Expand(p.object);
    if (copy_targets_.count(object)) {
      if (!p.files) return absl::OkStatus();
      if (p.pattern != "**") {
        return absl::FailedPreconditionError(
            StrCat("The deployment failed because the application specification file includes "
                   "an object (",
                   p.object, ") with an invalid pattern (", p.pattern,
                   "), such as a pattern for a file applied to a directory. Correct the "
                   "permissions section of the AppSpec file, and then try again."));
      }
      if (!p.except.empty()) {
        return absl::FailedPreconditionError(
            StrCat("The deployment failed because the except parameter for a pattern in the "
                   "permissions section (",
                   RubyList(p.except), ") for the object named ", p.object,
                   " contains an invalid format. Update the AppSpec file, and then try again."));
      }
      return SetPermissions(object, p);
    }
    if (!mkdir_targets_.count(object) && !IsDirectory(object)) return absl::OkStatus();
    std::string base = object == "/" ? "/" : object + "/";
    auto matches = [&](const std::string& name) {
      if (name.compare(0, base.size(), base) != 0) return false;
      std::string rel = name.substr(base.size());
      if (p.pattern != "**" && !SimpleGlob(rel, p.pattern)) return false;
      return std::none_of(p.except.begin(), p.except.end(),
                          [&](const std::string& e) { return SimpleGlob(rel, e); });
    };
    std::vector<std::string> found;
    if (p.files) {
      for (const std::string& f : copy_order_) {
        if (matches(f)) found.push_back(f);
      }
    }
    if (p.directories) {
      for (const std::string& d : mkdir_order_) {
        if (matches(d)) found.push_back(d);
      }
    }
    for (const std::string& f : found) KILN_RETURN_IF_ERROR(SetPermissions(f, p));
    return absl::OkStatus();
  }

  InstallInstructions Take() { return std::move(out_); }

 private:
  absl::Status SetPermissions(const std::string& object, const AppSpecPermission& p) {
    if (!permission_targets_.insert(object).second) {
      return absl::FailedPreconditionError(
          StrCat("The deployment failed because the permissions setting for (", object,
                 ") is specified more than once in the application specification file. Update "
                 "the files section of the AppSpec file, and then try again."));
    }
    if (p.mode) {
      Instruction i{Instruction::Type::kChmod, "", object};
      i.mode = *p.mode;
      out_.instructions.push_back(std::move(i));
    }
    if (p.owner || p.group) {
      Instruction i{Instruction::Type::kChown, "", object};
      i.owner = p.owner;
      i.group = p.group;
      out_.instructions.push_back(std::move(i));
    }
    return absl::OkStatus();
  }

  std::string behavior_;
  InstallInstructions out_;
  std::map<std::string, std::string> copy_targets_;  // destination → source
  std::vector<std::string> copy_order_;
  std::set<std::string> mkdir_targets_;
  std::vector<std::string> mkdir_order_;
  std::set<std::string> permission_targets_;
};

// FileUtils.copy(preserve: true): contents, then mode, owner (when permitted) and times.
absl::Status CopyFile(const std::string& source, const std::string& destination) {
  struct stat st;
  if (::lstat(source.c_str(), &st) != 0) return Errno("cannot read", source);
  if (IsRealDirectory(destination)) {
    return absl::FailedPreconditionError(
        StrCat("The deployment failed because a specified file already exists at this location: ",
               destination, "."));
  }
  if (Lexists(destination) && ::unlink(destination.c_str()) != 0) {
    return Errno("cannot replace", destination);
  }
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    fs::path target = fs::read_symlink(source, ec);
    if (ec) return Errno("cannot read symlink", source, ec.value());
    if (::symlink(target.c_str(), destination.c_str()) != 0) {
      return Errno("cannot create symlink", destination);
    }
    return absl::OkStatus();
  }
  std::error_code ec;
  fs::copy_file(source, destination, fs::copy_options::overwrite_existing, ec);
  if (ec) return Errno(StrCat("cannot copy ", source, " to"), destination, ec.value());
  if (::chown(destination.c_str(), st.st_uid, st.st_gid) != 0) {
    // Like FileUtils: ownership is kept only when permitted.
  }
  if (::chmod(destination.c_str(), st.st_mode & 07777) != 0) return Errno("cannot chmod", destination);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(AT_FDCWD, destination.c_str(), times, 0) != 0) {
    return Errno("cannot set times of", destination);
  }
  return absl::OkStatus();
}

}  // namespace

nlohmann::json InstallInstructions::ToJson() const {
  nlohmann::json list = nlohmann::json::array();
  for (const Instruction& i : instructions) {
    switch (i.type) {
      case Instruction::Type::kCopy:
        list.push_back({{"type", "copy"}, {"source", i.source}, {"destination", i.path}});
        break;
      case Instruction::Type::kMkdir:
        list.push_back({{"type", "mkdir"}, {"directory", i.path}});
        break;
      case Instruction::Type::kChmod:
        list.push_back({{"type", "chmod"}, {"mode", i.mode}, {"file", i.path}});
        break;
      case Instruction::Type::kChown:
        list.push_back({{"type", "chown"},
                        {"owner", i.owner ? nlohmann::json(*i.owner) : nlohmann::json()},
                        {"group", i.group ? nlohmann::json(*i.group) : nlohmann::json()},
                        {"file", i.path}});
        break;
    }
  }
  return {{"instructions", list}};
}

absl::StatusOr<InstallInstructions> GenerateInstructions(const AppSpec& spec,
                                                         const fs::path& archive_dir,
                                                         std::string_view file_exists_behavior) {
  Builder b(file_exists_behavior);
  for (const AppSpecFile& f : spec.files) {
    // File.join(archive, source): a leading '/' is still relative to the revision root.
    std::string source = fs::path(StrCat(archive_dir.string(), "/", f.source))
                             .lexically_normal()
                             .string();
    while (source.size() > 1 && source.back() == '/') source.pop_back();
    if (!Lexists(source)) {
      return absl::FailedPreconditionError(
          StrCat("The deployment failed because the files section of the AppSpec file names "
                 "the source ",
                 f.source, ", which does not exist in the revision"));
    }
    if (IsRealDirectory(source)) {
      KILN_RETURN_IF_ERROR(b.FillInMissingAncestors(f.destination));
      KILN_RETURN_IF_ERROR(b.DirectoryCopy(source, Expand(f.destination)));
    } else {
      std::string dest = StrCat(Expand(f.destination), "/", fs::path(source).filename().string());
      KILN_RETURN_IF_ERROR(b.FillInMissingAncestors(dest));
      KILN_RETURN_IF_ERROR(b.NormalCopy(source, Expand(dest)));
    }
  }
  for (const AppSpecPermission& p : spec.permissions) KILN_RETURN_IF_ERROR(b.ApplyPermission(p));
  return b.Take();
}

absl::Status ExecuteInstructions(const InstallInstructions& instructions,
                                 const fs::path& cleanup_file) {
  std::ofstream cleanup(cleanup_file, std::ios::trunc);
  if (!cleanup) return Errno("cannot write", cleanup_file.string());
  auto record = [&](const std::string& path) -> absl::Status {
    cleanup << path << "\n" << std::flush;
    return cleanup ? absl::OkStatus() : Errno("cannot write", cleanup_file.string());
  };
  for (const Instruction& i : instructions.instructions) {
    switch (i.type) {
      case Instruction::Type::kCopy:
        KILN_RETURN_IF_ERROR(record(i.path));  // recorded before copying
        KILN_RETURN_IF_ERROR(CopyFile(i.source, i.path));
        break;
      case Instruction::Type::kMkdir:
        if (Lexists(i.path)) {
          return absl::FailedPreconditionError(
              StrCat("The deployment failed because a specified file already exists at this "
                     "location: ",
                     i.path, "."));
        }
        if (::mkdir(i.path.c_str(), 0777) != 0) return Errno("cannot create directory", i.path);
        KILN_RETURN_IF_ERROR(record(i.path));  // recorded after creating
        break;
      case Instruction::Type::kChmod:
        if (::chmod(i.path.c_str(), static_cast<mode_t>(std::strtol(i.mode.c_str(), nullptr, 8))) != 0) {
          return Errno(StrCat("cannot chmod ", i.mode), i.path);
        }
        break;
      case Instruction::Type::kChown: {
        uid_t uid = static_cast<uid_t>(-1);
        gid_t gid = static_cast<gid_t>(-1);
        if (i.owner) {
          struct passwd* pw = ::getpwnam(i.owner->c_str());
          if (pw == nullptr) {
            return absl::FailedPreconditionError(
                StrCat("The deployment failed because the owner ", *i.owner, " of ", i.path,
                       " does not exist on this instance"));
          }
          uid = pw->pw_uid;
        }
        if (i.group) {
          struct group* gr = ::getgrnam(i.group->c_str());
          if (gr == nullptr) {
            return absl::FailedPreconditionError(
                StrCat("The deployment failed because the group ", *i.group, " of ", i.path,
                       " does not exist on this instance"));
          }
          gid = gr->gr_gid;
        }
        if (::chown(i.path.c_str(), uid, gid) != 0) return Errno("cannot chown", i.path);
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RemovePreviousInstall(const fs::path& cleanup_file) {
  std::ifstream in(cleanup_file, std::ios::binary);
  if (!in) return absl::OkStatus();
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string contents = buffer.str();
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = contents.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(contents.substr(start, nl - start));  // an unterminated tail is dropped
  }
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    const std::string& path = *it;
    if (path.empty() || path.rfind(std::string("semanage\0", 9), 0) == 0) continue;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;  // missing: skipped
    if (S_ISDIR(st.st_mode)) {
      ::rmdir(path.c_str());  // kept silently when not empty (scripts put files there)
    } else if (::unlink(path.c_str()) != 0) {
      return Errno("cannot remove", path);
    }
  }
  std::error_code ec;
  fs::remove(cleanup_file, ec);
  if (ec) return Errno("cannot remove", cleanup_file.string(), ec.value());
  return absl::OkStatus();
}

}  // namespace kiln::deploy
