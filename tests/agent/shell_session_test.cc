#include "agent/executor/shell_session.h"

#include <signal.h>

#include <string>

#include "agent/executor/process_tree.h"
#include "common/clock.h"
#include "common/ids.h"
#include "gtest/gtest.h"
#include "tests/agent/test_repo.h"

namespace kiln::agent {
namespace {

using testing::ReadFileOrEmpty;

class ShellSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(BecomeChildSubreaper().ok());
    options_.cwd = dir_.path();
    options_.state_dir = dir_.path();
    options_.nonce = common::RandomHex(8);
    options_.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir_.path()};
  }

  std::unique_ptr<ShellSession> StartShell() {
    auto s = ShellSession::Start(options_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Runs `script`; returns its output and sets *result.
  std::string Run(ShellSession& shell, const std::string& script, ShellSession::Result* result,
                  absl::Duration timeout = absl::Seconds(30)) {
    std::string out;
    auto r = shell.Run(
        dir_.path() + "/cmd-" + std::to_string(++count_) + ".sh", script,
        [&out](std::string_view b) { out.append(b); }, -1, absl::Now() + timeout,
        *common::RealClock::Default());
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) *result = *r;
    return out;
  }

  testing::TempDir dir_;
  ShellSession::Options options_;
  int count_ = 0;
};

TEST_F(ShellSessionTest, OutputWithoutTrailingNewlineIsExact) {
  auto shell = StartShell();
  ShellSession::Result r;
  EXPECT_EQ(Run(*shell, "printf abc", &r), "abc");
  EXPECT_EQ(r.kind, ShellSession::Result::kCompleted);
  EXPECT_EQ(r.exit_status, 0);
  EXPECT_EQ(Run(*shell, "printf 'x\\0y\\036KILN:1\\n'; echo err >&2", &r),
            std::string("x\0y\036KILN:1\nerr\n", 15));
}

TEST_F(ShellSessionTest, LargeOutputArrivesInOrderAndIntact) {
  auto shell = StartShell();
  ShellSession::Result r;
  const std::string out = Run(*shell, "seq 1 200000", &r);
  std::string expected;
  for (int i = 1; i <= 200000; ++i) expected += std::to_string(i) + "\n";
  EXPECT_EQ(out, expected);
}

TEST_F(ShellSessionTest, ReportsExitStatusAndKeepsState) {
  auto shell = StartShell();
  ShellSession::Result r;
  Run(*shell, "cd /; X=1; export Y=2; (exit 42)", &r);
  EXPECT_EQ(r.exit_status, 42);
  EXPECT_EQ(Run(*shell, "echo $PWD $X $Y", &r), "/ 1 2\n");
  EXPECT_EQ(ReadFileOrEmpty(dir_.path() + "/cwd"), "/\n");
  EXPECT_NE(ReadFileOrEmpty(dir_.path() + "/env").find("Y=\"2\""), std::string::npos);
}

TEST_F(ShellSessionTest, ShellExitIsReportedWithItsStatus) {
  auto shell = StartShell();
  ShellSession::Result r;
  EXPECT_EQ(Run(*shell, "echo bye; exit 3", &r), "bye\n");
  EXPECT_EQ(r.kind, ShellSession::Result::kShellExited);
  EXPECT_EQ(r.exit_status, 3);
  EXPECT_TRUE(shell->Exited());
}

TEST_F(ShellSessionTest, RestoredShellCarriesExportsAndCwd) {
  {
    auto shell = StartShell();
    ShellSession::Result r;
    Run(*shell, "cd /tmp && export KEEP='a b' && unset HOME", &r);
  }
  options_.env = {};
  options_.cwd = "/tmp";
  options_.restore_env_file = dir_.path() + "/env";
  auto shell = StartShell();
  ShellSession::Result r;
  EXPECT_EQ(Run(*shell, "echo \"$PWD|$KEEP|${HOME-unset}\"", &r), "/tmp|a b|unset\n");
}

TEST_F(ShellSessionTest, DeadlineInterruptsAndKillTakesTheTree) {
  auto shell = StartShell();
  ShellSession::Result r;
  const absl::Time start = absl::Now();
  Run(*shell, "sleep 1000 & echo $! > sleep.pid; wait", &r, absl::Milliseconds(200));
  EXPECT_EQ(r.kind, ShellSession::Result::kInterrupted);
  shell->Kill();
  shell->Drain([](std::string_view) {}, absl::Milliseconds(100));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  const int pid = std::stoi(ReadFileOrEmpty(dir_.path() + "/sleep.pid"));
  const std::string stat = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  EXPECT_TRUE(stat.empty() || stat.find(") Z ") != std::string::npos) << stat;
  EXPECT_TRUE(shell->Exited());
}

}  // namespace
}  // namespace kiln::agent
