#include "common/buildspec.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::StartsWith;

// The error message of a buildspec that must not parse.
std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<Buildspec> spec = ParseBuildspec(yaml, "buildspec.yml");
  if (spec.ok()) return "<parsed OK>";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

Buildspec ParseOk(std::string_view yaml) {
  absl::StatusOr<Buildspec> spec = ParseBuildspec(yaml, "buildspec.yml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *std::move(spec) : Buildspec{};
}

constexpr char kFlaskBuildspec[] = R"(version: 0.2
env:
  parameter-store:
    DOCKER_REGISTRY_USERNAME: /myapp/docker-credentials/username
    DOCKER_REGISTRY_PASSWORD: /myapp/docker-credentials/password
    DOCKER_REGISTRY_URL: /myapp/docker-registry/url
phases:
  install:
    runtime-versions:
      python: 3.11
  pre_build:
    commands:
      - echo "Installing dependencies..."
      - pip install -r day-14/simple-python-app/requirements.txt
  build:
    commands:
      - echo "Running tests..."
      - cd day-14/simple-python-app/
      - echo "Building Docker image..."
      - echo "$DOCKER_REGISTRY_PASSWORD" | docker login -u "$DOCKER_REGISTRY_USERNAME" --password-stdin "$DOCKER_REGISTRY_URL"
      - docker build -t "$DOCKER_REGISTRY_URL/$DOCKER_REGISTRY_USERNAME/simple-python-flask-app:latest" .
      - docker push "$DOCKER_REGISTRY_URL/$DOCKER_REGISTRY_USERNAME/simple-python-flask-app:latest"
  post_build:
    commands:
      - echo "Build is successful"
)";

TEST(BuildspecTest, AcceptsTheFlaskExampleBuildspec) {
  Buildspec spec = ParseOk(kFlaskBuildspec);
  EXPECT_EQ(spec.version, "0.2");
  EXPECT_THAT(spec.parameter_store,
              ElementsAre(Pair("DOCKER_REGISTRY_USERNAME", "/myapp/docker-credentials/username"),
                          Pair("DOCKER_REGISTRY_PASSWORD", "/myapp/docker-credentials/password"),
                          Pair("DOCKER_REGISTRY_URL", "/myapp/docker-registry/url")));
  EXPECT_THAT(spec.variables, IsEmpty());
  ASSERT_TRUE(spec.install.has_value());
  EXPECT_THAT(spec.install->commands, IsEmpty());
  EXPECT_THAT(spec.install->runtime_versions, ElementsAre(Pair("python", "3.11")));
  ASSERT_TRUE(spec.pre_build.has_value());
  EXPECT_THAT(spec.pre_build->commands,
              ElementsAre("echo \"Installing dependencies...\"",
                          "pip install -r day-14/simple-python-app/requirements.txt"));
  ASSERT_TRUE(spec.build.has_value());
  ASSERT_EQ(spec.build->commands.size(), 6u);
  EXPECT_EQ(spec.build->commands[1], "cd day-14/simple-python-app/");
  EXPECT_EQ(spec.build->commands[3],
            "echo \"$DOCKER_REGISTRY_PASSWORD\" | docker login -u \"$DOCKER_REGISTRY_USERNAME\" "
            "--password-stdin \"$DOCKER_REGISTRY_URL\"");
  ASSERT_TRUE(spec.post_build.has_value());
  EXPECT_THAT(spec.post_build->commands, ElementsAre("echo \"Build is successful\""));
  EXPECT_EQ(spec.install->line, 8);
  EXPECT_EQ(spec.build->line, 15);
  EXPECT_THAT(spec.warnings, IsEmpty());
}

TEST(BuildspecTest, AcceptsTheRepositoryExampleBuildspec) {
  std::ifstream in(KILN_SOURCE_DIR "/examples/flask-app/buildspec.yml");
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  Buildspec spec = ParseOk(text.str());
  EXPECT_EQ(spec.parameter_store.size(), 3u);
  ASSERT_TRUE(spec.build.has_value());
  EXPECT_FALSE(spec.build->commands.empty());
  EXPECT_THAT(spec.warnings, IsEmpty());
}

