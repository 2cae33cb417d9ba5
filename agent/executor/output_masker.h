// Streaming secret masker for build output (reference/aws-semantics.md §1.4 "Log masking", §1.14
// item 5). Every occurrence of a registered value is replaced by "***", also when the value is
// split across the chunks given to Write(): the masker holds back at most (longest value - 1) bytes
// that could still start a value, and releases them on the next Write() or on Flush().
//
// Where values overlap, the union of their occurrences is hidden as one "***", so no part of any
// value stays visible; occurrences that only touch give one "***" each.
// Not thread-safe: one owner feeds it.
#ifndef KILN_AGENT_EXECUTOR_OUTPUT_MASKER_H_
#define KILN_AGENT_EXECUTOR_OUTPUT_MASKER_H_

#include <bitset>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::agent {

class OutputMasker {
 public:
  static constexpr std::string_view kMask = "***";

  // Registers a value to hide. Empty values and duplicates are ignored. Takes effect for bytes
  // not yet returned (including held-back ones).
  void AddSecret(std::string_view value);

  // Feeds `bytes`; returns the masked bytes that can be emitted now (maybe fewer than given).
  std::string Write(std::string_view bytes);

  // Returns every held-back byte, masked. Call at the end of each command or log line.
  std::string Flush();

  // Masks a complete text; independent of the streaming state.
  std::string MaskAll(std::string_view text) const;

  // Bytes held back now (for tests); at most longest value - 1.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  // Masks `text` from the start; stops (unless `final`) at the first position where a value may
  // continue past the end. Sets *consumed to the bytes used.
  std::string Mask(std::string_view text, bool final, size_t* consumed) const;

  std::vector<std::string> secrets_;  // longest first
  std::bitset<256> first_bytes_;
  std::string pending_;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_OUTPUT_MASKER_H_
