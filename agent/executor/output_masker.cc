#include "agent/executor/output_masker.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace kiln::agent {

void OutputMasker::AddSecret(std::string_view value) {
  if (value.empty() || std::find(secrets_.begin(), secrets_.end(), value) != secrets_.end()) return;
  secrets_.emplace_back(value);
  std::stable_sort(secrets_.begin(), secrets_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  first_bytes_.set(static_cast<unsigned char>(value[0]));
}

std::string OutputMasker::Mask(std::string_view text, bool final, size_t* consumed) const {
  const size_t n = text.size();
  // Every complete occurrence of every value, and the first position where a value may still
  // continue past the end of `text`.
  std::vector<std::pair<size_t, size_t>> ranges;  // [begin, end)
  size_t cut = n;
  for (size_t i = 0; i < n; ++i) {
    if (!first_bytes_.test(static_cast<unsigned char>(text[i]))) continue;
    const std::string_view rest = text.substr(i);
    for (const std::string& s : secrets_) {
      if (rest.size() >= s.size()) {
        if (rest.substr(0, s.size()) == s) ranges.emplace_back(i, i + s.size());
      } else if (!final && cut == n && std::string_view(s).substr(0, rest.size()) == rest) {
        cut = i;  // a value may complete with the next chunk: hold back from here
      }
    }
  }
  // An occurrence that straddles the cut is held back whole, so its masking is decided in one piece.
  for (bool moved = true; moved;) {
    moved = false;
    for (const auto& [b, e] : ranges) {
      if (b < cut && e > cut) {
        cut = b;
        moved = true;
      }
    }
  }
  // The union of the occurrences is hidden, so overlapping values never leave a tail visible. A "***"
  // starts wherever an occurrence begins while no other one covers that byte: overlapping values
  // merge into one "***", touching ones give one each (independent of how the text was chunked).
  std::vector<int> starts(cut + 1, 0), ends(cut + 1, 0);
  for (const auto& [b, e] : ranges) {
    if (b >= cut) continue;
    starts[b]++;
    ends[std::min(e, cut)]++;
  }
  std::string out;
  out.reserve(cut);
  int depth = 0;
  for (size_t i = 0; i < cut; ++i) {
    depth -= ends[i];
    if (depth == 0 && starts[i] > 0) out += kMask;
    depth += starts[i];
    if (depth == 0) out.push_back(text[i]);
  }
  *consumed = cut;
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
