// Install instructions of an appspec (reference/aws-semantics.md §4.2, §4.3, §4.8): generation
// from an appspec and an unpacked revision, JSON form (`<DGID>-install.json`), execution with a
// cleanup list (`<DGID>-cleanup`), and removal of what a previous install created.
// Free functions; thread-safe as far as the file system is (callers serialise installs of one
// deployment group).
//
// Generation follows the agent's installer.rb / install_instruction.rb:
//  * A source directory copies its contents into `destination` (created when missing); a source
//    file (or symlink) lands at `destination/<basename>`. Missing ancestors of a destination are
//    created outermost first. Paths are normalised like Ruby File.expand_path.
//  * A copy target that already exists (an lstat: a dangling symlink counts as existing, where
//    the agent's File.exists? does not) is handled by `file_exists_behavior`: DISALLOW fails,
//    OVERWRITE copies over it, RETAIN skips it (and so never lists it for cleanup).
//  * Conflicts fail with the agent's messages: two sources for one destination, a copy onto a
//    directory being created, a directory created over a copy target, permissions set twice on a
//    path, a pattern/except on a permission whose object is a copied file.
//  * Permissions (in listed order, after all copies and mkdirs) apply to copy targets and created
//    directories only: chmod, then chown. acls and context are not supported by Kiln: an appspec
//    permission entry carrying them fails generation.
// Kiln extension: a `source` missing from the revision fails generation with a clear message
// (the agent fails later, in the copy).
#ifndef KILN_DEPLOY_INSTRUCTIONS_H_
#define KILN_DEPLOY_INSTRUCTIONS_H_

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "deploy/appspec.h"
#include "nlohmann/json.hpp"

namespace kiln::deploy {

struct Instruction {
  enum class Type { kCopy, kMkdir, kChmod, kChown };
  Type type = Type::kCopy;
  std::string source;  // kCopy: absolute path inside the unpacked revision
  std::string path;    // kCopy: destination; kMkdir: directory; kChmod/kChown: target
  std::string mode;    // kChmod: 3-4 octal digits
  std::optional<std::string> owner;  // kChown
  std::optional<std::string> group;  // kChown
};

struct InstallInstructions {
  std::vector<Instruction> instructions;
  // {"instructions":[{"type":"copy","source":..,"destination":..},
  //   {"type":"mkdir","directory":..}, {"type":"chmod","mode":"644","file":..},
  //   {"type":"chown","owner":..|null,"group":..|null,"file":..}]}
  nlohmann::json ToJson() const;
};

// Generates the instructions for installing `archive_dir` (the unpacked revision root) as `spec`
// says. `file_exists_behavior` is the effective option (appspec, else deployment, else
// "DISALLOW"); an invalid value fails only when an existing file reaches it (§4.2).
// Errors: FAILED_PRECONDITION for conflicts, existing files (DISALLOW), invalid options,
// unsupported acls/context and missing sources, with the agent's message where it has one.
absl::StatusOr<InstallInstructions> GenerateInstructions(const AppSpec& spec,
                                                         const std::filesystem::path& archive_dir,
                                                         std::string_view file_exists_behavior);

// Runs `instructions` in order. Creates (truncates) `cleanup_file` and appends each created path
// as a line: a copy's destination before copying, a directory after creating it. Copies keep
// mode and timestamps (and owner when permitted); a symlink is recreated with the same target.
// A copy replaces an existing non-directory at its destination (generation has already applied
// file_exists_behavior). Errors: FAILED_PRECONDITION when a directory to create already exists
// or an owner/group is unknown; INTERNAL for other file-system errors (message names the path).
absl::Status ExecuteInstructions(const InstallInstructions& instructions,
                                 const std::filesystem::path& cleanup_file);

// Removes what a previous install created, as listed in `cleanup_file` (§4.8 Install step 1):
// lines in reverse order, an unterminated last line ignored; symlinks and files unlinked,
// directories removed only when empty, missing paths skipped, "semanage\0" lines skipped (Kiln
// never writes them). Then deletes `cleanup_file`. A missing `cleanup_file` is OK.
// Errors: INTERNAL when a listed path cannot be removed.
absl::Status RemovePreviousInstall(const std::filesystem::path& cleanup_file);

}  // namespace kiln::deploy

#endif  // KILN_DEPLOY_INSTRUCTIONS_H_
