-- A tiny DP-SGD run for the REPL specs: a linear model on 16 examples, f64, reproducible noise.
-- Globals model, data, priv (the specs drive them from the REPL); N from arg[1] (default 16).
local dp = require "dp"
local N, D, K = tonumber(arg and arg[1]) or 16, tonumber(arg and arg[2]) or 3, 2
model = dp.nn.Linear(D, K, { dtype = "f64", rng = dp.rng(1), std = 0.5 })
local x = dp.randn({ N, D }, { seed = 2, dtype = "f64" })
local y = dp.randn({ N, K }, { seed = 3, dtype = "f64" })
data = dp.data.tensors{ x = x, y = y }
priv = dp.private{
  model = model, optimizer = dp.optim.sgd(model:parameters(), { lr = 0.1 }),
  loss = function(b) return ((model:forward(b.x) - b.y) ^ 2):sum(2) end,
  data = data, sample_rate = 0.5, noise_multiplier = 1.0, max_grad_norm = 0.5, delta = 1e-5, seed = 4,
}