TEST(BuildspecTest, AbsentPhasesStayEmpty) {
  Buildspec spec = ParseOk("version: 0.2\nphases:\n  build:\n    commands:\n      - make\n");
  EXPECT_FALSE(spec.install.has_value());
  EXPECT_FALSE(spec.pre_build.has_value());
  EXPECT_FALSE(spec.post_build.has_value());
  ASSERT_TRUE(spec.build.has_value());
  EXPECT_THAT(spec.build->commands, ElementsAre("make"));
  EXPECT_EQ(spec.shell, "");
  EXPECT_EQ(spec.run_as, "");
  EXPECT_FALSE(spec.git_credential_helper);
}

// ---- version ----

TEST(BuildspecTest, VersionMustBe01Or02) {
  EXPECT_EQ(ErrorOf("version: 0.3\nphases:\n  build:\n    commands: [make]\n"),
            "buildspec.yml:1:10: version: '0.3' is not a buildspec version; allowed versions are "
            "0.1 and 0.2 (use 0.2; reference §1.1)");
  EXPECT_THAT(ErrorOf("version: [0.2]\nphases:\n  build:\n    commands: [make]\n"),
              HasSubstr("version: a list is not a buildspec version"));
  EXPECT_EQ(ParseOk("version: 0.1\nphases:\n  build:\n    commands: [make]\n").version, "0.1");
}

TEST(BuildspecTest, VersionMayBeQuoted) {
  EXPECT_EQ(ParseOk("version: \"0.2\"\nphases:\n  build:\n    commands: [make]\n").version, "0.2");
}

TEST(BuildspecTest, MissingVersionRejected) {
  EXPECT_EQ(ErrorOf("phases:\n  build:\n    commands: [make]\n"),
            "buildspec.yml:1:1: version: missing; a buildspec must start with 'version: 0.2' "
            "(reference §1.3)");
}

TEST(BuildspecTest, MissingPhasesRejected) {
  EXPECT_THAT(ErrorOf("version: 0.2\n"),
              StartsWith("buildspec.yml:1:1: phases: missing; a buildspec needs a phases map"));
  EXPECT_THAT(ErrorOf("version: 0.2\nphases: {}\n"),
              StartsWith("buildspec.yml:2:9: phases: no phases"));
}

TEST(BuildspecTest, EmptyFileRejected) {
  EXPECT_THAT(ErrorOf(""), StartsWith("buildspec.yml:1:1: the buildspec is empty"));
  EXPECT_THAT(ErrorOf("# nothing\n"), StartsWith("buildspec.yml:1:1: the buildspec is empty"));
}

TEST(BuildspecTest, TopLevelMustBeAMap) {
  EXPECT_EQ(ErrorOf("- version: 0.2\n"),
            "buildspec.yml:1:1: (top level): expected a map with version, env and phases, got a "
            "list");
}

TEST(BuildspecTest, SecondYamlDocumentRejected) {
  EXPECT_THAT(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [make]\n---\nversion: 0.2\n"),
              StartsWith("buildspec.yml:6:1: (document 2): a buildspec is one YAML document"));
}

// ---- structure ----

TEST(BuildspecTest, RejectsUnknownTopLevelKeyWithLine) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphase:\n  build:\n    commands: [make]\n"),
            "buildspec.yml:2:1: phase: unknown key 'phase'; allowed keys are version, run-as, env, "
            "proxy, batch, phases, reports, artifacts, cache (did you mean 'phases'?)");
}

TEST(BuildspecTest, RejectsUnknownPhaseNameWithLine) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  biuld:\n    commands: [make]\n"),
            "buildspec.yml:3:3: phases.biuld: unknown phase 'biuld'; allowed phases are install, "
            "pre_build, build, post_build (did you mean 'build'?)");
}

TEST(BuildspecTest, RejectsUnknownKeyInsidePhaseWithLine) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    command:\n      - make\n"),
            "buildspec.yml:4:5: phases.build.command: unknown key 'command'; allowed keys are "
            "run-as, on-failure, runtime-versions, commands, finally (did you mean 'commands'?)");
}

TEST(BuildspecTest, RejectsDuplicateKeys) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\n  build:\n"
                    "    commands: [b]\n"),
            "buildspec.yml:5:3: phases.build: duplicate key 'build' (first on line 3); YAML would "
            "silently keep only one of them, so merge the two");
}

