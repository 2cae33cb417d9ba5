#include "common/project_yaml.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::common {
namespace {

using ::kiln::v1::EnvironmentVariable;
using ::kiln::v1::OnLimit;
using ::kiln::v1::Project;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kHeaderExample[] = R"(name: flask-app
source: {type: git, location: /srv/git/flask-app.git, branch: main, buildspec: buildspec.yml}
concurrent_build_limit: 1          # 0 or absent = no limit
on_limit: queue                    # queue (default) | reject
timeout_minutes: 60                # 5..2160, default 60
queued_timeout_minutes: 480        # 5..480, default 480
agent_labels: {docker: "true"}
environment:
  variables: {APP_ENV: ci}
  parameter_store: {DB_PASSWORD: /flask-app/db-password}
webhook: {secret_parameter: /kiln/webhooks/flask-app}
)";

constexpr char kMinimal[] = "name: app\nsource:\n  type: git\n  location: /srv/git/app.git\n";

std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<Project> project = ParseProjectYaml(yaml, "project.yaml");
  if (project.ok()) return "<parsed OK>";
  EXPECT_EQ(project.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(project.status().message());
}

Project ParseOk(std::string_view yaml) {
  absl::StatusOr<Project> project = ParseProjectYaml(yaml, "project.yaml");
  EXPECT_TRUE(project.ok()) << project.status();
  return project.ok() ? *std::move(project) : Project{};
}

Project ValidProject() {
  Project p;
  p.set_name("flask-app");
  p.mutable_source()->set_type("git");
  p.mutable_source()->set_location("/srv/git/flask-app.git");
  p.mutable_source()->set_branch("main");
  p.mutable_source()->set_buildspec("buildspec.yml");
  return p;
}

std::string ValidationError(const Project& p) {
  absl::Status s = ValidateProject(p);
  if (s.ok()) return "<valid>";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.message());
}

// ---- ParseProjectYaml ----

TEST(ProjectYamlTest, ParsesTheHeaderExample) {
  Project p = ParseOk(kHeaderExample);
  EXPECT_EQ(p.name(), "flask-app");
  EXPECT_EQ(p.source().type(), "git");
  EXPECT_EQ(p.source().location(), "/srv/git/flask-app.git");
  EXPECT_EQ(p.source().branch(), "main");
  EXPECT_EQ(p.source().buildspec(), "buildspec.yml");
  EXPECT_EQ(p.concurrent_build_limit(), 1);
  EXPECT_EQ(p.on_limit(), OnLimit::QUEUE);
  EXPECT_EQ(p.timeout_in_minutes(), 60);
  EXPECT_EQ(p.queued_timeout_in_minutes(), 480);
  ASSERT_EQ(p.agent_labels().size(), 1u);
  EXPECT_EQ(p.agent_labels().at("docker"), "true");
  ASSERT_EQ(p.environment_variables_size(), 2);
  EXPECT_EQ(p.environment_variables(0).name(), "APP_ENV");
  EXPECT_EQ(p.environment_variables(0).value(), "ci");
  EXPECT_EQ(p.environment_variables(0).type(), EnvironmentVariable::PLAINTEXT);
  EXPECT_EQ(p.environment_variables(1).name(), "DB_PASSWORD");
  EXPECT_EQ(p.environment_variables(1).value(), "/flask-app/db-password");
  EXPECT_EQ(p.environment_variables(1).type(), EnvironmentVariable::PARAMETER_STORE);
  EXPECT_EQ(p.webhook_secret_parameter(), "/kiln/webhooks/flask-app");
  EXPECT_TRUE(ValidateProject(p).ok());
}

TEST(ProjectYamlTest, DefaultsAreFilledIn) {
  Project p = ParseOk(kMinimal);
  EXPECT_EQ(p.source().branch(), "main");
  EXPECT_EQ(p.source().buildspec(), "buildspec.yml");
  EXPECT_EQ(p.timeout_in_minutes(), 60);
  EXPECT_EQ(p.queued_timeout_in_minutes(), 480);
  EXPECT_EQ(p.concurrent_build_limit(), 0);
  EXPECT_EQ(p.on_limit(), OnLimit::QUEUE);
  EXPECT_EQ(p.webhook_secret_parameter(), "");
  EXPECT_EQ(p.environment_variables_size(), 0);
}

TEST(ProjectYamlTest, ZeroTimeoutsMeanTheDefaults) {
  Project p = ParseOk(std::string(kMinimal) + "timeout_minutes: 0\nqueued_timeout_minutes: 0\n");
  EXPECT_EQ(p.timeout_in_minutes(), 60);
  EXPECT_EQ(p.queued_timeout_in_minutes(), 480);
}

