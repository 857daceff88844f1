-- dp.rng: the counter-based Philox generator of dp.h as a Lua object. Every draw is a function of
-- (seed, counter), so a run is reproducible from the two numbers (r:state()).
local ffi = require "ffi"
local dpffi = require "dp.ffi"

local C = dpffi.C

local M = {}
-- Shared across reloads of this module, like dp.tensor's methods (the metatype binds once).
local registry = debug.getregistry()
local methods = registry["dp.rng.methods"] or {}
registry["dp.rng.methods"] = methods

local rng_type = registry["dp.rng.type"] or ffi.metatype("dp_rng", {
  __index = methods,
  __tostring = function(r)
    return ("dp.rng(seed=%s, counter=%s)"):format(tostring(r.seed):gsub("ULL$", ""),
                                                  tostring(r.counter):gsub("ULL$", ""))
  end,
})
registry["dp.rng.type"] = rng_type

-- A new generator; seeds may be Lua numbers or uint64 cdata.
function M.new(seed)
  local r = rng_type()
  C.dp_rng_init(r, seed or 0)
  return r
end

function M.is_rng(x) return ffi.istype(rng_type, x) end

-- seed, counter (numbers while they fit in a double exactly, else uint64 cdata).
function methods.state(r)
  local function plain(v) return v < 2 ^ 53 and tonumber(v) or v end
  return plain(r.seed), plain(r.counter)
end

function methods.set_state(r, seed, counter)
  r.seed, r.counter = seed, counter or 0
  return r
end

function methods.clone(r) return rng_type(r.seed, r.counter) end

-- r:randn(shape, opts) and r:rand(shape, opts) draw from r: see dp.randn and dp.rand.
local function with_rng(r, opts)
  local out = { rng = r }
  if type(opts) == "table" then
    for k, v in pairs(opts) do if k ~= "rng" then out[k] = v end end
  elseif opts ~= nil then
    out.dtype = opts
  end
  return out
end

function methods.randn(r, shape, opts)
  return require("dp.factory").randn(shape, with_rng(r, opts))
end

function methods.rand(r, shape, opts)
  return require("dp.factory").rand(shape, with_rng(r, opts))
end

local default = registry["dp.rng.default"] or M.new(0)
registry["dp.rng.default"] = default
function M.default() return default end
function M.manual_seed(seed) C.dp_rng_init(default, seed) return default end

return M
