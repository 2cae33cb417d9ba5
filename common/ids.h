// Identifier helpers. Thread-safe.
#ifndef KILN_COMMON_IDS_H_
#define KILN_COMMON_IDS_H_

#include <string>
#include <string_view>

namespace kiln::common {

// A random RFC 4122 version-4 UUID, lowercase: "0f8fad5b-d9cb-469f-a165-70867728950e".
// Uses OpenSSL's CSPRNG. Crashes only if the CSPRNG cannot be seeded (cannot happen on Linux).
std::string NewUuid();

// `n` random bytes from OpenSSL's CSPRNG, as lowercase hex (2n characters).
std::string RandomHex(int n);

// True if `name` is a valid project name: 2..255 characters of [A-Za-z0-9_-] (CodeBuild limits.md).
bool IsValidProjectName(std::string_view name);

}  // namespace kiln::common

#endif  // KILN_COMMON_IDS_H_
