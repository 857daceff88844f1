-- Spec for a live precision edit from the REPL, as a researcher would do it: a small BERT under
-- mixed-bf16, step, put one layer's query projection in fp32, step again, and compare. The dtypes
-- are read off what the DP engine actually received (engine:describe()), and the norms the REPL
-- prints (persample) against the engine's own per-sample norms of the same step.
local dp = require "dp"
local repl = require "dp.repl"

local V, T, N = 30, 8, 64

local function dataset()
  local u = dp.rand({ N, T }, { seed = 9, dtype = "f64" }):totable()
  local ids, labels = {}, {}
  for i = 1, N do
    ids[i] = {}
    for t = 1, T do ids[i][t] = 1 + math.floor(u[i][t] * (V - 1)) end
    labels[i] = ids[i][1] % 3
  end
  return dp.data.tensors{ input_ids = dp.tensor(ids, "i64"), labels = dp.tensor(labels, "i64") }
end

describe("dp.repl live precision edits", function()
  it("puts one layer in fp32 at the next step, without a restart", function()
    local model = dp.nn.BertForSequenceClassification({
      vocab_size = V, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2, intermediate_size = 32,
      max_position_embeddings = T, type_vocab_size = 2, num_labels = 3, hidden_dropout_prob = 0,
      attention_probs_dropout_prob = 0 }, { seed = 3 })
    dp.precision.apply(model, "mixed-bf16")
    local priv = dp.private{ params = model, optimizer = dp.optim.adam(model:trainable(), { lr = 1e-3 }),
                             data = dataset(), loss = function(b) return model:per_sample_loss(b) end,
                             sample_rate = 0.25, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5,
                             seed = 2 }
    local out = {}
    local s = repl.session{ frames = { { values = { dp = { dp }, model = { model }, priv = { priv } } } },
                            out = function(l) out[#out + 1] = l end, err = function(l) error(l) end }
    local function input_dtype(name)
      for _, row in ipairs(priv.engine:describe()) do
        if row.name == name then return row.input_dtype end
      end
    end
    local q0 = "bert.encoder.layer.0.attention.self.query.weight"
    local q1 = "bert.encoder.layer.1.attention.self.query.weight"
    s:feed("step(1)")
    assert.equal("bf16", input_dtype(q0))
    assert.equal("bf16", input_dtype(q1))
    s:feed([[dp.precision.apply(model, dp.precision.policy("mixed-bf16", { { "layer%.0%.attention%.self%.query$", "fp32" } }))]])
    s:feed("step(1)")
    assert.equal("f32", input_dtype(q0))
    assert.equal("bf16", input_dtype(q1))
    assert.equal(2, priv:steps())
    -- persample() prints the engine's norms of this step for the edited layer (weight and bias).
    local w = priv.engine:sample_norms(q0, false)
    local b = priv.engine:sample_norms(q0:gsub("weight$", "bias"), false)
    local norms = {}
    for i = 1, #w do norms[i] = math.sqrt(w[i] ^ 2 + b[i] ^ 2) end
    table.sort(norms)
    out = {}
    s:feed("persample(model)")
    local shown = table.concat(out, "\n")
    local layer = q0:gsub("%.weight$", "")
    local row = shown:match("\n" .. layer:gsub("%.", "%%.") .. " [^\n]*")
    assert.truthy(row, shown)
    local min, max = norms[1], norms[#norms]
    local nums = {}
    for v in row:sub(#layer + 1):gmatch("%S+") do nums[#nums + 1] = tonumber(v) end
    -- n, min, median, p90, max (6 significant digits shown)
    assert.equal(#norms, nums[1])
    assert.near(min, nums[2], 1e-5 * min)
    assert.near(max, nums[5], 1e-5 * max)
  end)
end)
