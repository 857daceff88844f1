-- dp.privacy.noise: the DP noise generators of core/dpsgd (dp_noise in dp.h) as Lua objects:
-- Gaussian noise added into tensors, normals and uniforms, Poisson subsampling and shuffles.
--
--   local gen = dp.privacy.noise{ mode = "reproducible", seed = 0, stream = 1, counter = 0 }
--   local gen = dp.privacy.noise{ mode = "secure", stream = 1 }   -- keyed by the OS CSPRNG;
--                                                      seed and counter are ignored in this mode
--   gen:add_(t, std)       t (contiguous f32/f64, any device) += std * N(0, 1); returns t
--   gen:normals(n)         Lua array of n standard normals (numbers)
--   gen:uniforms(n)        Lua array of n uniforms in (0, 1)
--   gen:poisson(n, q)      Lua array of the chosen examples, 1-based and ascending
--   gen:shuffle(n)         a uniform random permutation of 1..n
--   gen:state()            { mode =, seed =, stream =, counter = } (secure mode: seed = 0)
--   gen:mode()             "reproducible" or "secure"
-- seed, stream and counter are Lua numbers up to 2^53 or uint64 cdata (0x...ULL) beyond; state()
-- returns numbers while they are below 2^53 and uint64 cdata otherwise. The counter counts 128-bit
-- blocks: n normals or uniforms use ceil(n / 2). gen.ptr is the dp_noise* for other C calls
-- (dp_psg_finish); the C object is freed when gen is collected.
local ffi = require "ffi"
local native = require "dp.ffi"
local args = require "dp.tensor_args"

local C, check, raise = native.C, native.check, native.raise

local M = {}

local modes = { reproducible = 0, secure = 1 }
local mode_names = { [0] = "reproducible", [1] = "secure" }
local DP_EARG = -6

local Noise = {}
Noise.__index = Noise

local uint64_t = ffi.typeof("uint64_t")
local int64_t = ffi.typeof("int64_t")

-- A 64-bit unsigned option: a whole Lua number in [0, 2^53] or 64-bit integer cdata >= 0.
local function u64(v, what, fn)
  if type(v) == "number" then
    if v >= 0 and v <= 2 ^ 53 and v % 1 == 0 then return v end
  elseif ffi.istype(uint64_t, v) or (ffi.istype(int64_t, v) and v >= 0) then
    return v
  end
  raise(("%s: %s must be an integer in [0, 2^53] or uint64 cdata (0x...ULL), got %s")
        :format(fn, what, tostring(v)))
end

-- A count of draws or examples: a whole Lua number in [0, 2^53].
local function count(v, what, fn)
  if type(v) ~= "number" or v < 0 or v > 2 ^ 53 or v % 1 ~= 0 then
    raise(("%s: %s must be an integer >= 0, got %s"):format(fn, what, tostring(v)))
  end
  return v
end

local function plain(v) return v < 2 ^ 53 and tonumber(v) or v end

local function live(self, fn)
  if getmetatable(self) ~= Noise then raise(("%s: expected a noise generator as self (use gen:%s)")
                                            :format(fn, fn:match("[^:]+$"))) end
  return self.ptr
end

-- dp.privacy.noise{ mode =, seed =, stream =, counter = } (see the top of this file).
function M.new(opts)
  local fn = "noise"
  opts = opts or {}
  if type(opts) ~= "table" then raise(fn .. ": expected a table of options") end
  local mode = opts.mode or "reproducible"
  if modes[mode] == nil then
    raise(("%s: mode must be \"reproducible\" or \"secure\", got %s"):format(fn, tostring(mode)))
  end
  local stream = u64(opts.stream or 1, "stream", fn)
  local ptr
  if mode == "secure" then
    -- seed and counter are ignored: the key is fresh from the OS and the stream starts at 0, so
    -- a config shared by both modes can be passed unchanged.
    ptr = C.dp_noise_new_secure(stream)
  else
    ptr = C.dp_noise_new_seeded(u64(opts.seed or 0, "seed", fn), stream,
                                u64(opts.counter or 0, "counter", fn))
  end
  if ptr == nil then raise(ffi.string(C.dp_last_error())) end
  return setmetatable({ ptr = ffi.gc(ptr, C.dp_noise_free) }, Noise)
