-- dp.privacy.private_step: one DP-SGD step of a dp.private object (Abadi et al. 2016, with
-- book-keeping per-sample clipping, Bu et al. 2023): for each micro-batch of the logical batch a
-- forward and one backward with the engine active, per-example norms, clipping and the clipped
-- sum; then Gaussian noise N(0, (sigma C)^2) once, the average over the EXPECTED batch size q N
-- (the realised size of a Poisson batch is private and must not scale the update), the optimizer
-- step and the ledger record. A logical batch that fails midway is abandoned whole: nothing is
-- updated and nothing is recorded, as no output depending on the data was released.
-- Under loss scaling (dp.privacy.loss_scale) the backward seed carries the scale, the engine
-- divides it out, the noisy overflow count decides the skip, and a skipped step is recorded
-- (skipped = 1) without any update. Each step also sets stochastic rounding in the optimizer for
-- the parameters whose precision rule asks for it, and reports memory by category. Without a loss
-- scaler the noise and the update run fused per parameter (dp.privacy.fused_update; same bits,
-- fused_update = false keeps the composed path).
local ffi = require "ffi"
local dpffi = require "dp.ffi"

local report = require "dp.privacy.step_report"
local fused = require "dp.privacy.fused_update"

-- dp.memory_report.with_category, or a plain call on a library without memory categories.
local function with_category(name, fn, ...)
  local mr = require("dp").memory_report
  if type(mr) == "table" and mr.with_category then return mr.with_category(name, fn, ...) end
  return fn(...)
end

local C, raise = dpffi.C, dpffi.raise
-- dprun's REPL host (absent under busted or a plain luajit): lets a step defer Ctrl-C.
local repl_host = (function()
  local ok, host = pcall(require, "dp.repl.host")
  return ok and type(host) == "table" and host.defer and host or nil
end)()

local M = {}

local clock = ffi.new("dp_timespec")   -- declared in dp.cdef
local function now()
  ffi.C.clock_gettime(1, clock)   -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local function check_budget(self)
  if not self.epsilon_budget or self.allow_overspend then return end
  local next_eps = self:epsilon(1)
  if next_eps > self.epsilon_budget * (1 + 1e-9) then
    raise(("dp.private: the next step would bring epsilon to %.4f, past the budget %.4f (delta %g, %d steps "
           .. "taken); pass allow_overspend = true to go on"):format(next_eps, self.epsilon_budget, self.delta,
                                                                      self:steps()))
  end
end

-- The backward seed for the loss the user's function returned over m examples.
-- A loss scale multiplies the seed (in f32 at least: 2^16 and above are Inf in f16).
local function backward_seed(self, loss, m, loss_scale)
  local dp = require "dp"
  if loss_scale ~= 1 and loss:dtype() ~= "f32" and loss:dtype() ~= "f64" then loss = loss:cast("f32") end
  if loss:dim() == 1 and loss:size(1) == m then
    return loss, dp.full({ m }, loss_scale, { dtype = loss:dtype() }), function() return dp.sum(loss):item() end
  end
  if loss:numel() == 1 then
    -- A mean over the micro-batch scales each example's gradient by 1/m: undo it.
    local scale = self.loss_reduction == "sum" and 1 or m
    return loss, dp.full(loss:size(), scale * loss_scale, { dtype = loss:dtype() }),
           function() return loss:item() * scale end
  end
  raise(("dp.private: the loss function returned %s for a micro-batch of %d examples; return the per-example "
         .. "losses (%d) or their mean"):format(loss:desc(), m, m))
end

