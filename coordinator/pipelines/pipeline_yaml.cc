// pipeline.yaml -> kiln.v1.Pipeline. The rules live in FindPipelineViolation, shared by the YAML
// parser (which maps the violation's field path back to the YAML position) and ValidatePipeline.
#include "coordinator/pipelines/pipeline_yaml.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"
#include "nlohmann/json.hpp"

namespace kiln::coordinator {
namespace {

using ::absl::StrCat;
using ::kiln::common::yaml::Describe;
using ::kiln::common::yaml::Entry;
using ::kiln::common::yaml::Ref;
using ::kiln::v1::Pipeline;
using ::kiln::v1::PipelineAction;
using ::kiln::v1::PipelineStage;

// Rule texts (§3.1 unless marked otherwise); every violation message ends with one.
constexpr char kRuleMinStages[] = "§3.1: a pipeline has at least 2 stages";
constexpr char kRuleFirstStageOnlySource[] = "§3.1: the first stage holds only source actions";
constexpr char kRuleFirstStageHasSource[] = "§3.1: the first stage holds at least one source action";
constexpr char kRuleNoSourceElsewhere[] = "§3.1: no stage other than the first holds a source action";
constexpr char kRuleNonSourceAction[] = "§3.1: at least one stage has a non-source action";
constexpr char kRuleStageHasAction[] = "every stage holds at least one action";
constexpr char kRuleUniqueStageNames[] = "§3.1: stage names are unique within the pipeline";
constexpr char kRuleUniqueActionNames[] = "§3.1: action names are unique within a stage";
constexpr char kRuleRunOrder[] = "§3.1: run_order is a positive integer, default 1";
constexpr char kRuleUniqueOutputs[] = "§3.1: output artifact names are unique within the pipeline";
constexpr char kRuleArtifactCounts[] =
    "§3.1: artifact counts per category: Source 0 in/1 out, Build and Test 1..5 in/0..5 out, "
    "Approval 0 in/0 out, Deploy 1 in/0 out";
constexpr char kRuleInputsProduced[] =
    "§3.1: an input artifact is the output of an earlier action, in an earlier stage or with a "
    "lower run_order in the same stage";
constexpr char kRuleUniqueNamespaces[] = "§3.2: namespaces are unique within the pipeline";
constexpr char kRuleNamespaceNotArtifact[] =
    "§3.2: a namespace must not collide with an artifact name";
constexpr char kRuleReservedNamespace[] = "§3.2: the namespace codepipeline is reserved";
constexpr char kRuleDeployInput[] =
    "Kiln: a Deploy action deploys a build's artifact, so its input is a Build or Test output";

constexpr size_t kMaxNameLength = 100;
constexpr int kMaxArtifacts = 5;

std::string WithRule(const std::string& problem, const char* rule) {
  return StrCat(problem, " (", rule, ")");
}

bool IsNameChar(char c, std::string_view extra) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string::npos;
}

// "" if `name` is 1..100 characters of A-Z a-z 0-9 and `extra`.
std::string CheckName(const std::string& what, const std::string& name, std::string_view extra) {
  if (name.empty()) return StrCat("missing; give the ", what, " a name");
  bool ok = name.size() <= kMaxNameLength &&
            std::all_of(name.begin(), name.end(), [&](char c) { return IsNameChar(c, extra); });
  if (ok) return "";
  std::string allowed;
  for (char c : extra) absl::StrAppend(&allowed, " ", std::string(1, c));
  return StrCat("'", name.substr(0, 40), "' is not a valid ", what, " name; use 1..100 characters of ",
                "A-Z a-z 0-9", allowed);
}

const std::vector<std::string>& Categories() {
  static const auto* const kCategories =
      new std::vector<std::string>{"Source", "Build", "Test", "Approval", "Deploy"};
  return *kCategories;
}

bool IsBuildLike(const std::string& category) { return category == "Build" || category == "Test"; }

// "a Build", "an Approval".
std::string WithArticle(const std::string& category) {
  return StrCat(category == "Approval" ? "an " : "a ", category);
}

int RunOrder(const PipelineAction& a) { return a.run_order() == 0 ? 1 : a.run_order(); }

struct ConfigKeys {
  std::vector<std::string> required;
  std::vector<std::string> optional;
};

const ConfigKeys& KeysFor(const std::string& category) {
  static const auto* const kKeys = new std::map<std::string, ConfigKeys>{
      {"Source", {{"project"}, {}}},
      {"Build", {{"project"}, {"environment_variables"}}},
      {"Test", {{"project"}, {"environment_variables"}}},
      {"Approval", {{}, {"summary"}}},
      {"Deploy", {{"application", "deployment_group"}, {}}},
  };
  return kKeys->at(category);
}

struct Counts {
  int min_in, max_in, min_out, max_out;
};

Counts CountsFor(const std::string& category) {
  if (category == "Source") return {0, 0, 1, 1};
  if (IsBuildLike(category)) return {1, kMaxArtifacts, 0, kMaxArtifacts};
  if (category == "Deploy") return {1, 1, 0, 0};
  return {0, 0, 0, 0};  // Approval
}

std::string ActionPath(int s, int a) { return StrCat("stages[", s, "].actions[", a, "]"); }

std::optional<PipelineViolation> V(std::string path, std::string message) {
  return PipelineViolation{std::move(path), std::move(message)};
}

std::optional<PipelineViolation> CheckConfiguration(const PipelineAction& action,
                                                    const std::string& path) {
  const ConfigKeys& keys = KeysFor(action.category());
  std::vector<std::string> allowed = keys.required;
  allowed.insert(allowed.end(), keys.optional.begin(), keys.optional.end());
  std::map<std::string, std::string> config(action.configuration().begin(),
                                            action.configuration().end());
  for (const auto& [key, value] : config) {
    std::string key_path = StrCat(path, ".configuration.", key);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return V(key_path, StrCat("unknown configuration key '", key, "' for ", WithArticle(action.category()),
                                " action; allowed: ",
                                allowed.empty() ? "none" : absl::StrJoin(allowed, ", ")));
    }
    if (key == "environment_variables") {
      if (auto vars = ParseBuildEnvironmentVariables(value); !vars.ok()) {
        return V(key_path, std::string(vars.status().message()));
      }
    }
  }
  for (const std::string& key : keys.required) {
    auto it = config.find(key);
    if (it == config.end() || it->second.empty()) {
      return V(StrCat(path, ".configuration"),
               StrCat(WithArticle(action.category()), " action needs configuration key '", key, "'"));
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::vector<kiln::v1::EnvironmentVariable>> ParseBuildEnvironmentVariables(
    std::string_view json) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_array()) {
    return absl::InvalidArgumentError(
        "environment_variables must be a JSON list such as "
        "[{\"name\": \"COMMIT\", \"value\": \"#{SourceVariables.CommitId}\"}]");
  }
  std::vector<kiln::v1::EnvironmentVariable> vars;
  std::set<std::string> names;
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& item = doc[i];
    const std::string where = StrCat("environment_variables[", i, "]");
    if (!item.is_object() || !item.contains("name") || !item["name"].is_string() ||
        !item.contains("value") || !item["value"].is_string()) {
      return absl::InvalidArgumentError(
          StrCat(where, " must be an object with string fields name and value"));
    }
    for (const auto& [key, unused] : item.items()) {
      if (key != "name" && key != "value" && key != "type") {
        return absl::InvalidArgumentError(
            StrCat(where, ": unknown field '", key, "'; allowed: name, value, type"));
      }
    }
    kiln::v1::EnvironmentVariable var;
    var.set_name(item["name"].get<std::string>());
    var.set_value(item["value"].get<std::string>());
    std::string type = "PLAINTEXT";
    if (item.contains("type")) {
      if (!item["type"].is_string()) {
        return absl::InvalidArgumentError(StrCat(where, ".type must be a string"));
      }
      type = item["type"].get<std::string>();
    }
    if (type == "PLAINTEXT") {
      var.set_type(kiln::v1::EnvironmentVariable::PLAINTEXT);
    } else if (type == "PARAMETER_STORE") {
      var.set_type(kiln::v1::EnvironmentVariable::PARAMETER_STORE);
    } else {
      return absl::InvalidArgumentError(
          StrCat(where, ".type '", type, "' is not PLAINTEXT or PARAMETER_STORE"));
    }
    if (var.name().empty()) return absl::InvalidArgumentError(StrCat(where, ".name is empty"));
    if (!names.insert(var.name()).second) {
      return absl::InvalidArgumentError(
          StrCat(where, ": variable '", var.name(), "' is defined more than once"));
    }
    vars.push_back(std::move(var));
  }
  return vars;
}

