-- dp.privacy.loss_scale: dynamic loss scaling for f16 compute under DP-SGD, decided only from a
-- noisy overflow count so that the scale history and the skip decisions are private.
--
-- Why not the plain AMP rule ("skip the step if any example overflowed"): one example's overflow
-- would flip the whole released update, which the Gaussian mechanism on the clipped sum does not
-- cover, and a scale history driven by exact overflow counts is un-noised private state. Instead:
-- * An example whose gradient is NaN/Inf gets clip factor 0 in the engine: it contributes 0,
--   which is within the clip bound.
-- * The overflow count o of the logical batch (sensitivity 1) is released as o~ = o + N(0, s_o^2),
--   drawn from the run's noise generator. Releasing (clipped sum + N(0, s_g^2 C^2), o~) together
--   is one Gaussian mechanism with noise multiplier sigma where sigma^-2 = s_g^-2 + s_o^-2
--   (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially private learning with adaptive
--   clipping", Thm 1: the same argument). The accountant keeps sigma; the gradient noise is
--   raised to s_g = (sigma^-2 - s_o^-2)^-1/2 (an error unless s_o > sigma). The ledger records
--   sigma and aux_sigma = s_o.
-- * Skip and scale schedule use o~ only (post-processing): o~ > threshold (default 3 s_o) skips
--   the step (no update, accumulators dropped) but the step IS recorded in the ledger, since the
--   data was touched; the scale then backs off (x backoff, not below min_scale). After `interval`
--   applied steps in a row it grows (x growth, not above max_scale). Scales stay powers of two,
--   so that multiplying the loss and dividing the gradients out is exact.
-- Defaults: init 2^15, growth 2, backoff 0.5, interval 2000, min_scale 1 (below 1 the small
-- gradients lose range, and overflow at scale 1 comes from the forward, which no loss scale
-- fixes), max_scale 2^24, overflow_noise s_o = max(10 sigma, 0.05 * expected batch) (the gradient
-- noise then rises by at most 0.5%), threshold 3 s_o.
local raise = require("dp.ffi").raise

local M = {}

M.defaults = { init = 2 ^ 15, growth = 2, backoff = 0.5, interval = 2000, min_scale = 1, max_scale = 2 ^ 24 }
local KEYS = { init = true, growth = true, backoff = true, interval = true, min_scale = true, max_scale = true,
               overflow_noise = true, threshold = true }

local Scaler = {}
Scaler.__index = Scaler
M.Scaler = Scaler

local function fail(msg) raise("dp.private: loss_scale: " .. msg) end

local function is_pow2(v)
  if type(v) ~= "number" or not (v > 0) or v == math.huge then return false end
  local m = math.frexp(v)
  return m == 0.5
end

local function pow2(opts, key, ok, expect)
  local v = opts[key]
  if not is_pow2(v) or not ok(v) then fail(("%s must be a power of two %s, got %s"):format(key, expect, tostring(v))) end
  return v
end

-- The default std of the noise on the overflow count.
function M.default_overflow_noise(sigma, expected_batch)
  return math.max(10 * sigma, 0.05 * (expected_batch or 0))
end

-- s_g: the gradient noise multiplier that, released with the count's noise s_o, makes one
-- Gaussian mechanism of multiplier sigma (sigma^-2 = s_g^-2 + s_o^-2).
function M.grad_sigma(sigma, s_o)
  if not (s_o > sigma) then
    fail(("overflow_noise (%g) must exceed the noise multiplier sigma (%g): the two releases together have "
          .. "multiplier sigma, so the count's noise alone must be larger"):format(s_o, sigma))
  end
  return 1 / math.sqrt(1 / (sigma * sigma) - 1 / (s_o * s_o))
end

-- M.new(opts, sigma, expected_batch): opts as in dp.private{ loss_scale = {...} } (true: defaults).
function M.new(opts, sigma, expected_batch)
  if opts == true then opts = {} end
  if type(opts) ~= "table" then fail("expected nil, false, true or a table of options, got " .. type(opts)) end
  for k in pairs(opts) do
    if not KEYS[k] then
      fail(("unknown option %s (expected init, growth, backoff, interval, min_scale, max_scale, overflow_noise, "
            .. "threshold)"):format(tostring(k)))
    end
  end
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = opts[k] == nil and v or opts[k] end
  local self = setmetatable({}, Scaler)
  local tiny = 2 ^ -24
  self.min_scale = pow2(o, "min_scale", function(v) return v >= tiny end, ">= 2^-24")
  self.max_scale = pow2(o, "max_scale", function(v) return v >= self.min_scale end, ">= min_scale")
  self.init = pow2(o, "init", function(v) return v >= self.min_scale and v <= self.max_scale end,
                   "in [min_scale, max_scale]")
  self.growth = pow2(o, "growth", function(v) return v >= 1 end, ">= 1")
  self.backoff = pow2(o, "backoff", function(v) return v <= 1 end, "<= 1")
  local iv = o.interval
  if type(iv) ~= "number" or iv < 1 or iv % 1 ~= 0 then fail("interval must be an integer >= 1, got " .. tostring(iv)) end
  self.interval = iv
  local s_o = opts.overflow_noise
  if s_o == nil then s_o = M.default_overflow_noise(sigma, expected_batch) end
  if type(s_o) ~= "number" or not (s_o > 0) or s_o == math.huge then
    fail("overflow_noise must be a number > 0, got " .. tostring(s_o))
  end
  self.overflow_noise = s_o
  self.grad_sigma = M.grad_sigma(sigma, s_o)
  local th = opts.threshold
  if th == nil then th = 3 * s_o end
  if type(th) ~= "number" or th ~= th then fail("threshold must be a number, got " .. tostring(th)) end
  self.threshold = th
  self.scale, self.good_steps = self.init, 0
  return self
end

-- After a logical batch whose noisy overflow count is o_noisy: whether to skip it, and the scale
-- for the next step.
function Scaler:update(o_noisy)
  if o_noisy > self.threshold then
    self.scale = math.max(self.scale * self.backoff, self.min_scale)
    self.good_steps = 0
    return true
  end
  self.good_steps = self.good_steps + 1
  if self.good_steps >= self.interval then
    self.scale = math.min(self.scale * self.growth, self.max_scale)
    self.good_steps = 0
  end
  return false
end

-- For checkpoints: what a resumed run needs to continue bit-identically.
function Scaler:state() return { scale = self.scale, good_steps = self.good_steps } end

function Scaler:load_state(s)
  if type(s) ~= "table" or not is_pow2(s.scale) or type(s.good_steps) ~= "number" then
    fail("a saved loss-scale state must be { scale = <power of two>, good_steps = <integer> }, got " .. tostring(s))
  end
  self.scale, self.good_steps = s.scale, s.good_steps
end

M.is_pow2 = is_pow2
return M
