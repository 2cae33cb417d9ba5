#include "common/project_yaml.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::common {
namespace {

using ::kiln::v1::EnvironmentVariable;
using ::kiln::v1::OnLimit;
using ::kiln::v1::Project;
using ::kiln::v1::WebhookFilter;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Copied from common/project_yaml.h.
constexpr char kHeaderExample[] = R"(name: flask-app
source:
  type: git
  location: /srv/git/flask-app.git
  branch: main                     # default main
  buildspec: buildspec.yml         # default buildspec.yml
  poll_interval_seconds: 0         # 0 = no polling (default), else 10..86400: `git ls-remote`
  credentials_parameter: /ci/git   # parameter holding "user:password" for an HTTPS location
concurrent_build_limit: 1          # 0 or absent = no limit
on_limit: queue                    # queue (default) | reject
timeout_minutes: 60                # 5..2160, default 60
queued_timeout_minutes: 480        # 5..480, default 480
agent_labels: {docker: "true"}
environment:
  image: python:3.11-slim          # Docker image the phases run in; absent = on the agent host
  privileged: true                 # mount the host's Docker socket (docker-in-docker builds)
  variables: {APP_ENV: ci}
  parameter_store: {DB_PASSWORD: /flask-app/db-password}
webhook:
  secret_parameter: /kiln/webhooks/flask-app
  # Reference §2.1: groups OR-ed, filters in a group AND-ed; each group has exactly one EVENT
  # filter. type is a WebhookFilter.Type name (case-sensitive); other patterns are RE2 searched.
  # Absent: a push to source.branch builds.
  filter_groups:
    - - {type: EVENT, pattern: "PUSH, PULL_REQUEST_CREATED, PULL_REQUEST_UPDATED"}
      - {type: HEAD_REF, pattern: "^refs/heads/main$", exclude_matched_pattern: false}
    - - {type: EVENT, pattern: PUSH}
      - {type: FILE_PATH, pattern: "^docs/", exclude_matched_pattern: true}
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
  EXPECT_EQ(p.source().poll_interval_seconds(), 0);
  EXPECT_EQ(p.source().credentials_parameter(), "/ci/git");
  EXPECT_EQ(p.environment().image(), "python:3.11-slim");
  EXPECT_TRUE(p.environment().privileged_mode());
  ASSERT_EQ(p.webhook_filter_groups_size(), 2);
  ASSERT_EQ(p.webhook_filter_groups(0).filters_size(), 2);
  const WebhookFilter& event = p.webhook_filter_groups(0).filters(0);
  EXPECT_EQ(event.type(), WebhookFilter::EVENT);
  EXPECT_EQ(event.pattern(), "PUSH, PULL_REQUEST_CREATED, PULL_REQUEST_UPDATED");
  EXPECT_EQ(p.webhook_filter_groups(0).filters(1).type(), WebhookFilter::HEAD_REF);
  EXPECT_EQ(p.webhook_filter_groups(0).filters(1).pattern(), "^refs/heads/main$");
  EXPECT_FALSE(p.webhook_filter_groups(0).filters(1).exclude_matched_pattern());
  EXPECT_EQ(p.webhook_filter_groups(1).filters(1).type(), WebhookFilter::FILE_PATH);
  EXPECT_TRUE(p.webhook_filter_groups(1).filters(1).exclude_matched_pattern());
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
            "branch, buildspec, poll_interval_seconds, credentials_parameter");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  secrets: {A: b}\n"),
            "project.yaml:6:3: environment.secrets: unknown key 'secrets'; allowed keys are "
            "image, privileged, variables, parameter_store");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "webhook: {secret: x}\n"),
            "project.yaml:5:11: webhook.secret: unknown key 'secret'; allowed keys are "
            "secret_parameter, filter_groups");
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

// ---- source polling, environment image, webhook filter groups ----

