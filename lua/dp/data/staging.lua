-- dp.data.staging: host-to-device batches through page-locked staging buffers (used by
-- dp.data.tensors:to_device). A ring per field holds two pinned CPU buffers used in turn; each
-- batch's rows are copied straight from the host dataset into the next buffer, whose first rows
-- are then copied to the device. From pinned memory that copy is asynchronous, so gathering the
-- next batch overlaps the GPU's work; the write into a buffer first waits for the copy still
-- reading it (dp_tensor_bump_version on a pinned tensor does that wait).
local ffi = require "ffi"
local dpffi = require "dp.ffi"

local C, wrap, check = dpffi.C, dpffi.wrap, dpffi.check

local M = {}

local bytes_ptr = ffi.typeof("uint8_t *")
local shape_buf = ffi.new("int64_t[8]")

-- Rows can be copied as bytes from a contiguous host tensor with at least one dim.
function M.can_stage(p)
  return p.device == 0 and p.ndim >= 1 and C.dp_tensor_is_contiguous(p) ~= 0
end

-- A new tensor on device holding a copy of p (the copy is queued; from pinned memory it returns
-- before the bytes have moved).
function M.copy_to(p, device)
  for d = 0, p.ndim - 1 do shape_buf[d] = p.shape[d] end
  local out = wrap(C.dp_tensor_empty(p.dtype, device, p.ndim, shape_buf))
  check(C.dp_copy_(out.ptr, p))
  return out
end

local Ring = {}
Ring.__index = Ring

-- A pinned buffer shaped like src with `rows` rows, counted as DP_MEM_OTHER: it outlives the step
-- whose category is current when it is made.
local function new_buffer(src, rows)
  for d = 0, src.ndim - 1 do shape_buf[d] = src.shape[d] end
  shape_buf[0] = rows
  local prev = C.dp_mem_set_category(C.DP_MEM_OTHER)
  local p = C.dp_tensor_empty_pinned(src.dtype, src.ndim, shape_buf)
  C.dp_mem_set_category(prev)
  return wrap(p)
end

-- The rows of src (a contiguous host tensor) at indices[1..count] (1-based, already checked)
-- as a new tensor on device, staged through the next buffer of the ring. A buffer grows to the
-- largest batch met (batches vary with Poisson sampling), so steady state allocates nothing on
-- the host.
function Ring:gather(src, indices, count, device)
  local k = self.next
  self.next = 3 - k
  local buf = self[k]
  if buf == nil or tonumber(buf.ptr.shape[0]) < count or buf.ptr.dtype ~= src.dtype then
    local rows = math.max(count, 1, buf and tonumber(buf.ptr.shape[0]) or 0)
    buf = new_buffer(src, rows)
    self[k] = buf
  end
  local bp = buf.ptr
  local row_bytes = tonumber(C.dp_dtype_size(src.dtype))
  for d = 1, src.ndim - 1 do row_bytes = row_bytes * tonumber(src.shape[d]) end
  C.dp_tensor_bump_version(bp)   -- before writing: waits for the copy still reading this buffer
  local from, to = ffi.cast(bytes_ptr, src.data), ffi.cast(bytes_ptr, bp.data)
  for i = 1, count do
    ffi.copy(to + (i - 1) * row_bytes, from + (indices[i] - 1) * row_bytes, row_bytes)
  end
  local rows = wrap(C.dp_narrow(bp, 0, 0, count))
  return M.copy_to(rows.ptr, device)
end

-- A ring for field `name`, empty until the first batch.
function M.ring(name) return setmetatable({ name = name, next = 1 }, Ring) end

M.Ring = Ring
return M
