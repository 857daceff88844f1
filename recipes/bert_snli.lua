-- recipes/bert_snli.lua: PLACEHOLDER until the BERT issue lands. It will fine-tune BERT-base with
-- LoRA on SNLI under DP-SGD; for now it trains a logistic regression on a synthetic 3-class set
-- with plain (non-private) SGD through autograd, to exercise the whole stack end to end.
-- Usage: dprun recipes/bert_snli.lua [key=value ...]   e.g. epochs=5 lr=0.5
local dp = require "dp"

print("bert_snli.lua: placeholder recipe (logistic regression on synthetic data, plain SGD);")
print("the BERT-base + LoRA + DP-SGD recipe replaces it when the BERT issue lands.")

-- config
local cfg = { n = 3000, features = 32, classes = 3, batch = 100, epochs = 5, lr = 0.5, seed = 1 }
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
local w = dp.zeros({cfg.classes, cfg.features}):requires_grad(true)
local b = dp.zeros({cfg.classes}):requires_grad(true)
local params = { w, b }

local function accuracy(inputs, labels)
  return dp.no_grad(function()
    local pred = dp.linear(inputs, w, b):argmax(2)
    local hits = 0
    local p, l = pred:totable(), labels:totable()
    for i = 1, #p do if p[i] == l[i] then hits = hits + 1 end end
    return hits / #p
  end)
end

-- loop: minibatch SGD
local steps_per_epoch = math.floor(cfg.n / cfg.batch)
local loss
for epoch = 1, cfg.epochs do
  for step = 1, steps_per_epoch do
    local first = (step - 1) * cfg.batch + 1
    local xb = x:narrow(1, first, cfg.batch)                      -- (batch, features)
    local yb = y:narrow(1, first, cfg.batch)                      -- (batch)
    loss = dp.cross_entropy(dp.linear(xb, w, b), yb)
    for _, p in ipairs(params) do p:zero_grad() end
    loss:backward()
    dp.no_grad(function()
      for _, p in ipairs(params) do p:axpy_(-cfg.lr, p.grad) end
    end)
  end
  print(("epoch %d  loss %.4f  train accuracy %.3f"):format(epoch, loss:item(), accuracy(x, y)))
end

-- report
local final = accuracy(x, y)
print(("final train accuracy %.3f (placeholder recipe; no privacy accounting yet)"):format(final))
if final < 0.6 then error("placeholder recipe did not learn (accuracy " .. final .. ")", 0) end