TEST(BuildspecTest, PhasesOtherThanInstallRequireCommands) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    finally: [echo done]\n"),
            "buildspec.yml:4:5: phases.build: missing required key 'commands'; every phase except "
            "install needs a commands list (reference §1.6)");
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  post_build:\n"),
            "buildspec.yml:3:3: phases.post_build: the phase is empty; add a commands list or "
            "remove the phase");
}

TEST(BuildspecTest, InstallMayOmitCommands) {
  Buildspec spec = ParseOk(
      "version: 0.2\nphases:\n  install:\n    runtime-versions:\n"
      "      nodejs: 18\n");
  ASSERT_TRUE(spec.install.has_value());
  EXPECT_THAT(spec.install->commands, IsEmpty());
}

TEST(BuildspecTest, PhaseMustBeAMap) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build: make\n"),
            "buildspec.yml:3:10: phases.build: expected a map with commands (and optionally "
            "finally, run-as, on-failure), got the string 'make'");
}

// ---- commands ----

TEST(BuildspecTest, CommandWithUnquotedColonSpaceExplainsQuoting) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n      - make\n"
                    "      - echo Result: ok\n"),
            "buildspec.yml:6:9: phases.build.commands[1]: this item is a map, not a command: YAML "
            "read the ': ' in `echo Result: ok` as a key/value separator; a command containing "
            "': ' must be quoted, for example - 'echo Result: ok'");
}

TEST(BuildspecTest, QuotingHintEscapesSingleQuotes) {
  EXPECT_THAT(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n      - echo it's: ok\n"),
              HasSubstr("for example - 'echo it''s: ok'"));
}

TEST(BuildspecTest, QuotedCommandWithColonSpaceIsAccepted) {
  Buildspec spec = ParseOk(
      "version: 0.2\nphases:\n  build:\n    commands:\n"
      "      - 'echo Result: ok'\n      - \"curl -H 'A: b' x\"\n");
  EXPECT_THAT(spec.build->commands, ElementsAre("echo Result: ok", "curl -H 'A: b' x"));
}

TEST(BuildspecTest, SyntaxErrorHasPositionAndQuotingHint) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n      - echo a: b: c\n"),
            "buildspec.yml:5:18: YAML syntax error: illegal map value; a command containing ': ' "
            "must be quoted, for example - 'echo a: b' (reference §1.1)");
}

TEST(BuildspecTest, OtherSyntaxErrorsHavePosition) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a, b\n"),
            "buildspec.yml:5:1: YAML syntax error: end of sequence flow not found; check the "
            "indentation and quoting near this position");
}

TEST(BuildspecTest, ColonSpaceInsideQuotedArgumentStillNeedsQuotingTheCommand) {
  // The plain scalar ends at the first ': ' even inside the shell's double quotes.
  EXPECT_EQ(
      ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n"
              "      - curl -H \"Content-Type: application/json\" localhost\n"),
      "buildspec.yml:5:9: phases.build.commands[0]: this item is a map, not a command: YAML "
      "read the ': ' in `curl -H \"Content-Type: application/json\" localhost` as a key/value "
      "separator; a command containing ': ' must be quoted, for example - 'curl -H "
      "\"Content-Type: application/json\" localhost'");
}

TEST(BuildspecTest, TabIndentationExplained) {
  EXPECT_EQ(ErrorOf("version: 0.2\n\tphases:\n"),
            "buildspec.yml:2:1: YAML syntax error: illegal tab when looking for indentation; YAML "
            "does not allow tabs for indentation; use spaces");
}

TEST(BuildspecTest, MultiLineCommandIsOneCommand) {
  Buildspec spec = ParseOk(
      "version: 0.2\nphases:\n  build:\n    commands:\n      - |\n"
      "        if [ -f x ]; then\n          echo yes\n        fi\n"
      "      - echo after\n");
  EXPECT_THAT(spec.build->commands,
              ElementsAre("if [ -f x ]; then\n  echo yes\nfi\n", "echo after"));
}

TEST(BuildspecTest, CommandsMustBeAList) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: make all\n"),
            "buildspec.yml:4:15: phases.build.commands: expected a list of commands, got the "
            "string 'make all'; write each entry as a list item: - make all");
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n"),
            "buildspec.yml:4:5: phases.build.commands: expected a list of commands, got an empty "
            "value");
}