TEST(ProjectYamlTest, PollIntervalIsZeroOrTenSecondsToOneDay) {
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "  poll_interval_seconds: 60\n")
                .source()
                .poll_interval_seconds(),
            60);
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "  poll_interval_seconds: 0\n")
                .source()
                .poll_interval_seconds(),
            0);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  poll_interval_seconds: 9\n"),
            "project.yaml:5:26: source.poll_interval_seconds: 9 is outside 10..86400 seconds (0 "
            "means no polling)");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "  poll_interval_seconds: 86401\n"),
              StartsWith("project.yaml:5:26: source.poll_interval_seconds: 86401 is outside"));
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  poll_interval_seconds: 1m\n"),
            "project.yaml:5:26: source.poll_interval_seconds: expected a whole number, got '1m'");
}

TEST(ProjectYamlTest, CredentialsParameterMustBeAParameterName) {
  EXPECT_EQ(ParseOk(std::string(kMinimal) + "  credentials_parameter: /ci/git-token\n")
                .source()
                .credentials_parameter(),
            "/ci/git-token");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  credentials_parameter: \"a b\"\n"),
            "project.yaml:5:26: source.credentials_parameter: 'a b' is not a valid parameter name; "
            "use characters A-Z a-z 0-9 _ . - / as in /my-app/db-password");
}

TEST(ProjectYamlTest, EnvironmentImageAndPrivilegedMapOntoProjectEnvironment) {
  Project p = ParseOk(std::string(kMinimal) +
                      "environment:\n  image: registry.example.com:5000/team/app:1.0\n"
                      "  privileged: false\n");
  EXPECT_EQ(p.environment().image(), "registry.example.com:5000/team/app:1.0");
  EXPECT_FALSE(p.environment().privileged_mode());
  EXPECT_FALSE(ParseOk(kMinimal).has_environment());
  for (const char* good : {"python", "python:3.11-slim", "localhost:5000/app",
                           "library/python@sha256:"
                           "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}) {
    EXPECT_EQ(ParseOk(std::string(kMinimal) + "environment: {image: \"" + good + "\"}\n")
                  .environment()
                  .image(),
              good);
  }
}

TEST(ProjectYamlTest, EnvironmentImageMustBeADockerReference) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  image: \"python 3\"\n"),
            "project.yaml:6:10: environment.image: 'python 3' is not a valid Docker image "
            "reference; use one such as python:3.11-slim or registry.example.com:5000/team/app:1.0 "
            "(lowercase repository, no spaces)");
  for (const char* bad : {"Python:3", "\"python:\"", "\":tag\"", "a//b", "\"\""}) {
    EXPECT_THAT(ErrorOf(std::string(kMinimal) + "environment:\n  image: " + bad + "\n"),
                StartsWith("project.yaml:6:10: environment.image: "))
        << bad;
  }
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "environment:\n  privileged: maybe\n"),
            "project.yaml:6:15: environment.privileged: expected true or false, got 'maybe'");
}

TEST(ProjectYamlTest, FilterGroupsMapOntoWebhookFilters) {
  Project p = ParseOk(std::string(kMinimal) +
                      "webhook:\n"
                      "  filter_groups:\n"
                      "    - [{type: EVENT, pattern: PULL_REQUEST_MERGED}]\n"
                      "    - - type: EVENT\n"
                      "        pattern: PUSH,PULL_REQUEST_CLOSED\n"
                      "      - {type: COMMIT_MESSAGE, pattern: \"\\\\[skip ci\\\\]\", "
                      "exclude_matched_pattern: true}\n"
                      "      - {type: ACTOR_ACCOUNT_ID, pattern: ^583231$}\n"
                      "      - {type: BASE_REF, pattern: ^refs/heads/main$}\n");
  EXPECT_EQ(p.webhook_secret_parameter(), "");
  ASSERT_EQ(p.webhook_filter_groups_size(), 2);
  ASSERT_EQ(p.webhook_filter_groups(0).filters_size(), 1);
  ASSERT_EQ(p.webhook_filter_groups(1).filters_size(), 4);
  const WebhookFilter& message = p.webhook_filter_groups(1).filters(1);
  EXPECT_EQ(message.type(), WebhookFilter::COMMIT_MESSAGE);
  EXPECT_EQ(message.pattern(), "\\[skip ci\\]");
  EXPECT_TRUE(message.exclude_matched_pattern());
  EXPECT_EQ(p.webhook_filter_groups(1).filters(2).type(), WebhookFilter::ACTOR_ACCOUNT_ID);
  EXPECT_EQ(p.webhook_filter_groups(1).filters(3).type(), WebhookFilter::BASE_REF);
}

