-- dp.privacy.ledger: the privacy ledger through the FFI: steps of the Poisson-subsampled Gaussian
-- mechanism in runs, DP-SGD book-keeping (batch sizes, generator counters, skipped steps), the
-- inspection count, and the JSON form for checkpoints. dp.privacy.accountant re-exports it as
-- accountant.Ledger and adds Ledger:epsilon.
local ffi = require "ffi"
local native = require "dp.ffi"

local C = native.C
local check, raise = native.check, native.raise

local function number(opts, key, fn, range)
  local v = opts[key]
  if type(v) ~= "number" then
    raise(("%s: %s must be a number %s, got %s"):format(fn, key, range, tostring(v)))
  end
  return v
end

local Ledger = {}
Ledger.__index = Ledger

local function wrap_ledger(ptr)
  if ptr == nil then raise(ffi.string(C.dp_last_error())) end
  return setmetatable({ ptr = ffi.gc(ptr, C.dp_ledger_free) }, Ledger)
end

-- Record one step; the last run lengthens while q, sigma and clip stay the same.
function Ledger:step(q, sigma, clip)
  if type(q) ~= "number" or type(sigma) ~= "number" or (clip ~= nil and type(clip) ~= "number") then
    raise(("Ledger:step: expected numbers q in (0, 1], sigma > 0 and clip > 0 (default 1), got %s, %s, %s")
          :format(tostring(q), tostring(sigma), tostring(clip)))
  end
  check(C.dp_ledger_step(self.ptr, q, sigma, clip or 1.0))
  return self
end

-- ---------------------------------------------------------------- DP-SGD book-keeping

local sampling_ids = { poisson = 0, shuffle = 1 }
local noise_mode_ids = { reproducible = 0, secure = 1 }
local sampling_names = { [0] = "poisson", [1] = "shuffle" }
local noise_mode_names = { [0] = "reproducible", [1] = "secure" }
local u64 = ffi.typeof("uint64_t")

local function name_id(opts, key, ids, a, b)
  local id = ids[opts[key]]
  if id == nil then
    raise(("Ledger:record: %s must be \"%s\" or \"%s\", got %s"):format(key, a, b, tostring(opts[key])))
  end
  return id
end

-- A generator counter or seed: a Lua number (an integer in [0, 2^53], where doubles are exact)
-- or a uint64_t / nonnegative int64_t cdata (exact up to 2^64 - 1).
local function counter(opts, key, default)
  local v = opts[key]
  if v == nil then v = default end
  if type(v) == "number" and v >= 0 and v <= 2 ^ 53 and v == math.floor(v) then return u64(v) end
  if ffi.istype(u64, v) then return v end
  if ffi.istype("int64_t", v) and v >= 0 then return ffi.cast(u64, v) end
  raise(("Ledger:record: %s must be an integer >= 0 (a number up to 2^53 or a uint64_t cdata), got %s")
        :format(key, tostring(v)))
end

-- Record one DP-SGD step with its book-keeping: record{q=, sigma=, clip=, batch_size=,
-- sampling="poisson"|"shuffle", noise_mode="reproducible"|"secure", noise_seed= (default 0),
-- noise_counter_before=, noise_counter_after=, sampler_counter_before=, sampler_counter_after=,
-- skipped = false (true: the update was not applied, f16 overflow; the step still counts),
-- aux_sigma = 0 (std of the noise on a released overflow count; sigma is then the combined one)}.
-- The last run lengthens when the mechanism (aux_sigma included), sampler, noise mode and seed are
-- unchanged and both counters continue where it stopped; otherwise a run starts (see
-- dp_ledger_record).
function Ledger:record(opts)
  local fn = "Ledger:record"
  if type(opts) ~= "table" then raise(fn .. ": expected a table of step fields") end
  local info = ffi.new("dp_ledger_step_info")
  info.q = number(opts, "q", fn, "in (0, 1]")
  info.sigma = number(opts, "sigma", fn, "> 0")
  info.clip = number(opts, "clip", fn, "> 0")
  local b = opts.batch_size
  if type(b) ~= "number" or b < 0 or b > 2 ^ 53 or b ~= math.floor(b) then
    raise(("%s: batch_size must be an integer >= 0, got %s"):format(fn, tostring(b)))
  end
  info.batch_size = b
  info.sampling = name_id(opts, "sampling", sampling_ids, "poisson", "shuffle")
  info.noise_mode = name_id(opts, "noise_mode", noise_mode_ids, "reproducible", "secure")
  info.noise_seed = counter(opts, "noise_seed", 0)
  info.noise_counter_before = counter(opts, "noise_counter_before")
  info.noise_counter_after = counter(opts, "noise_counter_after")
  info.sampler_counter_before = counter(opts, "sampler_counter_before")
  info.sampler_counter_after = counter(opts, "sampler_counter_after")
  if opts.skipped ~= nil and type(opts.skipped) ~= "boolean" then
    raise(("%s: skipped must be a boolean (default false), got %s"):format(fn, tostring(opts.skipped)))
  end
  info.skipped = opts.skipped and 1 or 0
  if opts.aux_sigma ~= nil then info.aux_sigma = number(opts, "aux_sigma", fn, ">= 0") end
  check(C.dp_ledger_record(self.ptr, info))
  return self