TEST(BuildspecTest, NestedListInCommandsRejected) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n      - [a, b]\n"),
            "buildspec.yml:5:9: phases.build.commands[0]: expected a command string, got a list");
}

TEST(BuildspecTest, EmptyCommandItemReportedAtItsDash) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n      - make\n      -\n"
                    "      - make install\n"),
            "buildspec.yml:6:7: phases.build.commands[1]: empty list item; write a command after "
            "the '-'");
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands:\n      - \"  \"\n"),
            "buildspec.yml:5:9: phases.build.commands[0]: empty command; remove the item or write "
            "a command");
}

TEST(BuildspecTest, NumericCommandKeepsItsText) {
  Buildspec spec = ParseOk("version: 0.2\nphases:\n  build:\n    commands:\n      - 1.50\n");
  EXPECT_THAT(spec.build->commands, ElementsAre("1.50"));
}

TEST(BuildspecTest, FinallyRunAsAndOnFailureAreParsed) {
  Buildspec spec = ParseOk(
      "version: 0.2\nrun-as: builder\nphases:\n  build:\n    run-as: root\n"
      "    on-failure: CONTINUE\n    commands: [make]\n    finally:\n      - rm -rf tmp\n");
  EXPECT_EQ(spec.run_as, "builder");
  EXPECT_EQ(spec.build->run_as, "root");
  EXPECT_EQ(spec.build->on_failure, "CONTINUE");
  EXPECT_THAT(spec.build->finally, ElementsAre("rm -rf tmp"));
  EXPECT_THAT(spec.warnings, IsEmpty());
}

TEST(BuildspecTest, RunAsMustBeAUserName) {
  EXPECT_EQ(ErrorOf("version: 0.2\nrun-as: bad user\nphases:\n  build:\n    commands: [make]\n"),
            "buildspec.yml:2:9: run-as: 'bad user' is not a Linux user name; use up to 32 "
            "characters of A-Z a-z 0-9 _ - . (reference §1.3)");
}

// ---- on-failure ----

TEST(BuildspecTest, OnFailureAcceptsEveryDocumentedForm) {
  for (const char* value :
       {"ABORT", "abort", "CONTINUE", "RETRY", "Retry", "RETRY-0", "RETRY-3", "RETRY-100",
        "RETRY-.*timeout.*", "Retry-3-.*error.*", "RETRY-abc-def"}) {
    absl::StatusOr<Buildspec> spec =
        ParseBuildspec(std::string("version: 0.2\nphases:\n  build:\n    on-failure: ") + value +
                           "\n    commands: [make]\n",
                       "buildspec.yml");
    ASSERT_TRUE(spec.ok()) << value << ": " << spec.status();
    EXPECT_EQ(spec->build->on_failure, value);
  }
}

TEST(BuildspecTest, OnFailureRejectsInvalidValues) {
  auto error = [](const std::string& value) {
    return ErrorOf("version: 0.2\nphases:\n  build:\n    on-failure: " + value +
                   "\n    commands: [make]\n");
  };
  EXPECT_EQ(error("STOP"),
            "buildspec.yml:4:17: phases.build.on-failure: 'STOP' is not valid; use ABORT, "
            "CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>");
  EXPECT_EQ(error("RETRY-101"),
            "buildspec.yml:4:17: phases.build.on-failure: retry count 101 is outside 0..100");
  EXPECT_THAT(error("RETRY-"), HasSubstr("RETRY- needs a count or a regex"));
  EXPECT_THAT(error("RETRY-3-"), HasSubstr("has an empty regex after the count"));
  EXPECT_THAT(error("RETRY-3-(unclosed"),
              HasSubstr("'(unclosed' is not a valid regular expression"));
}

// ---- runtime-versions ----

TEST(BuildspecTest, RuntimeVersionsKeepTheirText) {
  Buildspec spec = ParseOk(
      "version: 0.2\nphases:\n  install:\n    runtime-versions:\n"
      "      python: 3.10\n      java: corretto17\n      nodejs: latest\n");
  EXPECT_THAT(
      spec.install->runtime_versions,
      ElementsAre(Pair("python", "3.10"), Pair("java", "corretto17"), Pair("nodejs", "latest")));
}

