-- dp.privacy.engine: the per-sample gradient engine of core/dpsgd (dp_psg) as a Lua object.
-- Register the parameters once; for each micro-batch: begin(B), run forward and backward inside
-- engine:active(fn), then compute_norms() and clip{...}; at the end of the logical batch,
-- finish(noise, std, scale) adds the noise once and writes every trainable parameter's .grad, or
-- finish_update(i, ...) for i = 1, 2, ... does that and the optimizer's update in one pass.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"
local dtype = require "dp.dtype"

local C, check, raise, wrap = dpffi.C, dpffi.check, dpffi.raise, dpffi.wrap

local M = {}
local Engine = {}
Engine.__index = Engine

local forms = { auto = 0, ghost = 1, materialise = 2, materialize = 2 }
local form_names = { [0] = "auto", [1] = "ghost", [2] = "materialise" }
local kind_names = { [0] = "none", "linear.weight", "linear.bias", "embedding", "norm.weight", "norm.bias", "bias" }
local modes = { flat = 0, per_layer = 1, automatic = 2 }
M.clipping_modes = modes

-- params: array of {name=, tensor=, group=} (group: 0-based clipping group, default 0).
function M.new(params)
  if type(params) ~= "table" then raise("dp.privacy.engine: expected an array of {name=, tensor=}") end
  local self = setmetatable({ ptr = ffi.gc(C.dp_psg_new(), C.dp_psg_free), names = {}, index = {},
                              tensors = {}, groups = {} }, Engine)
  if self.ptr == nil then raise(ffi.string(C.dp_last_error())) end
  for i, p in ipairs(params) do
    if type(p) ~= "table" or type(p.name) ~= "string" or not args.is_tensor(p.tensor) then
      raise(("dp.privacy.engine: parameter %d must be {name=<string>, tensor=<tensor>}"):format(i))
    end
    local idx = C.dp_psg_add_param(self.ptr, args.ptr(p.tensor, "dp.privacy.engine", i), p.name, p.group or 0)
    if idx < 0 then raise(ffi.string(C.dp_last_error())) end
    self.names[idx + 1], self.index[p.name], self.tensors[idx + 1] = p.name, idx, p.tensor
    self.groups[idx + 1] = p.group or 0
  end
  return self
end

-- The C index of a parameter given by name or 1-based position.
function Engine:index_of(which, fn)
  if type(which) == "number" and self.names[which] then return which - 1 end
  local idx = self.index[which]
  if idx == nil then raise(("%s: no parameter named '%s'"):format(fn, tostring(which))) end
  return idx
end

function Engine:num_params() return #self.names end

-- "ghost", "materialise" or "auto" for one parameter (name or position) or all (nil).
function Engine:set_form(which, form)
  local f = forms[form]
  if f == nil then raise(("Engine:set_form: form '%s', expected auto, ghost or materialise"):format(tostring(form))) end
  check(C.dp_psg_set_form(self.ptr, which == nil and -1 or self:index_of(which, "Engine:set_form"), f))
end

-- A dtype enum from describe as its name, nil for -1 (not seen yet).
local function dtype_name(v) return v >= 0 and dtype.name(v) or nil end
-- A norm from describe, nil for -1 (no finish yet).
local function norm_or_nil(v) return v >= 0 and v or nil end

-- Per parameter: name, kind, trainable, group, uses, the norm form chosen and its cost estimates;
-- the dtypes of its last tap's input and output gradient, of its last norms and of its
-- accumulator; the norms of its clipped sum and of the noise added to it at the last finish.
function Engine:describe()
  local out, info = {}, ffi.new("dp_psg_param_info")
  for i = 1, #self.names do
    check(C.dp_psg_describe(self.ptr, i - 1, info))
    out[i] = { name = self.names[i], kind = kind_names[info.kind], trainable = info.trainable ~= 0,
               group = info.group, taps = info.taps, form = form_names[info.form_used],
               form_request = form_names[info.form_request], seq_len = tonumber(info.seq_len),
               ghost_flops = info.ghost_flops, materialise_flops = info.materialise_flops,
               input_dtype = dtype_name(info.input_dtype), grad_dtype = dtype_name(info.grad_dtype),
               norm_dtype = dtype_name(info.norm_dtype), accum_dtype = dtype_name(info.accum_dtype),
               sum_norm = norm_or_nil(info.sum_norm), noise_norm = norm_or_nil(info.noise_norm) }
    if info.form_used == 0 then out[i].form = info.kind == 0 and "none" or "direct" end
  end
  return out
end

function Engine:begin(batch)
  check(C.dp_psg_begin(self.ptr, batch))
  self.batch = batch
end

