-- dp.tensor_index: t[i], t[{i, {a, b}, {}}] and assignment through them, Torch7-style.
-- Indices are 1-based (negative counts from the end). A number selects (drops the dim), {a, b}
-- keeps elements a..b inclusive, {a} keeps element a, {a, b, step} every step-th, {} everything.
-- Selecting down to a single element yields a number, as in Torch7; anything else is a view.
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"

local C, wrap, raise, check = dpffi.C, dpffi.wrap, dpffi.raise, dpffi.check
local item = require("dp.tensor_data").item

local M = {}

-- The view of x picked by key (a number or a table of per-dim entries).
local function view(x, key, op)
  local p = args.ptr(x, op, 1)
  if type(key) == "number" then
    if p.ndim == 0 then raise(("%s: cannot index the 0-d tensor %s"):format(op, args.desc(p))) end
    return wrap(C.dp_select(p, 0, args.index(p, 0, key, op)))
  end
  if #key > p.ndim then
    raise(("%s: %d indices for %s with %d dims"):format(op, #key, args.desc(p), p.ndim))
  end
  -- Entry k applies to dim k of x (checked there, so errors name x's dims) and to C dim `dim`
  -- of the view built so far (selections drop dims).
  local out, dim = x, 0
  for k = 1, #key do
    local entry, q = key[k], out.ptr
    if type(entry) == "number" then
      out = wrap(C.dp_select(q, dim, args.index(p, k - 1, entry, op)))
    elseif type(entry) == "table" then
      if entry[1] ~= nil then
        local size = tonumber(q.shape[dim])
        local first = args.index(p, k - 1, entry[1], op)
        local last = entry[2] == nil and first or args.index(p, k - 1, entry[2], op)
        local step = args.integer(entry[3] or 1, op, "step")
        if step < 1 then raise(("%s: step must be at least 1, got %d"):format(op, step)) end
        local count = last >= first and math.floor((last - first) / step) + 1 or 0
        if not (first == 0 and count == size and step == 1) then
          out = wrap(C.dp_slice(q, dim, first, count, step))
        end
      end
      dim = dim + 1
    else
      raise(("%s: index entry %d is a %s, expected a number or a table {first, last}")
            :format(op, k, args.describe(entry)))
    end
  end
  return out
end
M.view = view

function M.get(x, key)
  local out = view(x, key, "index")
  if out.ptr.ndim == 0 then return item(out) end
  return out
end

-- t[key] = number fills the view; t[key] = tensor copies into it (broadcasting).
function M.set(x, key, value)
  local out = view(x, key, "index")
  if type(value) == "number" then
    check(C.dp_fill_(out.ptr, value))
  else
    check(C.dp_copy_(out.ptr, args.ptr(value, "index assignment", 2)))
  end
end

return M