-- One micro-batch: forward, backward, norms, clip, sum. Adds to totals.
local function run_micro(self, mb, m, totals)
  local dp = require "dp"
  local eng = self.engine
  eng:begin(m)
  local loss_scale = self:loss_scale()
  if self.scaler then eng:set_loss_scale(loss_scale) end
  local base = dp.memory()
  -- The planner learns bytes per example only under a memory cap (it needs each micro-batch's
  -- own peak); the step's peak is then the largest of them.
  if self.planner_learns then C.dp_mem_reset_peak(0) end
  -- What the forward and backward allocate counts as activations (the engine tags its own
  -- per-sample buffers and accumulators).
  local loss_sum, extra = with_category("activations", eng.active, eng, function()
    local loss, more = self.loss_fn(mb)
    if not dp.is_tensor(loss) then raise("dp.private: the loss function must return a tensor, got " .. type(loss)) end
    local root, seed, value = backward_seed(self, loss, m, loss_scale)
    root:backward(seed)
    return value(), more
  end)
  eng:compute_norms()
  local st = eng:clip{ mode = self.clipping, max_norm = self.sensitivity, thresholds = self.thresholds,
                       gamma = self.gamma }
  local _, peak = dp.memory()
  if self.planner_learns then
    self.planner:observe(m, peak, base)
    totals.memory = report.merge(totals.memory, report.snapshot(self.params))   -- before the next reset
  end
  totals.loss = totals.loss + loss_sum
  totals.clipped = totals.clipped + st.clipped
  totals.nonfinite = totals.nonfinite + st.nonfinite
  totals.norm_sum = totals.norm_sum + st.norm_mean * (st.samples - st.nonfinite)
  totals.norm_max = math.max(totals.norm_max, st.norm_max)
  totals.peak = math.max(totals.peak, peak)
  if type(extra) == "table" then
    for k, v in pairs(extra) do
      if type(v) == "number" then totals.extra[k] = (totals.extra[k] or 0) + v end
    end
  end
end

-- The rows [i0, i0 + m) of every tensor in batch whose first dim is n.
local function slice(batch, n, i0, m)
  local out = { n = m }
  for k, v in pairs(batch) do
    if k ~= "n" then
      if require("dp").is_tensor(v) and v:dim() >= 1 and v:size(1) == n then out[k] = v:narrow(1, i0 + 1, m)
      else out[k] = v end
    end
  end
  return out
end

local function batch_size_of(batch)
  if batch.n then return batch.n end
  for _, v in pairs(batch) do
    if require("dp").is_tensor(v) and v:dim() >= 1 then return v:size(1) end
  end
  raise("dp.private: step_on: the batch has no tensors; give batch.n")
end

-- Per step, from the model's precision rules (dp.precision): stochastic rounding for the
-- parameters whose rule asks for it, nearest for the others (the policy may change between steps).
local function set_rounding(self)
  local model, opt = self.scaled_model, self.optimizer
  if type(model) ~= "table" or type(model.precision_policy) ~= "function" or type(opt.set_rounding) ~= "function" then
    return
  end
  local rules = require("dp.precision").param_rules(model)
  local by_ptr, by_name = {}, {}
  for k, r in pairs(rules) do
    if type(k) == "string" then by_name[k] = r
    elseif type(r) == "table" and r.tensor then by_ptr[tostring(r.tensor.ptr)] = r.rule or r
    elseif type(r) == "table" and r.name then by_name[r.name] = r.rule or r end
  end
  for _, p in ipairs(self.params) do
    local rule = by_ptr[tostring(p.tensor.ptr)] or by_name[p.name]
    if p.tensor:requires_grad() and rule then
      opt:set_rounding(p.tensor, rule.stochastic_rounding and "stochastic" or "nearest")
    end
  end
end

-- Loss scaling after the micro-batches: the noisy overflow count o~ = o + N(0, s_o^2), and from
-- it alone whether to skip and the next scale. Returns skipped, o~.
local function overflow_decision(self, overflowed)
  if not self.scaler then return false, nil end
  local noisy = overflowed + self.scaler.overflow_noise * self.noise:normals(1)[1]
  return self.scaler:update(noisy), noisy
end