TEST(ProjectYamlTest, OnLimitIsCaseInsensitive) {
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "on_limit: REJECT\n").on_limit(), OnLimit::REJECT);
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "on_limit: Queue\n").on_limit(), OnLimit::QUEUE);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "on_limit: drop\n"),
            "project.yaml:5:11: on_limit: 'drop' is not valid; use queue or reject");
}

TEST(ProjectYamlTest, RejectsUnknownKeysWithLine) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "timeout: 30\n"),
            "project.yaml:5:1: timeout: unknown key 'timeout'; allowed keys are name, source, "
            "concurrent_build_limit, on_limit, timeout_minutes, queued_timeout_minutes, "
            "agent_labels, environment, webhook");
  EXPECT_EQ(ErrorOf("name: app\nsource:\n  type: git\n  location: x\n  ref: main\n"),
            "project.yaml:5:3: source.ref: unknown key 'ref'; allowed keys are type, location, "
            "branch, buildspec");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  secrets: {A: b}\n"),
            "project.yaml:6:3: environment.secrets: unknown key 'secrets'; allowed keys are "
            "variables, parameter_store");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "webhook: {secret: x}\n"),
            "project.yaml:5:11: webhook.secret: unknown key 'secret'; allowed keys are "
            "secret_parameter");
}

TEST(ProjectYamlTest, DuplicateKeyRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "name: other\n"),
            "project.yaml:5:1: name: duplicate key 'name' (first on line 1)");
}

TEST(ProjectYamlTest, NameIsRequiredAndValidated) {
  EXPECT_EQ(ErrorOf("source: {type: git, location: x}\n"),
            "project.yaml:1:1: name: missing; give the project a name such as flask-app");
  EXPECT_EQ(ErrorOf("name: my app\nsource: {type: git, location: x}\n"),
            "project.yaml:1:7: name: 'my app' is not a valid project name; use 2..255 characters "
            "of A-Z a-z 0-9 _ - (reference §1.13)");
}

TEST(ProjectYamlTest, SourceIsRequired) {
  EXPECT_EQ(ErrorOf("name: app\n"),
            "project.yaml:1:1: source: missing; add source: {type: git, location: <git URL or "
            "repository path>}");
  EXPECT_EQ(ErrorOf("name: app\nsource: git\n"),
            "project.yaml:2:9: source: expected a map with type, location, branch, buildspec, got "
            "the string 'git'");
}

TEST(ProjectYamlTest, SourceTypeMustBeGit) {
  EXPECT_EQ(ErrorOf("name: app\nsource:\n  type: svn\n  location: x\n"),
            "project.yaml:3:9: source.type: 'svn' is not supported; the only source type is git");
  EXPECT_EQ(ErrorOf("name: app\nsource:\n  location: x\n"),
            "project.yaml:3:3: source.type: missing; set it to git");
}

TEST(ProjectYamlTest, LocationIsRequired) {
  EXPECT_EQ(ErrorOf("name: app\nsource:\n  type: git\n"),
            "project.yaml:3:3: source.location: missing; give a git URL or the path of a git "
            "repository");
  EXPECT_EQ(ErrorOf("name: app\nsource:\n  type: git\n  location: \"\"\n"),
            "project.yaml:4:13: source.location: missing; give a git URL or the path of a git "
            "repository");
}

TEST(ProjectYamlTest, BuildspecMustBeRelativeWithoutDotDot) {
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "  buildspec: day-14/app/buildspec.yml\n")
                .source()
                .buildspec(),
            "day-14/app/buildspec.yml");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  buildspec: /etc/buildspec.yml\n"),
            "project.yaml:5:14: source.buildspec: '/etc/buildspec.yml' must be relative to the "
            "source root, such as buildspec.yml");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  buildspec: ci/../../x.yml\n"),
            "project.yaml:5:14: source.buildspec: 'ci/../../x.yml' must stay inside the source: no "
            "'..' components");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "  buildspec: \"\"\n"),
              StartsWith("project.yaml:5:14: source.buildspec: empty"));
}

TEST(ProjectYamlTest, BranchMustBeAValidRefName) {
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "  branch: feature/x-1\n").source().branch(),
            "feature/x-1");
  for (const char* bad : {"\"a b\"", "a..b", "-x", "x.lock", "a//b", "x/", "\"a:b\"", "\"\""}) {
    EXPECT_THAT(ErrorOf(std::string(kMinimal) + "  branch: " + bad + "\n"),
                StartsWith("project.yaml:5:11: source.branch: "))
        << bad;
  }
}

TEST(ProjectYamlTest, TimeoutOutsideRangeRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "timeout_minutes: 3\n"),
            "project.yaml:5:18: timeout_minutes: 3 is outside 5..2160 (0 means the default)");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "timeout_minutes: 2161\n"),
            "project.yaml:5:18: timeout_minutes: 2161 is outside 5..2160 (0 means the default)");
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "timeout_minutes: 2160\n").timeout_in_minutes(), 2160);
}