TEST(BuildspecTest, RuntimeVersionsOnlyInInstall) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    runtime-versions:\n      python: 3.11\n"
                    "    commands: [make]\n"),
            "buildspec.yml:4:5: phases.build.runtime-versions: runtime-versions is only allowed in "
            "the install phase (reference §1.6)");
}

TEST(BuildspecTest, RuntimeVersionsMustNameARuntime) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  install:\n    runtime-versions: {}\n"),
            "buildspec.yml:4:23: phases.install.runtime-versions: name at least one runtime, e.g. "
            "python: 3.11");
}

// ---- env ----

TEST(BuildspecTest, VariablesAreLiteral) {
  Buildspec spec = ParseOk(
      "version: 0.2\nenv:\n  variables:\n    PORT: 5000\n    FLAG: yes\n    PATH: $PATH:/x\n"
      "    PRICE: 1.50\n    EMPTY: \"\"\n    NULLTEXT: \"null\"\n    OCT: 0755\n"
      "phases:\n  build:\n    commands: [make]\n");
  EXPECT_THAT(spec.variables,
              ElementsAre(Pair("PORT", "5000"), Pair("FLAG", "yes"), Pair("PATH", "$PATH:/x"),
                          Pair("PRICE", "1.50"), Pair("EMPTY", ""), Pair("NULLTEXT", "null"),
                          Pair("OCT", "0755")));
}

TEST(BuildspecTest, VariableWithoutValueRejected) {
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  variables:\n    EMPTY:\nphases:\n  build:\n"
                    "    commands: [make]\n"),
            "buildspec.yml:4:5: env.variables.EMPTY: expected a text value, got an empty value; "
            "write EMPTY: \"\" for an empty value");
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  variables:\n    LIST: [a]\nphases:\n  build:\n"
                    "    commands: [make]\n"),
            "buildspec.yml:4:11: env.variables.LIST: expected a text value, got a list; quote the "
            "value to keep it as text");
}

TEST(BuildspecTest, VariableNamesMustBeShellNames) {
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  variables:\n    1BAD: x\nphases:\n  build:\n"
                    "    commands: [make]\n"),
            "buildspec.yml:4:5: env.variables.1BAD: '1BAD' is not a valid variable name; use "
            "letters, digits and _, not starting with a digit");
  EXPECT_THAT(ErrorOf("version: 0.2\nenv:\n  variables:\n    MY-VAR: x\nphases:\n  build:\n"
                      "    commands: [make]\n"),
              HasSubstr("'MY-VAR' is not a valid variable name"));
}

TEST(BuildspecTest, ReservedCodebuildPrefixRejected) {
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  variables:\n    CODEBUILD_BUILD_ID: x\nphases:\n"
                    "  build:\n    commands: [make]\n"),
            "buildspec.yml:4:5: env.variables.CODEBUILD_BUILD_ID: 'CODEBUILD_BUILD_ID' is "
            "reserved: names starting with CODEBUILD_ are set by Kiln (reference §1.4); rename "
            "the variable");
  EXPECT_THAT(ErrorOf("version: 0.2\nenv:\n  parameter-store:\n    CODEBUILD_X: /p\nphases:\n"
                      "  build:\n    commands: [make]\n"),
              StartsWith("buildspec.yml:4:5: env.parameter-store.CODEBUILD_X: 'CODEBUILD_X' is "
                         "reserved"));
}

TEST(BuildspecTest, AVariableMayBeReplacedByTheParameterStore) {
  // §1.4: a parameter-store value replaces a variable of the same name.
  Buildspec spec = ParseOk("version: 0.2\nenv:\n  variables:\n    TOKEN: x\n  parameter-store:\n"
                           "    TOKEN: /t\nphases:\n  build:\n    commands: [make]\n");
  EXPECT_THAT(spec.variables, ElementsAre(Pair("TOKEN", "x")));
  EXPECT_THAT(spec.parameter_store, ElementsAre(Pair("TOKEN", "/t")));
}

TEST(BuildspecTest, ShellMustBeBashOrBinSh) {
  EXPECT_EQ(
      ParseOk("version: 0.2\nenv:\n  shell: bash\nphases:\n  build:\n    commands: [a]\n").shell,
      "bash");
  EXPECT_EQ(
      ParseOk("version: 0.2\nenv:\n  shell: /bin/sh\nphases:\n  build:\n    commands: [a]\n").shell,
      "/bin/sh");
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  shell: zsh\nphases:\n  build:\n    commands: [a]\n"),
            "buildspec.yml:3:10: env.shell: unknown shell 'zsh'; allowed shells are bash, /bin/sh");
}