TEST(ProjectYamlTest, EachFilterGroupNeedsExactlyOneEventFilter) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n    - [{type: HEAD_REF, pattern: main}]\n"),
            "project.yaml:7:7: webhook.filter_groups[0]: a filter group needs exactly one EVENT "
            "filter, this one has 0 (reference §2.1)");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n    - [{type: EVENT, pattern: PUSH}]\n"
                    "    - [{type: EVENT, pattern: PUSH}, {type: EVENT, pattern: "
                    "PULL_REQUEST_CREATED}]\n"),
            "project.yaml:8:7: webhook.filter_groups[1]: a filter group needs exactly one EVENT "
            "filter, this one has 2 (reference §2.1)");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "webhook:\n  filter_groups:\n    - []\n"),
              HasSubstr("webhook.filter_groups[0]: a filter group needs exactly one EVENT filter"));
}

TEST(ProjectYamlTest, EventPatternListsOnlyKnownEventTypes) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n    - [{type: EVENT, pattern: \"PUSH, push\"}]\n"),
            "project.yaml:7:31: webhook.filter_groups[0][0].pattern: 'push' is not an event type "
            "Kiln supports; use PUSH, PULL_REQUEST_CREATED, PULL_REQUEST_UPDATED, "
            "PULL_REQUEST_REOPENED, PULL_REQUEST_MERGED, PULL_REQUEST_CLOSED (reference §2.1)");
  EXPECT_THAT(ErrorOf(std::string(kMinimal) +
                      "webhook:\n  filter_groups:\n    - [{type: EVENT, pattern: \" , \"}]\n"),
              HasSubstr("webhook.filter_groups[0][0].pattern: empty; list event types"));
}

TEST(ProjectYamlTest, RegexPatternsMustCompileWithRe2) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n"
                    "    - [{type: EVENT, pattern: PUSH}, {type: HEAD_REF, pattern: \"(main\"}]\n"),
            "project.yaml:7:64: webhook.filter_groups[0][1].pattern: '(main' is not a valid RE2 "
            "regular expression: missing ): (main");
  // RE2 has no backreferences or lookaround.
  EXPECT_THAT(ErrorOf(std::string(kMinimal) +
                      "webhook:\n  filter_groups:\n"
                      "    - [{type: EVENT, pattern: PUSH}, {type: FILE_PATH, pattern: \"(?!x)\"}]\n"),
              HasSubstr("'(?!x)' is not a valid RE2 regular expression: "));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) +
                      "webhook:\n  filter_groups:\n"
                      "    - [{type: EVENT, pattern: PUSH}, {type: FILE_PATH, pattern: \"\"}]\n"),
              HasSubstr("webhook.filter_groups[0][1].pattern: empty; give an RE2 regular expression"));
}

TEST(ProjectYamlTest, FilterKeysAndTypesAreChecked) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n    - [{type: event, pattern: PUSH}]\n"),
            "project.yaml:7:15: webhook.filter_groups[0][0].type: 'event' is not a filter type; use "
            "EVENT, HEAD_REF, BASE_REF, FILE_PATH, COMMIT_MESSAGE or ACTOR_ACCOUNT_ID");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n    - [{type: EVENT, pattern: PUSH, exclude: "
                    "true}]\n"),
            "project.yaml:7:37: webhook.filter_groups[0][0].exclude: unknown key 'exclude'; allowed "
            "keys are type, pattern, exclude_matched_pattern");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "webhook:\n  filter_groups:\n    - [{type: EVENT}]\n"),
            "project.yaml:7:8: webhook.filter_groups[0][0].pattern: missing; list event types such "
            "as PUSH, PULL_REQUEST_CREATED");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "webhook:\n  filter_groups:\n    - [{pattern: x}]\n"),
            "project.yaml:7:8: webhook.filter_groups[0][0].type: missing; e.g. type: EVENT");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "webhook:\n  filter_groups: {type: EVENT}\n"),
            "project.yaml:6:18: webhook.filter_groups: expected a list of filter groups (each a "
            "list of filters), got a map");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "webhook:\n  filter_groups:\n    - {type: EVENT, pattern: PUSH}\n"),
            "project.yaml:7:7: webhook.filter_groups[0]: expected a filter group: a list of {type, "
            "pattern} filters, got a map");
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