TEST(ProjectYamlTest, QueuedTimeoutOutsideRangeRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "queued_timeout_minutes: 481\n"),
            "project.yaml:5:25: queued_timeout_minutes: 481 is outside 5..480 (0 means the "
            "default)");
  EXPECT_EQ(
      ParseOk(std::string(kMinimal) + "queued_timeout_minutes: 5\n").queued_timeout_in_minutes(),
      5);
}

TEST(ProjectYamlTest, NumbersMustBeWholeNumbers) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "timeout_minutes: 1h\n"),
            "project.yaml:5:18: timeout_minutes: expected a whole number, got '1h'");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "concurrent_build_limit: [1]\n"),
            "project.yaml:5:25: concurrent_build_limit: expected a whole number, got a list");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "timeout_minutes: 99999999999\n"),
            "project.yaml:5:18: timeout_minutes: expected a whole number, got '99999999999'");
}

TEST(ProjectYamlTest, NegativeConcurrentBuildLimitRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "concurrent_build_limit: -1\n"),
            "project.yaml:5:25: concurrent_build_limit: -1 is negative; use 0 for no limit or a "
            "positive number");
}

TEST(ProjectYamlTest, LabelValuesAreLiteral) {
  Project p = ParseOk(std::string(kMinimal) + "agent_labels:\n  docker: true\n  cores: 08\n");
  EXPECT_EQ(p.agent_labels().at("docker"), "true");
  EXPECT_EQ(p.agent_labels().at("cores"), "08");
}

TEST(ProjectYamlTest, LabelsLongerThan128BytesRejected) {
  EXPECT_EQ(
      ErrorOf(std::string(kMinimal) + "agent_labels:\n  role: " + std::string(129, 'x') + "\n"),
      "project.yaml:6:9: agent_labels.role: value of label 'role' is longer than 128 bytes");
  EXPECT_THAT(
      ErrorOf(std::string(kMinimal) + "agent_labels:\n  " + std::string(129, 'k') + ": x\n"),
      StartsWith("project.yaml:6:3: agent_labels." + std::string(129, 'k') +
                 ": label key 'kkkkkkkkkkkkkkkkkkkk...' is longer than 128 bytes"));
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "agent_labels:\n  \"\": x\n"),
            "project.yaml:6:3: agent_labels.: label keys must not be empty");
}

TEST(ProjectYamlTest, EnvironmentVariablesMapOntoTypes) {
  Project p = ParseOk(std::string(kMinimal) +
                      "environment:\n  parameter_store:\n    TOKEN: /app/token\n  variables:\n"
                      "    PORT: 5000\n    DEBUG: no\n");
  ASSERT_EQ(p.environment_variables_size(), 3);
  EXPECT_EQ(p.environment_variables(0).type(), EnvironmentVariable::PARAMETER_STORE);
  EXPECT_EQ(p.environment_variables(0).value(), "/app/token");
  EXPECT_EQ(p.environment_variables(1).name(), "PORT");
  EXPECT_EQ(p.environment_variables(1).value(), "5000");
  EXPECT_EQ(p.environment_variables(2).value(), "no");
  EXPECT_EQ(p.environment_variables(2).type(), EnvironmentVariable::PLAINTEXT);
}

TEST(ProjectYamlTest, ReservedCodebuildPrefixRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  variables:\n    CODEBUILD_X: y\n"),
            "project.yaml:7:5: environment.variables.CODEBUILD_X: 'CODEBUILD_X' is reserved: names "
            "starting with CODEBUILD_ are set by Kiln (reference §1.4); rename the variable");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "environment:\n  variables:\n    9X: y\n"),
              HasSubstr("'9X' is not a valid variable name"));
}

TEST(ProjectYamlTest, VariableDefinedTwiceRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  variables: {A: x}\n"
                                            "  parameter_store: {A: /p}\n"),
            "project.yaml:7:21: environment.parameter_store.A: 'A' is already defined at "
            "environment.variables.A on line 6; define it once");
}

TEST(ProjectYamlTest, VariableWithoutValueRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  variables:\n    A:\n"),
            "project.yaml:7:5: environment.variables.A: expected a text value, got an empty value; "
            "write A: \"\" for an empty value");
}

TEST(ProjectYamlTest, ParameterNamesValidated) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  parameter_store: {A: \"a b\"}\n"),
            "project.yaml:6:24: environment.parameter_store.A: 'a b' is not a valid parameter "
            "name; use characters A-Z a-z 0-9 _ . - / as in /my-app/db-password");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "webhook:\n  secret_parameter: kiln/hook\n"),
            "project.yaml:6:21: webhook.secret_parameter: 'kiln/hook' is not a valid parameter "
            "name; use characters A-Z a-z 0-9 _ . - / as in /my-app/db-password");
}

