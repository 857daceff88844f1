-- bench/ops.lua: op throughput through the Lua API, printed as JSON. GEMM at BERT-base shapes
-- against cblas_sgemm called directly (same process, same OpenBLAS, same buffers), layer norm,
-- softmax and GELU in GB/s, and the cost of crossing from Lua to C.
-- Usage: dprun bench/ops.lua [reps=7] [threads=N] [quick=1]
local ffi = require "ffi"
local dp = require "dp"
local json = require "dp.util.json"
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = script_dir .. "/?.lua;" .. package.path
local timing = require "timing"
local now, median = timing.now, timing.median

local C = dp.C

local cfg = { reps = 7, threads = 0, quick = 0 }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^(%w+)=(.+)$")
  if not k or cfg[k] == nil then error("unknown argument " .. a .. " (expected key=value)", 0) end
  cfg[k] = tonumber(v)
end
if cfg.threads > 0 then dp.set_num_threads(cfg.threads) end

-- ---------------------------------------------------------------- GEMM

ffi.cdef [[
  void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
  const char *openblas_get_config(void);
]]
-- Inside dprun OpenBLAS is already loaded (libdpcore links it); from plain luajit, load it (the
-- same soname, so the same instance and thread pool as the library's).
local function find_blas()
  if pcall(function() return ffi.C.cblas_sgemm end) then return ffi.C end
  for _, name in ipairs { "libopenblas.so.0", "openblas" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then return lib end
  end
  error("bench/ops.lua: cannot load OpenBLAS for the direct GEMM", 0)
end
local blas = find_blas()
local ROW_MAJOR, NO_TRANS = 101, 111

local function bench_gemm(M, N, K)
  local a = dp.randn({M, K}, { seed = 1 })
  local b = dp.randn({K, N}, { seed = 2 })
  local c = dp.empty(M, N)
  local pa = ffi.cast("const float *", a.ptr.data)
  local pb = ffi.cast("const float *", b.ptr.data)
  local pc = ffi.cast("float *", c.ptr.data)
  local function direct() blas.cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, N, K, 1, pa, K, pb, N, 0, pc, N) end
  local function through_lua()
    local out = a:matmul(b)
    out:release()   -- as a training loop's temporaries would be, without waiting for the GC
  end
  direct(); through_lua()   -- warm up threads and page in the buffers
  local t_direct, t_lua = {}, {}
  for _ = 1, cfg.reps do   -- interleaved, so drift in clock speed hits both alike
    local t0 = now(); direct(); t_direct[#t_direct + 1] = now() - t0
    t0 = now(); through_lua(); t_lua[#t_lua + 1] = now() - t0
  end
  -- Same numbers? (the Lua path may pick another engine; compare a corner)
  local check = a:matmul(b)
  local diff = math.abs(check[{1, 1}] - pc[0]) / (1 + math.abs(pc[0]))
  local flops = 2 * M * N * K
  local md, ml = median(t_direct), median(t_lua)
  return {
    shape = { M, N, K },
    direct_ms = md * 1e3,
    lua_ms = ml * 1e3,
    ratio = ml / md,
    direct_gflops = flops / md * 1e-9,
    lua_gflops = flops / ml * 1e-9,
    engine = ffi.string(C.dp_matmul_engine(0)),
    max_rel_diff_corner = diff,
  }
end

-- ---------------------------------------------------------------- memory-bound ops

-- GB/s counts each element read once and written once (f32), as a fused kernel would.
local function bench_rowwise(name, fn, rows, cols)
  local x = dp.randn({rows, cols}, { seed = 3 })
  local w, b = dp.ones(cols), dp.zeros(cols)
  local function once() local y = fn(x, w, b); y:release() end
  once()
  local times = {}
  for _ = 1, cfg.reps * 3 do
    local t0 = now(); once(); times[#times + 1] = now() - t0
  end
  local t = median(times)
  local bytes = 2 * rows * cols * 4
  return { op = name, shape = { rows, cols }, ms = t * 1e3, gb_per_s = bytes / t * 1e-9 }
end

local rowwise_ops = {
  { "layer_norm", function(x, w, b) return x:layer_norm(w, b, 1e-12) end },
  { "softmax", function(x) return x:softmax(2) end },
  { "gelu", function(x) return x:gelu() end },
}

-- ---------------------------------------------------------------- Lua-to-C dispatch

local function per_call(n, fn)
  fn(math.min(n, 1000))
  local t0 = now()
  fn(n)
  return (now() - t0) / n
end

local function bench_dispatch()
  local n = cfg.quick > 0 and 100000 or 1000000
  local a, b = dp.ones(1), dp.ones(1)
  local pa, pb = a.ptr, b.ptr
  local numel = C.dp_tensor_numel
  local raw = per_call(n, function(k)
    local s = 0
    for _ = 1, k do s = s + numel(pa) end
    return s
  end)
  -- The whole Lua round trip with next to no C work: contiguous() of a contiguous tensor returns
  -- it retained, so this is argument checks, the FFI call, the handle and its later release.
  local dispatch = per_call(n, function(k)
    for _ = 1, k do local _ = a:contiguous() end
  end)
  -- A real small op: from C's side of the boundary (released at once) and through Lua (released
  -- when the GC finds the handle dead, in batches; the C allocator is slower for those).
  local c_only = per_call(n, function(k)
    for _ = 1, k do C.dp_tensor_release(C.dp_add(pa, pb)) end
  end)
  local full = per_call(n, function(k)
    for _ = 1, k do local _ = a + b end
  end)
  return {
    ffi_call_ns = raw * 1e9,              -- dp_tensor_numel through the FFI, JIT-compiled
    dispatch_us = dispatch * 1e6,         -- Lua -> C -> Lua round trip of an op, C work ~0
    small_op_c_us = c_only * 1e6,         -- dp_add + dp_tensor_release called raw
    small_op_lua_us = full * 1e6,         -- a + b on 1-element tensors, GC-managed handles
  }
end

-- ---------------------------------------------------------------- run

local gemm_shapes = { { 4096, 768, 768 }, { 4096, 3072, 768 }, { 4096, 768, 3072 } }
if cfg.quick > 0 then gemm_shapes = { { 512, 768, 768 } } end
local result = {
  dprun = dp.version(),
  jit = jit.version,
  threads = dp.get_num_threads(),
  reps = cfg.reps,
  openblas = pcall(function() return blas.openblas_get_config end)
             and ffi.string(blas.openblas_get_config()) or nil,
  gemm = {},
  memory_bound = {},
}
for _, s in ipairs(gemm_shapes) do
  result.gemm[#result.gemm + 1] = bench_gemm(s[1], s[2], s[3])
end
local row_shapes = cfg.quick > 0 and { { 512, 768 } } or { { 4096, 768 }, { 4096 * 12, 128 } }
for _, op in ipairs(rowwise_ops) do
  for _, s in ipairs(row_shapes) do
    result.memory_bound[#result.memory_bound + 1] = bench_rowwise(op[1], op[2], s[1], s[2])
  end
end
result.dispatch = bench_dispatch()
local worst = 0
for _, g in ipairs(result.gemm) do worst = math.max(worst, g.ratio) end
result.targets = {
  gemm_within_5_percent = worst <= 1.05,
  dispatch_under_1us = result.dispatch.dispatch_us < 1,
}
print(json.encode(result, { indent = "  " }))