-- fn(...) with this engine active (backward taps go to it), deactivated afterwards even on error.
function Engine:active(fn, ...)
  local previous = C.dp_psg_active()
  C.dp_psg_activate(self.ptr)
  local results = { pcall(fn, ...) }
  C.dp_psg_activate(previous)
  if not results[1] then error(results[2], 0) end
  return unpack(results, 2, table.maxn(results))
end

function Engine:compute_norms() check(C.dp_psg_compute_norms(self.ptr)) end

-- Per-example norms as a Lua array: of one parameter (name or position) or all (nil);
-- bound = true gives the rounding-safe upper bounds used for clipping.
function Engine:sample_norms(which, bound)
  local out = ffi.new("double[?]", self.batch)
  local idx = which == nil and -1 or self:index_of(which, "Engine:sample_norms")
  check(C.dp_psg_sample_norms(self.ptr, idx, bound and 1 or 0, out))
  local t = {}
  for i = 1, self.batch do t[i] = out[i - 1] end
  return t
end

-- config: { mode = "flat"|"per_layer"|"automatic", max_norm = C, thresholds = {...} (per group,
-- 1-based list for groups 0..), gamma = 0.01 }. Returns the stats table.
function Engine:clip(config)
  local mode = modes[config.mode or "flat"]
  if mode == nil then
    raise(("Engine:clip: mode '%s', expected flat, per_layer or automatic"):format(tostring(config.mode)))
  end
  local cfg = ffi.new("dp_clip_config")
  cfg.mode, cfg.max_norm, cfg.gamma = mode, config.max_norm or 0, config.gamma or 0
  local thresholds
  if config.thresholds then
    thresholds = ffi.new("double[?]", #config.thresholds)
    for g, v in ipairs(config.thresholds) do thresholds[g - 1] = v end
    cfg.n_groups, cfg.thresholds = #config.thresholds, thresholds
  end
  local st = ffi.new("dp_clip_stats")
  check(C.dp_psg_clip_accumulate(self.ptr, cfg, st))
  return { samples = tonumber(st.samples), clipped = tonumber(st.clipped), nonfinite = tonumber(st.nonfinite),
           norm_mean = st.norm_mean, norm_max = st.norm_max }
end

-- Clip factors of the last clip (group 1-based; default the first) as a Lua array.
function Engine:clip_factors(group)
  local out = ffi.new("double[?]", self.batch)
  check(C.dp_psg_clip_factors(self.ptr, (group or 1) - 1, out))
  local t = {}
  for i = 1, self.batch do t[i] = out[i - 1] end
  return t
end

-- Example i's (1-based) unclipped gradient of a parameter, f64, rebuilt from the taps.
function Engine:sample_grad(which, i)
  return wrap(C.dp_psg_sample_grad(self.ptr, self:index_of(which, "Engine:sample_grad"), i - 1))
end

function Engine:accumulator(which)
  return wrap(C.dp_psg_accumulator(self.ptr, self:index_of(which, "Engine:accumulator")))
end

-- noise: a dp.privacy.noise object (or nil when std is 0).
function Engine:finish(noise, std, scale)
  check(C.dp_psg_finish(self.ptr, noise and noise.ptr or nil, std, scale or 1))
end

-- finish for parameter `which` (name or position) fused with its optimizer update
-- (dp_psg_finish_update_param): rule a dp_update_rule cdata, state0 / state1 tensors (or nil),
-- rounding a dp_rounding cdata (or nil: nearest). Call it for every parameter in order; a frozen
-- one needs no rule. Same bits as finish then the optimizer's step.
function Engine:finish_update(which, noise, std, scale, rule, state0, state1, rounding)
  check(C.dp_psg_finish_update_param(self.ptr, self:index_of(which, "Engine:finish_update"),
                                     noise and noise.ptr or nil, std, scale or 1, rule,
                                     state0 and state0.ptr or nil, state1 and state1.ptr or nil, rounding))
end

-- The noise blocks finish draws with std > 0 (the generator's counter advance), as a number.
function Engine:noise_blocks()
  local blocks = C.dp_psg_noise_blocks(self.ptr)
  if blocks < 0 then raise(ffi.string(C.dp_last_error())) end
  return tonumber(blocks)
end

function Engine:reset() check(C.dp_psg_reset(self.ptr)) end

-- Dynamic loss scaling: the output gradients of the coming backward carry s (the loss was
-- multiplied by it), a power of two >= 2^-24; norms, factors and clipped sums divide it out.
function Engine:set_loss_scale(s)
  if type(s) ~= "number" then
    raise(("Engine:set_loss_scale: scale must be a number (a power of two), got %s"):format(type(s)))
  end
  check(C.dp_psg_set_loss_scale(self.ptr, s))
  return self
end

function Engine:loss_scale() return C.dp_psg_loss_scale(self.ptr) end

return M