-- Run the logical batch of n examples given as micro-batches by get(k) (k = 1..count).
local function logical_step(self, n, count, get)
  check_budget(self)
  self:check_coverage()
  if self:refresh_loss_scaling() and self.log then
    report.note(self.log, "loss scaling on (the precision policy now computes in f16)")
  end
  set_rounding(self)
  local t0 = now()
  C.dp_mem_reset_peak(0)   -- peak_bytes in the stats is this step's peak
  local noise_before, sampler_before = self.noise:state().counter, self._sampler_before or self.sampler_rng:state().counter
  local totals = { loss = 0, clipped = 0, nonfinite = 0, norm_sum = 0, norm_max = 0, peak = 0, extra = {} }
  local scale_used = self:loss_scale()
  local ok, err = pcall(function()
    for k = 1, count do
      local mb, m = get(k)
      run_micro(self, mb, m, totals)
      mb = nil
      if count > 1 then require("dp").collectgarbage() end
    end
  end)
  if not ok then
    self.engine:reset()
    error(err, 0)
  end
  -- The gradient noise is drawn first, then the count's: with a scale that never overflows the
  -- update is the one without loss scaling (same draws), and a skip changes no later draw.
  local expected = self.expected_batch or n
  -- From the noise to the ledger nothing may stop halfway: the ledger is written as soon as the
  -- noisy sums exist (before the update, so a failing update still counts), and under dprun's REPL
  -- a Ctrl-C waits until the section closes.
  if repl_host then repl_host.defer(true) end
  local skipped, noisy
  local std, scale = self.grad_sigma * self.sensitivity, 1 / math.max(expected, 1e-300)
  local function record(counter_after)
    self.ledger:record{ q = self.sample_rate, sigma = self.sigma, clip = self.sensitivity, batch_size = n,
                        sampling = self.sampling, noise_mode = self.noise_mode,
                        noise_seed = self.noise_mode == "reproducible" and self.noise:state().seed or 0,
                        noise_counter_before = noise_before, noise_counter_after = counter_after,
                        sampler_counter_before = sampler_before,
                        sampler_counter_after = self.sampler_rng:state().counter,
                        skipped = skipped, aux_sigma = self.aux_sigma }
  end
  local done, failure = pcall(function()
    local plan = fused.plan(self)
    if plan then
      -- Noise and update in one pass per parameter: the ledger first, with the counter the noise
      -- will reach, so that a failing update still leaves the spent privacy recorded.
      skipped = false
      local after = self.noise:state().counter + (std > 0 and self.engine:noise_blocks() or 0)
      record(after)
      fused.run(self, plan, std, scale, after)
      return
    end
    self.engine:finish(self.noise, std, scale)
    skipped, noisy = overflow_decision(self, totals.nonfinite)
    record(self.noise:state().counter)
    if not skipped then self.optimizer:step() end   -- skipped: the noisy sums are dropped, the step counts
  end)
  for _, p in ipairs(self.params) do p.tensor:set_grad(nil) end
  if repl_host then repl_host.defer(false) end
  if not done then error(failure, 0) end
  local _, peak = require("dp").memory()
  local finite = n - totals.nonfinite
  local stats = {
    step = self:steps(), batch_size = n, loss = n > 0 and totals.loss / n or nil,   -- nil: empty batch
    clip_fraction = n > 0 and totals.clipped / n or 0, nonfinite = totals.nonfinite,
    grad_norm_mean = finite > 0 and totals.norm_sum / finite or 0, grad_norm_max = totals.norm_max,
    epsilon = self:epsilon(), delta = self.delta, sigma = self.sigma, micro_batches = count,
    step_time = now() - t0, peak_bytes = math.max(totals.peak, peak),
  }
  if self.scaler then
    stats.loss_scale, stats.next_loss_scale, stats.skipped = scale_used, self.scaler.scale, skipped
    stats.overflow_noisy, stats.grad_sigma = noisy, self.grad_sigma
  end
  report.add_memory(stats, report.merge(totals.memory, report.snapshot(self.params)))
  for k, v in pairs(totals.extra) do stats[k] = v end
  if totals.extra.correct and n > 0 then stats.accuracy = totals.extra.correct / n end
  report.report(self.log, self.metrics, stats)
  return stats
end

-- One logical batch given explicitly (a table of tensors with the examples along dim 1, and
-- optionally .n). Accounting assumes it was Poisson-sampled at sample_rate.
function M.step_on(self, batch)
  if type(batch) ~= "table" then raise("dp.private: step_on expects a batch table of tensors") end
  local n = batch_size_of(batch)
  if n == 0 then return logical_step(self, 0, 0, nil) end
  local parts, at = {}, 0
  local indices = {}
  for i = 1, n do indices[i] = i end
  for k, part in ipairs(self.planner:split(indices)) do parts[k] = { at, #part }; at = at + #part end
  return logical_step(self, n, #parts, function(k)
    return slice(batch, n, parts[k][1], parts[k][2]), parts[k][2]
  end)
end

-- One logical batch drawn by the sampler from the dataset.
function M.step(self)
  if not self.sampler then raise("dp.private: step() needs data; use step_on(batch) without a dataset") end
  check_budget(self)   -- before the sampler touches the data
  self._sampler_before = self.sampler_rng:state().counter
  local indices = self.sampler:next()
  local parts = #indices > 0 and self.planner:split(indices) or {}
  local ok, stats = pcall(logical_step, self, #indices, #parts, function(k)
    local mb = self.data:collate(parts[k])
    return mb, #parts[k]
  end)
  self._sampler_before = nil
  if not ok then error(stats, 0) end
  return stats
end

return M
