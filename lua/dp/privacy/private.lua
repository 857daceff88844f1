-- dp.private{...}: DP-SGD around a model, an optimizer and a dataset. It registers the trainable
-- parameters with the per-sample gradient engine, draws Poisson-sampled logical batches, splits
-- them into micro-batches under a memory cap, clips per example, adds Gaussian noise once per
-- logical batch, steps the optimizer, and records every step in the privacy ledger; it refuses to
-- step past the epsilon budget unless told to. The step itself is in dp.privacy.private_step.
--
-- Loss scaling (f16 compute): loss_scale = nil (automatic: on when the model, given as `model` or
-- `params`, has a precision policy computing some layer in f16, i.e. the mixed-f16 preset; off for
-- fp32, bf16, mixed-bf16 and fp8, whose range needs none), false (off), true or a table { init =
-- 2^15, growth = 2, backoff = 0.5, interval = 2000, min_scale = 1, max_scale = 2^24, overflow_noise
-- = max(10 sigma, 0.05 expected batch), threshold = 3 overflow_noise }. An example whose gradient
-- overflows contributes nothing (clip factor 0); the overflow count is released with Gaussian noise
-- of std overflow_noise, and only that noisy count decides whether the step is skipped and how the
-- scale moves. The gradient noise rises so that both releases together are one Gaussian mechanism
-- of the accountant's sigma (dp.privacy.loss_scale explains why). A skipped step applies no
-- update but counts in the ledger (skipped = 1): the data was touched.
--
-- fused_update = true (default): the noise and the optimizer update run in one pass per parameter
-- where that gives the same bits (dp.privacy.fused_update); false: engine:finish, then step().
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local accountant = require "dp.privacy.accountant"
local engine_mod = require "dp.privacy.engine"

local raise = dpffi.raise

local M = {}
local Private = {}
Private.__index = Private
M.Private = Private

local function fail(msg) raise("dp.private: " .. msg) end

local function is_tensor(x) return require("dp").is_tensor(x) end