TEST(BuildspecTest, WindowsShellsAreNotSupported) {
  for (const char* shell : {"powershell.exe", "cmd.exe"}) {
    EXPECT_THAT(ErrorOf(std::string("version: 0.2\nenv:\n  shell: ") + shell +
                        "\nphases:\n  build:\n    commands: [a]\n"),
                HasSubstr("Windows shells are not supported"));
  }
}

TEST(BuildspecTest, ParameterStoreNamesValidated) {
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  parameter-store:\n    PW: my app/pw\nphases:\n"
                    "  build:\n    commands: [a]\n"),
            "buildspec.yml:4:9: env.parameter-store.PW: 'my app/pw' is not a valid parameter "
            "name; use characters A-Z a-z 0-9 _ . - / as in /my-app/db-password");
}

TEST(BuildspecTest, UnknownEnvKeyRejected) {
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  variable:\n    A: b\nphases:\n  build:\n"
                    "    commands: [a]\n"),
            "buildspec.yml:3:3: env.variable: unknown key 'variable'; allowed keys are shell, "
            "variables, parameter-store, exported-variables, secrets-manager, "
            "git-credential-helper (did you mean 'variables'?)");
}

TEST(BuildspecTest, ExportedVariablesMustBeAListOfNames) {
  Buildspec spec = ParseOk(
      "version: 0.2\nenv:\n  exported-variables:\n    - IMAGE_TAG\n"
      "    - CODEBUILD_BUILD_NUMBER\nphases:\n  build:\n    commands: [a]\n");
  EXPECT_THAT(spec.exported_variables, ElementsAre("IMAGE_TAG", "CODEBUILD_BUILD_NUMBER"));
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  exported-variables: IMAGE_TAG\nphases:\n  build:\n"
                    "    commands: [a]\n"),
            "buildspec.yml:3:23: env.exported-variables: expected a list of variable names, got "
            "the string 'IMAGE_TAG'; write each entry as a list item: - IMAGE_TAG");
}

TEST(BuildspecTest, AwsPrefixCannotBeExported) {
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  exported-variables:\n    - AWS_REGION\nphases:\n"
                    "  build:\n    commands: [a]\n"),
            "buildspec.yml:4:7: env.exported-variables[0]: 'AWS_REGION' cannot be exported: names "
            "starting with AWS_ are not exportable (reference §1.4)");
}

TEST(BuildspecTest, SecretsManagerIsValidated) {
  Buildspec spec = ParseOk(
      "version: 0.2\nenv:\n  secrets-manager:\n    DB: prod/db:password\n"
      "    ARN: arn:aws:secretsmanager:eu-west-1:123:secret:x-AbC:key::v1\nphases:\n"
      "  build:\n    commands: [a]\n");
  EXPECT_THAT(
      spec.secrets_manager,
      ElementsAre(Pair("DB", "prod/db:password"),
                  Pair("ARN", "arn:aws:secretsmanager:eu-west-1:123:secret:x-AbC:key::v1")));
  EXPECT_THAT(spec.warnings, IsEmpty());
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  secrets-manager:\n    DB: s:k:AWSCURRENT:v1\nphases:\n"
                    "  build:\n    commands: [a]\n"),
            "buildspec.yml:4:9: env.secrets-manager.DB: give version-stage or version-id, not both "
            "(reference §1.4)");
  EXPECT_THAT(ErrorOf("version: 0.2\nenv:\n  secrets-manager:\n    DB: a:b:c:d:e\nphases:\n"
                      "  build:\n    commands: [a]\n"),
              HasSubstr("is not a secret reference"));
}

