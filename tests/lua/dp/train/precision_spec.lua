-- Specs for dp.train.precision: the --precision and --fp32 flags, the policy they make, and a
-- resumed run's precision (kept from the checkpoint unless given again; a change is announced).
local flags = require "dp.train.flags"
local tp = require "dp.train.precision"

local base = { { "epochs", "int", 3, "passes", min = 1 }, { "out", "string", "out/x", "dir" },
               { "resume", "string", nil, "dir" } }
local spec = {}
for _, f in ipairs(base) do spec[#spec + 1] = f end
for _, f in ipairs(tp.flags) do spec[#spec + 1] = f end

describe("dp.train.precision", function()
  it("offers the five presets and names a wrong one", function()
    assert.equal("mixed-bf16", assert(flags.parse(spec, { "--precision", "mixed-bf16" })).precision)
    assert.equal("fp32", assert(flags.parse(spec, {})).precision)
    local _, err = flags.parse(spec, { "--precision", "fp16" })
    assert.equal("flag --precision expects one of fp32, bf16, mixed-bf16, mixed-f16, fp8, got 'fp16'", err)
  end)

  it("splits --fp32 patterns on commas and rejects a malformed pattern", function()
    assert.same({ "LayerNorm", "embeddings", "^classifier$" }, tp.patterns(" LayerNorm, embeddings,,^classifier$ "))
    assert.same({}, tp.patterns(nil))
    local p, err = tp.patterns("LayerNorm,[a")
    assert.is_nil(p)
    assert.truthy(err:find("--fp32: '[a' is not a valid Lua pattern", 1, true))
  end)

  it("keeps the --fp32 modules in fp32 under the chosen preset", function()
    local policy = assert(tp.policy{ precision = "mixed-bf16", fp32 = "LayerNorm,classifier" })
    local q = policy:rule_for("bert.encoder.layer.0.attention.self.query")
    assert.equal("fp32", q.params)
    assert.equal("bf16", q.compute)
    for _, name in ipairs{ "bert.embeddings.LayerNorm", "classifier" } do
      assert.equal("fp32", policy:rule_for(name).compute, name)
    end
    assert.equal("bf16", assert(tp.policy{ precision = "bf16" }):rule_for("bert.pooler.dense").params)
  end)

  it("resumes with the checkpoint's precision unless given again, and announces a change", function()
    local saved = { epochs = 3, out = "out/a", precision = "mixed-bf16", fp32 = "LayerNorm" }
    local cfg = assert(flags.parse(spec, { "--resume", "out/a" }))
    local merged, note = tp.merge_resume(cfg, saved, { "resume", "out" })
    assert.equal("mixed-bf16", merged.precision)
    assert.equal("LayerNorm", merged.fp32)
    assert.is_nil(note)

    cfg = assert(flags.parse(spec, { "--resume", "out/a", "--precision", "fp32" }))
    merged, note = tp.merge_resume(cfg, saved, { "resume", "out" })
    assert.equal("fp32", merged.precision)
    assert.equal("LayerNorm", merged.fp32)
    assert.equal("resuming with --precision fp32 (the checkpoint ran mixed-bf16): the weights continue under "
                 .. "the new precision", note)

    -- the same precision given again is no change; other flags still must agree
    cfg = assert(flags.parse(spec, { "--resume", "out/a", "--precision", "mixed-bf16" }))
    merged, note = tp.merge_resume(cfg, saved, { "resume", "out" })
    assert.is_nil(note)
    cfg = assert(flags.parse(spec, { "--resume", "out/a", "--epochs", "9" }))
    local bad, err = tp.merge_resume(cfg, saved, { "resume", "out" })
    assert.is_nil(bad)
    assert.truthy(err:find("--epochs 9 differs from the checkpoint's 3", 1, true))

    -- a checkpoint from before the flag ran fp32
    merged = tp.merge_resume(assert(flags.parse(spec, { "--resume", "out/a" })), { epochs = 3 }, { "resume", "out" })
    assert.equal("fp32", merged.precision)
  end)
end)