end

-- The runs as a list of {q=, sigma=, clip=, steps=}. Runs made by :record also carry
-- detailed = true, batch_total, batch_min, batch_max, empty_batches (numbers), sampling and
-- noise_mode (names), and noise_seed, noise_counter_first/last, sampler_counter_first/last as
-- uint64_t cdata (exact; compare with == against numbers or cdata), skipped_steps (how many of
-- its steps were skipped) and aux_sigma (0 when none).
function Ledger:runs()
  local out, r = {}, ffi.new("dp_ledger_run_info")
  for i = 0, C.dp_ledger_num_runs(self.ptr) - 1 do
    check(C.dp_ledger_run_detail(self.ptr, i, r))
    local run = { q = r.q, sigma = r.sigma, clip = r.clip, steps = tonumber(r.steps) }
    if r.detailed ~= 0 then
      run.detailed = true
      run.batch_total, run.batch_min = tonumber(r.batch_total), tonumber(r.batch_min)
      run.batch_max, run.empty_batches = tonumber(r.batch_max), tonumber(r.empty_batches)
      run.sampling, run.noise_mode = sampling_names[r.sampling], noise_mode_names[r.noise_mode]
      run.noise_seed = u64(r.noise_seed)
      run.noise_counter_first, run.noise_counter_last = u64(r.noise_counter_first), u64(r.noise_counter_last)
      run.sampler_counter_first, run.sampler_counter_last = u64(r.sampler_counter_first), u64(r.sampler_counter_last)
      run.skipped_steps, run.aux_sigma = tonumber(r.skipped_steps), r.aux_sigma
    end
    out[i + 1] = run
  end
  return out
end

-- Note that raw per-sample statistics were read (the run is then not a clean DP run); what
-- names them. Counted, and kept in the JSON (the first 32 distinct names, 128 bytes each).
function Ledger:mark_inspected(what)
  if type(what) ~= "string" or what == "" then
    raise("Ledger:mark_inspected: what must be a non-empty string naming what was read, got " .. tostring(what))
  end
  check(C.dp_ledger_mark_inspected(self.ptr, what))
  return self
end

function Ledger:inspections() return tonumber(C.dp_ledger_inspections(self.ptr)) end

function Ledger:total_steps() return tonumber(C.dp_ledger_total_steps(self.ptr)) end

-- JSON for a checkpoint; Ledger.from_json(text) resumes it.
function Ledger:to_json()
  local p = C.dp_ledger_to_json(self.ptr)
  if p == nil then raise(ffi.string(C.dp_last_error())) end
  local s = ffi.string(p)
  C.dp_free(p)
  return s
end

function Ledger.from_json(text)
  if type(text) ~= "string" then raise("Ledger.from_json: expected a JSON string, got " .. type(text)) end
  return wrap_ledger(C.dp_ledger_from_json(text))
end

local M = { methods = Ledger }   -- the class (dp.privacy.accountant adds :epsilon)

M.Ledger = setmetatable({ from_json = Ledger.from_json }, {
  __call = function() return wrap_ledger(C.dp_ledger_new()) end,
})

return M