std::optional<PipelineViolation> FindPipelineViolation(const Pipeline& p) {
  std::string problem;
  if (!(problem = CheckName("pipeline", p.name(), ".@_-")).empty()) return V("name", problem);
  const std::string& mode = p.execution_mode();
  if (!mode.empty() && mode != "SUPERSEDED" && mode != "QUEUED" && mode != "PARALLEL") {
    return V("execution_mode", StrCat("'", mode, "' is not an execution mode; use SUPERSEDED, "
                                      "QUEUED or PARALLEL (§3.3)"));
  }
  for (int s = 0; s < p.stages_size(); ++s) {
    const PipelineStage& stage = p.stages(s);
    const std::string sp = StrCat("stages[", s, "]");
    if (!(problem = CheckName("stage", stage.name(), ".@_-")).empty()) {
      return V(StrCat(sp, ".name"), problem);
    }
    for (int a = 0; a < stage.actions_size(); ++a) {
      const PipelineAction& action = stage.actions(a);
      const std::string ap = ActionPath(s, a);
      if (!(problem = CheckName("action", action.name(), ".@_-")).empty()) {
        return V(StrCat(ap, ".name"), problem);
      }
      const auto& cats = Categories();
      if (std::find(cats.begin(), cats.end(), action.category()) == cats.end()) {
        return V(StrCat(ap, ".category"),
                 action.category().empty()
                     ? StrCat("missing; use one of ", absl::StrJoin(cats, ", "))
                     : StrCat("'", action.category(), "' is not a category Kiln runs; use one of ",
                              absl::StrJoin(cats, ", "), " (case-sensitive)"));
      }
    }
  }

  if (p.stages_size() < 2) {
    return V("stages", WithRule(StrCat("the pipeline has ", p.stages_size(),
                                       p.stages_size() == 1 ? " stage" : " stages"),
                                kRuleMinStages));
  }
  const PipelineStage& first = p.stages(0);
  for (int a = 0; a < first.actions_size(); ++a) {
    if (first.actions(a).category() != "Source") {
      return V(StrCat(ActionPath(0, a), ".category"),
               WithRule(StrCat("action '", first.actions(a).name(), "' of the first stage is a ",
                               first.actions(a).category(), " action"),
                        kRuleFirstStageOnlySource));
    }
  }
  if (first.actions_size() == 0) {
    return V("stages[0].actions",
             WithRule(StrCat("the first stage '", first.name(), "' has no actions"),
                      kRuleFirstStageHasSource));
  }
  bool non_source = false;
  for (int s = 1; s < p.stages_size(); ++s) {
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      if (p.stages(s).actions(a).category() == "Source") {
        return V(StrCat(ActionPath(s, a), ".category"),
                 WithRule(StrCat("action '", p.stages(s).actions(a).name(), "' of stage '",
                                 p.stages(s).name(), "' is a source action"),
                          kRuleNoSourceElsewhere));
      }
      non_source = true;
    }
  }
  if (!non_source) {
    return V("stages", WithRule("every action of the pipeline is a source action",
                                kRuleNonSourceAction));
  }
  for (int s = 1; s < p.stages_size(); ++s) {
    if (p.stages(s).actions_size() == 0) {
      return V(StrCat("stages[", s, "].actions"),
               WithRule(StrCat("stage '", p.stages(s).name(), "' has no actions"),
                        kRuleStageHasAction));
    }
  }

  std::map<std::string, int> stage_names;
  for (int s = 0; s < p.stages_size(); ++s) {
    auto [it, inserted] = stage_names.emplace(p.stages(s).name(), s);
    if (!inserted) {
      return V(StrCat("stages[", s, "].name"),
               WithRule(StrCat("stage name '", p.stages(s).name(), "' is also used by stages[",
                               it->second, "]"),
                        kRuleUniqueStageNames));
    }
  }
  for (int s = 0; s < p.stages_size(); ++s) {
    std::map<std::string, int> names;
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      const PipelineAction& action = p.stages(s).actions(a);
      auto [it, inserted] = names.emplace(action.name(), a);
      if (!inserted) {
        return V(StrCat(ActionPath(s, a), ".name"),
                 WithRule(StrCat("action name '", action.name(), "' is also used by ",
                                 ActionPath(s, it->second), " in stage '", p.stages(s).name(), "'"),
                          kRuleUniqueActionNames));
      }
    }
  }

  for (int s = 0; s < p.stages_size(); ++s) {
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      const PipelineAction& action = p.stages(s).actions(a);
      if (auto v = CheckConfiguration(action, ActionPath(s, a))) return v;
      if (action.run_order() < 0) {
        return V(StrCat(ActionPath(s, a), ".run_order"),
                 WithRule(StrCat(action.run_order(), " is not positive"), kRuleRunOrder));
      }
    }
  }

  // Output artifacts: valid and unique. producer: artifact -> (stage, action).
  std::map<std::string, std::pair<int, int>> producer;
  for (int s = 0; s < p.stages_size(); ++s) {
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      const PipelineAction& action = p.stages(s).actions(a);
      for (int i = 0; i < action.output_artifacts_size(); ++i) {
        const std::string& name = action.output_artifacts(i);
        const std::string path = StrCat(ActionPath(s, a), ".output_artifacts[", i, "]");
        if (!(problem = CheckName("artifact", name, "_-")).empty()) return V(path, problem);
        auto [it, inserted] = producer.emplace(name, std::make_pair(s, a));
        if (!inserted) {
          return V(path, WithRule(StrCat("output artifact '", name, "' is also produced by ",
                                         ActionPath(it->second.first, it->second.second)),
                                  kRuleUniqueOutputs));
        }
      }
    }
  }
  for (int s = 0; s < p.stages_size(); ++s) {
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      const PipelineAction& action = p.stages(s).actions(a);
      const Counts c = CountsFor(action.category());
      auto range = [](int lo, int hi) { return lo == hi ? StrCat(lo) : StrCat(lo, "..", hi); };
      if (action.input_artifacts_size() < c.min_in || action.input_artifacts_size() > c.max_in) {
        return V(StrCat(ActionPath(s, a), ".input_artifacts"),
                 WithRule(StrCat(WithArticle(action.category()), " action takes ", range(c.min_in, c.max_in),
                                 " input artifacts, '", action.name(), "' has ",
                                 action.input_artifacts_size()),
                          kRuleArtifactCounts));
      }
      if (action.output_artifacts_size() < c.min_out ||
          action.output_artifacts_size() > c.max_out) {
        return V(StrCat(ActionPath(s, a), ".output_artifacts"),
                 WithRule(StrCat(WithArticle(action.category()), " action has ",
                                 range(c.min_out, c.max_out), " output artifacts, '", action.name(),
                                 "' has ", action.output_artifacts_size()),
                          kRuleArtifactCounts));
      }
    }
  }
  for (int s = 0; s < p.stages_size(); ++s) {
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      const PipelineAction& action = p.stages(s).actions(a);
      for (int i = 0; i < action.input_artifacts_size(); ++i) {
        const std::string& name = action.input_artifacts(i);
        const std::string path = StrCat(ActionPath(s, a), ".input_artifacts[", i, "]");
        auto it = producer.find(name);
        if (it == producer.end()) {
          return V(path, WithRule(StrCat("no action outputs an artifact named '", name, "'"),
                                  kRuleInputsProduced));
        }
        const auto [ps, pa] = it->second;
        const PipelineAction& prod = p.stages(ps).actions(pa);
        bool earlier = ps < s || (ps == s && RunOrder(prod) < RunOrder(action));
        if (!earlier) {
          return V(path, WithRule(StrCat("'", name, "' is produced by ", ActionPath(ps, pa), " ('",
                                         prod.name(), "'), which does not run before '",
                                         action.name(), "'"),
                                  kRuleInputsProduced));
        }
        if (action.category() == "Deploy" && !IsBuildLike(prod.category())) {
          return V(path, WithRule(StrCat("'", name, "' is the output of ", prod.category(),
                                         " action '", prod.name(), "'"),
                                  kRuleDeployInput));
        }
      }
    }
  }
  std::map<std::string, std::string> namespaces;  // namespace -> path of its action
  for (int s = 0; s < p.stages_size(); ++s) {
    for (int a = 0; a < p.stages(s).actions_size(); ++a) {
      const std::string& ns = p.stages(s).actions(a).namespace_();
      if (ns.empty()) continue;
      const std::string path = StrCat(ActionPath(s, a), ".namespace");
      if (!(problem = CheckName("namespace", ns, "@_-")).empty()) return V(path, problem);
      if (ns == "codepipeline") {
        return V(path, WithRule("'codepipeline' cannot be declared", kRuleReservedNamespace));
      }
      auto [it, inserted] = namespaces.emplace(ns, ActionPath(s, a));
      if (!inserted) {
        return V(path, WithRule(StrCat("namespace '", ns, "' is also declared by ", it->second),
                                kRuleUniqueNamespaces));
      }
      if (producer.count(ns) > 0) {
        return V(path, WithRule(StrCat("namespace '", ns, "' is also the name of an artifact of ",
                                       ActionPath(producer[ns].first, producer[ns].second)),
                                kRuleNamespaceNotArtifact));
      }
    }
  }
  return std::nullopt;
}

