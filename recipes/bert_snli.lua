-- recipes/bert_snli.lua: PLACEHOLDER until the BERT issue lands. It will fine-tune BERT with LoRA
-- on SNLI under DP-SGD; for now it trains a logistic regression on a synthetic 3-class set with
-- DP-SGD (dp.private: Poisson batches, per-example clipping, Gaussian noise, the accountant), to
-- exercise the whole private stack end to end.
-- Usage: dprun recipes/bert_snli.lua [key=value ...]   e.g. epochs=5 epsilon=4
local dp = require "dp"

print("bert_snli.lua: placeholder recipe (logistic regression on synthetic data, DP-SGD);")
print("the BERT + LoRA recipe replaces it when the BERT issue lands.")

-- config
local cfg = { n = 6000, features = 32, classes = 3, batch = 200, epochs = 5, lr = 0.05, clip = 1.0,
              epsilon = 8, seed = 1 }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^(%w+)=(.+)$")
  if not k or cfg[k] == nil then error("unknown argument " .. a .. " (expected key=value)", 0) end
  cfg[k] = tonumber(v)
end

-- data: labels from a hidden linear map plus noise, so about 90% is attainable
local rng = dp.rng(cfg.seed)
local x = rng:randn({cfg.n, cfg.features})
local truth = rng:randn({cfg.classes, cfg.features})
local noise = rng:randn({cfg.n, cfg.classes}, { std = 0.5 })
local y = (dp.linear(x, truth) + noise):argmax(2)                -- (n), 0-based class ids

-- model: logits = x W^T + b
local params = {
  { name = "classifier.weight", tensor = dp.zeros({cfg.classes, cfg.features}):requires_grad(true) },
  { name = "classifier.bias", tensor = dp.zeros({cfg.classes}):requires_grad(true) },
}
local w, b = params[1].tensor, params[2].tensor

local function accuracy(inputs, labels)
  return dp.no_grad(function()
    local pred, l = dp.linear(inputs, w, b):argmax(2):totable(), labels:totable()
    local hits = 0
    for i = 1, #pred do if pred[i] == l[i] then hits = hits + 1 end end
    return hits / #pred
  end)
end

-- DP-SGD: epsilon cfg.epsilon at delta 1/N over cfg.epochs epochs
local priv = dp.private{
  params = params, optimizer = dp.optim.adam(params, { lr = cfg.lr }),
  data = dp.data.tensors{ x = x, y = y }, batch_size = cfg.batch,
  loss = function(batch) return dp.cross_entropy(dp.linear(batch.x, w, b), batch.y, { reduction = "none" }) end,
  target_epsilon = cfg.epsilon, delta = 1 / cfg.n, epochs = cfg.epochs, max_grad_norm = cfg.clip,
  seed = cfg.seed,
}
print(("noise multiplier %.3f for epsilon %g at delta %.2g over %d steps"):format(
  priv:noise_multiplier(), cfg.epsilon, 1 / cfg.n, priv:steps_per_epoch() * cfg.epochs))

for epoch = 1, cfg.epochs do
  local st
  for _ = 1, priv:steps_per_epoch() do st = priv:step() end
  print(("epoch %d  loss %.4f  clipped %.2f  epsilon %.3f  train accuracy %.3f"):format(
    epoch, st.loss or 0 / 0, st.clip_fraction, st.epsilon, accuracy(x, y)))
end

-- report
local final = accuracy(x, y)
print(("final train accuracy %.3f, epsilon %.3f at delta %.2g (placeholder recipe)"):format(
  final, priv:epsilon(), 1 / cfg.n))
if final < 0.6 then error("placeholder recipe did not learn (accuracy " .. final .. ")", 0) end
