#include "agent/artifacts/artifact_files.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;

// Components of a '/'-separated path, without empty and "." components.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view c = path.substr(start, end - start);
    if (!c.empty() && c != ".") out.push_back(c);
    start = end + 1;
  }
  return out;
}

// `*` and `?` within one component (iterative, backtracking to the last `*`).
bool MatchComponent(std::string_view pat, std::string_view str) {
  size_t p = 0, s = 0, star = std::string_view::npos, mark = 0;
  while (s < str.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = s;
    } else if (p < pat.size() && (pat[p] == '?' || pat[p] == str[s])) {
      ++p;
      ++s;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      s = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

bool MatchComponents(const std::vector<std::string_view>& pat, size_t pi,
                     const std::vector<std::string_view>& str, size_t si) {
  for (; pi < pat.size(); ++pi, ++si) {
    if (pat[pi] == "**") {
      while (pi + 1 < pat.size() && pat[pi + 1] == "**") ++pi;
      if (pi + 1 == pat.size()) return true;
      for (size_t k = si; k <= str.size(); ++k) {
        if (MatchComponents(pat, pi + 1, str, k)) return true;
      }
      return false;
    }
    if (si == str.size() || !MatchComponent(pat[pi], str[si])) return false;
  }
  return si == str.size();
}

std::string Join(const std::string& dir, std::string_view rel) {
  if (rel.empty()) return dir;
  if (dir.empty()) return std::string(rel);
  return dir.back() == '/' ? absl::StrCat(dir, std::string(rel))
                           : absl::StrCat(dir, "/", std::string(rel));
}

// `path` relative to the directory `dir` (a prefix of it).
std::string RelativeTo(const std::string& path, const std::string& dir) {
  return path.substr(dir == "/" ? 1 : dir.size() + 1);
}

// Absolute, normalised, without a trailing '/' (except "/").
std::string AbsoluteDir(const std::string& dir) {
  std::error_code ec;
  std::string out = fs::absolute(dir, ec).lexically_normal().string();
  if (ec) out = fs::path(dir).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

absl::Status CheckRelative(std::string_view pattern, std::string_view what) {
  std::string p(pattern);
  if (!p.empty() && p.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), " '", p, "' is absolute; give a path relative to the source directory"));
  }
  for (std::string_view c : SplitPath(pattern)) {
    if (c == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(what), " '", p,
                       "' contains '..'; paths must stay inside the source directory"));
    }
  }
  return absl::OkStatus();
}

// `entry` (named `rel` in the archive) as an artifact member, if it is a file or a kept symlink.
std::optional<ArtifactFile> Classify(const fs::directory_entry& entry, const std::string& rel,
                                     bool keep_symlinks) {
  std::error_code ec;
  if (entry.is_symlink(ec)) {
    if (keep_symlinks) {
      fs::path target = fs::read_symlink(entry.path(), ec);
      if (ec) return std::nullopt;
      return ArtifactFile{rel, entry.path().string(), true, target.string()};
    }
    if (!fs::is_regular_file(fs::status(entry.path(), ec))) return std::nullopt;
    return ArtifactFile{rel, entry.path().string(), false, ""};
  }
  if (entry.is_regular_file(ec)) return ArtifactFile{rel, entry.path().string(), false, ""};
  return std::nullopt;
}

// Directories (relative to src, "" = src itself) matched by the base-directory glob, sorted.
absl::StatusOr<std::vector<std::string>> ExpandBaseDirectory(const std::string& src,
                                                             std::string_view base) {
  std::set<std::string> current = {""};
  for (std::string_view comp : SplitPath(base)) {
    std::set<std::string> next;
    for (const std::string& dir : current) {
      const std::string abs = Join(src, dir);
      std::error_code ec;
      if (!HasGlobWildcard(comp)) {
        if (fs::is_directory(Join(abs, comp), ec)) next.insert(Join(dir, comp));
        continue;
      }
      if (comp == "**") next.insert(dir);
      auto options = fs::directory_options::skip_permission_denied;
      auto it = fs::recursive_directory_iterator(abs, options, ec);
      for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (comp != "**") it.disable_recursion_pending();
        std::error_code ec2;
        const std::string name = it->path().filename().string();
        const std::string rel = RelativeTo(it->path().string(), abs);
        if (comp == "**" ? it->is_directory(ec2) && !it->is_symlink(ec2)
                         : MatchComponent(comp, name) && it->is_directory(ec2)) {
          next.insert(Join(dir, rel));
        }
      }
      if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
        return absl::InternalError(absl::StrCat("cannot read directory ", abs, ": ", ec.message()));
      }
    }
    current = std::move(next);
  }
  return std::vector<std::string>(current.begin(), current.end());
}

}  // namespace

bool HasGlobWildcard(std::string_view pattern) {
  return pattern.find_first_of("*?") != std::string_view::npos;
}

bool GlobMatch(std::string_view pattern, std::string_view path) {
  return MatchComponents(SplitPath(pattern), 0, SplitPath(path), 0);
}