TEST(ProjectYamlTest, SyntaxErrorHasPosition) {
  EXPECT_EQ(ErrorOf("name: app\nsource: {type: git\n"),
            "project.yaml:3:1: YAML syntax error: end of map flow not found");
}

TEST(ProjectYamlTest, EmptyFileRejected) {
  EXPECT_EQ(ErrorOf(""),
            "project.yaml:1:1: the project file is empty; it needs at least name and source");
}

// ---- ValidateProject ----

TEST(ValidateProjectTest, AcceptsAValidProject) {
  EXPECT_TRUE(ValidateProject(ValidProject()).ok());
}

TEST(ValidateProjectTest, NamesTheFieldOnError) {
  Project p = ValidProject();
  p.set_timeout_in_minutes(3);
  EXPECT_EQ(ValidationError(p),
            "project.timeout_in_minutes: 3 is outside 5..2160 (0 means the default)");
  p = ValidProject();
  p.set_queued_timeout_in_minutes(500);
  EXPECT_EQ(ValidationError(p),
            "project.queued_timeout_in_minutes: 500 is outside 5..480 (0 means the default)");
  p = ValidProject();
  p.set_name("x");
  EXPECT_THAT(ValidationError(p), StartsWith("project.name: 'x' is not a valid project name"));
  p = ValidProject();
  p.mutable_source()->set_type("s3");
  EXPECT_THAT(ValidationError(p), StartsWith("project.source.type: 's3' is not supported"));
  p = ValidProject();
  p.mutable_source()->set_location("");
  EXPECT_THAT(ValidationError(p), StartsWith("project.source.location: missing"));
  p = ValidProject();
  p.mutable_source()->set_branch("");
  EXPECT_THAT(ValidationError(p), StartsWith("project.source.branch: empty"));
  p = ValidProject();
  p.mutable_source()->set_buildspec("../buildspec.yml");
  EXPECT_THAT(ValidationError(p), StartsWith("project.source.buildspec: '../buildspec.yml'"));
  p = ValidProject();
  p.set_concurrent_build_limit(-2);
  EXPECT_THAT(ValidationError(p), StartsWith("project.concurrent_build_limit: -2 is negative"));
  p = ValidProject();
  p.set_on_limit(static_cast<OnLimit::Value>(7));
  EXPECT_EQ(ValidationError(p), "project.on_limit: 7 is not a valid OnLimit value");
  p = ValidProject();
  p.set_webhook_secret_parameter("not valid");
  EXPECT_THAT(ValidationError(p), StartsWith("project.webhook_secret_parameter: 'not valid'"));
}

TEST(ValidateProjectTest, ZeroTimeoutsAreAllowed) {
  Project p = ValidProject();
  p.set_timeout_in_minutes(0);
  p.set_queued_timeout_in_minutes(0);
  EXPECT_TRUE(ValidateProject(p).ok());
}

TEST(ValidateProjectTest, ChecksLabels) {
  Project p = ValidProject();
  (*p.mutable_agent_labels())[""] = "x";
  EXPECT_EQ(ValidationError(p), "project.agent_labels: label keys must not be empty");
  p = ValidProject();
  (*p.mutable_agent_labels())["role"] = std::string(129, 'v');
  EXPECT_EQ(ValidationError(p),
            "project.agent_labels: value of label 'role' is longer than 128 bytes");
  p = ValidProject();
  (*p.mutable_agent_labels())["role"] = std::string(128, 'v');
  EXPECT_TRUE(ValidateProject(p).ok());
}

TEST(ValidateProjectTest, ChecksEnvironmentVariables) {
  Project p = ValidProject();
  EnvironmentVariable* v = p.add_environment_variables();
  v->set_name("CODEBUILD_BUILD_ID");
  EXPECT_THAT(
      ValidationError(p),
      StartsWith("project.environment_variables[0].name: 'CODEBUILD_BUILD_ID' is reserved"));
  v->set_name("TOKEN");
  v->set_type(EnvironmentVariable::PARAMETER_STORE);
  v->set_value("bad name");
  EXPECT_THAT(ValidationError(p),
              StartsWith("project.environment_variables[0].value: 'bad name' is not a valid "
                         "parameter name"));
  v->set_value("/app/token");
  EXPECT_TRUE(ValidateProject(p).ok());
  p.add_environment_variables()->set_name("TOKEN");
  EXPECT_EQ(ValidationError(p),
            "project.environment_variables[1].name: 'TOKEN' is defined more than once");
}

}  // namespace
}  // namespace kiln::common
