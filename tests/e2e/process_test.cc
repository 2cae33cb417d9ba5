// The e2e suite's process fixture on its own: spawn, log file, exit codes, signals, deadlines.
#include "tests/e2e/process.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/farm.h"
#include "tests/testing/status_matchers.h"

namespace kiln::e2e {
namespace {

using ::kiln::test::IsOk;
using ::kiln::test::IsOkAndHolds;
using ::kiln::test::StatusIs;

std::string TempDir() {
  std::string t = ::testing::TempDir() + "kiln-process-XXXXXX";
  if (mkdtemp(t.data()) == nullptr) std::abort();
  return t;
}

TEST(ProcessTest, ChildOutputGoesToTheLogFileAndItsExitCodeIsReported) {
  const std::string dir = TempDir();
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo out-$GREETING; echo err >&2; exit 3"};
  o.env = {{"GREETING", "hi"}};
  o.log_file = dir + "/p.log";
  auto p = Process::Spawn(o);
  ASSERT_THAT(p, IsOk());
  EXPECT_THAT((*p)->WaitExit(absl::Seconds(30)), IsOkAndHolds(3));
  EXPECT_EQ(ReadFile(o.log_file), "out-hi\nerr\n");
  EXPECT_FALSE((*p)->IsAlive());
  EXPECT_THAT((*p)->Kill(SIGTERM), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ProcessTest, WaitExitTimesOutWhileTheChildRunsAndASignalEndsIt) {
  SpawnOptions o;
  o.argv = {"sleep", "600"};
  auto p = Process::Spawn(o);
  ASSERT_THAT(p, IsOk());
  EXPECT_THAT((*p)->WaitExit(absl::Milliseconds(50)), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE((*p)->IsAlive());
  ASSERT_THAT((*p)->Kill(SIGTERM), IsOk());
  EXPECT_THAT((*p)->WaitExit(absl::Seconds(30)), IsOkAndHolds(128 + SIGTERM));
}

TEST(ProcessTest, MissingExecutableIsNotFound) {
  SpawnOptions o;
  o.argv = {"/nonexistent/kiln-e2e-binary"};
  EXPECT_THAT(Process::Spawn(o), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ProcessTest, RunCapturesStdoutStderrAndFeedsStdin) {
  const std::string dir = TempDir();
  auto r = e2e::Run({"sh", "-c", "cat; echo oops >&2"}, dir, absl::Seconds(30), "from-stdin");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "from-stdin");
  EXPECT_EQ(r->err, "oops\n");
  EXPECT_THAT(e2e::Run({"sleep", "600"}, dir, absl::Milliseconds(50)), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(ProcessTest, FindProcessesSeesAMarkerInArgvAndEnvironment) {
  const std::string marker = absl::StrCat("kiln-e2e-marker-", getpid());
  SpawnOptions o;
  o.argv = {"bash", "-c", absl::StrCat("exec -a ", marker, "-argv sleep 600")};
  o.env = {{"KILN_E2E_MARKER", marker + "-env"}};
  auto p = Process::Spawn(o);
  ASSERT_THAT(p, IsOk());
  const pid_t pid = (*p)->pid();
  // exec -a happens just after the spawn, and /proc/<pid>/cmdline reads empty for an instant while
  // the process execs: wait until the marker is seen on our pid instead of racing.
  ASSERT_THAT(PollUntil(absl::Seconds(10), "exec -a",
                        [&] {
                          auto found = FindProcesses(marker + "-argv");
                          return std::find(found.begin(), found.end(), pid) != found.end();
                        }),
              IsOk());
  EXPECT_THAT(FindProcesses("KILN_E2E_MARKER=" + marker + "-env"), ::testing::Contains(pid));
  ASSERT_THAT((*p)->Kill(SIGKILL), IsOk());
  ASSERT_THAT((*p)->WaitExit(absl::Seconds(30)), IsOk());
  EXPECT_THAT(FindProcesses(marker), ::testing::Not(::testing::Contains(pid)));
}

}  // namespace
}  // namespace kiln::e2e
