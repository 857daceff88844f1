-- Specs for dp.ffi: the header as ffi.cdef sees it, the struct layout against the C compiler's,
-- and C failures turned into Lua errors.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local dp = require "dp"

local C = dpffi.C

-- Field offsets and the size of dp_tensor as compiled by the system C compiler, or nil.
local function c_layout()
  local header = os.getenv("DP_HEADER") or (dpffi.lua_dir .. "/../core/include/dp.h")
  local dir = os.tmpname()
  os.remove(dir)
  local src, exe = dir .. ".c", dir .. ".bin"
  local f = assert(io.open(src, "w"))
  f:write(([[
#include <stdio.h>
#include <stddef.h>
#define F(name) printf(#name " %zu\n", offsetof(dp_tensor, name));
int main(void) {
  F(dtype) F(device) F(ndim) F(requires_grad) F(shape) F(stride) F(offset) F(data) F(storage)
  F(refcount) F(is_param) F(grad) F(grad_fn)
  printf("size %zu\n", sizeof(dp_tensor));
  printf("rng %zu\n", sizeof(dp_rng));
  printf("eps_result %zu\n", sizeof(dp_eps_result));
  printf("mech_run %zu\n", sizeof(dp_mech_run));
  return 0;
}
]]))
  f:close()
  -- -include resolves the header from the working directory, so relative paths work.
  local ok = os.execute(("cc -include '%s' -o %s %s 2>/dev/null"):format(header, exe, src))
  os.remove(src)
  if ok ~= 0 and ok ~= true then return nil end
  local out = {}
  local p = io.popen(exe)
  for name, value in p:read("*a"):gmatch("(%S+) (%d+)") do out[name] = tonumber(value) end
  p:close()
  os.remove(exe)
  return out
end

describe("dp.ffi", function()
  it("finds the header and the library", function()
    assert.is_string(dpffi.library)
    assert.equal("0.1.0", ffi.string(C.dp_version()))
  end)

  it("strips preprocessor lines and the extern \"C\" braces", function()
    local text = dpffi.header_text(os.getenv("DP_HEADER") or (dpffi.lua_dir .. "/../core/include/dp.h"))
    assert.is_nil(text:find("\n%s*#"))
    assert.is_nil(text:find('extern "C"', 1, true))
    assert.truthy(text:find("dp_tensor *dp_add(dp_tensor *a, dp_tensor *b);", 1, true))
  end)

  it("lays out dp_tensor as the C compiler does", function()
    local layout = c_layout()
    if not layout then pending("no C compiler to compare with") return end
    assert.equal(layout.size, ffi.sizeof("dp_tensor"))
    for _, field in ipairs { "dtype", "device", "ndim", "requires_grad", "shape", "stride",
                             "offset", "data", "storage", "refcount", "is_param", "grad",
                             "grad_fn" } do
      assert.equal(layout[field], ffi.offsetof("dp_tensor", field), field)
    end
    assert.equal(layout.rng, ffi.sizeof("dp_rng"))
    assert.equal(layout.eps_result, ffi.sizeof("dp_eps_result"))
    assert.equal(layout.mech_run, ffi.sizeof("dp_mech_run"))
  end)

  it("ends dp_tensor at its last field", function()
    local last = ffi.offsetof("dp_tensor", "grad_fn") + ffi.sizeof("void *")
    assert.equal(last, ffi.sizeof("dp_tensor"))
  end)

  it("turns a nonzero status into the C message", function()
    assert.equal(0, dpffi.check(0))
    local t = dp.zeros(2)
    local idx = ffi.new("int64_t[1]", 5)
    local rc = C.dp_tensor_set(t.ptr, idx, 1)
    assert.is_true(rc < 0)
    local msg = ffi.string(C.dp_last_error())
    assert.truthy(#msg > 0)
    assert.error_matches(function() dpffi.check(rc) end, msg, nil, true)
  end)

  it("turns a NULL result into the C message", function()
    local shape = ffi.new("int64_t[2]", 2, 3)
    assert.error_matches(function() dpffi.wrap(C.dp_reshape(dp.zeros(5).ptr, 2, shape)) end,
      "reshape: cannot view [5] f32 cpu", nil, true)
  end)

  it("wraps a pointer so that collection releases it", function()
    dp.collectgarbage()
    local before = dp.live_tensors()
    do
      local shape = ffi.new("int64_t[1]", 4)
      local t = dpffi.wrap(C.dp_tensor_zeros(0, 0, 1, shape))
      assert.equal(before + 1, dp.live_tensors())
      assert.equal(4, t:numel())
    end
    dp.collectgarbage()
    assert.equal(before, dp.live_tensors())
  end)

  it("raises at an explicit level when asked", function()
    local function api() dpffi.check(-1, 2) end
    local ok, err = pcall(function() api() end)
    assert.is_false(ok)
    assert.truthy(err:find("ffi_spec.lua:" .. (debug.getinfo(1, "l").currentline - 2), 1, true), err)
  end)
end)
