-- bench/accountant.lua: timings of the privacy accountant on one core, printed as JSON lines,
-- against the targets of the accountant issue: RDP for 10^5 steps over the default orders under
-- 10 ms, PRV with eps_error 0.01 for 10^4 steps under 1 s, calibration under 2 s.
-- Usage: dprun bench/accountant.lua [reps=N] (or luajit with DP_LIBRARY set)
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = script_dir .. "/?.lua;" .. script_dir .. "/../lua/?.lua;" .. script_dir .. "/../lua/?/init.lua;" .. package.path

local ffi = require "ffi"
local native = require "dp.ffi"
local accountant = require "dp.privacy.accountant"
local timing = require "timing"
local now, median = timing.now, timing.median

local C = native.C
local cfg = { reps = 0 }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^(%w+)=(.+)$")
  if not k or cfg[k] == nil then error("unknown argument " .. a .. " (expected key=value)", 0) end
  cfg[k] = tonumber(v)
end


local function measure(reps, f)
  f()   -- warm up (JIT, page faults)
  local times, result = {}, nil
  for i = 1, reps do
    local t0 = now()
    result = f()
    times[i] = now() - t0
  end
  return median(times), result
end

local function report(name, target_s, reps, seconds, extra)
  local fields = {
    ('"bench":"accountant"'), ('"name":"%s"'):format(name), ('"median_ms":%.3f'):format(seconds * 1e3),
    ('"target_ms":%g'):format(target_s * 1e3), ('"reps":%d'):format(reps),
    ('"meets_target":%s'):format(seconds < target_s and "true" or "false"),
  }
  for _, kv in ipairs(extra) do fields[#fields + 1] = ('"%s":%.10g'):format(kv[1], kv[2]) end
  print("{" .. table.concat(fields, ",") .. "}")
end

local function reps_or(n) return cfg.reps > 0 and cfg.reps or n end

-- RDP: the per-step RDP at all default orders, times steps, converted; nothing is cached.
do
  local reps = reps_or(31)
  local s, r = measure(reps, function()
    return accountant.epsilon{ q = 0.01, sigma = 1.0, steps = 100000, delta = 1e-5 }
  end)
  report("rdp_epsilon_1e5_steps_default_orders", 0.010, reps, s,
         { { "q", 0.01 }, { "sigma", 1.0 }, { "epsilon", r.epsilon }, { "best_order", r.best_order },
           { "orders", C.dp_rdp_default_orders(nil, 0) } })
end

do
  local reps = reps_or(5)
  local s, r = measure(reps, function()
    return accountant.epsilon{ q = 0.01, sigma = 1.0, steps = 10000, delta = 1e-5, accountant = "prv",
                               eps_error = 0.01 }
  end)
  report("prv_epsilon_1e4_steps_eps_error_0.01", 1.0, reps, s,
         { { "q", 0.01 }, { "sigma", 1.0 }, { "epsilon", r.epsilon }, { "eps_estimate", r.eps_estimate },
           { "eps_lower", r.eps_lower } })
end

for _, kind in ipairs({ "rdp", "prv", "gdp" }) do
  local reps = reps_or(kind == "prv" and 3 or 5)
  local s, sigma = measure(reps, function()
    return accountant.calibrate_sigma{ target_epsilon = 8, delta = 1e-5, q = 0.01, steps = 10000,
                                       accountant = kind, tol = 1e-3 }
  end)
  report("calibrate_sigma_" .. kind .. "_1e4_steps", 2.0, reps, s,
         { { "target_epsilon", 8 }, { "sigma", sigma } })
end