TEST(ValidateProjectTest, ChecksSourcePollingAndCredentials) {
  Project p = ValidProject();
  p.mutable_source()->set_poll_interval_seconds(5);
  EXPECT_EQ(ValidationError(p),
            "project.source.poll_interval_seconds: 5 is outside 10..86400 seconds (0 means no "
            "polling)");
  p.mutable_source()->set_poll_interval_seconds(10);
  EXPECT_TRUE(ValidateProject(p).ok());
  p.mutable_source()->set_credentials_parameter("no spaces please");
  EXPECT_THAT(ValidationError(p),
              StartsWith("project.source.credentials_parameter: 'no spaces please' is not a valid"));
}

TEST(ValidateProjectTest, ChecksEnvironmentImage) {
  Project p = ValidProject();
  p.mutable_environment()->set_privileged_mode(true);
  EXPECT_TRUE(ValidateProject(p).ok());  // empty image: the phases run on the agent host
  p.mutable_environment()->set_image("python:3.11-slim\n");
  EXPECT_THAT(ValidationError(p), StartsWith("project.environment.image: 'python:3.11-slim\n' is "
                                             "not a valid Docker image reference"));
}

TEST(ValidateProjectTest, ChecksFilterGroupsWithProtoFieldNames) {
  Project p = ValidProject();
  kiln::v1::WebhookFilterGroup* g = p.add_webhook_filter_groups();
  WebhookFilter* event = g->add_filters();
  event->set_type(WebhookFilter::EVENT);
  event->set_pattern("PUSH");
  WebhookFilter* head = g->add_filters();
  head->set_type(WebhookFilter::HEAD_REF);
  head->set_pattern("[main");
  EXPECT_EQ(ValidationError(p),
            "project.webhook_filter_groups[0].filters[1].pattern: '[main' is not a valid RE2 "
            "regular expression: missing ]: [main");
  head->set_pattern("^refs/heads/main$");
  EXPECT_TRUE(ValidateProject(p).ok());
  head->set_type(WebhookFilter::UNKNOWN);
  EXPECT_THAT(ValidationError(p),
              StartsWith("project.webhook_filter_groups[0].filters[1].type: 0 is not a filter type"));
  head->set_type(WebhookFilter::EVENT);
  EXPECT_EQ(ValidationError(p),
            "project.webhook_filter_groups[0].filters[1].pattern: '^refs/heads/main$' is not an "
            "event type Kiln supports; use PUSH, PULL_REQUEST_CREATED, PULL_REQUEST_UPDATED, "
            "PULL_REQUEST_REOPENED, PULL_REQUEST_MERGED, PULL_REQUEST_CLOSED (reference §2.1)");
  head->set_pattern("PULL_REQUEST_CREATED");
  EXPECT_EQ(ValidationError(p),
            "project.webhook_filter_groups[0]: a filter group needs exactly one EVENT filter, this "
            "one has 2 (reference §2.1)");
}

TEST(SplitEventPatternTest, TrimsSpacesAndDropsEmptyParts) {
  EXPECT_THAT(SplitEventPattern(" PUSH,PULL_REQUEST_CREATED ,, PULL_REQUEST_MERGED"),
              ::testing::ElementsAre("PUSH", "PULL_REQUEST_CREATED", "PULL_REQUEST_MERGED"));
  EXPECT_TRUE(SplitEventPattern(" , ").empty());
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
