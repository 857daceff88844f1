-- dp.privacy.accountant: the privacy accountant of core/privacy through the FFI: epsilon, delta
-- and sigma calibration for the Poisson-subsampled Gaussian mechanism (RDP: Mironov et al. 2019
-- with the conversion of Balle et al. 2020; PRV: Gopi et al. 2021; GDP: Dong, Roth, Su 2019,
-- approximate), and the ledger that DP-SGD extends each step and checkpoints as JSON.
local ffi = require "ffi"
local native = require "dp.ffi"

local C = native.C
local check, raise = native.check, native.raise

local M = {}

local kinds = { rdp = 0, prv = 1, gdp = 2 }

local function kind_of(name, fn, default)
  name = name or default
  local k = kinds[name]
  if not k then raise(("%s: accountant must be \"rdp\", \"prv\" or \"gdp\", got %s"):format(fn, tostring(name))) end
  return k
end

local function number(opts, key, fn, range)
  local v = opts[key]
  if type(v) ~= "number" then
    raise(("%s: %s must be a number %s, got %s"):format(fn, key, range, tostring(v)))
  end
  return v
end

local function integer(opts, key, fn, range)
  local v = number(opts, key, fn, range)
  if v ~= math.floor(v) or v < 1 or v > 2 ^ 53 then
    raise(("%s: %s must be an integer %s, got %s"):format(fn, key, range, tostring(v)))
  end
  return v
end

-- q and steps from q/steps or from dataset_size, batch_size and epochs.
local function rate_and_steps(opts, fn)
  if opts.dataset_size ~= nil or opts.batch_size ~= nil or opts.epochs ~= nil then
    local n = integer(opts, "dataset_size", fn, ">= 1")
    local b = integer(opts, "batch_size", fn, "in [1, dataset_size]")
    local e = number(opts, "epochs", fn, "> 0")
    if b > n then raise(("%s: batch_size must be an integer in [1, dataset_size = %d], got %d"):format(fn, n, b)) end
    if not (e > 0 and e < math.huge) then raise(("%s: epochs must be finite and > 0, got %s"):format(fn, tostring(e))) end
    return b / n, math.ceil(e * n / b)
  end
  return number(opts, "q", fn, "in (0, 1]"), integer(opts, "steps", fn, ">= 1")
end

-- opts.runs = {{q=, sigma=, steps=}, ...} or a single run in opts; a dp_mech_run array.
local function runs_of(opts, fn)
  if opts.runs ~= nil then
    if type(opts.runs) ~= "table" or #opts.runs == 0 then
      raise(fn .. ": runs must be a non-empty list of {q=, sigma=, steps=}")
    end
    local n = #opts.runs
    local runs = ffi.new("dp_mech_run[?]", n)
    for i, r in ipairs(opts.runs) do
      local where = ("%s: runs[%d]"):format(fn, i)
      runs[i - 1].q = number(r, "q", where, "in (0, 1]")
      runs[i - 1].sigma = number(r, "sigma", where, "> 0")
      runs[i - 1].steps = integer(r, "steps", where, ">= 1")
    end
    return runs, n
  end
  local q, steps = rate_and_steps(opts, fn)
  local runs = ffi.new("dp_mech_run[1]")
  runs[0].q, runs[0].sigma, runs[0].steps = q, number(opts, "sigma", fn, "> 0"), steps
  return runs, 1
end

local function result_table(r)
  return {
    epsilon = r.epsilon,
    eps_estimate = r.eps_estimate,
    eps_lower = r.eps_lower,
    best_order = r.best_order ~= 0 and r.best_order or nil,
    approximate = r.approximate ~= 0,
  }
end

-- The default RDP orders as a Lua list.
function M.default_orders()
  local n = C.dp_rdp_default_orders(nil, 0)
  local buf = ffi.new("double[?]", n)
  C.dp_rdp_default_orders(buf, n)
  local out = {}
  for i = 0, n - 1 do out[i + 1] = buf[i] end
  return out
end