absl::StatusOr<std::vector<ArtifactFile>> ExpandGlob(const std::string& base_dir,
                                                     std::string_view pattern, bool keep_symlinks) {
  KILN_RETURN_IF_ERROR(CheckRelative(pattern, "path"));
  const std::string base = AbsoluteDir(base_dir);
  const std::vector<std::string_view> comps = SplitPath(pattern);
  std::vector<ArtifactFile> out;
  std::error_code ec;

  // The literal leading components name the only directory worth walking.
  size_t literal = 0;
  while (literal < comps.size() && !HasGlobWildcard(comps[literal])) ++literal;
  const std::string prefix =
      absl::StrJoin(comps.begin(), comps.begin() + literal, "/",
                    [](std::string* o, auto c) { o->append(c.data(), c.size()); });
  if (literal == comps.size()) {
    if (comps.empty()) return out;
    fs::directory_entry entry(Join(base, prefix), ec);
    if (ec) return out;
    if (auto f = Classify(entry, prefix, keep_symlinks)) out.push_back(std::move(*f));
    return out;
  }

  const std::string root = Join(base, prefix);
  const bool any_depth = std::find(comps.begin() + literal, comps.end(), "**") != comps.end();
  const int file_depth = static_cast<int>(comps.size() - literal) - 1;  // iterator depth of hits
  auto it =
      fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string rel = Join(prefix, RelativeTo(it->path().string(), root));
    std::error_code ec2;
    if (it->is_directory(ec2) && !it->is_symlink(ec2)) {
      if (!any_depth && it.depth() >= file_depth) it.disable_recursion_pending();
      continue;
    }
    if (!MatchComponents(comps, 0, SplitPath(rel), 0)) continue;
    if (auto f = Classify(*it, rel, keep_symlinks)) out.push_back(std::move(*f));
  }
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
    return absl::InternalError(
        absl::StrCat("cannot read directory under ", root, ": ", ec.message()));
  }
  std::sort(out.begin(), out.end(),
            [](const ArtifactFile& a, const ArtifactFile& b) { return a.zip_path < b.zip_path; });
  return out;
}

bool ResolvesInside(const std::string& path, const std::string& root) {
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (ec) return false;
  const fs::path real_root = fs::canonical(root, ec);
  if (ec) return false;
  const std::string r = real_root.string(), p = real.string();
  return p.size() > r.size() && p.compare(0, r.size(), r) == 0 && p[r.size()] == '/';
}

absl::StatusOr<ArtifactSelection> SelectArtifactFiles(const std::string& src_dir,
                                                      const common::BuildspecArtifacts& spec,
                                                      std::vector<std::string>* error_log) {
  for (const std::string& p : spec.files) KILN_RETURN_IF_ERROR(CheckRelative(p, "artifact path"));
  for (const std::string& p : spec.exclude_paths) {
    KILN_RETURN_IF_ERROR(CheckRelative(p, "exclude path"));
  }
  KILN_RETURN_IF_ERROR(CheckRelative(spec.base_directory, "base-directory"));
  const std::string src = AbsoluteDir(src_dir);
  std::error_code ec;
  if (!fs::is_directory(src, ec)) {
    return absl::NotFoundError(absl::StrCat("source directory ", src, " does not exist"));
  }

  ArtifactSelection sel;
  auto log = [&sel](auto&&... parts) { sel.log_lines.push_back(absl::StrCat(parts...)); };
  const std::string base_shown = spec.base_directory.empty() ? "." : spec.base_directory;
  log("Expanding base directory path: ", base_shown);
  log("Assembling file list");
  log("Expanding ", base_shown);
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> bases,
                        ExpandBaseDirectory(src, spec.base_directory));
  if (bases.empty()) {
    if (error_log != nullptr) *error_log = sel.log_lines;
    return absl::FailedPreconditionError("no matching base directory path found");
  }

  std::map<std::string, ArtifactFile> selected;  // by zip_path
  for (const std::string& base : bases) {
    const std::string base_abs = Join(src, base);
    log("Expanding file paths for base directory ", base.empty() ? "." : base);
    log("Assembling file list");
    for (const std::string& pattern : spec.files) {
      log("Expanding ", pattern);
      KILN_ASSIGN_OR_RETURN(std::vector<ArtifactFile> files,
                            ExpandGlob(base_abs, pattern, spec.enable_symlinks));
      if (files.empty() && !HasGlobWildcard(pattern)) log("Skipping invalid file path ", pattern);
      for (ArtifactFile& f : files) {
        if (std::any_of(spec.exclude_paths.begin(), spec.exclude_paths.end(),
                        [&f](const std::string& x) { return GlobMatch(x, f.zip_path); })) {
          continue;
        }
        if (spec.discard_paths) f.zip_path = fs::path(f.zip_path).filename().string();
        auto [it, inserted] = selected.try_emplace(f.zip_path, f);
        if (!inserted && it->second.source_path != f.source_path) {
          log("Warning: ", f.zip_path, " is selected more than once; keeping ",
              RelativeTo(f.source_path, src), " over ", RelativeTo(it->second.source_path, src));
          it->second = std::move(f);
        }
      }
    }
  }
  for (auto& [zip_path, f] : selected) {
    if (!f.symlink && !ResolvesInside(f.source_path, src)) {
      log("Skipping ", RelativeTo(f.source_path, src), ": it resolves outside the source directory");
      continue;
    }
    sel.files.push_back(std::move(f));
  }
  log("Found ", sel.files.size(), " file(s)");
  if (sel.files.empty()) {
    if (error_log != nullptr) *error_log = sel.log_lines;
    return absl::FailedPreconditionError("no matching artifact paths found");
  }
  return sel;
}

}  // namespace kiln::agent
