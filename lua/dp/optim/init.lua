-- dp.optim: optimizers over the clipped noisy gradients, with fp32 state: dp.optim.sgd,
-- dp.optim.adam and dp.optim.adamw. Each takes the parameters (an array of tensors, an array of
-- {name=, tensor=} records, or a table name -> tensor) and an options table, and offers
-- step, zero_grad, params, names, lr/set_lr and state_dict/load_state_dict (dp.optim.optimizer).
local sgd = require "dp.optim.sgd"
local adam = require "dp.optim.adam"

return {
  sgd = sgd.new,
  adam = adam.adam,
  adamw = adam.adamw,
}