absl::Status ValidatePipeline(const Pipeline& pipeline) {
  std::optional<PipelineViolation> v = FindPipelineViolation(pipeline);
  if (!v) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("pipeline", v->path.empty() ? "" : ".", v->path, ": ", v->message));
}

void NormalizePipeline(Pipeline& pipeline) {
  if (pipeline.execution_mode().empty()) pipeline.set_execution_mode("SUPERSEDED");
  for (PipelineStage& stage : *pipeline.mutable_stages()) {
    for (PipelineAction& action : *stage.mutable_actions()) {
      if (action.run_order() == 0) action.set_run_order(1);
    }
  }
}

namespace {

// ---- YAML access ----

class Parser : public common::yaml::ErrorReporter {
 public:
  explicit Parser(std::string_view file) : ErrorReporter(file) {}

  absl::StatusOr<Pipeline> Run(const YAML::Node& root);

  // The position of `path`, or of its nearest recorded ancestor.
  YAML::Mark MarkOf(std::string path) const {
    for (;;) {
      if (auto it = marks_.find(path); it != marks_.end()) return it->second;
      size_t cut = path.find_last_of(".[");
      if (cut == std::string::npos) return root_mark_;
      path.resize(cut);
    }
  }

 private:
  absl::StatusOr<std::vector<Entry>> Map(const Ref& r, std::string_view expected);
  absl::StatusOr<std::string> Str(const Ref& r, std::string_view expected = "a string") const;
  absl::StatusOr<std::vector<Ref>> List(const Ref& r, std::string_view expected);
  absl::Status Unknown(const Entry& e, const std::vector<std::string>& allowed) const {
    return Error(e.key_mark, e.value.path,
                 StrCat("unknown key '", e.key, "'; allowed keys are ",
                        absl::StrJoin(allowed, ", ")));
  }
  absl::StatusOr<std::vector<std::string>> Names(const Ref& r, std::string_view what);
  absl::Status ParseStage(const Ref& r, PipelineStage* stage);
  absl::Status ParseAction(const Ref& r, PipelineAction* action);