-- epsilon{q=, sigma=, steps=, delta=, accountant="rdp", orders=?, eps_error=?, delta_error=?}
-- (or runs={...} for heterogeneous steps, or dataset_size/batch_size/epochs for q and steps):
-- {epsilon, eps_estimate, eps_lower, best_order, approximate}; epsilon is an upper bound except
-- for "gdp", a central-limit approximation.
function M.epsilon(opts)
  local fn = "accountant.epsilon"
  if type(opts) ~= "table" then raise(fn .. ": expected a table of options") end
  local kind = kind_of(opts.accountant, fn, "rdp")
  local runs, n = runs_of(opts, fn)
  local delta = number(opts, "delta", fn, "in (0, 1)")
  local r = ffi.new("dp_eps_result")
  if kind == 0 then
    local orders, n_orders = nil, 0
    if opts.orders ~= nil then
      if type(opts.orders) ~= "table" then raise(fn .. ": orders must be a list of numbers in (1, 1e6]") end
      n_orders = #opts.orders
      orders = ffi.new("double[?]", n_orders)
      for i, a in ipairs(opts.orders) do
        if type(a) ~= "number" then raise(("%s: orders[%d] must be a number in (1, 1e6], got %s"):format(fn, i, tostring(a))) end
        orders[i - 1] = a
      end
    end
    check(C.dp_rdp_epsilon(r, runs, n, delta, orders, n_orders))
  elseif kind == 1 then
    check(C.dp_prv_epsilon(r, runs, n, delta, opts.eps_error or 0, opts.delta_error or 0))
  else
    check(C.dp_gdp_epsilon(r, runs, n, delta))
  end
  return result_table(r)
end

-- delta{q=, sigma=, steps=, epsilon=, accountant="rdp"} (or runs=...): delta at epsilon.
function M.delta(opts)
  local fn = "accountant.delta"
  if type(opts) ~= "table" then raise(fn .. ": expected a table of options") end
  local kind = kind_of(opts.accountant, fn, "rdp")
  local runs, n = runs_of(opts, fn)
  local out = ffi.new("double[1]")
  check(C.dp_accountant_delta(out, kind, runs, n, number(opts, "epsilon", fn, ">= 0")))
  return out[0]
end

-- calibrate_sigma{target_epsilon=, delta=, q=, steps= (or dataset_size=, batch_size=, epochs=),
-- accountant="rdp", tol=1e-3}: the smallest sigma, within relative tol, meeting the target.
function M.calibrate_sigma(opts)
  local fn = "accountant.calibrate_sigma"
  if type(opts) ~= "table" then raise(fn .. ": expected a table of options") end
  local kind = kind_of(opts.accountant, fn, "rdp")
  local q, steps = rate_and_steps(opts, fn)
  local out = ffi.new("double[1]")
  check(C.dp_calibrate_sigma(out, kind, q, steps, number(opts, "target_epsilon", fn, "> 0"),
                             number(opts, "delta", fn, "in (0, 1)"), opts.tol or 0))
  return out[0]
end

-- ---------------------------------------------------------------- the ledger
-- The ledger's book-keeping and JSON live in dp.privacy.ledger; spending is the accountant's.
local Ledger = require("dp.privacy.ledger").methods

-- Epsilon spent so far at delta ("rdp" by default): a result table as from accountant.epsilon.
function Ledger:epsilon(delta, kind)
  local r = ffi.new("dp_eps_result")
  if type(delta) ~= "number" then raise("Ledger:epsilon: delta must be a number in (0, 1), got " .. tostring(delta)) end
  check(C.dp_ledger_epsilon(self.ptr, r, kind_of(kind, "Ledger:epsilon", "rdp"), delta))
  return result_table(r)
end

M.Ledger = require("dp.privacy.ledger").Ledger

-- ---------------------------------------------------------------- a tracker for recipes
-- accountant{delta=, sample_rate=, clip=1, accountant="rdp"}: acct:step(sigma) each optimizer
-- step, acct:epsilon() for the epsilon spent, acct.ledger for checkpoints.
local Tracker = {}
Tracker.__index = Tracker

function Tracker:step(sigma, sample_rate)
  self.ledger:step(sample_rate or self.sample_rate, sigma, self.clip)
  return self
end

function Tracker:epsilon(delta)
  return self.ledger:epsilon(delta or self.delta, self.kind).epsilon
end

return setmetatable(M, {
  __call = function(_, opts)
    local fn = "dp.privacy.accountant"
    if type(opts) ~= "table" then raise(fn .. ": expected a table of options") end
    number(opts, "delta", fn, "in (0, 1)")
    number(opts, "sample_rate", fn, "in (0, 1]")
    kind_of(opts.accountant, fn, "rdp")
    return setmetatable({
      ledger = opts.ledger or M.Ledger(), delta = opts.delta, sample_rate = opts.sample_rate,
      clip = opts.clip or 1.0, kind = opts.accountant or "rdp",
    }, Tracker)
  end,
})
