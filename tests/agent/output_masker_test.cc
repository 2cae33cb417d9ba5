#include "agent/executor/output_masker.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace kiln::agent {
namespace {

// Feeds `text` in the given chunk sizes (cycled) and flushes at the end.
std::string Stream(OutputMasker& m, const std::string& text, const std::vector<size_t>& sizes) {
  std::string out;
  size_t pos = 0;
  for (size_t i = 0; pos < text.size(); ++i) {
    const size_t n = std::min(sizes[i % sizes.size()], text.size() - pos);
    out += m.Write(std::string_view(text).substr(pos, n));
    pos += n;
  }
  return out + m.Flush();
}

TEST(OutputMaskerTest, WithoutSecretsPassesBytesThrough) {
  OutputMasker m;
  EXPECT_EQ(m.Write(std::string("a\0b\n", 4)), std::string("a\0b\n", 4));
  EXPECT_EQ(m.Flush(), "");
}

TEST(OutputMaskerTest, MasksEveryOccurrenceInOneChunk) {
  OutputMasker m;
  m.AddSecret("hunter2");
  std::string out = m.Write("pw=hunter2 again hunter2hunter2.");
  out += m.Flush();
  EXPECT_EQ(out, "pw=*** again ******.");
}

TEST(OutputMaskerTest, MasksValueSplitAtEveryPossibleBoundary) {
  const std::string text = "before s3cr3t-value after";
  for (size_t split = 0; split <= text.size(); ++split) {
    OutputMasker m;
    m.AddSecret("s3cr3t-value");
    std::string out = m.Write(std::string_view(text).substr(0, split));
    out += m.Write(std::string_view(text).substr(split));
    out += m.Flush();
    EXPECT_EQ(out, "before *** after") << "split at " << split;
  }
}

TEST(OutputMaskerTest, MasksValueFedOneByteAtATime) {
  OutputMasker m;
  m.AddSecret("abc");
  EXPECT_EQ(Stream(m, "xabcxababcx", {1}), "x***xab***x");
}

TEST(OutputMaskerTest, HoldsBackOnlyAPossiblePrefixAndReleasesItOnFlush) {
  OutputMasker m;
  m.AddSecret("secret");
  EXPECT_EQ(m.Write("data sec"), "data ");
  EXPECT_EQ(m.pending_bytes(), 3u);
  EXPECT_EQ(m.Write("ond"), "second");  // not the secret after all
  EXPECT_EQ(m.Write("xsecre"), "x");
  EXPECT_EQ(m.Flush(), "secre");  // end of command: a partial value is not a value
  EXPECT_EQ(m.pending_bytes(), 0u);
}

TEST(OutputMaskerTest, PrefersTheLongestValueAtAPosition) {
  OutputMasker m;
  m.AddSecret("abc");
  m.AddSecret("abcdef");
  EXPECT_EQ(Stream(m, "abcdef abcde abc", {2}), "*** ***de ***");
}

TEST(OutputMaskerTest, MasksOverlappingStarts) {
  OutputMasker m;
  m.AddSecret("aab");
  EXPECT_EQ(Stream(m, "aaab aaaab", {1}), "a*** aa***");
}

TEST(OutputMaskerTest, IgnoresEmptyValuesAndMasksSingleCharacters) {
  OutputMasker m;
  m.AddSecret("");
  EXPECT_EQ(m.Write("abc"), "abc");
  m.AddSecret("b");
  EXPECT_EQ(m.Write("abc"), "a***c");
}

TEST(OutputMaskerTest, MaskAllDoesNotTouchTheStream) {
  OutputMasker m;
  m.AddSecret("key");
  EXPECT_EQ(m.Write("ke"), "");
  EXPECT_EQ(m.MaskAll("a key and ke"), "a *** and ke");
  EXPECT_EQ(m.Write("y"), "***");
}

TEST(OutputMaskerTest, RandomChunkingMatchesMaskingTheWholeText) {
  std::mt19937 rng(42);
  const std::vector<std::string> secrets = {"tok", "token-123", "xyz", "x", "zz9"};
  for (int iter = 0; iter < 300; ++iter) {
    std::string text;
    std::uniform_int_distribution<int> pick(0, 9);
    for (int i = 0; i < 60; ++i) {
      const int k = pick(rng);
      text += k < 5 ? secrets[k] : std::string(1, "aotkez-19"[k % 9]);
    }
    OutputMasker whole, streamed;
    for (const std::string& s : secrets) {
      whole.AddSecret(s);
      streamed.AddSecret(s);
    }
    std::vector<size_t> sizes;
    for (int i = 0; i < 8; ++i) sizes.push_back(1 + rng() % 7);
    std::string out;
    size_t pos = 0;
    for (size_t i = 0; pos < text.size(); ++i) {
      const size_t n = std::min(sizes[i % sizes.size()], text.size() - pos);
      out += streamed.Write(std::string_view(text).substr(pos, n));
      EXPECT_LE(streamed.pending_bytes(), 8u);  // longest value - 1
      pos += n;
    }
    out += streamed.Flush();
    ASSERT_EQ(out, whole.MaskAll(text)) << text;
    EXPECT_EQ(out.find("tok"), std::string::npos) << text;
  }
}

TEST(OutputMaskerTest, OverlappingValuesLeaveNoTailVisible) {
  OutputMasker m;
  m.AddSecret("admin");
  m.AddSecret("nimbus-Pr0d-Key");
  EXPECT_EQ(m.MaskAll("admin" "imbus-Pr0d-Key!"), "***!");
  OutputMasker n;
  n.AddSecret("ab");
  n.AddSecret("bcdefgh");
  EXPECT_EQ(n.MaskAll("xabcdefghx"), "x***x");
  // Streamed byte by byte, the same result.
  std::string out;
  for (char c : std::string("xabcdefghx")) out += n.Write(std::string(1, c));
  out += n.Flush();
  EXPECT_EQ(out, "x***x");
}

}  // namespace
}  // namespace kiln::agent
