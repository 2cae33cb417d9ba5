#include "agent/executor/output_masker.h"

#include <algorithm>

namespace kiln::agent {

void OutputMasker::AddSecret(std::string_view value) {
  if (value.empty() || std::find(secrets_.begin(), secrets_.end(), value) != secrets_.end()) return;
  secrets_.emplace_back(value);
  std::stable_sort(secrets_.begin(), secrets_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  first_bytes_.set(static_cast<unsigned char>(value[0]));
}

std::string OutputMasker::Mask(std::string_view text, bool final, size_t* consumed) const {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (!first_bytes_.test(static_cast<unsigned char>(text[i]))) {
      out.push_back(text[i++]);
      continue;
    }
    const std::string_view rest = text.substr(i);
    size_t match = 0;
    bool may_continue = false;
    for (const std::string& s : secrets_) {
      if (rest.size() >= s.size()) {
        if (match == 0 && rest.substr(0, s.size()) == s) match = s.size();
      } else if (!final && std::string_view(s).substr(0, rest.size()) == rest) {
        may_continue = true;  // a (longer) value may complete with the next chunk
      }
    }
    if (may_continue) break;
    if (match > 0) {
      out += kMask;
      i += match;
    } else {
      out.push_back(text[i++]);
    }
  }
  *consumed = i;
  return out;
}

std::string OutputMasker::Write(std::string_view bytes) {
  if (secrets_.empty()) return std::string(bytes);
  pending_.append(bytes);
  size_t consumed = 0;
  std::string out = Mask(pending_, /*final=*/false, &consumed);
  pending_.erase(0, consumed);
  return out;
}

std::string OutputMasker::Flush() {
  size_t consumed = 0;
  std::string out = Mask(pending_, /*final=*/true, &consumed);
  pending_.clear();
  return out;
}

std::string OutputMasker::MaskAll(std::string_view text) const {
  size_t consumed = 0;
  return Mask(text, /*final=*/true, &consumed);
}

}  // namespace kiln::agent