TEST(BuildspecTest, GitCredentialHelperIsAYesNoFlag) {
  Buildspec yes = ParseOk(
      "version: 0.2\nenv:\n  git-credential-helper: yes\nphases:\n  build:\n"
      "    commands: [a]\n");
  EXPECT_TRUE(yes.git_credential_helper);
  EXPECT_THAT(yes.warnings, IsEmpty());
  Buildspec no = ParseOk(
      "version: 0.2\nenv:\n  git-credential-helper: no\nphases:\n  build:\n"
      "    commands: [a]\n");
  EXPECT_FALSE(no.git_credential_helper);
  EXPECT_THAT(no.warnings, IsEmpty());
  EXPECT_EQ(ErrorOf("version: 0.2\nenv:\n  git-credential-helper: maybe\nphases:\n  build:\n"
                    "    commands: [a]\n"),
            "buildspec.yml:3:26: env.git-credential-helper: 'maybe' is not a yes/no value; use "
            "yes or no");
}

TEST(BuildspecTest, Version01EnvironmentVariablesAreAccepted) {
  Buildspec spec = ParseOk(
      "version: 0.1\nenvironment_variables:\n  plaintext:\n    A: b\n"
      "phases:\n  build:\n    commands: [a]\n");
  EXPECT_THAT(spec.variables, ElementsAre(Pair("A", "b")));
  EXPECT_EQ(ErrorOf("version: 0.2\nenvironment_variables:\n  plaintext:\n    A: b\nphases:\n"
                    "  build:\n    commands: [a]\n"),
            "buildspec.yml:2:1: environment_variables: 'environment_variables' is the version 0.1 "
            "name; in version 0.2 use env.variables (reference §1.1)");
}

// ---- sections Kiln validates but does not act on ----

TEST(BuildspecTest, UnsupportedSectionsWarnAndSupportedOnesAreModelled) {
  Buildspec spec = ParseOk(R"(version: 0.2
proxy:
  upload-artifacts: yes
  logs: no
batch:
  fast-fail: false
  build-graph:
    - identifier: build1
      env:
        variables: {A: b}
        privileged-mode: true
    - identifier: build2
      depend-on: [build1]
phases:
  build:
    commands: [make]
reports:
  unit:
    files: ['**/*.xml']
    base-directory: reports
    file-format: junitxml
artifacts:
  files:
    - '**/*'
  base-directory: dist
  discard-paths: yes
  secondary-artifacts:
    docs:
      files: [docs/*]
cache:
  key: deps-$(codebuild-hash-files go.sum)
  paths:
    - /root/.cache/**/*
)");
  EXPECT_THAT(spec.warnings,
              ElementsAre("buildspec.yml:2:1: proxy: accepted but not yet supported by Kiln; the "
                          "proxy settings are ignored",
                          "buildspec.yml:5:1: batch: accepted but not yet supported by Kiln; the "
                          "build runs as a single build, not as a batch"));
  ASSERT_EQ(spec.reports.size(), 1u);
  EXPECT_EQ(spec.reports[0].name, "unit");
  EXPECT_EQ(spec.reports[0].file_format, "JUNITXML");
  EXPECT_EQ(spec.reports[0].base_directory, "reports");
  EXPECT_THAT(spec.reports[0].files, ElementsAre("**/*.xml"));
  ASSERT_TRUE(spec.artifacts.has_value());
  EXPECT_THAT(spec.artifacts->files, ElementsAre("**/*"));
  EXPECT_EQ(spec.artifacts->base_directory, "dist");
  EXPECT_TRUE(spec.artifacts->discard_paths);
  EXPECT_FALSE(spec.artifacts->enable_symlinks);
  EXPECT_EQ(spec.artifacts->line, 22);
  ASSERT_EQ(spec.secondary_artifacts.size(), 1u);
  EXPECT_EQ(spec.secondary_artifacts[0].identifier, "docs");
  EXPECT_THAT(spec.secondary_artifacts[0].files, ElementsAre("docs/*"));
  ASSERT_TRUE(spec.cache.has_value());
  EXPECT_EQ(spec.cache->key, "deps-$(codebuild-hash-files go.sum)");
  EXPECT_THAT(spec.cache->paths, ElementsAre("/root/.cache/**/*"));
  EXPECT_EQ(spec.cache->action, "");
}

TEST(BuildspecTest, ArtifactsRequireFiles) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nartifacts:\n"
                    "  base-directory: dist\n"),
            "buildspec.yml:6:3: artifacts: missing required key 'files'; artifacts need a files "
            "list, e.g. files: ['**/*'] (reference §1.10)");
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nartifacts:\n"
                    "  files: app.jar\n"),
            "buildspec.yml:6:10: artifacts.files: expected a list of paths, got the string "
            "'app.jar'; write each entry as a list item: - app.jar");
  EXPECT_THAT(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nartifacts:\n"
                      "  files: [a]\n  discard-path: yes\n"),
              StartsWith("buildspec.yml:7:3: artifacts.discard-path: unknown key 'discard-path'"));
}

