// ParameterStore: named configuration values for builds (an SSM Parameter Store stand-in), kept in
// the Store under `param/<name>`. Feeds buildspec `env.parameter-store` (reference §1.4) and
// webhook secrets.
//
// Types: STRING values are stored as given; SECURE_STRING values are encrypted at rest with
// AES-256-GCM under a 32-byte key kept in a file (mode 0600) beside the database, with a random
// 12-byte nonce per encryption and the parameter name as additional authenticated data, so a
// ciphertext copied to another name does not decrypt. The plaintext of a secure value is never
// written to the Store and never logged.
//
// Stored record (JSON): {"type": "STRING"|"SECURE_STRING", "version": n, "value": "..."} for plain
// values,
// {"type", "version", "nonce", "ciphertext", "tag"} (standard base64) for secure values.
//
// Thread-safe. Puts are serialised (read-modify-write of the version); the Store must not be
// written under `param/` by anyone else.
#ifndef KILN_COORDINATOR_PARAMS_PARAMETER_STORE_H_
#define KILN_COORDINATOR_PARAMS_PARAMETER_STORE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/store/store.h"
#include "kiln/v1/agent.pb.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::coordinator {

class ParameterStore {
 public:
  static constexpr size_t kMaxNameLength = 1011;  // characters
  static constexpr size_t kMaxValueBytes = 4096;  // bytes
  static constexpr size_t kKeyBytes = 32;         // AES-256

  // `store` is borrowed and must outlive the ParameterStore. Reads the encryption key from
  // `key_file_path`; if the file does not exist, creates it (O_EXCL, mode 0600) with a random key.
  // Errors: FailedPrecondition (key file readable or writable by group/other: chmod 600 it; or not
  // exactly 32 bytes); Internal/PermissionDenied/NotFound from the file system (e.g. missing
  // directory).
  static absl::StatusOr<std::unique_ptr<ParameterStore>> Create(Store* store,
                                                                const std::string& key_file_path);

  ~ParameterStore();
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  // Creates or replaces parameter `name` and returns its new version (1 for a new parameter, then
  // +1 on each put, also when the type changes). Errors: InvalidArgument (bad name: must start with
  // '/' or a letter, only [A-Za-z0-9_./-], at most 1011 characters; value over 4096 bytes; a STRING
  // value that is not UTF-8); AlreadyExists (exists and !overwrite); the Store's errors.
  absl::StatusOr<int64_t> Put(const std::string& name, const std::string& value,
                              kiln::v1::Parameter::Type type, bool overwrite);

  // Every parameter sorted by name, with name, type and version; `value` is set for STRING
  // parameters and left empty for SECURE_STRING ones. Errors: DataLoss (undecodable record); the
  // Store's errors.
  absl::StatusOr<std::vector<kiln::v1::Parameter>> List();

  // Parameter `name` with its value (secure values decrypted). Errors: InvalidArgument (bad name);
  // NotFound; DataLoss (undecodable record, or a ciphertext that fails authentication: tampered,
  // moved from another name, or encrypted under another key); the Store's errors.
  absl::StatusOr<kiln::v1::Parameter> Get(const std::string& name);

  struct Resolved {
    // One entry per distinct existing name, in the order first requested; every one has mask = true
    // (CodeBuild hides all parameter-store values in build logs, reference §1.4).
    std::vector<kiln::v1::ResolvedParameter> parameters;
    // Requested names that do not exist (or are not valid names), in request order, without
    // duplicates.
    std::vector<std::string> missing;
  };
  // Looks up `names` for a build. Missing names are reported, not errors. Errors: as Get, except
  // NotFound and InvalidArgument.
  absl::StatusOr<Resolved> Resolve(const std::vector<std::string>& names);

  // True if `name` follows the naming rule above.
  static bool IsValidName(std::string_view name);

 private:
  ParameterStore(Store* store, const std::array<unsigned char, kKeyBytes>& key);

  Store* const store_;
  std::array<unsigned char, kKeyBytes> key_;  // wiped in the destructor
  absl::Mutex put_mu_;                        // serialises Put's read-modify-write
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_PARAMS_PARAMETER_STORE_H_
