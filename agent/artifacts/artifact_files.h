// Selects the files of a buildspec `artifacts` (or `secondary-artifacts`) entry exactly as
// CodeBuild does (reference/aws-semantics.md §1.10, log lines §1.7, dot-files §8.1), plus the path
// glob matcher shared with the local cache (§1.11). Pure functions over the filesystem;
// thread-safe.
#ifndef KILN_AGENT_ARTIFACTS_ARTIFACT_FILES_H_
#define KILN_AGENT_ARTIFACTS_ARTIFACT_FILES_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/buildspec.h"

namespace kiln::agent {

// True if `pattern` contains a wildcard (`*` or `?`).
bool HasGlobWildcard(std::string_view pattern);

// CodeBuild path glob over '/'-separated relative paths. `*` matches zero or more characters
// within one component, `?` one character within a component, a component that is exactly `**`
// matches any number (including zero) of components; everything else is literal. Empty and "."
// components are ignored in both arguments ("./a//b" == "a/b"). Dot-files match like any file.
// Examples: `**/*` matches every path, `dir/*` only "dir/x", `dir/**/*` anything under dir,
// `*.xml` only top-level "x.xml".
bool GlobMatch(std::string_view pattern, std::string_view path);

// One member of an artifact zip (or of a cache tar).
struct ArtifactFile {
  std::string zip_path;     // member name: relative, '/'-separated
  std::string source_path;  // absolute path of the file on disk
  bool symlink = false;     // store as a symlink (enable-symlinks), not as the target's content
  std::string link_target;  // the symlink's target as readlink(2) returns it, when `symlink`
};

struct ArtifactSelection {
  std::vector<ArtifactFile> files;     // sorted by zip_path, zip_paths unique
  std::vector<std::string> log_lines;  // CodeBuild-style lines for the build log, no timestamp
};

// Files (never directories) under `base_dir` whose path relative to `base_dir` matches `pattern`
// (GlobMatch), sorted by that relative path, which becomes zip_path. Directory symlinks are never
// followed while walking. With `keep_symlinks` every matched symlink is returned as a symlink;
// without, a symlink to a file is returned as a regular file (its content) and other symlinks are
// skipped. A pattern without wildcards is looked up directly (no walk). A missing `base_dir`
// gives an empty list.
// Errors: InvalidArgument if `pattern` is absolute or has a ".." component (naming the pattern);
// Internal if a directory cannot be read (naming it).
absl::StatusOr<std::vector<ArtifactFile>> ExpandGlob(const std::string& base_dir,
                                                     std::string_view pattern, bool keep_symlinks);

// Applies `spec` (files, base-directory, exclude-paths, discard-paths, enable-symlinks; §1.10) to
// the build's source directory `src_dir` (CODEBUILD_SRC_DIR, not the shell's cwd):
// - base-directory (relative to src_dir, may be a glob such as "my-build*") selects one or more
//   directories; their contents are merged and their own names are not part of zip_path;
// - each `files` pattern and each exclude-paths pattern is matched relative to the base directory;
// - discard-paths stores every file under its basename; on a name collision the file selected
//   last (base directories in name order, then patterns in order, then paths in name order) wins
//   and a "Warning: ..." log line names both;
// - a pattern without wildcards naming no file logs "Skipping invalid file path <p>";
// - symlinks as ExpandGlob with keep_symlinks = spec.enable_symlinks.
// Errors: NotFound (src_dir is not a directory); InvalidArgument (a pattern or base-directory is
// absolute or contains ".."); FailedPrecondition with message exactly
// "no matching base directory path found" or "no matching artifact paths found" (the caller
// reports it as phase context CLIENT_ERROR); Internal (unreadable directory).
// True if `path` (an existing file or symlink) resolves, through every symlink, to a file inside
// `root` (both absolute). Used so that a build's symlinks (`ln -s / host`) cannot make the agent read
// or write host files.
bool ResolvesInside(const std::string& path, const std::string& root);

// Files whose real path leaves `src_dir` are skipped with a log line "Skipping <path>: it resolves
// outside the source directory" (symlinks kept as symlinks with enable-symlinks are not followed and
// stay). `error_log`, if not null, receives the log lines written before a FailedPrecondition error.
absl::StatusOr<ArtifactSelection> SelectArtifactFiles(const std::string& src_dir,
                                                      const common::BuildspecArtifacts& spec,
                                                      std::vector<std::string>* error_log = nullptr);

}  // namespace kiln::agent

#endif  // KILN_AGENT_ARTIFACTS_ARTIFACT_FILES_H_