TEST(BuildspecTest, CacheRequiresPaths) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\ncache:\n  key: k\n"),
            "buildspec.yml:6:3: cache: missing required key 'paths'; list what to cache, e.g. "
            "paths: ['/root/.m2/**/*']");
  EXPECT_THAT(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\ncache:\n"
                      "  paths: [x]\n  action: both\n"),
              HasSubstr("cache.action: 'both' is not a cache action; use restore or save"));
}

TEST(BuildspecTest, ReportsRequireFilesAndAKnownFormat) {
  EXPECT_THAT(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nreports:\n  unit:\n"
                      "    base-directory: r\n"),
              StartsWith("buildspec.yml:7:5: reports.unit: missing required key 'files'"));
  EXPECT_THAT(
      ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nreports:\n  unit:\n"
              "    files: [x]\n    file-format: XML\n"),
      StartsWith("buildspec.yml:8:18: reports.unit.file-format: unknown file-format 'XML'"));
}

TEST(BuildspecTest, BatchTasksNeedIdentifiers) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nbatch:\n  build-list:\n"
                    "    - buildspec: b.yml\n"),
            "buildspec.yml:7:7: batch.build-list[0]: missing required key 'identifier'; every "
            "batch task needs an identifier");
  EXPECT_THAT(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nbatch:\n  build-list:\n"
                      "    - identifier: x\n      depend-on: [y]\n"),
              StartsWith("buildspec.yml:8:7: batch.build-list[0].depend-on: unknown key "
                         "'depend-on'"));
}

TEST(BuildspecTest, ProxyValuesMustBeYesOrNo) {
  EXPECT_EQ(ErrorOf("version: 0.2\nphases:\n  build:\n    commands: [a]\nproxy:\n  logs: 1\n"),
            "buildspec.yml:6:9: proxy.logs: '1' is not a yes/no value; use yes or no");
}

// ---- helpers ----

TEST(BuildspecTest, EnvironmentVariableNameRule) {
  EXPECT_TRUE(IsValidEnvironmentVariableName("APP_ENV"));
  EXPECT_TRUE(IsValidEnvironmentVariableName("_x1"));
  EXPECT_FALSE(IsValidEnvironmentVariableName(""));
  EXPECT_FALSE(IsValidEnvironmentVariableName("1X"));
  EXPECT_FALSE(IsValidEnvironmentVariableName("A-B"));
  EXPECT_FALSE(IsValidEnvironmentVariableName("CODEBUILD_SRC_DIR"));
}

TEST(BuildspecTest, ParameterNameRule) {
  EXPECT_TRUE(IsValidParameterName("db-password"));
  EXPECT_TRUE(IsValidParameterName("/flask-app/docker-credentials/username"));
  EXPECT_TRUE(IsValidParameterName("/a.b_c"));
  EXPECT_FALSE(IsValidParameterName(""));
  EXPECT_FALSE(IsValidParameterName("a/b"));
  EXPECT_FALSE(IsValidParameterName("/a//b"));
  EXPECT_FALSE(IsValidParameterName("/a/"));
  EXPECT_FALSE(IsValidParameterName("/a/../b"));
  EXPECT_FALSE(IsValidParameterName("/a b"));
  EXPECT_FALSE(IsValidParameterName(std::string(2049, 'a')));
}

TEST(BuildspecTest, ParameterStoreVariablesCannotBeExported) {
  auto b = ParseBuildspec(R"(version: 0.2
env:
  exported-variables:
    - TOKEN
  parameter-store:
    TOKEN: /ci/token
phases:
  build:
    commands:
      - echo hi
)", "buildspec.yml");
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.status().message()), ::testing::HasSubstr("buildspec.yml:4:7"));
  EXPECT_THAT(std::string(b.status().message()), ::testing::HasSubstr("cannot be exported"));
}

}  // namespace
}  // namespace kiln::common
