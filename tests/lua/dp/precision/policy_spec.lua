-- Specs for dp.precision.policy: presets, later rules overriding earlier ones, partial rules,
-- errors naming the rule, field and expected values, and rules resolved on a real BERT's names.
local precision = require "dp.precision"
local nn = require "dp.nn"

local tiny = { vocab_size = 20, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
               intermediate_size = 24, max_position_embeddings = 8, type_vocab_size = 2, num_labels = 3,
               hidden_dropout_prob = 0, attention_probs_dropout_prob = 0 }

describe("dp.precision.policy", function()
  it("is dp.precision", function()
    assert.are.equal(precision, require("dp").precision)
  end)

  it("has the presets of the contract", function()
    local p = precision.presets
    assert.are.same({ "fp32", "fp32" }, { p.fp32.params, p.fp32.compute })
    assert.are.same({ "bf16", "bf16" }, { p.bf16.params, p.bf16.compute })
    assert.are.same({ "fp32", "bf16" }, { p["mixed-bf16"].params, p["mixed-bf16"].compute })
    assert.are.same({ "fp32", "f16", "dynamic" },
                    { p["mixed-f16"].params, p["mixed-f16"].compute, p["mixed-f16"].loss_scale })
    assert.are.same({ history = 16, margin = 0, scaling = "auto" }, p.fp8.fp8)
    for _, v in pairs(p) do assert.is_false(v.stochastic_rounding) end
  end)

  it("lets later rules override earlier ones", function()
    local pol = precision.policy("mixed-bf16", { { "LayerNorm", "fp32" }, { "embeddings%.LayerNorm", "bf16" } })
    local r = pol:rule_for("bert.embeddings.LayerNorm")
    assert.are.same({ "bf16", "bf16" }, { r.params, r.compute })
    r = pol:rule_for("bert.encoder.layer.0.output.LayerNorm")
    assert.are.same({ "fp32", "fp32" }, { r.params, r.compute })
    r = pol:rule_for("bert.encoder.layer.0.output.dense")
    assert.are.same({ "fp32", "bf16" }, { r.params, r.compute })
    -- add() appends a rule that wins over both
    pol:add("LayerNorm$", { compute = "f16" })
    r = pol:rule_for("bert.embeddings.LayerNorm")
    assert.are.same({ "bf16", "f16" }, { r.params, r.compute })
  end)

  it("merges partial rules field by field, fp8 settings included", function()
    local pol = precision.policy("mixed-bf16", {
      { "attention", { compute = "fp8" } },
      { "query", { fp8 = { history = 4 }, stochastic_rounding = true } },
      { "key", { preset = "bf16", loss_scale = "dynamic" } },
    })
    local q = pol:rule_for("bert.encoder.layer.1.attention.self.query")
    assert.are.same({ "fp32", "fp8", true }, { q.params, q.compute, q.stochastic_rounding })
    assert.are.same({ history = 4, margin = 0, scaling = "auto" }, q.fp8)
    local v = pol:rule_for("bert.encoder.layer.1.attention.self.value")
    assert.are.same({ "fp32", "fp8", false }, { v.params, v.compute, v.stochastic_rounding })
    assert.are.equal(16, v.fp8.history)
    local k = pol:rule_for("bert.encoder.layer.1.attention.self.key")   -- preset replaces, then fields
    assert.are.same({ "bf16", "bf16", "dynamic" }, { k.params, k.compute, k.loss_scale })
    local d = precision.policy({ compute = "f16" }):rule_for("x")      -- partial default over fp32
    assert.are.same({ "fp32", "f16" }, { d.params, d.compute })
  end)

  it("names the rule, the field and what was expected in errors", function()
    assert.error_matches(function() precision.policy("fp32", { { "a", "fp32" }, { "x", "mixed-bf8" } }) end,
      "rule 2 ('x'): unknown preset 'mixed-bf8' (expected one of bf16, fp32, fp8, mixed-bf16, mixed-f16)", nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "x", { comptue = "bf16" } } }) end,
      "rule 1 ('x'): unknown field 'comptue' (expected preset, params, compute, loss_scale, stochastic_rounding, fp8)",
      nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "x", { compute = "fp64" } } }) end,
      "rule 1 ('x'): field 'compute' is fp64, expected one of fp32, bf16, f16, fp8", nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "x", { params = "fp8" } } }) end,
      "rule 1 ('x'): field 'params' is fp8, expected one of fp32, bf16, f16", nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "x", { fp8 = { scaling = "global" } } } }) end,
      "rule 1 ('x'): field 'fp8.scaling' is global, expected auto, delayed, per_example", nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "x", { fp8 = { history = 0 } } } }) end,
      "rule 1 ('x'): field 'fp8.history' is 0, expected a positive integer", nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "x", { stochastic_rounding = 1 } } }) end,
      "field 'stochastic_rounding' is 1, expected true or false", nil, true)
    assert.error_matches(function() precision.policy("half") end,
      "the default rule: unknown preset 'half'", nil, true)
    assert.error_matches(function() precision.policy("fp32", { { "[x", "bf16" } }) end,
      "rule 1 ('[x'): malformed pattern", nil, true)
    assert.error_matches(function() precision.policy("fp32"):add("y", 3) end,
      "rule 1 ('y'): expected a preset name or a table of fields, got number", nil, true)
  end)

  it("resolves 'mixed-bf16 but LayerNorm, embeddings and classifier fp32' on BERT's module names", function()
    local m = nn.BertForSequenceClassification(tiny)
    local pol = precision.policy("mixed-bf16",
      { { "LayerNorm", "fp32" }, { "embeddings", "fp32" }, { "^classifier$", "fp32" } })
    local seen = 0
    for _, e in ipairs(m:named_modules()) do
      local want_fp32 = e.name:find("LayerNorm", 1, true) or e.name:find("embeddings", 1, true)
                        or e.name == "classifier"
      local r = pol:rule_for(e.name)
      assert.are.equal(want_fp32 and "fp32" or "bf16", r.compute, e.name)
      assert.are.equal("fp32", r.params, e.name)
      seen = seen + 1
    end
    assert.is_true(seen > 30)
    assert.are.equal("bf16", pol:rule_for("bert.encoder.layer.1.intermediate.dense").compute)
    assert.are.equal("fp32", pol:rule_for("bert.embeddings.word_embeddings").compute)
    assert.matches("rule 3: '^classifier$' -> fp32", pol:describe(), nil, true)
    assert.matches("default: mixed-bf16 (fp32>bf16)", pol:describe(), nil, true)
  end)
end)