  std::map<std::string, YAML::Mark> marks_;
  YAML::Mark root_mark_;
};

absl::StatusOr<std::vector<Entry>> Parser::Map(const Ref& r, std::string_view expected) {
  if (!r.node.IsMap()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Entry> entries;
  std::map<std::string, int> seen;
  for (auto it = r.node.begin(); it != r.node.end(); ++it) {
    YAML::Node k = it->first;
    YAML::Node v = it->second;
    if (!k.IsScalar()) return Error(k.Mark(), r.path, StrCat("expected a key, got ", Describe(k)));
    std::string key = k.Scalar();
    std::string path = r.path.empty() ? key : StrCat(r.path, ".", key);
    auto [pos, inserted] = seen.emplace(key, k.Mark().line + 1);
    if (!inserted) {
      return Error(k.Mark(), path,
                   StrCat("duplicate key '", key, "' (first on line ", pos->second, ")"));
    }
    Entry e{key, k.Mark(), Ref{v, v.IsNull() ? k.Mark() : v.Mark(), path}};
    marks_[path] = e.value.mark;
    entries.push_back(std::move(e));
  }
  return entries;
}

absl::StatusOr<std::string> Parser::Str(const Ref& r, std::string_view expected) const {
  if (!r.node.IsScalar()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  return r.node.Scalar();
}

absl::StatusOr<std::vector<Ref>> Parser::List(const Ref& r, std::string_view expected) {
  if (!r.node.IsSequence()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Ref> items;
  for (size_t i = 0; i < r.node.size(); ++i) {
    YAML::Node item = r.node[i];
    Ref ref{item, item.IsNull() ? r.mark : item.Mark(), StrCat(r.path, "[", i, "]")};
    marks_[ref.path] = ref.mark;
    items.push_back(std::move(ref));
  }
  return items;
}

absl::StatusOr<std::vector<std::string>> Parser::Names(const Ref& r, std::string_view what) {
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> items,
                        List(r, StrCat("a list of ", std::string(what), " names")));
  std::vector<std::string> names;
  for (const Ref& item : items) {
    KILN_ASSIGN_OR_RETURN(std::string name, Str(item, StrCat("an ", std::string(what), " name")));
    names.push_back(std::move(name));
  }
  return names;
}

absl::StatusOr<Pipeline> Parser::Run(const YAML::Node& root) {
  static const std::vector<std::string> kKeys = {"name", "execution_mode", "stages"};
  root_mark_ = root.Mark();
  if (!root.IsMap()) {
    return Error(root.Mark(), "(top level)",
                 StrCat("expected a map with name and stages, got ", Describe(root)));
  }
  Pipeline p;
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(Ref{root, root.Mark(), ""}, "a map"));
  bool have_name = false, have_stages = false;
  for (const Entry& e : entries) {
    if (e.key == "name") {
      have_name = true;
      KILN_ASSIGN_OR_RETURN(*p.mutable_name(), Str(e.value, "a pipeline name"));
    } else if (e.key == "execution_mode") {
      KILN_ASSIGN_OR_RETURN(std::string mode, Str(e.value, "SUPERSEDED, QUEUED or PARALLEL"));
      p.set_execution_mode(absl::AsciiStrToUpper(mode));
    } else if (e.key == "stages") {
      have_stages = true;
      KILN_ASSIGN_OR_RETURN(std::vector<Ref> stages, List(e.value, "a list of stages"));
      for (const Ref& s : stages) KILN_RETURN_IF_ERROR(ParseStage(s, p.add_stages()));
    } else {
      return Unknown(e, kKeys);
    }
  }
  if (!have_name) {
    return Error(root.Mark(), "name", "missing; give the pipeline a name such as flask-app");
  }
  if (!have_stages) {
    return Error(root.Mark(), "stages",
                 WithRule("missing; list the stages, a Source stage first", kRuleMinStages));
  }
  return p;
}

absl::Status Parser::ParseStage(const Ref& r, PipelineStage* stage) {
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(r, "a stage {name, actions}"));
  bool have_name = false;
  for (const Entry& e : entries) {
    if (e.key == "name") {
      have_name = true;
      KILN_ASSIGN_OR_RETURN(*stage->mutable_name(), Str(e.value, "a stage name"));
    } else if (e.key == "actions") {
      KILN_ASSIGN_OR_RETURN(std::vector<Ref> actions, List(e.value, "a list of actions"));
      for (const Ref& a : actions) KILN_RETURN_IF_ERROR(ParseAction(a, stage->add_actions()));
    } else {
      return Unknown(e, {"name", "actions"});
    }
  }
  if (!have_name) return Error(r.mark, StrCat(r.path, ".name"), "missing; give the stage a name");
  return absl::OkStatus();
}

absl::Status Parser::ParseAction(const Ref& r, PipelineAction* action) {
  static const std::vector<std::string> kKeys = {
      "name",           "category",         "configuration", "input_artifacts",
      "output_artifacts", "namespace", "run_order"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                        Map(r, "an action {name, category, configuration, ...}"));
  action->set_run_order(1);
  bool have_name = false, have_category = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "name") {
      have_name = true;
      KILN_ASSIGN_OR_RETURN(*action->mutable_name(), Str(v, "an action name"));
    } else if (e.key == "category") {
      have_category = true;
      KILN_ASSIGN_OR_RETURN(*action->mutable_category(), Str(v, "an action category"));
    } else if (e.key == "configuration") {
      if (v.node.IsNull()) continue;  // "configuration:" with nothing: none
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> config, Map(v, "a map of key: value entries"));
      for (const Entry& c : config) {
        if (c.value.node.IsNull()) {
          return Error(c.value, StrCat("expected a text value, got an empty value"));
        }
        KILN_ASSIGN_OR_RETURN(std::string value, Str(c.value, "a text value"));
        (*action->mutable_configuration())[c.key] = value;
      }
    } else if (e.key == "input_artifacts" || e.key == "output_artifacts") {
      if (v.node.IsNull()) continue;
      KILN_ASSIGN_OR_RETURN(std::vector<std::string> names, Names(v, "artifact"));
      auto* field = e.key == "input_artifacts" ? action->mutable_input_artifacts()
                                               : action->mutable_output_artifacts();
      for (std::string& n : names) field->Add(std::move(n));
    } else if (e.key == "namespace") {
      KILN_ASSIGN_OR_RETURN(*action->mutable_namespace_(), Str(v, "a namespace"));
    } else if (e.key == "run_order") {
      KILN_ASSIGN_OR_RETURN(std::string text, Str(v, "a whole number"));
      int32_t order = 0;
      if (!absl::SimpleAtoi(text, &order)) {
        return Error(v, StrCat("expected a whole number, got '", text, "'"));
      }
      if (order < 1) return Error(v, WithRule(StrCat(order, " is not positive"), kRuleRunOrder));
      action->set_run_order(order);
    } else {
      return Unknown(e, kKeys);
    }
  }
  if (!have_name) return Error(r.mark, StrCat(r.path, ".name"), "missing; give the action a name");
  if (!have_category) {
    return Error(r.mark, StrCat(r.path, ".category"),
                 StrCat("missing; use one of ", absl::StrJoin(Categories(), ", ")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Pipeline> ParsePipelineYaml(std::string_view yaml_text, std::string_view file_name) {
  Parser parser(file_name);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(parser.Where(e.mark), ": YAML syntax error: ", e.msg));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return absl::InvalidArgumentError(
        StrCat(parser.Where(YAML::Mark()), ": the pipeline file is empty; it needs name and stages"));
  }
  if (docs.size() > 1) {
    return parser.Error(docs[1].Mark(), "(document 2)",
                        "a pipeline file is one YAML document; remove the second '---' section");
  }
  absl::StatusOr<Pipeline> pipeline;
  try {
    pipeline = parser.Run(docs[0]);
  } catch (const YAML::Exception& e) {
    // Not expected: all access above checks node types first.
    return absl::InvalidArgumentError(StrCat(parser.Where(e.mark), ": ", e.msg));
  }
  if (!pipeline.ok()) return pipeline.status();
  if (std::optional<PipelineViolation> v = FindPipelineViolation(*pipeline)) {
    return parser.Error(parser.MarkOf(v->path), v->path.empty() ? "(top level)" : v->path,
                        v->message);
  }
  NormalizePipeline(*pipeline);
  return pipeline;
}

}  // namespace kiln::coordinator