end

function M.is_noise(x) return getmetatable(x) == Noise end

function Noise:mode() return mode_names[tonumber(C.dp_noise_mode_of(live(self, "noise:mode")))] end

function Noise:state()
  local p = live(self, "noise:state")
  local v = ffi.new("uint64_t[3]")
  check(C.dp_noise_state(p, v, v + 1, v + 2))
  return { mode = mode_names[tonumber(C.dp_noise_mode_of(p))], seed = plain(v[0]),
           stream = plain(v[1]), counter = plain(v[2]) }
end

-- t += std * N(0, 1) in double, rounded once to t's dtype; returns t.
function Noise:add_(t, std)
  local p = live(self, "noise:add_")
  if type(std) ~= "number" then
    raise(("noise:add_: std must be a number >= 0, got %s"):format(tostring(std)))
  end
  check(C.dp_noise_add_(p, args.ptr(t, "noise:add_", 1), std))
  return t
end

local function draws(self, n, fn, c_fn)
  local p = live(self, fn)
  n = count(n, "n", fn)
  local buf = ffi.new("double[?]", math.max(n, 1))
  check(c_fn(p, buf, n))
  local out = {}
  for i = 1, n do out[i] = buf[i - 1] end
  return out
end

function Noise:normals(n) return draws(self, n, "noise:normals", C.dp_noise_normals) end
function Noise:uniforms(n) return draws(self, n, "noise:uniforms", C.dp_noise_uniforms) end

-- The first buffer of poisson(n, q): the mean plus seven standard deviations and a margin. When
-- a sample outgrows it, C reports the size needed without moving the generator and poisson
-- repeats the call (replaceable, e.g. by a spec forcing that path).
function M.initial_capacity(n, q)
  local c = math.min(n, math.ceil(n * q + 7 * math.sqrt(n * q) + 16))
  return c >= 0 and c or 0   -- NaN or negative for a bad q, which C then names
end

-- Each of 1..n independently with probability q, ascending.
function Noise:poisson(n, q)
  local p = live(self, "noise:poisson")
  n = count(n, "n", "noise:poisson")
  if type(q) ~= "number" then
    raise(("noise:poisson: q must be a number in [0, 1], got %s"):format(tostring(q)))
  end
  local capacity = M.initial_capacity(n, q)
  local chosen = ffi.new("int64_t[1]")
  local buf = ffi.new("int64_t[?]", math.max(capacity, 1))
  local rc = C.dp_poisson_sample(p, n, q, buf, capacity, chosen)
  if rc == DP_EARG and chosen[0] > capacity then
    capacity = tonumber(chosen[0])
    buf = ffi.new("int64_t[?]", capacity)
    rc = C.dp_poisson_sample(p, n, q, buf, capacity, chosen)
  end
  check(rc)
  local out = {}
  for i = 1, tonumber(chosen[0]) do out[i] = tonumber(buf[i - 1]) + 1 end
  return out
end

-- A uniform random permutation of 1..n (Fisher-Yates).
function Noise:shuffle(n)
  local p = live(self, "noise:shuffle")
  n = count(n, "n", "noise:shuffle")
  local buf = ffi.new("int64_t[?]", math.max(n, 1))
  check(C.dp_shuffle(p, buf, n))
  local out = {}
  for i = 1, n do out[i] = tonumber(buf[i - 1]) + 1 end
  return out
end

function Noise:__tostring()
  local s = self:state()
  return ("dp.privacy.noise(mode=%s, seed=%s, stream=%s, counter=%s)")
         :format(s.mode, tostring(s.seed):gsub("ULL$", ""), tostring(s.stream):gsub("ULL$", ""),
                 tostring(s.counter):gsub("ULL$", ""))
end

return setmetatable(M, { __call = function(_, opts) return M.new(opts) end })
