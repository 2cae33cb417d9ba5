// The `kiln deploy` command line without a server: group YAML parsing (errors at file:line:col),
// the CLI11 registration and revision formatting.
#include "tools/cli/deploy_commands.h"

#include <sstream>

#include "CLI/CLI.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiln::cli {
namespace {

using ::kiln::test::IsOk;
using ::kiln::test::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<kiln::v1::DeploymentGroup> Parse(const std::string& yaml) {
  return ParseDeploymentGroupYaml(yaml, "group.yaml");
}

TEST(DeploymentGroupYamlTest, ParsesEveryKey) {
  auto g = Parse(
      "application: web\n"
      "name: prod\n"
      "agent_labels: {role: web, env: prod}\n"
      "minimum_healthy_hosts: {type: FLEET_PERCENT, value: 40}\n"
      "auto_rollback: true\n"
      "ignore_application_stop_failures: TRUE\n"
      "file_exists_behavior: RETAIN\n");
  ASSERT_THAT(g.status(), IsOk());
  EXPECT_EQ(g->application(), "web");
  EXPECT_EQ(g->name(), "prod");
  EXPECT_EQ(g->agent_labels().at("role"), "web");
  EXPECT_EQ(g->agent_labels().at("env"), "prod");
  EXPECT_EQ(g->deployment_config_name(), "Custom");  // implied by minimum_healthy_hosts
  EXPECT_EQ(g->minimum_healthy_hosts().type(), kiln::v1::MinimumHealthyHosts::FLEET_PERCENT);
  EXPECT_EQ(g->minimum_healthy_hosts().value(), 40);
  EXPECT_TRUE(g->auto_rollback_on_failure());
  EXPECT_TRUE(g->ignore_application_stop_failures());
  EXPECT_EQ(g->file_exists_behavior(), "RETAIN");
}

TEST(DeploymentGroupYamlTest, DeploymentConfigAsNameOrMap) {
  auto plain = Parse("application: web\nname: prod\ndeployment_config: CodeDeployDefault.AllAtOnce\n");
  ASSERT_THAT(plain.status(), IsOk());
  EXPECT_EQ(plain->deployment_config_name(), "CodeDeployDefault.AllAtOnce");
  auto map = Parse("application: web\nname: prod\ndeployment_config: {name: CodeDeployDefault.HalfAtATime}\n");
  ASSERT_THAT(map.status(), IsOk());
  EXPECT_EQ(map->deployment_config_name(), "CodeDeployDefault.HalfAtATime");
  auto none = Parse("application: web\nname: prod\n");
  ASSERT_THAT(none.status(), IsOk());
  EXPECT_EQ(none->deployment_config_name(), "");  // the server's default (OneAtATime)
}

TEST(DeploymentGroupYamlTest, ErrorsNameFileLineAndColumn) {
  EXPECT_THAT(Parse("application: web\nname: prod\ncolour: blue\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("group.yaml:3:1: colour: unknown key 'colour'")));
  EXPECT_THAT(Parse("application: web\nname: prod\nauto_rollback: maybe\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("group.yaml:3:16: auto_rollback: expected true or false")));
  EXPECT_THAT(Parse("application: web\nname: prod\ndeployment_config: Fast\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("group.yaml:3:20: deployment_config: unknown deployment configuration")));
  EXPECT_THAT(Parse("application: web\nname: prod\ndeployment_config: Custom\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs minimum_healthy_hosts")));
  EXPECT_THAT(Parse("application: web\nname: prod\ndeployment_config: CodeDeployDefault.AllAtOnce\n"
                    "minimum_healthy_hosts: {type: HOST_COUNT, value: 1}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group.yaml:4:24")));
  EXPECT_THAT(Parse("application: web\nname: prod\n"
                    "minimum_healthy_hosts:\n  type: FLEET_PERCENT\n  value: 100\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("group.yaml:5:10: minimum_healthy_hosts.value: a FLEET_PERCENT must be within 0..99")));
  EXPECT_THAT(Parse("application: web\nname: prod\nminimum_healthy_hosts: {type: MOST}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOST_COUNT or FLEET_PERCENT")));
  EXPECT_THAT(Parse("application: web/x\nname: prod\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group.yaml:1:14: application:")));
  EXPECT_THAT(Parse("name: prod\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("application: missing")));
  EXPECT_THAT(Parse("application: web\nname: prod\nname: again\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key 'name'")));
  EXPECT_THAT(Parse("application: [web\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("YAML syntax error")));
  EXPECT_THAT(Parse(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(DeployCommandLineTest, ParsesCreateIntoRunnableCommand) {
  CLI::App app;
  std::function<int(DeployStub&)> run;
  std::ostringstream out, err;
  DeployCommandLine deploy(app, &run, out, err);
  const char* argv[] = {"kiln", "deploy", "create", "--application", "web", "--group", "prod",
                        "--build", "app:1", "--artifact", "docs", "--wait"};
  ASSERT_NO_THROW(app.parse(static_cast<int>(std::size(argv)), argv));
  EXPECT_TRUE(static_cast<bool>(run));
}

TEST(DeployCommandLineTest, RejectsBuildTogetherWithProject) {
  CLI::App app;
  std::function<int(DeployStub&)> run;
  std::ostringstream out, err;
  DeployCommandLine deploy(app, &run, out, err);
  const char* argv[] = {"kiln", "deploy", "create", "--application", "web", "--group", "prod",
                        "--build", "app:1", "--project", "app", "--commit", "main"};
  EXPECT_THROW(app.parse(static_cast<int>(std::size(argv)), argv), CLI::ParseError);
  EXPECT_FALSE(static_cast<bool>(run));
}

TEST(DeployCommandLineTest, LogsNeedsHost) {
  CLI::App app;
  std::function<int(DeployStub&)> run;
  std::ostringstream out, err;
  DeployCommandLine deploy(app, &run, out, err);
  const char* argv[] = {"kiln", "deploy", "logs", "d-ABCDEFGHI"};
  EXPECT_THROW(app.parse(static_cast<int>(std::size(argv)), argv), CLI::ParseError);
}

TEST(FormatRevisionTest, NamesArtifactOrCommit) {
  kiln::v1::Revision r;
  r.mutable_build_artifact()->set_build_id("app:1");
  r.mutable_build_artifact()->set_sha256("0123456789abcdef");
  EXPECT_EQ(FormatRevision(r), "artifact of build app:1 (sha256 0123456789ab)");
  r.mutable_build_artifact()->set_artifact("docs");
  EXPECT_EQ(FormatRevision(r), "artifact docs of build app:1 (sha256 0123456789ab)");
  r.mutable_git()->set_project("app");
  r.mutable_git()->set_commit("main");
  EXPECT_EQ(FormatRevision(r), "git app@main");
}

}  // namespace
}  // namespace kiln::cli
