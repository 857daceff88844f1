-- CUDA parity of whole DP-SGD steps: a small BERT takes one dp.private step (dropout on, flat
-- clipping, reproducible noise) on the CPU and on the GPU from the same seeds and batch, under each
-- precision preset. Compared: the per-example losses and the parameters after the step, relative
-- to their CPU values, within the tolerance stated per preset below. Skipped without a GPU.
local dp = require "dp"
local parity = require "cuda.parity"

local cfg = { vocab_size = 60, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4,
              intermediate_size = 64, max_position_embeddings = 16, num_labels = 3 }

-- Relative tolerances on (losses, parameters after the step). fp32: f32 kernels in another order.
-- bf16/f16 compute: losses within a few roundings of the compute dtype; bf16-stored parameters
-- may land one bf16 step apart (2^-8 relative). fp8: GEMM inputs on the e4m3 grid (2^-4).
local presets = {
  { "fp32", 1e-4, 1e-5 }, { "mixed-bf16", 3e-2, 1e-3 }, { "bf16", 3e-2, 8e-3 },
  { "mixed-f16", 5e-3, 1e-3 }, { "fp8", 1e-1, 2e-3 },
}

local function batch(dev)
  local ids, types, labels = {}, {}, {}
  for b = 1, 8 do
    ids[b], types[b] = {}, {}
    for t = 1, 12 do ids[b][t] = (b * 7 + t * 3) % cfg.vocab_size; types[b][t] = t > 6 and 1 or 0 end
    labels[b] = b % 3
  end
  local out = { input_ids = dp.tensor(ids, { dtype = "i64", device = "cpu" }),
                token_type_ids = dp.tensor(types, { dtype = "i64", device = "cpu" }),
                labels = dp.tensor(labels, { dtype = "i64", device = "cpu" }) }
  local mask = {}
  for b = 1, 8 do mask[b] = {}; for t = 1, 12 do mask[b][t] = t <= 12 - b % 4 and 1 or 0 end end
  out.attention_mask = dp.tensor(mask, { device = "cpu" })
  if dev ~= "cpu" or parity.selftest then
    for k, v in pairs(out) do out[k] = parity.gpu(v) end
  end
  return out
end

-- One DP step on dev under preset; returns the per-example losses and the parameters.
local function step(dev, preset)
  local model = dp.nn.BertForSequenceClassification(cfg, { seed = 3, dropout_rng = dp.rng(4) })
  if dev ~= "cpu" or parity.selftest then dp.device.move_module(model, parity.target) end
  dp.precision.apply(model, preset)
  local opt = dp.optim.sgd(model:trainable(), { lr = 0.5 })
  local losses
  local priv = dp.private{
    params = model, optimizer = opt, sample_rate = 8 / 1000, noise_multiplier = 0.8,
    max_grad_norm = 0.1, delta = 1e-5, noise = "reproducible", seed = 6,
    loss = function(b)
      local l = model:per_sample_loss(b)
      losses = l:detach():cast("f32")
      return l
    end,
  }
  priv:step_on(batch(dev))
  local params = {}
  for _, e in ipairs(model:named_parameters()) do params[e.name] = e.tensor end
  return losses, params
end

parity.describe("cuda parity: DP-SGD steps", function()
  for _, p in ipairs(presets) do
    local name, loss_tol, param_tol = p[1], p[2], p[3]
    it(("one BERT DP step under preset %s matches the CPU"):format(name), function()
      local lc, pc = step("cpu", name)
      local lg, pg = step(parity.target, name)
      parity.assert_close(lg, lc, name .. ": per-example losses", loss_tol)
      local n = 0
      for k, ref in pairs(pc) do
        parity.assert_close(pg[k], ref, name .. ": " .. k .. " after the step", param_tol)
        n = n + 1
      end
      assert.is_true(n > 10)
    end)
  end
end)