-- {name=, tensor=} records from a model (:named_parameters()), an array of records, an array of
-- tensors, or a table name -> tensor (sorted by name).
local function named_params(src)
  if type(src) == "table" and type(src.named_parameters) == "function" then src = src:named_parameters() end
  if type(src) ~= "table" then fail("params must be a model with :named_parameters(), a list or a name -> tensor table") end
  local out = {}
  if #src > 0 then
    for i, p in ipairs(src) do
      if is_tensor(p) then out[i] = { name = "param." .. i, tensor = p }
      elseif type(p) == "table" and is_tensor(p.tensor) then out[i] = { name = p.name or ("param." .. i), tensor = p.tensor }
      else fail(("params[%d] is neither a tensor nor {name=, tensor=}"):format(i)) end
    end
  else
    local names = {}
    for name in pairs(src) do names[#names + 1] = name end
    table.sort(names)
    for i, name in ipairs(names) do
      if not is_tensor(src[name]) then fail(("params.%s is not a tensor"):format(tostring(name))) end
      out[i] = { name = name, tensor = src[name] }
    end
  end
  if #out == 0 then fail("no parameters") end
  return out
end

-- Per-layer clipping groups: by default a parameter's module (its name without the last part).
local function default_group(name) return name:match("^(.*)%.[^.]+$") or name end

local function assign_groups(self, params, opts)
  local group_of = opts.groups or default_group
  if type(group_of) ~= "function" then fail("groups must be a function(name) -> group key") end
  local keys, index = {}, {}
  for _, p in ipairs(params) do
    local key = self.clipping == "per_layer" and tostring(group_of(p.name)) or "all"
    if not index[key] then keys[#keys + 1] = key; index[key] = #keys - 1 end
    p.group = index[key]
  end
  self.group_keys = keys
  -- Thresholds: a number C splits evenly (C / sqrt(G) each, so the total is C), or key -> C_g.
  local C, sens = opts.max_grad_norm, 0
  if self.clipping == "per_layer" then
    self.thresholds = {}
    for g, key in ipairs(keys) do
      local c = type(C) == "table" and C[key] or (type(C) == "number" and C / math.sqrt(#keys))
      if type(c) ~= "number" or not (c > 0) or c == math.huge then
        fail(("max_grad_norm for group '%s' must be a number > 0, got %s"):format(key, tostring(c)))
      end
      self.thresholds[g] = c
      sens = sens + c * c
    end
    self.sensitivity = math.sqrt(sens)
  else
    if type(C) ~= "number" or not (C > 0) or C == math.huge then
      fail(("max_grad_norm must be a number > 0, got %s"):format(tostring(C)))
    end
    self.sensitivity = C
  end
end

local function number(opts, key, ok, expect)
  local v = opts[key]
  if type(v) ~= "number" or v ~= v or not ok(v) then
    fail(("%s must be %s, got %s"):format(key, expect, tostring(v)))
  end
  return v
end

-- q, the expected batch size, and N.
local function sampling_setup(self, opts)
  local N = self.data and self.data:size() or opts.dataset_size
  if opts.sample_rate ~= nil then
    self.sample_rate = number(opts, "sample_rate", function(v) return v > 0 and v <= 1 end, "in (0, 1]")
  elseif opts.batch_size ~= nil and N then
    self.sample_rate = number(opts, "batch_size", function(v) return v >= 1 and v <= N end, "in [1, N]") / N
  else
    fail("give sample_rate, or batch_size (the expected logical batch) with data or dataset_size")
  end
  self.dataset_size = N
  self.expected_batch = opts.batch_size or (N and self.sample_rate * N) or opts.expected_batch_size
  self.sampling = opts.sampling or "poisson"
  if self.sampling ~= "poisson" and self.sampling ~= "shuffle" then
    fail(("sampling '%s', expected poisson or shuffle"):format(tostring(self.sampling)))
  end
end

local function noise_setup(self, opts)
  local noise = require "dp.privacy.noise"
  self.noise_mode = opts.noise or "reproducible"
  if self.noise_mode ~= "reproducible" and self.noise_mode ~= "secure" then
    fail(("noise '%s', expected reproducible or secure"):format(tostring(self.noise_mode)))
  end
  local seed = opts.seed or 0
  local state = opts.generator_state or {}
  self.noise = noise{ mode = self.noise_mode, seed = seed, stream = 1, counter = state.noise_counter or 0 }
  self.sampler_rng = noise{ mode = self.noise_mode, seed = seed, stream = 2, counter = state.sampler_counter or 0 }
end

local function sigma_setup(self, opts)
  self.delta = number(opts, "delta", function(v) return v > 0 and v < 1 end, "in (0, 1)")
  self.accountant_kind = opts.accountant or "rdp"
  if opts.noise_multiplier ~= nil then
    self.sigma = number(opts, "noise_multiplier", function(v) return v > 0 end, "> 0")
    self.epsilon_budget = opts.epsilon_budget
  elseif opts.target_epsilon ~= nil then
    local eps = number(opts, "target_epsilon", function(v) return v > 0 end, "> 0")
    local steps = opts.steps
    if steps == nil then
      local epochs = number(opts, "epochs", function(v) return v > 0 end, "> 0 (or give steps)")
      steps = math.ceil(epochs / self.sample_rate)
    end
    self.planned_steps = steps
    self.sigma = accountant.calibrate_sigma{ target_epsilon = eps, delta = self.delta, q = self.sample_rate,
                                             steps = steps, accountant = self.accountant_kind }
    self.epsilon_budget = opts.epsilon_budget or eps
  else
    fail("give noise_multiplier, or target_epsilon with epochs (or steps)")
  end
  self.allow_overspend = opts.allow_overspend or false
end

-- True when the model's precision policy computes some layer in f16 (dp.precision).
local function model_needs_scaling(model)
  if type(model) ~= "table" or type(model.precision_policy) ~= "function" then return false end
  return require("dp.precision").needs_loss_scaling(model) and true or false
end

-- The loss scaler (nil when off) and the gradient noise multiplier it implies.
local function loss_scale_setup(self, opts)
  local ls = opts.loss_scale
  self.loss_scale_auto = ls == nil
  self.scaled_model = type(opts.model) == "table" and opts.model or opts.params
  if ls == nil then ls = model_needs_scaling(self.scaled_model) end
  self:set_loss_scaling(ls, opts.generator_state and opts.generator_state.loss_scale)
end

-- Turn loss scaling on (true or options) or off (false); state: a saved scaler state to resume.
function Private:set_loss_scaling(ls, state)
  if ls == false then
    self.scaler, self.grad_sigma, self.aux_sigma = nil, self.sigma, 0
    return
  end
  self.scaler = require("dp.privacy.loss_scale").new(ls, self.sigma, self.expected_batch)
  if state then self.scaler:load_state(state) end
  self.grad_sigma, self.aux_sigma = self.scaler.grad_sigma, self.scaler.overflow_noise
end

-- Under automatic loss scaling, a policy switched to f16 after construction (precision.apply
-- from a REPL or a callback) turns scaling on at the next step; it stays on afterwards.
function Private:refresh_loss_scaling()
  if self.loss_scale_auto and not self.scaler and model_needs_scaling(self.scaled_model) then
    self:set_loss_scaling(true)
    return true
  end
  return false
end

-- The current loss scale (1 when off).
function Private:loss_scale() return self.scaler and self.scaler.scale or 1 end

-- Every optimizer tensor must be a registered parameter, and every trainable registered
-- parameter must be in the optimizer: anything else trains without privacy or never trains.
function Private:check_coverage()
  local key = function(t) return tonumber(ffi.cast("intptr_t", t.ptr)) end
  local registered, in_opt = {}, {}
  for _, p in ipairs(self.params) do registered[key(p.tensor)] = p.name end
  for _, t in ipairs(self.optimizer:params()) do
    if not registered[key(t)] then
      fail(("the optimizer updates %s, which is not a registered parameter: its gradient would not be private")
           :format(tostring(t)))
    end
    in_opt[key(t)] = true
  end
  for _, p in ipairs(self.params) do
    if p.tensor:requires_grad() and not in_opt[key(p.tensor)] then
      fail(("trainable parameter '%s' gets a clipped noisy gradient but the optimizer does not update it; "
            .. "freeze it or give it to the optimizer"):format(p.name))
    end
  end
end

function M.new(opts)
  if type(opts) ~= "table" then fail("expected a table of options") end
  local self = setmetatable({ loss_fn = opts.loss, optimizer = opts.optimizer, data = opts.data,
                              clipping = opts.clipping or "flat", gamma = opts.gamma,
                              loss_reduction = opts.loss_reduction or "mean", log = opts.log,
                              metrics = opts.metrics, fused_update = opts.fused_update ~= false }, Private)
  if opts.fused_update ~= nil and type(opts.fused_update) ~= "boolean" then fail("fused_update must be true or false") end
  if type(self.loss_fn) ~= "function" then fail("loss must be a function(batch) -> per-example losses") end
  if type(self.optimizer) ~= "table" or type(self.optimizer.step) ~= "function" then
    fail("optimizer must be a dp.optim optimizer")
  end
  if not engine_mod.clipping_modes[self.clipping] then
    fail(("clipping '%s', expected flat, per_layer or automatic"):format(tostring(self.clipping)))
  end
  if self.data ~= nil and (type(self.data) ~= "table" or not self.data.size or not self.data.collate) then
    fail("data must be a dataset with :size() and :collate(indices) (see dp.data.tensors)")
  end
  self.params = named_params(opts.params or opts.model)
  for _, p in ipairs(self.params) do p.tensor:is_param(true) end
  assign_groups(self, self.params, opts)
  sampling_setup(self, opts)
  noise_setup(self, opts)
  sigma_setup(self, opts)
  loss_scale_setup(self, opts)
  self.engine = engine_mod.new(self.params)
  if opts.form then self.engine:set_form(nil, opts.form) end
  self.ledger = opts.ledger or accountant.Ledger()
  local planner = require("dp.data.micro_batches").planner
  self.planner = planner{ max_physical_batch_size = opts.max_physical_batch_size,
                          memory_cap_bytes = opts.memory_cap_bytes }
  self.planner_learns = opts.memory_cap_bytes ~= nil
  self:check_coverage()
  if self.data then
    local sampler = require "dp.data.sampler"
    self.sampler = self.sampling == "poisson"
      and sampler.poisson{ n = self.dataset_size, sample_rate = self.sample_rate, generator = self.sampler_rng }
      or sampler.shuffle{ n = self.dataset_size, batch_size = math.floor(self.expected_batch + 0.5),
                          generator = self.sampler_rng }
  end
  -- The REPL's step(n) and inspection helpers act on the newest run.
  require("dp.repl.runs").register(self)
  return self
end

-- Epsilon spent so far (at delta), and what it would be after `extra` more steps.
function Private:epsilon(extra)
  local runs = self.ledger:runs()
  if extra and extra > 0 then runs[#runs + 1] = { q = self.sample_rate, sigma = self.sigma, steps = extra } end
  if #runs == 0 then return 0 end
  return accountant.epsilon{ runs = runs, delta = self.delta, accountant = self.accountant_kind }.epsilon
end

-- Per parameter: its kind, and for linear weights on sequences the norm form chosen (ghost or
-- materialise) with both cost estimates, as of the last micro-batch.
function Private:norm_forms() return self.engine:describe() end

function Private:steps() return self.ledger:total_steps() end
function Private:steps_per_epoch() return math.ceil(1 / self.sample_rate) end
function Private:noise_multiplier() return self.sigma end

-- The generators' positions, for checkpoints (reproducible mode resumes from them).
-- The loss scaler's state rides along, so that a resumed run scales (and skips) as the first did.
function Private:generator_state()
  return { noise_counter = self.noise:state().counter, sampler_counter = self.sampler_rng:state().counter,
           loss_scale = self.scaler and self.scaler:state() or nil }
end

local step = require "dp.privacy.private_step"
Private.step = step.step
Private.step_on = step.step_on

return setmetatable(M, { __call = function(_, opts) return M.new(opts) end })
